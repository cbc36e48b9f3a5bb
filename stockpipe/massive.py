"""Massive (formerly Polygon.io) client: one session, one place for auth, pacing, retries, pagination.

Contracts (the course's reference folder): massive-stock-aggs-openapi.json,
`GET /v2/aggs/ticker/{T}/range/1/minute/{from}/{to}` and `/range/1/day/` (asked as traded, `adjusted=false`:
adjusted history is rewritten after every split); massive-grouped-daily-openapi.json,
`GET /v2/aggs/grouped/locale/us/market/stocks/{date}`; massive-splits-openapi.json and
massive-dividends-openapi.json, `GET /v3/reference/splits` and `/v3/reference/dividends`.

Unlike the official client, it waits as long as a per-minute window needs (a 0.1 s backoff cannot outlast it) and
never turns a bad response into an empty result.
"""

from __future__ import annotations

import collections
import datetime as dt
import email.utils
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from stockpipe.errors import (
    ApiUnreachableError,
    FetchFailedError,
    KeyRejectedError,
    PipelineError,
    PlanRefusedError,
)

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.massive.com"
DATA_STATUSES = frozenset({"OK", "DELAYED"})
MAX_LIMIT = 50_000
REFERENCE_LIMIT = 1_000  # the splits and dividends lists' largest page
# The reference lists the pipeline reads, each filtered and sorted by its own date: no ticker filter, so a short
# window is one call whatever the ticker list.
REFERENCE_DATES = {"splits": "execution_date", "dividends": "ex_dividend_date"}
# The free tier allows 5 calls a minute per key; one key is shared by many students, so this is also the default pace.
FREE_TIER_CALLS_PER_MINUTE = 5
# A call that waits at most this share of the window (and never less than SAME_WINDOW_MIN_S) waits on a call of the
# previous window that answered a little after the others of its burst (answers come tens of milliseconds to seconds
# apart): it takes a slot of the window under way, not one of the next window. 3 s of a minute.
SAME_WINDOW_SHARE = 0.05
SAME_WINDOW_MIN_S = 0.25

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class RollingWindowLimiter:
    """At most `calls` calls in any `window` seconds: burst up to the limit, then wait exactly until the oldest
    call leaves the window.

    A call is stamped when its response arrives, not when it is sent: the server counted it somewhere in between,
    so the later stamp can only err on the safe side. Calls in flight (concurrent fetches) hold a slot until then.
    Thread-safe: a slot is reserved and released under one lock, so N threads never send more than the limit.
    """

    def __init__(
        self, calls: int, window: float = 60.0, *, clock: Clock = time.monotonic, margin: float = 0.05
    ) -> None:
        if calls < 1:
            raise ValueError("calls must be >= 1")
        self.calls = calls
        self.window = window
        self.margin = margin
        self._clock = clock
        self._stamps: collections.deque[float] = collections.deque()
        self._blocked_until = 0.0
        self._in_flight = 0
        self._lock = threading.Lock()

    def delay(self) -> float:
        """Seconds to wait before the next call may be sent (0 when a slot is free now)."""
        with self._lock:
            return self._delay_locked()

    def _delay_locked(self) -> float:
        now = self._clock()
        while self._stamps and self._stamps[0] + self.window <= now:
            self._stamps.popleft()
        wait = max(0.0, self._blocked_until - now)
        over = len(self._stamps) + self._in_flight - self.calls  # slots that must free up first, minus one
        if over >= 0:
            if over < len(self._stamps):
                wait = max(wait, self._stamps[over] + self.window + self.margin - now)
            else:  # every slot is held by a call still in flight: its window starts when it answers
                wait = max(wait, min(1.0, self.window))
        return wait

    def slot_in_window(self) -> bool:
        """Whether one more call fits in the window under way: a slot is free now, or frees within SAME_WINDOW_SHARE
        of the window (SAME_WINDOW_MIN_S at least) as a call of the previous window leaves it, so the call does not
        wait for the next window."""
        return self.delay() <= max(self.window * SAME_WINDOW_SHARE, SAME_WINDOW_MIN_S)

    def reserve(self) -> float:
        """Take a slot for a call about to be sent and return 0, or return how long to wait before asking again."""
        with self._lock:
            wait = self._delay_locked()
            if wait <= 0:
                self._in_flight += 1
            return wait

    def record(self) -> None:
        """Stamp a completed call (releasing its reserved slot, if it had one)."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            self._stamps.append(self._clock())

    def block_for(self, seconds: float) -> None:
        """Nobody calls before `seconds` from now (the server said so, or the key is busy with other users)."""
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + seconds)

    def eta(self, remaining_calls: int) -> float:
        """Seconds until `remaining_calls` more calls can all have been sent, assuming instant responses."""
        if remaining_calls <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            stamps = [s for s in self._stamps if s + self.window > now] + [now] * self._in_flight
        start = max(now, self._blocked_until)
        last = start
        for _ in range(remaining_calls):
            if len(stamps) >= self.calls:
                last = max(last, stamps[-self.calls] + self.window + self.margin)
            stamps.append(last)
        return last - now


@dataclass(frozen=True)
class ClientConfig:
    base_url: str = DEFAULT_BASE_URL
    api_key: str = field(default="", repr=False)
    calls_per_minute: int | None = FREE_TIER_CALLS_PER_MINUTE  # None: unpaced
    window_seconds: float = 60.0
    max_attempts: int = 8
    max_retry_wait: float = 600.0
    backoff_cap: float = 60.0
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    # Attempts for a call that cannot connect while no call of this run ever has: a wrong --base-url or an offline
    # laptop fails in seconds instead of spending every ticker's full retry budget.
    connect_attempts: int = 4
    page_limit: int = MAX_LIMIT

    @property
    def pacing_interval(self) -> float:
        """Seconds per call at the allowed rate: the first backoff step after an unexplained 429."""
        return self.window_seconds / (self.calls_per_minute or 60)


@dataclass
class Page:
    """One validated response page. `url` never contains the key (auth travels in a header)."""

    ticker: str
    url: str
    body: bytes
    request_id: str | None
    status: str
    bar_count: int  # results on the page: bars, or splits
    next_url: str | None
    last_t: int | None = None  # an aggregates page's last bar (ms), to notice an answer that stops short
    adjusted: bool | None = None  # what the page says it is (aggregates echo `adjusted`)


@dataclass
class FetchStats:
    ticker: str
    pages: int = 0
    bars: int = 0
    calls: int = 0
    retries: int = 0
    http_429: int = 0
    waited_s: float = 0.0
    pages_from_landing: int = 0
    error: str | None = None


class _RetryableError(Exception):
    """A transport failure, a 429 or a 5xx: worth another attempt. retry_after is the server's own wait, if given;
    cannot_connect marks a call that never reached the host (refused, unknown host, no route, connect timeout).
    Nothing else is retried: a bar with a missing or malformed field is data (quarantined downstream), a 4xx or an
    error status is an answer."""

    def __init__(
        self, reason: str, retry_after: float | None = None, rate_limited: bool = False, cannot_connect: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.rate_limited = rate_limited
        self.cannot_connect = cannot_connect


# The one place that names what is retried: `_attempt` turns transport failures, 429s, 5xx and cut-off bodies into
# these, and only these.
RETRYABLE: tuple[type[BaseException], ...] = (_RetryableError,)


class wait_retry_after_or_backoff(wait_base):  # noqa: N801 - tenacity's naming of wait strategies
    """The server's Retry-After when it sends one (capped), else exponential back-off with jitter on its upper half,
    starting from the pacing interval after a 429 (the window's own rhythm) and from a second otherwise. Students
    sharing a key must not retry in lockstep."""

    def __init__(self, config: ClientConfig, rng: random.Random) -> None:
        self.config = config
        self.rng = rng

    def __call__(self, retry_state: RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if not isinstance(error, _RetryableError):
            return 0.0
        return self.pause(retry_state.attempt_number, error)

    def pause(self, attempt: int, error: _RetryableError) -> float:
        if error.retry_after is not None:
            return min(error.retry_after, self.config.max_retry_wait)
        base = self.config.pacing_interval if error.rate_limited else 1.0
        step = min(self.config.backoff_cap, base * 2 ** (attempt - 1))
        return step / 2 + self.rng.uniform(0, step / 2)


class stop_after_backoff(stop_base):  # noqa: N801
    """Stop once the pauses already taken reach `seconds`: a bound on the time one page may spend retrying, counted
    in the pauses themselves, so an injected clock bounds it too."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, retry_state: RetryCallState) -> bool:
        return retry_state.idle_for >= self.seconds


class stop_when_never_connected(stop_base):  # noqa: N801
    """A call that cannot connect while no call of the run ever has gets `attempts` tries, not the full budget: a wrong
    --base-url or an offline laptop fails in seconds."""

    def __init__(self, attempts: int, connected: Callable[[], bool]) -> None:
        self.attempts = attempts
        self.connected = connected

    def __call__(self, retry_state: RetryCallState) -> bool:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        never = isinstance(error, _RetryableError) and error.cannot_connect and not self.connected()
        return never and retry_state.attempt_number >= self.attempts


def _connect_failure(exc: requests.ConnectionError) -> str | None:
    """Why a call could not connect at all, or None when it connected and then broke (a reset is transient)."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    if isinstance(reason, urllib3.exceptions.NameResolutionError):
        return "host name not found"
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        text = str(reason)
        return text.split("connection: ", 1)[-1] if "connection: " in text else "connection refused"
    return None


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    now = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - now).total_seconds())


def redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def _server_message(response: requests.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text[:200].strip()
    if isinstance(payload, dict):
        return str(payload.get("error") or payload.get("message") or payload.get("status") or "")
    return ""


def validate_page(ticker: str, body: bytes) -> dict[str, Any]:
    """Parse one page and check its envelope. A body that is not JSON was cut off in transit: _RetryableError. An
    error status or an envelope that is not the API's: FetchFailedError (an answer, not retried). The results are
    data: a bar with a missing or malformed field lands as sent and is quarantined downstream, never retried."""
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as exc:
        raise _RetryableError(f"malformed JSON ({exc.msg} at byte {exc.pos})") from None
    except ValueError:  # bytes that are not text at all (invalid UTF-8)
        raise _RetryableError("malformed JSON (not UTF-8 text)") from None
    if not isinstance(payload, dict) or "status" not in payload:
        raise FetchFailedError(ticker, "the response is not an API result object")
    status = str(payload["status"])
    if status not in DATA_STATUSES:
        message = payload.get("error") or payload.get("message") or ""
        raise FetchFailedError(ticker, f"API status {status}: {message}".rstrip(": "))
    # An empty range has no `results` key; older responses sent `"results": null`. Both are zero bars.
    results = payload.get("results") or []
    if not isinstance(results, list):
        raise FetchFailedError(ticker, "the response's 'results' is not a list")
    return payload


def last_bar_ms(results: list[Any]) -> int | None:
    """The page's last usable bar time: the last `t` that is a whole number of milliseconds. Malformed bars at the
    end (a quoted or fractional `t`) are skipped, so an answer that stops short is still noticed."""
    for item in reversed(results):
        t = item.get("t") if isinstance(item, dict) else None
        if isinstance(t, int) and not isinstance(t, bool):
            return t
        if isinstance(t, float) and t.is_integer():
            return int(t)
    return None


class MassiveClient:
    """Fetches minute bars page by page. The harvesters use it the same way for the real API and the sample server."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        session: requests.Session | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        on_wait: Callable[[float, str], None] | None = None,
        connections: int = 1,
    ) -> None:
        self.config = config
        self._session = session or requests.Session()
        if session is None and connections > 1:
            # One pooled connection per concurrent fetch, so none is opened and thrown away per call.
            adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=connections)
            self._session.mount("http://", adapter)
            self._session.mount("https://", adapter)
        if config.api_key:
            self._session.headers["Authorization"] = f"Bearer {config.api_key}"
        self._session.headers["Accept"] = "application/json"
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._wait_policy = wait_retry_after_or_backoff(config, self._rng)
        self._on_wait = on_wait
        # Unpaced (the offline sample source) is a window too wide to fill, so a 429's wait still holds every call.
        self.limiter = RollingWindowLimiter(
            config.calls_per_minute or 1_000_000_000, config.window_seconds, clock=clock
        )
        self.connected = False  # some call of this run got an HTTP response (of any status)

    def close(self) -> None:
        self._session.close()

    def first_url(self, ticker: str, date_from: dt.date | int, date_to: dt.date) -> str:
        """The range's first page, as traded. `date_from` may be a millisecond timestamp (the API takes both), to
        continue an answer that stopped short right after its last bar."""
        base = self.config.base_url.rstrip("/")
        start = date_from if isinstance(date_from, int) else date_from.isoformat()
        return (
            f"{base}/v2/aggs/ticker/{ticker}/range/1/minute/{start}/{date_to.isoformat()}"
            f"?adjusted=false&sort=asc&limit={self.config.page_limit}"
        )

    def reference_url(self, kind: str, date_from: dt.date, date_to: dt.date) -> str:
        """Every ticker's splits (or dividends) dated in the window, by execution (or ex-dividend) date."""
        base = self.config.base_url.rstrip("/")
        field = REFERENCE_DATES[kind]
        return (f"{base}/v3/reference/{kind}?{field}.gte={date_from.isoformat()}&{field}.lte={date_to.isoformat()}"
                f"&sort={field}&order=asc&limit={REFERENCE_LIMIT}")

    def daily_url(self, ticker: str, date_from: dt.date, date_to: dt.date) -> str:
        """One ticker's official daily bars over a range, as traded."""
        base = self.config.base_url.rstrip("/")
        return (f"{base}/v2/aggs/ticker/{ticker}/range/1/day/{date_from.isoformat()}/{date_to.isoformat()}"
                f"?adjusted=false&sort=asc&limit={self.config.page_limit}")

    def grouped_url(self, day: dt.date) -> str:
        """Every stock's official daily bar of one date, as traded, in one call."""
        return f"{self.config.base_url.rstrip('/')}/v2/aggs/grouped/locale/us/market/stocks/{day.isoformat()}" \
               "?adjusted=false"

    def iter_url(self, label: str, url: str | None, stats: FetchStats) -> Iterator[Page]:
        """Every page from `url` on, following next_url (a reference list, or official daily bars)."""
        while url is not None:
            page = self._get_page(label, url, stats, bars=False)
            stats.pages += 1
            yield page
            url = self.on_base(page.next_url) if page.next_url else None

    def iter_pages(
        self,
        ticker: str,
        date_from: dt.date,
        date_to: dt.date,
        stats: FetchStats,
        *,
        start_url: str | None = None,
    ) -> Iterator[Page]:
        """Yield every page of the range in order, following next_url. `start_url` resumes an interrupted fetch."""
        url: str | None = self.on_base(start_url) if start_url else self.first_url(ticker, date_from, date_to)
        while url is not None:
            page = self._get_page(ticker, url, stats, bars=True)
            stats.pages += 1
            stats.bars += page.bar_count
            yield page
            url = self.on_base(page.next_url) if page.next_url else None

    def on_base(self, next_url: str) -> str:
        """next_url's path and query on the configured base URL, as the official client does: recorded next_urls
        name api.polygon.io (sometimes with :443) whatever base was called, and the key, sent in a header, must
        only ever reach the base URL."""
        parts = urlsplit(next_url)
        return self.config.base_url.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")

    def _wait(self, seconds: float, reason: str, stats: FetchStats) -> None:
        if seconds <= 0:
            return
        stats.waited_s += seconds
        if self._on_wait is not None:
            self._on_wait(seconds, reason)
        self._sleep(seconds)

    def _backoff(self, attempt: int, error: _RetryableError) -> float:
        return self._wait_policy.pause(attempt, error)

    def _retrying(self, ticker: str, stats: FetchStats) -> Retrying:
        """The retry policy, declared once: what is retried (RETRYABLE), how long to wait (Retry-After or jittered
        back-off), when to stop (max_attempts, max_retry_wait of pauses, or connect_attempts while the host has never
        answered). A 429's pause goes to the shared limiter instead of this thread's sleep: somebody (maybe another
        user of the key) filled the window, so every call waits, not just this one."""
        last_was_429 = [False]  # one Retrying per page and thread: a plain cell is enough

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            last_was_429[0] = isinstance(error, _RetryableError) and error.rate_limited
            if last_was_429[0]:
                # The next attempt waits in the limiter (counted there, with the progress line saying why).
                self.limiter.block_for(state.next_action.sleep if state.next_action else 0.0)
            stats.retries += 1
            log.info("%s: retry %d after %s", ticker, state.attempt_number, error)

        def sleep(seconds: float) -> None:
            if not last_was_429[0]:
                self._wait(seconds, "backing off after a failed call", stats)

        return Retrying(
            retry=retry_if_exception_type(RETRYABLE),
            wait=self._wait_policy,
            stop=(stop_after_attempt(self.config.max_attempts) | stop_after_backoff(self.config.max_retry_wait)
                  | stop_when_never_connected(self.config.connect_attempts, lambda: self.connected)),
            sleep=sleep,
            before_sleep=before_sleep,
            reraise=True,
        )

    def _get_page(self, ticker: str, url: str, stats: FetchStats, *, bars: bool) -> Page:
        """One page, retried as `_retrying` declares; a page that still fails is the ticker's failure (or, when the
        host was never reached, the run's)."""
        try:
            return self._retrying(ticker, stats)(self._attempt, ticker, url, stats, bars)
        except _RetryableError as error:
            raise self._failure(ticker, error, stats) from None

    def _failure(self, ticker: str, error: _RetryableError, stats: FetchStats) -> PipelineError:
        if error.cannot_connect and not self.connected:
            return ApiUnreachableError(
                f"cannot reach {self.config.base_url}: {error.reason} (gave up after {state_attempts(stats)}); "
                "check the network and --base-url / MASSIVE_BASE_URL"
            )
        return FetchFailedError(ticker, f"{error.reason} (gave up after {stats.retries} retries)")

    def _attempt(self, ticker: str, url: str, stats: FetchStats, bars: bool) -> Page:
        # Bounded: each wait ends when a slot frees, and slots free as calls answer (read timeouts bound those).
        while (wait := self.limiter.reserve()) > 0:
            self._wait(wait, "rate-limit window", stats)
        stats.calls += 1
        try:
            response = self._session.get(
                url, timeout=(self.config.connect_timeout, self.config.read_timeout), allow_redirects=False
            )
            body = response.content
        except requests.ConnectTimeout:
            raise _RetryableError("could not connect (timed out)", cannot_connect=True) from None
        except requests.Timeout:
            raise _RetryableError("timed out") from None
        except requests.ConnectionError as exc:
            cause = _connect_failure(exc)
            if cause is not None:
                raise _RetryableError(f"could not connect ({cause})", cannot_connect=True) from None
            raise _RetryableError(f"connection failed: {type(exc).__name__}") from None
        except requests.RequestException as exc:
            # requests puts URLs in its messages; ours carry no key, but redact anyway in case one ever does.
            raise _RetryableError(redact(f"connection failed: {type(exc).__name__}", self.config.api_key)) from None
        finally:
            self.limiter.record()
        self.connected = True
        code = response.status_code
        # -v: every call, its answer and its size; the URL carries no key (it travels in a header).
        log.debug("%s: GET %s -> HTTP %d, %d bytes", ticker, urlsplit(url).path, code, len(body))
        if code == 401:
            detail = redact(_server_message(response), self.config.api_key)
            raise KeyRejectedError(f"API key rejected (HTTP 401 for {ticker}): {detail}".rstrip(": "))
        if code == 403:
            # A plan refusal (timeframe, entitlement) refuses this request, not the key.
            detail = redact(_server_message(response), self.config.api_key)
            raise PlanRefusedError(ticker, f"not in your plan (HTTP 403): {detail}".rstrip(": "))
        if code == 429:
            stats.http_429 += 1
            raise _RetryableError("HTTP 429 rate limited", parse_retry_after(response.headers.get("Retry-After")),
                                  rate_limited=True)
        if code >= 500:
            raise _RetryableError(f"HTTP {code}", parse_retry_after(response.headers.get("Retry-After")))
        if code != 200:
            detail = redact(_server_message(response), self.config.api_key)
            raise FetchFailedError(ticker, f"HTTP {code}: {detail}".rstrip(": "))
        payload = validate_page(ticker, body)
        results = payload.get("results") or []
        return Page(
            ticker=ticker,
            url=url,
            body=body,
            request_id=payload.get("request_id"),
            status=str(payload["status"]),
            bar_count=len(results),
            next_url=payload.get("next_url") or None,
            last_t=last_bar_ms(results) if bars else None,
            adjusted=payload["adjusted"] if isinstance(payload.get("adjusted"), bool) else None,
        )


def state_attempts(stats: FetchStats) -> str:
    return f"{stats.calls} call{'s' if stats.calls != 1 else ''}"

"""Fetch -> land: every ticker's requested days in the landing zone, through one paced client, then the reference
data: the splits and dividends lists (the year before the run's first day and everything since the last refresh,
unless already refreshed through today) and the official daily bars of the stored days that lack one.

On a key paced like the free tier, the reference calls take only the slots the bars leave free in the window under
way, in order of what they change: splits (they re-adjust history), then dividends, then official daily bars. What
does not fit is deferred, never a reason for another window: a later run fetches what is still missing, and the daily
build meanwhile reads the official bars market_daily.py stored. A faster key (or none) defers nothing.

One client (so one rolling rate-limit window and one 429 back-off) and one progress display serve a whole run;
tickers can be fetched several at a time. Finished past days already landed as traded are reused without a call.
An answer that stops short of the requested end without a `next_url` is continued after its last bar.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from stockpipe.config import Endpoint, HarvestConfig
from stockpipe.errors import (
    FetchFailedError,
    MissingKeyError,
    PlanRefusedError,
    StopError,
)
from stockpipe.landing import GROUPED, FetchWriter, LandedFetch, LandingZone
from stockpipe.market_calendar import NEW_YORK, new_york_today, trading_days
from stockpipe.massive import ClientConfig, FetchStats, MassiveClient
from stockpipe.progress import Progress
from stockpipe.reference.official_bars import plan_official

log = logging.getLogger(__name__)

# Continuations of an answer that stopped short before the ticker fails with the days it still lacks.
MAX_CONTINUATIONS = 3
# Corporate actions are re-read at least this far back from a run's first day: the provider adds splits it missed
# after the fact (polygon-io/issues #21, #53, #238), and a split learned late must still re-adjust the days before it.
ACTIONS_LOOKBACK = dt.timedelta(days=365)
# A key paced at this many calls a window or fewer is the free tier's kind, where one window more is most of a run's
# time: its reference calls use only the slots the run's own calls leave free (config.in_flight draws the same line).
# A faster key makes every reference call.
SLOW_PACE = 60


@dataclass
class TickerFetch:
    ticker: str
    stats: FetchStats
    assignment: dict[dt.date, LandedFetch] = field(default_factory=dict)
    # Requested days the key's plan refused (the free tier refuses the current day); the other days were fetched.
    not_in_plan: list[dt.date] = field(default_factory=list)
    plan_message: str = ""

    @property
    def failed(self) -> bool:
        return self.stats.error is not None


LandedCallback = Callable[[TickerFetch, float], None]


@dataclass
class ReferenceFetch:
    """Reference data fetched this run: a corporate-action list (splits, dividends) over one date window, or the
    official daily bars (`official_daily`); `error` when it could not be fetched (the bars are stored all the same,
    and the run says what was not refreshed)."""

    kind: str
    date_from: dt.date
    date_to: dt.date
    stats: FetchStats
    landed: LandedFetch | None = None
    error: str | None = None
    refused: bool = False  # the key's plan does not cover it (HTTP 403): a warning, not a failure
    # Calls left to a later run: no slot was free for them in the pacing window (`Fetcher.slot_free`). A list is
    # deferred whole (1); official bars call by call, so some may be fetched and the rest deferred.
    deferred: int = 0


@dataclass
class FetchResult:
    tickers: dict[str, TickerFetch]  # in the order they were given
    stopped: StopError | None  # a rejected key or an unreachable API stopped the fetch early
    references: list[ReferenceFetch]  # what was fetched beside the bars (none when all was already refreshed)
    # Tickers whose landed days were split-adjusted (landed before bars were stored as traded), fetched again.
    refetched_adjusted: dict[str, int] = field(default_factory=dict)
    # The reference calls still under way in their own thread (fetch_all's references_in_background), and how to
    # stop them between calls when the run cannot use them.
    pending: concurrent.futures.Future[list[ReferenceFetch]] | None = None
    cancel: Callable[[], None] | None = None

    def wait_for_references(self) -> list[ReferenceFetch]:
        """The reference fetches, once every call of them has been answered."""
        if self.pending is not None:
            self.references, self.pending = self.pending.result(), None
        return self.references

    def abandon_references(self) -> None:
        """Stop the reference calls at the next one (the run failed before it could use them), and wait for that."""
        if self.cancel is not None:
            self.cancel()
        if self.pending is not None:
            with contextlib.suppress(Exception):
                self.pending.result()
            self.pending = None


@dataclass(frozen=True)
class ApiEndpoint:
    """The provider's API: calls go to its base URL with the key (in the Authorization header only)."""

    base_url: str
    api_key: str = field(repr=False)
    name: str = "api"

    @contextlib.contextmanager
    def serve(self, own_process: bool = False) -> Iterator[str]:
        yield self.base_url


@contextlib.contextmanager
def open_client(cfg: HarvestConfig, progress: Progress | None = None, *,
                own_process: bool = False) -> Iterator[MassiveClient]:
    """The same client whatever the source: the run's `endpoint` says where its calls go (the API, or a loopback
    server the configuration chose, in a process of its own when asked)."""
    on_wait = progress.waiting if progress else None
    sleep = cfg.sleep or (progress.sleep if progress else time.sleep)
    endpoint: Endpoint
    if cfg.endpoint is not None:
        endpoint = cfg.endpoint
    elif cfg.source != "api":
        raise ValueError(f"a {cfg.source} run needs its endpoint (cli.build_config chooses it)")
    elif not cfg.api_key:
        raise MissingKeyError()
    else:
        endpoint = ApiEndpoint(cfg.base_url, cfg.api_key)
    with contextlib.ExitStack() as stack:
        base_url, api_key = stack.enter_context(endpoint.serve(own_process)), endpoint.api_key
        client = MassiveClient(
            ClientConfig(base_url=base_url, api_key=api_key, calls_per_minute=cfg.pace,
                         window_seconds=cfg.window_seconds, read_timeout=cfg.read_timeout,
                         max_attempts=cfg.max_attempts),
            clock=cfg.clock or time.monotonic, sleep=sleep, on_wait=on_wait, connections=cfg.in_flight,
        )
        stack.callback(client.close)
        yield client


class Fetcher:
    """One client (so one rate-limit window) and one progress display for a whole run: lands what each ticker still
    needs and says, for each requested trading day, which landed fetch holds it."""

    def __init__(self, cfg: HarvestConfig, landing: LandingZone, days: list[dt.date],
                 on_landed: LandedCallback | None = None, client: MassiveClient | None = None, *,
                 server_process: bool = False) -> None:
        self.cfg = cfg
        # Called after each ticker whose requested days are all landed, with the seconds the calls still to make
        # will spend waiting on the rate limit (time the caller can use).
        self.on_landed = on_landed
        self.landing = landing
        self.days = days
        self.today = cfg.today or new_york_today()
        # A rejected key or an unreachable API: no further call can succeed, so no further ticker is fetched.
        self.stop_error: StopError | None = None
        self.refetched_adjusted: dict[str, int] = {}
        # Set when the run no longer wants the reference calls still to make (they run in a thread of their own).
        self.cancelled = threading.Event()
        self._stack = contextlib.ExitStack()
        self.progress = Progress(len(cfg.tickers), enabled=cfg.show_progress)
        self.client = client or self._stack.enter_context(
            open_client(cfg, self.progress, own_process=server_process))
        self.progress.eta = self.client.limiter.eta

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.close()
        self._stack.close()

    def _land_pages(self, writer: FetchWriter, ticker: str, lo: dt.date, hi: dt.date, stats: FetchStats,
                    start_url: str | None) -> None:
        """Every page of the range into `writer`. An answer without a next_url that still lacks finished trading
        days after its last bar (or whose last page is full) is continued right after that bar; one that reached
        the end costs no extra call, and one that stays short after MAX_CONTINUATIONS fails the ticker."""
        url, last_t = start_url, None
        for continuation in range(MAX_CONTINUATIONS + 1):
            got_bars = full = False
            for page in self.client.iter_pages(ticker, lo, hi, stats, start_url=url):
                writer.add(page)
                if page.last_t is not None:
                    last_t, got_bars = page.last_t, True
                full = page.bar_count >= self.client.config.page_limit
            lacking = self._days_after(last_t, hi)
            if not lacking and not (full and got_bars):
                return
            if continuation == MAX_CONTINUATIONS:
                raise FetchFailedError(ticker, f"the API's answer stopped short after {MAX_CONTINUATIONS} "
                                               f"continuations: no bars for {', '.join(map(str, lacking))}")
            assert last_t is not None
            log.info("%s: the answer stopped at %s without a next_url; continuing after its last bar", ticker,
                     dt.datetime.fromtimestamp(last_t / 1000, dt.UTC).isoformat())
            url = self.client.first_url(ticker, last_t + 1, hi)

    def _days_after(self, last_t: int | None, hi: dt.date) -> list[dt.date]:
        """Finished trading days after the day of the last bar, through `hi` (no bar at all is an empty range)."""
        if last_t is None:
            return []
        last_day = dt.datetime.fromtimestamp(last_t / 1000, NEW_YORK).date()
        return trading_days(last_day + dt.timedelta(days=1), min(hi, self.today - dt.timedelta(days=1)))

    def slot_free(self) -> bool:
        """Whether a reference call fits without making the run wait for another window: always on an unpaced key or
        one faster than SLOW_PACE; on a slow one (the free tier's 5 a minute) only when the run's own calls left a
        slot free in the window under way."""
        pace = self.client.config.calls_per_minute
        return pace is None or pace > SLOW_PACE or self.client.limiter.slot_in_window()

    def refresh_actions(self, kind: str, run_first_day: dt.date) -> ReferenceFetch | None:
        """A corporate-action list (`splits` or `dividends`) for every ticker, landed raw like the bars: the year
        before the run's first day and everything since the last refresh, through today. Nothing when windows
        fetched today already reach back that far; only the part they do not when some do. Deferred when no slot is
        free for its first call (`slot_free`); a list once begun is read to its last page, since part of a list
        lands nothing a table can use."""
        needed_from = run_first_day - ACTIONS_LOOKBACK
        windows = [f for f in self.landing.reference_fetches(kind) if f.complete]
        fresh = [f for f in windows if f.date_to >= self.today]
        if fresh:
            covered_from = min(f.date_from for f in fresh)
            if covered_from <= needed_from:
                return None
            start, end = needed_from, covered_from - dt.timedelta(days=1)
        else:
            refreshed = max((f.date_to for f in windows), default=None)
            start = needed_from if refreshed is None else min(needed_from, refreshed + dt.timedelta(days=1))
            end = self.today
        result = ReferenceFetch(kind, start, end, FetchStats(kind))
        if not self.slot_free():
            log.info("%s deferred: no free call in the pacing window", kind)
            result.deferred = 1
            return result
        writer = self.landing.new_reference_fetch(kind, start, end)
        try:
            for page in self.client.iter_url(kind, self.client.reference_url(kind, start, end), result.stats):
                writer.add(page)
            result.landed = writer.finish(final_through=self.today)
        except (FetchFailedError, StopError) as exc:
            writer.abandon_if_empty()
            result.error, result.refused = str(exc), isinstance(exc, PlanRefusedError)
            log.warning("%s were not refreshed: %s", kind, exc)
        finally:
            writer.close()
        return result

    def fetch_official(self, stored: dict[str, list[dt.date]]) -> ReferenceFetch | None:
        """The official daily bars of the stored days before today that have none landed yet (see
        stockpipe.reference.official_bars), with the fewest calls; nothing when every one has. The calls no slot
        is free for (`slot_free`) are deferred: a later run plans them again."""
        zone = self.landing.official()
        plan = plan_official(zone, stored, self.today)
        if not plan.calls:
            return None
        every = sorted({*plan.grouped, *(d for _, lo, hi in plan.ranges for d in (lo, hi))})
        result = ReferenceFetch("official_daily", every[0], every[-1], FetchStats("official daily"))
        final = self.today - dt.timedelta(days=1)
        calls = [(GROUPED, day, day, self.client.grouped_url(day)) for day in plan.grouped] + [
            (ticker, lo, hi, self.client.daily_url(ticker, lo, hi)) for ticker, lo, hi in plan.ranges]
        for made, (label, lo, hi, url) in enumerate(calls):
            if self.cancelled.is_set():
                break
            if not self.slot_free():
                result.deferred = len(calls) - made
                log.info("official daily bars: %d of %d call(s) deferred: no free call in the pacing window",
                         result.deferred, len(calls))
                break
            writer = zone.new_fetch(label, lo, hi)
            try:
                for page in self.client.iter_url(label, url, result.stats):
                    writer.add(page)
                result.landed = writer.finish(final_through=final)
            except (FetchFailedError, StopError) as exc:
                writer.abandon_if_empty()
                result.error, result.refused = str(exc), isinstance(exc, PlanRefusedError)
                log.warning("official daily bars were not fetched: %s", exc)
                break  # the next call would meet the same refusal or outage
            finally:
                writer.close()
        return result

    def fetch(self, ticker: str) -> TickerFetch:
        """Fetch one ticker; a failure is recorded (with the calls, retries and waits it cost), not raised. After a
        rejected key or an unreachable API no further call is made."""
        stats = FetchStats(ticker)
        try:
            if self.stop_error is not None:
                stats.error = f"not fetched: {self.stop_error}"
                return TickerFetch(ticker, stats)
            result = self._land_days(ticker, stats)
            if result.assignment and self.on_landed is not None:
                self.on_landed(result, self.client.limiter.eta(self.progress.remaining()))
            return result
        except FetchFailedError as exc:
            log.warning("%s", exc)
            stats.error = exc.reason
            return TickerFetch(ticker, stats)
        except StopError as exc:
            self.stop_error = exc
            stats.error = str(exc)
            return TickerFetch(ticker, stats)
        finally:
            self.progress.advance(ticker)

    def _land_days(self, ticker: str, stats: FetchStats) -> TickerFetch:
        """Finished past days already landed are reused without a call; the current day is always fetched again.
        When the plan refuses a range that includes New York today (the free tier does), the earlier days are
        fetched once more without today, and today is reported as not in the plan."""
        result = TickerFetch(ticker, stats)
        if not self.days:
            return result
        assigned: dict[dt.date, LandedFetch]
        if self.cfg.refetch:
            assigned, missing = {}, list(self.days)
        else:
            assigned, missing = self.landing.assign_days(ticker, self.days)
            stale = self.landing.split_adjusted_days(ticker, missing)
            if stale:
                self.refetched_adjusted[ticker] = len(stale)
        if missing:
            try:
                complete = self._land_range(ticker, min(missing), max(missing), stats)
            except PlanRefusedError as refusal:
                if max(missing) < self.today:
                    raise  # the refusal is not about today
                # Today refused (also when it is all a rerun still lacks): not in the plan, not a failure.
                earlier = [day for day in missing if day < self.today]
                result.not_in_plan = [day for day in missing if day >= self.today]
                result.plan_message = refusal.reason
                missing = earlier
                if earlier:
                    log.warning("%s: %s; fetching %s..%s without today", ticker, refusal.reason, earlier[0],
                                earlier[-1])
                    complete = self._land_range(ticker, min(missing), max(missing), stats)
                else:
                    log.warning("%s: %s", ticker, refusal.reason)
            for day in missing:
                assigned[day] = complete
        reused = {f.path: f for day, f in assigned.items() if day not in missing}
        stats.pages_from_landing += sum(len(f.pages()) for f in reused.values())
        result.assignment = assigned
        return result

    def _land_range(self, ticker: str, lo: dt.date, hi: dt.date, stats: FetchStats) -> LandedFetch:
        """Every page of lo..hi landed (resuming an interrupted fetch of the same range), marked complete."""
        resumed = None if self.cfg.refetch else self.landing.resumable(ticker, lo, hi)
        if resumed is not None:
            writer, start_url = resumed, resumed.fetch.last_next_url()
            stats.pages_from_landing += len(resumed.fetch.pages())
            log.info("%s: resuming an interrupted fetch after %d landed page(s)", ticker, len(resumed.fetch.pages()))
        else:
            writer, start_url = self.landing.new_fetch(ticker, lo, hi), None
        try:
            self._land_pages(writer, ticker, lo, hi, stats, start_url)
            return writer.finish(final_through=self.today - dt.timedelta(days=1))
        except BaseException:
            writer.abandon_if_empty()  # a refused or unreachable first call leaves no empty folder behind
            raise
        finally:
            writer.close()  # releases the fetch's lock, so a later run can resume what landed


def fetch_all(cfg: HarvestConfig, landing: LandingZone, days: list[dt.date],
              on_landed: LandedCallback | None = None, *, references_in_background: bool = False,
              server_process: bool = False) -> FetchResult:
    """Every ticker, `cfg.in_flight` at a time, through one client: one rolling window, one 429 back-off, one
    landing zone (each ticker lands in its own folders). Then, when anything is to be stored, the reference data
    through the same client: splits and dividends not yet refreshed through today, and the official daily bars the
    stored days lack (a rerun the same day, served from the landing zone, makes no call at all).

    `references_in_background`: the reference calls go on in a thread of their own and the result comes back as soon
    as the bars have landed (`FetchResult.wait_for_references`), so on a slow key the bars are transformed and
    written while those last calls wait on the window, instead of after them. `server_process`: the sample source
    serves from a process of its own (for a run that transforms while it fetches; see stockpipe.sample.process)."""
    fetcher = Fetcher(cfg, landing, days, on_landed, server_process=server_process)
    handed_over = False
    try:
        if cfg.in_flight <= 1 or len(cfg.tickers) <= 1:
            results = {ticker: fetcher.fetch(ticker) for ticker in cfg.tickers}
        else:
            workers = min(cfg.in_flight, len(cfg.tickers))
            with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="fetch") as pool:
                results = dict(zip(cfg.tickers, pool.map(fetcher.fetch, cfg.tickers), strict=True))
        if fetcher.refetched_adjusted:
            log.warning("landed pages of %s were split-adjusted (landed before bars were stored as traded): %d day(s) "
                        "fetched again as traded", ", ".join(fetcher.refetched_adjusted),
                        sum(fetcher.refetched_adjusted.values()))
        stored = {t: sorted(item.assignment) for t, item in results.items() if not item.failed and item.assignment}
        result = FetchResult(results, fetcher.stop_error, [], dict(fetcher.refetched_adjusted))
        if not stored or fetcher.stop_error is not None:
            return result
        if not references_in_background:
            result.references = fetch_references(fetcher, cfg, stored)
            return result

        def in_background() -> list[ReferenceFetch]:
            try:
                return fetch_references(fetcher, cfg, stored)
            finally:
                fetcher.__exit__(None, None, None)  # the client and the progress display are this thread's now

        worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="reference")
        result.pending, result.cancel = worker.submit(in_background), fetcher.cancelled.set
        worker.shutdown(wait=False)
        handed_over = True
        return result
    finally:
        if not handed_over:
            fetcher.__exit__(None, None, None)


def fetch_references(fetcher: Fetcher, cfg: HarvestConfig, stored: dict[str, list[dt.date]]) -> list[ReferenceFetch]:
    """Splits, then dividends, then the official daily bars, each skipped when already landed, in that order of
    priority for the slots the bars left free on a slow key (see Fetcher.slot_free)."""
    found: list[ReferenceFetch] = []
    for kind in ("splits", "dividends"):
        if not fetcher.cancelled.is_set() and (fetched := fetcher.refresh_actions(kind, cfg.date_from)) is not None:
            found.append(fetched)
    if not fetcher.cancelled.is_set() and (official := fetcher.fetch_official(stored)) is not None:
        found.append(official)
    return found

"""The offline sample source: deterministic minute bars and a loopback server that speaks the Massive contract.

Bars are generated per (ticker, trading day) from a seed of both, in New York time, so a day is identical across
runs whatever range was asked, and DST and early closes come from the exchange calendar. The server paginates with
`next_url` + cursor, can enforce a rolling-window limit and injects faults, so the real client's pacing, pagination
and retries run on every machine.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime as dt
import email.utils
import functools
import hashlib
import http.server
import json
import random
import re
import sys
import threading
import time
import uuid
import zlib
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import numpy as np

from stockpipe.market_calendar import NEW_YORK, session_hours, trading_days

PRE_MARKET_FILL = 0.30  # share of extended-hours minutes that trade, roughly what liquid large caps show
AFTER_HOURS_FILL = 0.35


def _seed(*parts: object) -> int:
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _base_price(ticker: str) -> float:
    return 20.0 + (zlib.crc32(ticker.encode()) % 48000) / 100.0


@functools.lru_cache(maxsize=4096)
def day_bars(ticker: str, day: dt.date) -> dict[str, np.ndarray]:
    """Columns t (ms), o, h, l, c, v, vw, n for one ticker's trading day. Deterministic in (ticker, day)."""
    hours = session_hours(day)
    rng = np.random.default_rng(_seed("bars", ticker, day.isoformat()))
    minute = dt.timedelta(minutes=1)

    def minutes(start: dt.datetime, end: dt.datetime) -> np.ndarray:
        count = int((end - start) / minute)
        first_ms = int(start.timestamp() * 1000)
        return first_ms + 60_000 * np.arange(count, dtype=np.int64)

    pre = minutes(hours.pre_open, hours.open)
    regular = minutes(hours.open, hours.close)
    post = minutes(hours.close, hours.post_close)
    pre = pre[rng.random(pre.size) < PRE_MARKET_FILL]
    post = post[rng.random(post.size) < AFTER_HOURS_FILL]
    t = np.concatenate([pre, regular, post])
    extended = np.concatenate([np.ones(pre.size, bool), np.zeros(regular.size, bool), np.ones(post.size, bool)])
    size = t.size

    day_open = _base_price(ticker) * float(np.exp(rng.normal(0, 0.05)))
    returns = rng.normal(0, 0.0008, size)
    closes = np.round(day_open * np.exp(np.cumsum(returns)), 2)
    opens = np.round(np.concatenate([[day_open], closes[:-1]]) * np.exp(rng.normal(0, 0.0002, size)), 2)
    top = np.maximum(opens, closes)
    bottom = np.minimum(opens, closes)
    highs = np.round(top + np.abs(rng.normal(0, 0.0006, size)) * top, 2)
    lows = np.round(bottom - np.abs(rng.normal(0, 0.0006, size)) * bottom, 2)
    vwap = np.round(lows + (highs - lows) * rng.uniform(0.2, 0.8, size), 4)
    scale = np.where(extended, 400.0, 25_000.0)
    volume = np.round(rng.lognormal(0, 0.8, size) * scale)
    # The real feed sends whole numbers mostly, and fractional share volumes for some bars (303067.656...).
    fractional = rng.random(size) < 0.2
    volume = np.where(fractional, volume + np.round(rng.random(size), 6), volume)
    trades = np.maximum(1, (volume / np.where(extended, 40.0, 90.0)).astype(np.int64))
    # Thin extended-hours bars sometimes come without vw/n: the contract makes them optional.
    optional_missing = extended & (rng.random(size) < 0.02)
    return {
        "t": t,
        "o": opens,
        "h": highs,
        "l": lows,
        "c": closes,
        "v": volume,
        "vw": vwap,
        "n": trades,
        "optional_missing": optional_missing,
    }


def range_bars(ticker: str, date_from: dt.date, date_to: dt.date) -> dict[str, np.ndarray]:
    """All bars for the New York trading days in [date_from, date_to], ascending by t."""
    days = [day_bars(ticker, day) for day in trading_days(date_from, date_to)]
    if not days:
        return {key: np.array([]) for key in ("t", "o", "h", "l", "c", "v", "vw", "n", "optional_missing")}
    return {key: np.concatenate([d[key] for d in days]) for key in days[0]}


def bars_as_json(columns: dict[str, np.ndarray], start: int, stop: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    t, o, h, lo, c, v, vw, n, missing = (columns[k] for k in ("t", "o", "h", "l", "c", "v", "vw", "n",
                                                               "optional_missing"))
    for i in range(start, stop):
        volume = float(v[i])
        bar: dict[str, Any] = {
            "v": int(volume) if volume.is_integer() else volume,
            "o": float(o[i]),
            "c": float(c[i]),
            "h": float(h[i]),
            "l": float(lo[i]),
            "t": int(t[i]),
        }
        if not missing[i]:
            bar["vw"] = float(vw[i])
            bar["n"] = int(n[i])
        out.append(bar)
    return out


# ---------------------------------------------------------------------------------------------------------------
# The loopback server


@dataclasses.dataclass
class Fault:
    """One injected failure. `ticker` None matches any ticker; `times` is how many requests it hits."""

    kind: str  # 429 | 500 | 502 | 503 | 401 | 403 | delay | reset | truncate | missing_field | status_error
    ticker: str | None = None
    times: int = 1
    retry_after: str | None = None
    seconds: float = 0.0


@dataclasses.dataclass
class ServerLog:
    path: str
    query: str
    authorization: str | None
    status: int
    at: float


_AGGS_PATH = re.compile(
    r"^/v2/aggs/ticker/(?P<ticker>[^/]+)/range/(?P<mult>\d+)/(?P<span>[a-z]+)/(?P<frm>[^/]+)/(?P<to>[^/]+)$"
)


class FakeMassiveServer:
    """An in-process HTTP server on 127.0.0.1 (port chosen by the OS) that serves `day_bars` as the API would."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        calls_per_window: int | None = None,
        window_seconds: float = 60.0,
        rate_limit_retry_after: bool = False,
        random_429_rate: float = 0.0,
        seed: int = 7,
        faults: list[Fault] | None = None,
        status: str = "OK",
        foreign_next_url: bool = False,
        empty_tickers: frozenset[str] = frozenset(),
        empty_results: Literal["absent", "null"] = "absent",
        plan_refuses_from: dt.date | None = None,
        canned: list[tuple[int, bytes]] | None = None,
    ) -> None:
        """foreign_next_url: next_url names api.polygon.io:443, as recorded responses do, whatever this server's
        address. empty_results: an empty range has no `results` key (today's API) or `"results": null` (older).
        plan_refuses_from: a request whose range reaches this day gets the free tier's 403 "data timeframe"
        refusal (the current day, as users report). canned: bodies served in order before anything else."""
        self.empty_tickers = empty_tickers
        self.empty_results = empty_results
        self.plan_refuses_from = plan_refuses_from
        self.canned = list(canned or [])
        self.api_key = api_key
        self.calls_per_window = calls_per_window
        self.window_seconds = window_seconds
        self.rate_limit_retry_after = rate_limit_retry_after
        self.random_429_rate = random_429_rate
        self.status = status
        self.foreign_next_url = foreign_next_url
        self.faults = list(faults or [])
        self.log: list[ServerLog] = []
        self._rng = random.Random(seed)
        self._calls: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def __enter__(self) -> FakeMassiveServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        class QuietServer(http.server.ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client that went away mid-answer (a killed harvester, a timed-out read) is normal here: no
                # traceback on stderr. Anything else is still reported.
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self._httpd = QuietServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        # stop() waits for the serve loop's next poll: 50 ms, not socketserver's 0.5 s, paid by every run and test.
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-massive", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def data_calls(self) -> int:
        return sum(1 for entry in self.log if entry.status == 200)

    # -- request handling --------------------------------------------------------------------------------------------
    def _take_fault(self, ticker: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and (fault.ticker is None or fault.ticker == ticker):
                    fault.times -= 1
                    return fault
        return None

    def _rate_limited(self, now: float) -> float | None:
        """Seconds until a slot frees, when the rolling window is full; None when the call may pass."""
        if self.calls_per_window is None:
            return None
        with self._lock:
            while self._calls and self._calls[0] + self.window_seconds <= now:
                self._calls.popleft()
            if len(self._calls) >= self.calls_per_window:
                return self._calls[0] + self.window_seconds - now
            self._calls.append(now)
            return None

    def _handle(self, request: http.server.BaseHTTPRequestHandler) -> None:
        now = time.monotonic()
        parts = urlsplit(request.path)
        query = parse_qs(parts.query)
        authorization = request.headers.get("Authorization")

        def reply(code: int, payload: Any = None, headers: dict[str, str] | None = None,
                  raw: bytes | None = None) -> None:
            body = raw if raw is not None else json.dumps(payload, separators=(",", ":")).encode()
            # Logged before the response leaves: once a client has its answer, the log already shows the call.
            with self._lock:
                self.log.append(ServerLog(parts.path, parts.query, authorization, code, now))
            request.send_response(code)
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                request.send_header(name, value)
            request.end_headers()
            request.wfile.write(body)

        request_id = uuid.UUID(int=self._rng.getrandbits(128)).hex
        match = _AGGS_PATH.match(parts.path)
        if not match:
            reply(404, {"status": "NOT_FOUND", "request_id": request_id, "message": "unknown path"})
            return
        ticker = match["ticker"]
        if self.api_key is not None and authorization != f"Bearer {self.api_key}":
            reply(401, {"status": "ERROR", "request_id": request_id, "error": "Unknown API Key"})
            return
        if self.canned:
            with self._lock:
                code, raw = self.canned.pop(0)
            reply(code, raw=raw)
            return
        if self.plan_refuses_from is not None and match["to"] >= self.plan_refuses_from.isoformat():
            reply(403, {"status": "NOT_AUTHORIZED", "request_id": request_id,
                        "message": "Your plan doesn't include this data timeframe. Please upgrade your plan at "
                                   "https://massive.com/pricing"})
            return
        wait = self._rate_limited(now)
        if wait is not None or (self.random_429_rate and self._rng.random() < self.random_429_rate):
            headers = {"Retry-After": str(max(1, int(wait + 0.999)))} if (wait and self.rate_limit_retry_after) else {}
            reply(429, _too_many(request_id), headers)
            return
        fault = self._take_fault(ticker)
        if fault is not None:
            if self._inject(fault, request, reply, request_id):
                return
        try:
            page = self._page(match, query, request_id, ticker)
        except ValueError as exc:
            reply(400, {"status": "ERROR", "request_id": request_id, "error": str(exc)})
            return
        if fault is not None and fault.kind == "missing_field" and page.get("results"):
            del page["results"][0]["c"]
        body = json.dumps(page, separators=(",", ":")).encode()
        if fault is not None and fault.kind == "truncate":
            body = body[: max(1, len(body) // 2)]
        reply(200, raw=body)

    def _inject(self, fault: Fault, request: Any, reply: Any, request_id: str) -> bool:
        """Serve a fault; True when the response is complete (False: serve data, possibly corrupted later)."""
        kind = fault.kind
        if kind == "429":
            reply(429, _too_many(request_id), {"Retry-After": fault.retry_after} if fault.retry_after else {})
        elif kind in {"500", "502", "503"}:
            reply(int(kind), {"status": "ERROR", "request_id": request_id, "error": "upstream error"})
        elif kind == "401":
            reply(401, {"status": "ERROR", "request_id": request_id, "error": "Unknown API Key"})
        elif kind == "403":
            reply(403, {"status": "NOT_AUTHORIZED", "request_id": request_id,
                        "message": "You are not entitled to this data. Please upgrade your plan."})
        elif kind == "status_error":
            reply(200, {"status": "ERROR", "request_id": request_id, "error": "internal failure"})
        elif kind == "reset":
            with self._lock:  # status 0: the call arrived and was answered with a dropped connection
                self.log.append(ServerLog(request.path, "", request.headers.get("Authorization"), 0, time.monotonic()))
            request.close_connection = True
            request.connection.shutdown(2)
        elif kind == "delay":
            time.sleep(fault.seconds)
            return False
        else:
            return False
        return True

    def _page(self, match: re.Match[str], query: dict[str, list[str]], request_id: str, ticker: str) -> dict:
        if match["mult"] != "1" or match["span"] != "minute":
            raise ValueError("the sample server serves 1-minute bars only")
        limit = min(int(query.get("limit", ["5000"])[0]), 50_000)
        cursor = query.get("cursor", [None])[0]
        if cursor:
            decoded = parse_qs(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
            limit = int(decoded["limit"][0])
        date_to = dt.date.fromisoformat(match["to"])
        frm = match["frm"]
        if frm.isdigit():  # next_url carries the next bar's millisecond timestamp
            from_ms = int(frm)
            date_from = dt.datetime.fromtimestamp(from_ms / 1000, NEW_YORK).date()
        else:
            date_from = dt.date.fromisoformat(frm)
            from_ms = None
        # An empty ticker (delisted, halted) answers with an empty range.
        last_day = date_to if ticker not in self.empty_tickers else date_from - dt.timedelta(days=1)
        columns = range_bars(ticker, date_from, last_day)
        start = int(np.searchsorted(columns["t"], from_ms)) if from_ms is not None else 0
        stop = min(start + limit, columns["t"].size)
        results = bars_as_json(columns, start, stop)
        page: dict[str, Any] = {
            "ticker": ticker,
            "queryCount": len(results),
            "resultsCount": len(results),
            "adjusted": True,
            "status": self.status,
            "request_id": request_id,
        }
        if results:
            page["results"] = results
        elif self.empty_results == "null":
            page["results"] = None
        if stop < columns["t"].size:
            token = base64.urlsafe_b64encode(f"limit={limit}&sort=asc".encode()).decode().rstrip("=")
            origin = "https://api.polygon.io:443" if self.foreign_next_url else self.base_url
            page["next_url"] = (
                f"{origin}/v2/aggs/ticker/{ticker}/range/1/minute/{int(columns['t'][stop])}/{date_to}?cursor={token}"
            )
        return page


def _too_many(request_id: str) -> dict[str, str]:
    return {
        "status": "ERROR",
        "request_id": request_id,
        "error": "You've exceeded the maximum requests per minute, please wait or upgrade your subscription.",
    }


def http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)

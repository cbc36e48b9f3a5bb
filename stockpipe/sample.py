"""The offline sample source: deterministic minute bars and a loopback server that speaks the Massive contract.

Bars are generated per (ticker, trading day) from a seed of both, in New York time, so a day is identical across
runs whatever range was asked, and DST and early closes come from the exchange calendar. The server paginates with
`next_url` + cursor as the API does, so the real client's pagination runs on every machine. What tests and the
benchmarks add to it (a key to check, a rolling-window limit, injected faults, canned bodies) lives in
`stockpipe.testing`, not here.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
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
from collections.abc import Callable, Iterable
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import numpy as np

from stockpipe.market_calendar import NEW_YORK, session_hours, trading_days

PRE_MARKET_FILL = 0.30  # share of extended-hours minutes that trade, roughly what liquid large caps show
AFTER_HOURS_FILL = 0.35


def _seed(*parts: object) -> int:
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _base_price(ticker: str) -> float:
    """A ticker's price level on today's basis (after all its splits)."""
    return 20.0 + (zlib.crc32(ticker.encode()) % 48000) / 100.0


@dataclasses.dataclass(frozen=True)
class Split:
    """One split as `/v3/reference/splits` lists it: `split_to` new shares for every `split_from` old ones, from
    `execution_date` on (the first day the stock trades on the new basis)."""

    ticker: str
    execution_date: dt.date
    split_from: float
    split_to: float

    @property
    def ratio(self) -> float:
        return self.split_to / self.split_from

    @property
    def id(self) -> str:
        digest = hashlib.blake2b(f"{self.ticker}|{self.execution_date}".encode(), digest_size=32).hexdigest()
        return f"E{digest}"

    def as_json(self) -> dict[str, Any]:
        return {"execution_date": self.execution_date.isoformat(), "id": self.id, "split_from": self.split_from,
                "split_to": self.split_to, "ticker": self.ticker}


# The eight tickers' real splits since 2020 (ex-dates as the exchanges traded them), so a sample backfill across them
# shows the same jumps as traded that the real API's unadjusted bars show.
SAMPLE_SPLITS: tuple[Split, ...] = (
    Split("AAPL", dt.date(2020, 8, 31), 1, 4),
    Split("TSLA", dt.date(2020, 8, 31), 1, 5),
    Split("NVDA", dt.date(2021, 7, 20), 1, 4),
    Split("AMZN", dt.date(2022, 6, 6), 1, 20),
    Split("GOOGL", dt.date(2022, 7, 18), 1, 20),
    Split("TSLA", dt.date(2022, 8, 25), 1, 3),
    Split("NVDA", dt.date(2024, 6, 10), 1, 10),
)


def split_factor(ticker: str, day: dt.date, splits: Iterable[Split] = SAMPLE_SPLITS) -> float:
    """How many of today's shares one share traded on `day` became: the product of the ratios of the ticker's
    splits executed after `day`. A price as traded is today's basis times this; its volume, divided by it."""
    factor = 1.0
    for split in splits:
        if split.ticker == ticker and split.execution_date > day:
            factor *= split.ratio
    return factor


MINUTES_PER_DAY_MAX = 16 * 60  # 04:00-20:00 New York: no day has more bars than this


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

    # As traded: before a split the stock traded at a multiple of today's basis, with fewer shares changing hands.
    factor = split_factor(ticker, day)
    day_open = _base_price(ticker) * factor * float(np.exp(rng.normal(0, 0.05)))
    returns = rng.normal(0, 0.0008, size)
    closes = np.round(day_open * np.exp(np.cumsum(returns)), 2)
    opens = np.round(np.concatenate([[day_open], closes[:-1]]) * np.exp(rng.normal(0, 0.0002, size)), 2)
    top = np.maximum(opens, closes)
    bottom = np.minimum(opens, closes)
    highs = np.round(top + np.abs(rng.normal(0, 0.0006, size)) * top, 2)
    lows = np.round(bottom - np.abs(rng.normal(0, 0.0006, size)) * bottom, 2)
    vwap = np.round(lows + (highs - lows) * rng.uniform(0.2, 0.8, size), 4)
    scale = np.where(extended, 400.0, 25_000.0) / factor
    volume = np.maximum(1.0, np.round(rng.lognormal(0, 0.8, size) * scale))
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


def range_bars(ticker: str, date_from: dt.date, date_to: dt.date, enough: Callable[[int], bool] | None = None
               ) -> dict[str, np.ndarray]:
    """All bars for the New York trading days in [date_from, date_to], ascending by t; with `enough`, only the
    first days whose bars (counted so far) satisfy it, so a page of a long range costs a page, not the range."""
    days = []
    count = 0
    for day in trading_days(date_from, date_to):
        days.append(day_bars(ticker, day))
        count += days[-1]["t"].size
        if enough is not None and enough(count):
            break
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


def adjusted_bars(ticker: str, columns: dict[str, np.ndarray], splits: Iterable[Split]) -> dict[str, np.ndarray]:
    """What `adjusted=true` serves: every bar before a split of the ticker divided by its ratio (volume
    multiplied), by the splits the server knows when it answers."""
    factor = np.ones(columns["t"].size)
    for split in splits:
        if split.ticker == ticker:
            starts = dt.datetime.combine(split.execution_date, dt.time(), NEW_YORK)
            factor = np.where(columns["t"] < int(starts.timestamp() * 1000), factor * split.ratio, factor)
    out = dict(columns)
    for key in ("o", "h", "l", "c", "vw"):
        out[key] = np.round(columns[key] / factor, 4)
    out["v"] = np.round(columns["v"] * factor, 4)
    return out


# ---------------------------------------------------------------------------------------------------------------
# The loopback server


@dataclasses.dataclass
class ApiRequest:
    """One request as the server's hooks see it."""

    path: str
    query: dict[str, list[str]]
    authorization: str | None
    request_id: str
    at: float
    handler: http.server.BaseHTTPRequestHandler
    # Called as a response is about to leave, so a record of it exists before the client has its answer.
    replied: Callable[[ApiRequest, int], None]
    match: re.Match[str] | None = None  # the aggregates path, when it is one

    @property
    def ticker(self) -> str:
        return self.match["ticker"] if self.match else ""

    def reply(self, code: int, payload: Any = None, headers: dict[str, str] | None = None,
              raw: bytes | None = None) -> None:
        body = raw if raw is not None else json.dumps(payload, separators=(",", ":")).encode()
        self.replied(self, code)
        self.handler.send_response(code)
        self.handler.send_header("Content-Type", "application/json")
        self.handler.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.handler.send_header(name, value)
        self.handler.end_headers()
        self.handler.wfile.write(body)


_AGGS_PATH = re.compile(
    r"^/v2/aggs/ticker/(?P<ticker>[^/]+)/range/(?P<mult>\d+)/(?P<span>[a-z]+)/(?P<frm>[^/]+)/(?P<to>[^/]+)$"
)
SPLITS_PATH = "/v3/reference/splits"


class SampleApiServer:
    """An in-process HTTP server on 127.0.0.1 (port chosen by the OS) that serves `day_bars` as the API would:
    the aggregates path (as traded with `adjusted=false`, adjusted by the splits it knows otherwise, the API's
    default) and the splits list, both paginated by `next_url` with a cursor; 404 for anything else. No key, no
    limit, no faults: the hooks `_intercept`, `_finish_page`, `_finish_body` and `_replied` are where
    `stockpipe.testing` adds them."""

    def __init__(self, splits: Iterable[Split] = SAMPLE_SPLITS) -> None:
        self.splits = tuple(splits)  # what the server knows; a test can announce a new one
        self._ids = random.Random(7)  # request ids, deterministic like the bars
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def __enter__(self) -> Self:
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

    # -- hooks -------------------------------------------------------------------------------------------------------
    def _intercept(self, request: ApiRequest) -> bool:
        """Answer the request some other way than with data; True when it was answered."""
        return False

    def _finish_page(self, page: dict[str, Any], request: ApiRequest) -> dict[str, Any]:
        return page

    def _finish_body(self, body: bytes, request: ApiRequest) -> bytes:
        return body

    def _replied(self, request: ApiRequest, status: int) -> None:
        """Called as a response is about to leave (0: the connection was dropped instead)."""

    # -- request handling --------------------------------------------------------------------------------------------
    def _handle(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        request = ApiRequest(parts.path, parse_qs(parts.query), handler.headers.get("Authorization"),
                             uuid.UUID(int=self._ids.getrandbits(128)).hex, time.monotonic(), handler, self._replied,
                             _AGGS_PATH.match(parts.path))
        if request.match is None and request.path != SPLITS_PATH:
            request.reply(404, {"status": "NOT_FOUND", "request_id": request.request_id, "message": "unknown path"})
            return
        if self._intercept(request):
            return
        try:
            page = self._page(request) if request.match is not None else self._splits_page(request)
            page = self._finish_page(page, request)
        except ValueError as exc:
            request.reply(400, {"status": "ERROR", "request_id": request.request_id, "error": str(exc)})
            return
        request.reply(200, raw=self._finish_body(json.dumps(page, separators=(",", ":")).encode(), request))

    def _page(self, request: ApiRequest) -> dict[str, Any]:
        match, query, ticker = request.match, request.query, request.ticker
        assert match is not None
        if match["mult"] != "1" or match["span"] != "minute":
            raise ValueError("the sample server serves 1-minute bars only")
        limit = min(int(query.get("limit", ["5000"])[0]), 50_000)
        adjusted = query.get("adjusted", ["true"])[0] != "false"  # the API's default is adjusted
        cursor = query.get("cursor", [None])[0]
        if cursor:  # the cursor carries the first request's parameters, as the API's does
            decoded = _decode_cursor(cursor)
            limit = int(decoded["limit"][0])
            adjusted = decoded.get("adjusted", ["true"])[0] != "false"
        date_to = dt.date.fromisoformat(match["to"])
        frm = match["frm"]
        if frm.isdigit():  # next_url carries the next bar's millisecond timestamp
            from_ms: int | None = int(frm)
            date_from = dt.datetime.fromtimestamp(int(frm) / 1000, NEW_YORK).date()
        else:
            date_from = dt.date.fromisoformat(frm)
            from_ms = None
        # Enough days for the page and the bar after it (which says whether there is a next page).
        columns = range_bars(ticker, date_from, date_to,
                             enough=lambda count: count >= limit + 1 + (MINUTES_PER_DAY_MAX if from_ms else 0))
        if adjusted:
            columns = adjusted_bars(ticker, columns, self.splits)
        start = int(np.searchsorted(columns["t"], from_ms)) if from_ms is not None else 0
        stop = min(start + limit, columns["t"].size)
        results = bars_as_json(columns, start, stop)
        page: dict[str, Any] = {
            "ticker": ticker,
            "queryCount": len(results),
            "resultsCount": len(results),
            "adjusted": adjusted,
            "status": "OK",
            "request_id": request.request_id,
        }
        if results:
            page["results"] = results  # an empty range has no `results` key, as today's API answers
        if stop < columns["t"].size:
            token = _encode_cursor(f"limit={limit}&sort=asc&adjusted={str(adjusted).lower()}")
            page["next_url"] = (f"{self.base_url}/v2/aggs/ticker/{ticker}/range/1/minute/{int(columns['t'][stop])}/"
                                f"{date_to}?cursor={token}")
        return page

    def _splits_page(self, request: ApiRequest) -> dict[str, Any]:
        """`/v3/reference/splits`: the filters the pipeline uses (ticker, execution_date and its ranges), sorted by
        execution date or ticker, `limit` (default 10, at most 1000) per page."""
        query = request.query
        cursor = query.get("cursor", [None])[0]
        params = _decode_cursor(cursor) if cursor else query
        offset = int(params.get("offset", ["0"])[0])
        limit = min(int(params.get("limit", ["10"])[0]), 1000)
        chosen = [s for s in self.splits if _split_matches(s, params)]
        key = (lambda s: (s.ticker, s.execution_date)) if params.get("sort", [""])[0] == "ticker" else (
            lambda s: (s.execution_date, s.ticker))
        chosen.sort(key=key, reverse=params.get("order", ["asc"])[0] == "desc")
        results = [s.as_json() for s in chosen[offset:offset + limit]]
        page: dict[str, Any] = {"status": "OK", "request_id": request.request_id}
        if results:
            page["results"] = results
        if offset + limit < len(chosen):
            kept = {k: v[0] for k, v in params.items() if k not in ("cursor", "offset")}
            token = _encode_cursor("&".join([*(f"{k}={v}" for k, v in kept.items()), f"offset={offset + limit}"]))
            page["next_url"] = f"{self.base_url}{SPLITS_PATH}?cursor={token}"
        return page


def _encode_cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> dict[str, list[str]]:
    return parse_qs(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())


def _split_matches(split: Split, params: dict[str, list[str]]) -> bool:
    day = split.execution_date.isoformat()
    tests = {
        "ticker": lambda v: split.ticker == v,
        "execution_date": lambda v: day == v,
        "execution_date.gte": lambda v: day >= v,
        "execution_date.gt": lambda v: day > v,
        "execution_date.lte": lambda v: day <= v,
        "execution_date.lt": lambda v: day < v,
    }
    return all(test(params[name][0]) for name, test in tests.items() if name in params)

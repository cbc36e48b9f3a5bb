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
from collections.abc import Callable
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


class SampleApiServer:
    """An in-process HTTP server on 127.0.0.1 (port chosen by the OS) that serves `day_bars` as the API would:
    the aggregates path, `next_url` pagination with a cursor, 404 for anything else. No key, no limit, no faults:
    the hooks `_intercept`, `_finish_page`, `_finish_body` and `_replied` are where `stockpipe.testing` adds them."""

    def __init__(self) -> None:
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
        if request.match is None:
            request.reply(404, {"status": "NOT_FOUND", "request_id": request.request_id, "message": "unknown path"})
            return
        if self._intercept(request):
            return
        try:
            page = self._finish_page(self._page(request), request)
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
        cursor = query.get("cursor", [None])[0]
        if cursor:
            decoded = parse_qs(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
            limit = int(decoded["limit"][0])
        date_to = dt.date.fromisoformat(match["to"])
        frm = match["frm"]
        if frm.isdigit():  # next_url carries the next bar's millisecond timestamp
            from_ms: int | None = int(frm)
            date_from = dt.datetime.fromtimestamp(int(frm) / 1000, NEW_YORK).date()
        else:
            date_from = dt.date.fromisoformat(frm)
            from_ms = None
        columns = range_bars(ticker, date_from, date_to)
        start = int(np.searchsorted(columns["t"], from_ms)) if from_ms is not None else 0
        stop = min(start + limit, columns["t"].size)
        results = bars_as_json(columns, start, stop)
        page: dict[str, Any] = {
            "ticker": ticker,
            "queryCount": len(results),
            "resultsCount": len(results),
            "adjusted": True,
            "status": "OK",
            "request_id": request.request_id,
        }
        if results:
            page["results"] = results  # an empty range has no `results` key, as today's API answers
        if stop < columns["t"].size:
            token = base64.urlsafe_b64encode(f"limit={limit}&sort=asc".encode()).decode().rstrip("=")
            page["next_url"] = (f"{self.base_url}/v2/aggs/ticker/{ticker}/range/1/minute/{int(columns['t'][stop])}/"
                                f"{date_to}?cursor={token}")
        return page

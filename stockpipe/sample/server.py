"""The loopback server that speaks the Massive contract over the sample market: minute and daily aggregates, the
grouped daily bars of the sample universe, and the splits and dividends lists, paginated by `next_url` + cursor as
the API does, so the real client's pagination runs on every machine. What tests and the benchmarks add to it (a key
to check, a rolling-window limit, injected HTTP faults, canned bodies) lives in `stockpipe.testing`, not here."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import http.server
import json
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, Self
from urllib.parse import parse_qs, urlsplit

import numpy as np

from stockpipe import DEFAULT_TICKERS
from stockpipe.market_calendar import NEW_YORK, trading_days
from stockpipe.sample import loopback
from stockpipe.sample.actions import SAMPLE_DIVIDENDS, SAMPLE_SPLITS, Dividend, Split
from stockpipe.sample.faults import sample_fault_details, with_minute_faults
from stockpipe.sample.market import (
    MINUTE_MS,
    MINUTES_PER_DAY_MAX,
    adjusted_bars,
    bars_as_json,
    daily_bars,
    daily_bars_as_json,
    json_volume,
    range_bars,
)
from stockpipe.sample.marketday import grouped_day
from stockpipe.sample.universe import is_sample_symbol, market_symbols, otc_symbols

Endpoint = Literal["aggs", "grouped", "splits", "dividends"]

_AGGS_PATH = re.compile(
    r"^/v2/aggs/ticker/(?P<ticker>[^/]+)/range/(?P<mult>\d+)/(?P<span>[a-z]+)/(?P<frm>[^/]+)/(?P<to>[^/]+)$"
)
_GROUPED_PATH = re.compile(r"^/v2/aggs/grouped/locale/us/market/stocks/(?P<date>[^/]+)$")
SPLITS_PATH = "/v3/reference/splits"
DIVIDENDS_PATH = "/v3/reference/dividends"
DAY_MS = 86_400_000


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
    match: re.Match[str] | None = None  # the aggregates or grouped path, when it is one
    endpoint: Endpoint | None = None  # None: a path the server does not serve

    @property
    def ticker(self) -> str:
        """The ticker of a per-ticker aggregates path; "" for the grouped and reference endpoints."""
        return self.match["ticker"] if self.endpoint == "aggs" and self.match else ""

    @property
    def last_day(self) -> dt.date | None:
        """The latest New York day the request asks data for (a range's end, the grouped date); None for the
        reference lists, or a date that does not parse."""
        if self.match is None:
            return None
        text = self.match["to"] if self.endpoint == "aggs" else self.match["date"]
        try:
            return _day(text)
        except ValueError:
            return None

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


def _day(text: str) -> dt.date:
    """A path's date: YYYY-MM-DD, or (as next_url writes it) a millisecond timestamp, read in New York."""
    if text.isdigit():
        return dt.datetime.fromtimestamp(int(text) / 1000, NEW_YORK).date()
    return dt.date.fromisoformat(text)


class SampleApiServer:
    """An in-process HTTP server on 127.0.0.1 (port chosen by the OS) that serves the sample market as the API
    would: minute and daily aggregates (as traded with `adjusted=false`, adjusted by the splits it knows otherwise,
    the API's default), the grouped daily bars of its universe (the eight default tickers and any given), and the
    splits and dividends lists, paginated by `next_url` with a cursor; 404 for anything else. No key, no limit:
    the hooks `_intercept`, `_finish_page`, `_finish_body` and `_replied` are where `stockpipe.testing` adds them.
    `faults=True` serves the sample's injected feed imperfections (`stockpipe.sample.faults`) in minute answers."""

    def __init__(self, splits: Iterable[Split] = SAMPLE_SPLITS, *, dividends: Iterable[Dividend] = SAMPLE_DIVIDENDS,
                 universe: Sequence[str] = (), faults: bool = False, now: Callable[[], float] = time.time) -> None:
        self.splits = tuple(splits)  # what the server knows; a test can announce a new one
        self.dividends = tuple(dividends)  # likewise
        # Grouped daily's tickers, in order: the eight and the sample tickers a run asks for (an unknown symbol has
        # no bar anywhere, as on the real API).
        self.universe = tuple(dict.fromkeys(t for t in (*DEFAULT_TICKERS, *universe) if is_sample_symbol(t)))
        self.faults = faults
        # The server's clock (epoch seconds): like the API, it answers only minutes that have ended.
        self.now = now
        self._ids = random.Random(7)  # request ids, deterministic like the bars
        self._httpd: http.server.ThreadingHTTPServer | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._httpd = loopback.serve(lambda request, _body: self._handle(request), "fake-massive")

    def stop(self) -> None:
        if self._httpd is not None:
            loopback.stop(self._httpd)
            self._httpd = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        return loopback.url_of(self._httpd)

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
        match, endpoint = _route(parts.path)
        request = ApiRequest(parts.path, parse_qs(parts.query), handler.headers.get("Authorization"),
                             uuid.UUID(int=self._ids.getrandbits(128)).hex, time.monotonic(), handler, self._replied,
                             match, endpoint)
        if endpoint is None:
            request.reply(404, {"status": "NOT_FOUND", "request_id": request.request_id, "message": "unknown path"})
            return
        if self._intercept(request):
            return
        answer = {"aggs": self._aggs_page, "grouped": self._grouped_page, "splits": self._splits_page,
                  "dividends": self._dividends_page}[endpoint]
        try:
            page = self._finish_page(answer(request), request)
        except ValueError as exc:
            request.reply(400, {"status": "ERROR", "request_id": request.request_id, "error": str(exc)})
            return
        request.reply(200, raw=self._finish_body(json.dumps(page, separators=(",", ":")).encode(), request))

    def _aggs_page(self, request: ApiRequest) -> dict[str, Any]:
        assert request.match is not None
        if request.match["mult"] != "1" or request.match["span"] not in ("minute", "day"):
            raise ValueError("the sample server serves 1-minute and 1-day bars only")
        return self._page(request) if request.match["span"] == "minute" else self._daily_page(request)

    def _page(self, request: ApiRequest) -> dict[str, Any]:
        """A page of minute bars: `limit` bars (default 5000, at most 50,000) from the range's start or the cursor's
        timestamp, with a `next_url` while bars remain."""
        match, query, ticker = request.match, request.query, request.ticker
        assert match is not None
        limit = min(int(query.get("limit", ["5000"])[0]), 50_000)
        adjusted = query.get("adjusted", ["true"])[0] != "false"  # the API's default is adjusted
        cursor = query.get("cursor", [None])[0]
        if cursor:  # the cursor carries the first request's parameters, as the API's does
            decoded = _decode_cursor(cursor)
            limit = int(decoded["limit"][0])
            adjusted = decoded.get("adjusted", ["true"])[0] != "false"
        date_to = dt.date.fromisoformat(match["to"])
        frm = match["frm"]
        from_ms = int(frm) if frm.isdigit() else None  # next_url carries the next bar's millisecond timestamp
        date_from = _day(frm)
        # Enough days for the page and the bar after it (which says whether there is a next page).
        columns = range_bars(ticker, date_from, date_to, finish=with_minute_faults if self.faults else None,
                             enough=lambda count: count >= limit + 1 + (MINUTES_PER_DAY_MAX if from_ms else 0))
        columns = self._ended(ticker, columns)
        if adjusted:
            columns = adjusted_bars(ticker, columns, self.splits)
        start = int(np.searchsorted(columns["t"], from_ms)) if from_ms is not None else 0
        stop = min(start + limit, columns["t"].size)
        more = stop < columns["t"].size
        # A short answer is the first answer of a range only: its continuation after the last bar is served in full.
        short_end = self._short_answer_end(ticker, date_from, date_to) if self.faults and not frm.isdigit() else None
        if short_end is not None:
            stop, more = min(stop, int(np.searchsorted(columns["t"], short_end))), False
        results = bars_as_json(columns, start, stop)
        if self.faults:
            _malform(results, ticker, date_from, date_to)
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
        if more:
            token = _encode_cursor(f"limit={limit}&sort=asc&adjusted={str(adjusted).lower()}")
            page["next_url"] = (f"{self.base_url}/v2/aggs/ticker/{ticker}/range/1/minute/{int(columns['t'][stop])}/"
                                f"{date_to}?cursor={token}")
        return page

    def _ended(self, ticker: str, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The bars of a ticker the sample lists whose minute has ended by the server's clock (the API aggregates a
        minute once it is over); none for any other symbol. `t` is sorted, so the ended bars are a prefix."""
        if not is_sample_symbol(ticker):
            return {name: values[:0] for name, values in columns.items()}
        ended = int(np.searchsorted(columns["t"], self.now() * 1000 - MINUTE_MS, side="right"))
        return columns if ended == columns["t"].size else {name: values[:ended] for name, values in columns.items()}

    def _closed_days(self, ticker: str, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The official daily bars of the days whose session (extended hours included) has ended by the server's
        clock, for a ticker the sample lists."""
        if not is_sample_symbol(ticker):
            return {name: values[:0] for name, values in columns.items()}
        # `t` is midnight New York; the day's extended hours end at 20:00, before the next midnight.
        ended = int(np.searchsorted(columns["t"], self.now() * 1000 - DAY_MS, side="right"))
        return columns if ended == columns["t"].size else {name: values[:ended] for name, values in columns.items()}

    @staticmethod
    def _short_answer_end(ticker: str, date_from: dt.date, date_to: dt.date) -> int | None:
        """Where a short answer stops (epoch ms, midnight after its first day), when the range's first trading day
        has that fault and the range asks for more days; None otherwise."""
        days = trading_days(date_from, date_to)
        if len(days) < 2 or not any(f.kind == "short_answer" for f in sample_fault_details(ticker, days[0])):
            return None
        return int(dt.datetime.combine(days[1], dt.time(), NEW_YORK).timestamp() * 1000)

    def _daily_page(self, request: ApiRequest) -> dict[str, Any]:
        """The official daily bars of one ticker, `t` at midnight New York as the API stamps them; `sort` asc or
        desc, `limit` (default 5000, at most 50,000) days a page, the cursor carrying the rest."""
        match, query, ticker = request.match, request.query, request.ticker
        assert match is not None
        cursor = query.get("cursor", [None])[0]
        params = _decode_cursor(cursor) if cursor else query
        limit = min(int(params.get("limit", ["5000"])[0]), 50_000)
        adjusted = params.get("adjusted", ["true"])[0] != "false"
        descending = params.get("sort", ["asc"])[0] == "desc"
        offset = int(params.get("offset", ["0"])[0])
        columns = self._closed_days(ticker, daily_bars(ticker, _day(match["frm"]), _day(match["to"])))
        if adjusted:
            columns = adjusted_bars(ticker, columns, self.splits)
        bars = daily_bars_as_json(columns)
        if descending:
            bars.reverse()
        results = bars[offset:offset + limit]
        page: dict[str, Any] = {"ticker": ticker, "queryCount": len(results), "resultsCount": len(results),
                                "adjusted": adjusted, "status": "OK", "request_id": request.request_id}
        if results:
            page["results"] = results
        if offset + limit < len(bars):
            token = _encode_cursor(f"limit={limit}&sort={'desc' if descending else 'asc'}"
                                   f"&adjusted={str(adjusted).lower()}&offset={offset + limit}")
            page["next_url"] = f"{self.base_url}{request.path}?cursor={token}"
        return page

    def _grouped_page(self, request: ApiRequest) -> dict[str, Any]:
        """Every ticker's official daily bar of one date, each carrying its ticker as `T`; no pagination. The universe
        (the eight and the run's tickers) first, from their own generator, so each agrees with its minutes; then the
        rest of the synthetic market (`marketday.grouped_day`), and with `include_otc=true` the over-the-counter
        names. `t` is 16:00 New York, the end of the day's window, as the contract's example stamps grouped bars. With
        `faults`, two of the market's bars a day break a rule (`grouped_faults`). A day whose session has not ended
        by the server's clock has no bar."""
        assert request.match is not None
        day = dt.date.fromisoformat(request.match["date"])
        adjusted = request.query.get("adjusted", ["true"])[0] != "false"
        include_otc = request.query.get("include_otc", ["false"])[0] == "true"
        stamp = int(dt.datetime.combine(day, dt.time(16, 0), NEW_YORK).timestamp() * 1000)
        results = []
        for ticker in self.universe:
            columns = self._closed_days(ticker, daily_bars(ticker, day, day))
            if adjusted:
                columns = adjusted_bars(ticker, columns, self.splits)
            for bar in daily_bars_as_json(columns):
                bar["t"] = stamp
                results.append({"T": ticker, **bar})
        ended = self.now() * 1000 >= stamp + 4 * 3_600_000  # the day's extended hours are over at 20:00
        if ended and trading_days(day, day):
            chosen = set(self.universe)
            rest = tuple(t for t in market_symbols() if t not in chosen) + (otc_symbols() if include_otc else ())
            results.extend(grouped_results(day, rest, stamp, faults=self.faults))
        page: dict[str, Any] = {"adjusted": adjusted, "queryCount": len(results), "resultsCount": len(results),
                                "status": "OK", "request_id": request.request_id}
        if results:
            page["results"] = results  # a day the market was closed has no `results` key
        return page

    def _splits_page(self, request: ApiRequest) -> dict[str, Any]:
        """`/v3/reference/splits`: filters ticker, execution_date and its ranges; sort by execution_date or ticker."""
        return self._reference_page(request, self.splits, "execution_date",
                                    lambda s: {"ticker": s.ticker, "execution_date": s.execution_date.isoformat()})

    def _dividends_page(self, request: ApiRequest) -> dict[str, Any]:
        """`/v3/reference/dividends`: filters ticker, ex_dividend_date and its ranges; sort by ex_dividend_date or
        ticker."""
        return self._reference_page(request, self.dividends, "ex_dividend_date",
                                    lambda d: {"ticker": d.ticker, "ex_dividend_date": d.ex_dividend_date.isoformat()})

    def _reference_page(self, request: ApiRequest, items: Sequence[Split | Dividend], date_field: str,
                        fields: Callable[[Any], dict[str, str]]) -> dict[str, Any]:
        """A reference list as the API pages it: equality and .gte/.gt/.lte/.lt filters on the ticker and the date
        field, sorted by the date (the default) or the ticker, `order` asc or desc, `limit` (default 10, at most
        1000) a page, and a `next_url` whose cursor carries the query and the offset."""
        query = request.query
        cursor = query.get("cursor", [None])[0]
        params = _decode_cursor(cursor) if cursor else query
        offset = int(params.get("offset", ["0"])[0])
        limit = min(int(params.get("limit", ["10"])[0]), 1000)
        chosen = [(fields(item), item) for item in items]
        chosen = [(values, item) for values, item in chosen if _matches(values, params)]
        first, second = ("ticker", date_field) if params.get("sort", [""])[0] == "ticker" else (date_field, "ticker")
        descending = params.get("order", ["asc"])[0] == "desc"
        chosen.sort(key=lambda pair: (pair[0][first], pair[0][second]), reverse=descending)
        results = [item.as_json() for _, item in chosen[offset:offset + limit]]
        page: dict[str, Any] = {"status": "OK", "request_id": request.request_id}
        if results:
            page["results"] = results
        if offset + limit < len(chosen):
            kept = {k: v[0] for k, v in params.items() if k not in ("cursor", "offset")}
            token = _encode_cursor("&".join([*(f"{k}={v}" for k, v in kept.items()), f"offset={offset + limit}"]))
            page["next_url"] = f"{self.base_url}{request.path}?cursor={token}"
        return page


def _route(path: str) -> tuple[re.Match[str] | None, Endpoint | None]:
    if match := _AGGS_PATH.match(path):
        return match, "aggs"
    if match := _GROUPED_PATH.match(path):
        return match, "grouped"
    if path == SPLITS_PATH:
        return None, "splits"
    if path == DIVIDENDS_PATH:
        return None, "dividends"
    return None, None


def _malform(results: list[dict[str, Any]], ticker: str, date_from: dt.date, date_to: dt.date) -> None:
    """The page's malformed bars, as a feed has sent them: a close quoted as a string, or no close at all."""
    if not results:
        return
    first, last = _day(str(results[0]["t"])), _day(str(results[-1]["t"]))
    for day in trading_days(max(first, date_from), min(last, date_to)):
        for fault in sample_fault_details(ticker, day):
            if fault.kind != "malformed_bar":
                continue
            for bar in results:
                if bar["t"] == fault.t:
                    if fault.variant == "quoted_close":
                        bar["c"] = f"{bar['c']:.2f}"
                    else:
                        del bar["c"]


def _matches(values: dict[str, str], params: dict[str, list[str]]) -> bool:
    """Whether an item's fields pass the query's filters: `name` (equal) and `name.gte/.gt/.lte/.lt` (ranges)."""
    tests: dict[str, Callable[[str, str], bool]] = {
        "": lambda a, b: a == b, ".gte": lambda a, b: a >= b, ".gt": lambda a, b: a > b,
        ".lte": lambda a, b: a <= b, ".lt": lambda a, b: a < b,
    }
    return all(test(value, params[name + suffix][0]) for name, value in values.items()
               for suffix, test in tests.items() if name + suffix in params)


def _encode_cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> dict[str, list[str]]:
    return parse_qs(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())


def grouped_results(day: dt.date, symbols: tuple[str, ...], stamp: int, *, faults: bool) -> list[dict[str, Any]]:
    """The grouped answer's items for synthetic names (no splits: the synthetic market has none, so adjusted or not
    they are the same), with the day's injected faults when asked."""
    columns = grouped_day(day, symbols)
    items = [{"T": t, "v": json_volume(float(v)), "vw": float(vw), "o": float(o), "c": float(c), "h": float(h),
              "l": float(lo), "t": stamp, "n": int(n)}
             for t, o, h, lo, c, v, vw, n in zip(*(columns[k] for k in ("ticker", "o", "h", "l", "c", "v", "vw", "n")),
                                                 strict=True)]
    if faults and items:
        for kind, index in grouped_faults(day, len(items)).items():
            item = items[index]
            if kind == "inverted_range":
                item["h"], item["l"] = item["l"], item["h"]
            else:  # "missing_close"
                del item["c"]
    return items


def grouped_faults(day: dt.date, count: int) -> dict[str, int]:
    """Which of a day's `count` synthetic bars (sorted by ticker) carry the injected faults: one whose high is below
    its low, one without a close; a pure function of the day."""
    draw = random.Random(f"grouped-faults-{day.isoformat()}")
    first, second = draw.sample(range(count), 2) if count > 1 else (0, 0)
    return {"inverted_range": first, "missing_close": second}

"""Test and benchmark support, kept out of the product as delta keeps `delta/testing/`: the sample server with the
real API's misbehaviour switched on (a key to check, a rolling-window limit, random 429s, injected faults, canned
bodies, the free tier's refusal of today). Nothing in the pipeline imports this module."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import email.utils
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from stockpipe.market_calendar import NEW_YORK
from stockpipe.sample import SAMPLE_DIVIDENDS, SAMPLE_SPLITS, ApiRequest, Dividend, SampleApiServer, Split

# short: the answer stops after the first trading day of the range, without a next_url (as users have seen).
FaultKind = Literal["429", "500", "502", "503", "401", "403", "delay", "reset", "truncate", "missing_field",
                    "status_error", "short"]


@dataclasses.dataclass
class Fault:
    """One injected failure. `ticker` None matches any request; "splits", "dividends" or "grouped" only that
    endpoint's (the reference lists, the grouped daily bars); `times` is how many requests it hits."""

    kind: FaultKind
    ticker: str | None = None
    times: int = 1
    retry_after: str | None = None
    seconds: float = 0.0
    after: int = 0  # matching requests answered normally before the fault starts (a failure mid-range)


@dataclasses.dataclass(frozen=True)
class ApiBehaviour:
    """How the fake API behaves beyond serving bars. The defaults behave as the sample source does."""

    api_key: str | None = None  # when set, any other Authorization is answered 401
    calls_per_window: int | None = None  # a rolling-window limit, answered 429 past it
    window_seconds: float = 60.0
    rate_limit_retry_after: bool = False  # a limit's 429 says Retry-After (the real API's does not)
    random_429_rate: float = 0.0  # other users of a shared key filling the window
    seed: int = 7
    faults: tuple[Fault, ...] | list[Fault] = ()
    status: str = "OK"  # the data pages' status (DELAYED for a delayed plan)
    foreign_next_url: bool = False  # next_url names api.polygon.io:443, as recorded responses do
    empty_tickers: frozenset[str] = frozenset()  # delisted or halted: an empty range
    empty_results: Literal["absent", "null"] = "absent"  # how an empty range says so (null: older responses)
    plan_refuses_from: dt.date | None = None  # a range reaching this day gets the free tier's 403 "timeframe"
    canned: tuple[tuple[int, bytes], ...] | list[tuple[int, bytes]] = ()  # bodies served in order before anything
    splits: tuple[Split, ...] = SAMPLE_SPLITS  # what the API knows: adjusted bars and the splits list follow it
    dividends: tuple[Dividend, ...] = SAMPLE_DIVIDENDS  # what the dividends list serves
    sample_faults: bool = False  # the sample market's feed faults (bad prints, missing minutes, ...) in minute pages
    # Rewrites a minute page's bars on the way out (ticker, the page's bars as JSON objects) -> the bars to send: a
    # test's own bad prints, gaps, duplicates or malformed bars, as real feeds send them.
    rewrite: Callable[[str, list[Any]], list[Any]] | None = None
    # The server's clock (epoch seconds): it serves only the minutes ended by then. A clock ahead of the machine's
    # serves bars from the future, as a feed whose clock is wrong would.
    clock: Callable[[], float] = time.time


@dataclasses.dataclass
class ServerLog:
    path: str
    query: str
    authorization: str | None
    status: int  # 0: the connection was dropped instead of answered
    at: float


class FakeMassiveServer(SampleApiServer):
    """The sample server with `ApiBehaviour` switched on, and a log of every call it answered."""

    def __init__(self, behaviour: ApiBehaviour | None = None) -> None:
        self.behaviour = behaviour or ApiBehaviour()
        super().__init__(self.behaviour.splits, dividends=self.behaviour.dividends,
                         faults=self.behaviour.sample_faults, now=self.behaviour.clock)
        self.api_key = self.behaviour.api_key
        self.log: list[ServerLog] = []
        self._faults = [dataclasses.replace(f) for f in self.behaviour.faults]  # counted down per server
        self._canned = list(self.behaviour.canned)
        # One seeded sequence for request ids and random 429s, so a seed names one exact run of traffic.
        self._rng = self._ids = random.Random(self.behaviour.seed)
        self._calls: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()
        self._pending: dict[int, Fault] = {}  # a fault that corrupts the data served to a request
        # Calls a delay fault is holding now (the log records a call when it is answered): a test waits on this to
        # act while a call hangs.
        self.held = 0

    @property
    def data_calls(self) -> int:
        return sum(1 for entry in self.log if entry.status == 200)

    def _replied(self, request: ApiRequest, status: int) -> None:
        with self._lock:
            self.log.append(ServerLog(request.path, request.handler.path.partition("?")[2], request.authorization,
                                      status, request.at))

    def _intercept(self, request: ApiRequest) -> bool:
        b, request_id = self.behaviour, request.request_id
        if b.api_key is not None and request.authorization != f"Bearer {b.api_key}":
            request.reply(401, {"status": "ERROR", "request_id": request_id, "error": "Unknown API Key"})
            return True
        with self._lock:
            canned = self._canned.pop(0) if self._canned else None
        if canned is not None:
            request.reply(canned[0], raw=canned[1])
            return True
        refused = b.plan_refuses_from is not None and request.last_day is not None and (
            request.last_day >= b.plan_refuses_from)
        if refused:
            request.reply(403, {"status": "NOT_AUTHORIZED", "request_id": request_id,
                                "message": "Your plan doesn't include this data timeframe. Please upgrade your plan "
                                           "at https://massive.com/pricing"})
            return True
        wait = self._rate_limited(request.at)
        if wait is not None or (b.random_429_rate and self._rng.random() < b.random_429_rate):
            headers = {"Retry-After": str(max(1, int(wait + 0.999)))} if (wait and b.rate_limit_retry_after) else {}
            request.reply(429, too_many(request_id), headers)
            return True
        fault = self._take_fault(request.ticker or str(request.endpoint))
        if fault is None:
            return False
        if self._inject(fault, request):
            return True
        self._pending[id(request)] = fault  # serve data, corrupted on the way out
        return False

    def _finish_page(self, page: dict[str, Any], request: ApiRequest) -> dict[str, Any]:
        b = self.behaviour
        page["status"] = b.status
        if request.ticker in b.empty_tickers:
            page.update(queryCount=0, resultsCount=0)
            page.pop("results", None)
            page.pop("next_url", None)
        if "results" not in page and b.empty_results == "null":
            page["results"] = None
        if b.foreign_next_url and "next_url" in page:
            page["next_url"] = page["next_url"].replace(self.base_url, "https://api.polygon.io:443", 1)
        minutes = request.endpoint == "aggs" and request.match is not None and request.match["span"] == "minute"
        if b.rewrite is not None and minutes and page.get("results"):
            page["results"] = b.rewrite(request.ticker, page["results"])
            page.update(queryCount=len(page["results"]), resultsCount=len(page["results"]))
        fault = self._pending.get(id(request))
        if fault is not None and fault.kind == "missing_field" and page.get("results"):
            del page["results"][0]["c"]
        if fault is not None and fault.kind == "short" and page.get("results"):
            first_day = _new_york_day(page["results"][0]["t"])
            page["results"] = [bar for bar in page["results"] if _new_york_day(bar["t"]) == first_day]
            page.update(queryCount=len(page["results"]), resultsCount=len(page["results"]))
            page.pop("next_url", None)
        return page

    def _finish_body(self, body: bytes, request: ApiRequest) -> bytes:
        fault = self._pending.pop(id(request), None)
        if fault is not None and fault.kind == "truncate":
            return body[: max(1, len(body) // 2)]
        return body

    def _take_fault(self, ticker: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and (fault.ticker is None or fault.ticker == ticker):
                    if fault.after > 0:
                        fault.after -= 1
                        continue
                    fault.times -= 1
                    return fault
        return None

    def _rate_limited(self, now: float) -> float | None:
        """Seconds until a slot frees, when the rolling window is full; None when the call may pass."""
        b = self.behaviour
        if b.calls_per_window is None:
            return None
        with self._lock:
            while self._calls and self._calls[0] + b.window_seconds <= now:
                self._calls.popleft()
            if len(self._calls) >= b.calls_per_window:
                return self._calls[0] + b.window_seconds - now
            self._calls.append(now)
            return None

    def _inject(self, fault: Fault, request: ApiRequest) -> bool:
        """Serve a fault; True when the response is complete (False: serve data, possibly corrupted later)."""
        kind, request_id = fault.kind, request.request_id
        if kind == "429":
            request.reply(429, too_many(request_id), {"Retry-After": fault.retry_after} if fault.retry_after else {})
        elif kind in {"500", "502", "503"}:
            request.reply(int(kind), {"status": "ERROR", "request_id": request_id, "error": "upstream error"})
        elif kind == "401":
            request.reply(401, {"status": "ERROR", "request_id": request_id, "error": "Unknown API Key"})
        elif kind == "403":
            request.reply(403, {"status": "NOT_AUTHORIZED", "request_id": request_id,
                                "message": "You are not entitled to this data. Please upgrade your plan."})
        elif kind == "status_error":
            request.reply(200, {"status": "ERROR", "request_id": request_id, "error": "internal failure"})
        elif kind == "reset":
            self._replied(request, 0)  # the call arrived and was answered with a dropped connection
            request.handler.close_connection = True
            request.handler.connection.shutdown(2)
        elif kind == "delay":
            with self._lock:
                self.held += 1
            try:
                time.sleep(fault.seconds)
            finally:
                with self._lock:
                    self.held -= 1
            return False
        else:
            return False
        return True


def _new_york_day(ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(ms / 1000, NEW_YORK).date()


def too_many(request_id: str) -> dict[str, str]:
    return {
        "status": "ERROR",
        "request_id": request_id,
        "error": "You've exceeded the maximum requests per minute, please wait or upgrade your subscription.",
    }


def http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)

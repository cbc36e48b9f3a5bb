"""The imperfections of real feeds, injected into the sample on request (`SampleApiServer(faults=True)`), so the
pipeline's quality checks and quarantine have something to find offline. Off by default: the clean sample passes
every check.

Where each fault falls is a pure function of (ticker, day), `sample_faults` / `sample_fault_details`, so a test can
compute what a run must find without a server. Every week, each kind hits one (ticker, trading day) of the eight
default tickers, so any week of them (the assignment's demo week 2024-01-08..12 included) shows all four while
most pairs stay clean; any other ticker meets each kind on about 2 % of its days.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import random
from typing import Literal

import numpy as np

from stockpipe import DEFAULT_TICKERS
from stockpipe.market_calendar import NEW_YORK, trading_days
from stockpipe.sample.days import Block, day_layout, seed

# bad_print: one regular minute whose low and close are BAD_PRINT_DROP below its neighbours' prices (a valid bar by
#   itself; only a spike check flags it).
# missing_minutes: 25-40 consecutive regular minutes without bars (a normal day stays 90-94 % complete, an early
#   close 81-88 %: a warning, not a failure).
# malformed_bar: one regular bar whose close is a quoted string, or absent (the bar is served; the page parses).
# short_answer: a minute-range answer that starts on this day stops after it, without a next_url, though the
#   range asked for more days.
FaultKind = Literal["bad_print", "missing_minutes", "malformed_bar", "short_answer"]
FAULT_KINDS: tuple[FaultKind, ...] = ("bad_print", "missing_minutes", "malformed_bar", "short_answer")
BAD_PRINT_DROP = 0.08
OTHER_TICKER_RATE = 0.02  # per kind and day, for tickers outside the default eight


@dataclasses.dataclass(frozen=True)
class SampleFault:
    """One injected fault. `minute`: New York time of the bad print or malformed bar, or of the first missing
    minute; `length`: how many minutes are missing; `variant` of a malformed bar: "quoted_close" or "no_close"."""

    kind: FaultKind
    ticker: str
    day: dt.date
    minute: dt.time | None = None
    length: int = 0
    variant: str = ""

    @property
    def t(self) -> int | None:
        """Epoch ms of the bar the fault starts at."""
        if self.minute is None:
            return None
        start = dt.datetime.combine(self.day, self.minute, NEW_YORK)
        return int(start.timestamp() * 1000)


def sample_faults(ticker: str, day: dt.date) -> frozenset[str]:
    """The kinds of fault the sample injects into (ticker, day) when faults are on; empty for most pairs."""
    return frozenset(fault.kind for fault in sample_fault_details(ticker, day))


@functools.lru_cache(maxsize=8192)
def sample_fault_details(ticker: str, day: dt.date) -> tuple[SampleFault, ...]:
    """Every fault injected into (ticker, day) when faults are on, with where in the day it falls."""
    if not trading_days(day, day):
        return ()
    if ticker in DEFAULT_TICKERS:
        kinds = [kind for kind, pair in _weekly_faults(_monday(day)).items() if pair == (ticker, day)]
    else:
        draws = random.Random(seed("faults", ticker, day))
        kinds = [kind for kind in FAULT_KINDS if kind != "short_answer" and draws.random() < OTHER_TICKER_RATE]
        if day == _week_days(_monday(day))[0] and draws.random() < 5 * OTHER_TICKER_RATE:
            kinds.append("short_answer")
    return tuple(_place(kind, ticker, day) for kind in FAULT_KINDS if kind in kinds)


def _monday(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


@functools.lru_cache(maxsize=2048)
def _week_days(monday: dt.date) -> list[dt.date]:
    return trading_days(monday, monday + dt.timedelta(days=4))


@functools.lru_cache(maxsize=2048)
def _weekly_faults(monday: dt.date) -> dict[FaultKind, tuple[str, dt.date]]:
    """Each kind's (ticker, day) in the week of `monday`, four different pairs: a short answer on the week's first
    session (where a week's run starts), the others anywhere in the week."""
    days = _week_days(monday)
    draws = random.Random(seed("weekly faults", monday))
    short = (draws.choice(DEFAULT_TICKERS), days[0])
    pairs = [(ticker, day) for day in days for ticker in DEFAULT_TICKERS if (ticker, day) != short]
    bad_print, missing, malformed = draws.sample(pairs, 3)
    return {"bad_print": bad_print, "missing_minutes": missing, "malformed_bar": malformed, "short_answer": short}


def _place(kind: FaultKind, ticker: str, day: dt.date) -> SampleFault:
    """Where in the day a fault falls: inside the regular session, clear of the opening and closing prints."""
    _, open_m, close_m, _ = day_layout(day)
    draws = random.Random(seed("fault place", kind, ticker, day))
    opened = dt.datetime.combine(day, dt.time(4, 0))

    def at(offset: int) -> dt.time:
        return (opened + dt.timedelta(minutes=open_m + offset)).time()

    session = close_m - open_m  # minutes after the open of the close stamp
    if kind == "missing_minutes":
        length = draws.randint(25, 40)
        return SampleFault(kind, ticker, day, at(draws.randint(30, session - 30 - length)), length=length)
    if kind == "bad_print":
        return SampleFault(kind, ticker, day, at(draws.randint(30, session - 30)))
    if kind == "malformed_bar":
        return SampleFault(kind, ticker, day, at(draws.randint(15, session - 15)),
                           variant=draws.choice(("quoted_close", "no_close")))
    return SampleFault(kind, ticker, day)


def with_minute_faults(block: Block) -> Block:
    """The block's minutes with the faults that live in the bars themselves: bad prints and missing minutes. (A
    malformed bar and a short answer are how a page is written; the server adds those.) Daily bars stay true."""
    in_bars = [fault for day in block.days for fault in sample_fault_details(block.ticker, day)
               if fault.kind in ("bad_print", "missing_minutes")]
    if not in_bars:
        return block
    minutes = {key: column.copy() for key, column in block.minutes.items()}
    t = minutes["t"]
    drop = np.zeros(t.size, dtype=bool)
    for fault in in_bars:
        assert fault.t is not None  # both kinds have a minute
        first = int(np.searchsorted(t, fault.t))
        if fault.kind == "bad_print":
            # One odd trade far below the market sets the minute's low and last price; open and high stay.
            minutes["c"][first] = minutes["l"][first] = round(minutes["o"][first] * (1 - BAD_PRINT_DROP), 2)
        elif fault.kind == "missing_minutes":
            drop[first:first + fault.length] = True
    counts = block.counts.copy()
    if drop.any():
        day_of_bar = np.repeat(np.arange(len(block.days)), block.counts)
        counts -= np.bincount(day_of_bar[drop], minlength=len(block.days))
        minutes = {key: column[~drop] for key, column in minutes.items()}
    return dataclasses.replace(block, minutes=minutes, counts=counts)


"""What a harvest did, as values the steps returned and the run assembled once: each ticker's outcome and counts, the
run's commits and checks, and the exit-code policy that reads them (errors make a run fail; what the key's plan
refused makes it partial)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from stockpipe.errors import StopError
from stockpipe.fetching import ReferenceFetch, TickerFetch
from stockpipe.flatfiles.land import DayFetch, DayStatus
from stockpipe.layout import Layout
from stockpipe.massive import FetchStats
from stockpipe.outcome import Outcome
from stockpipe.quality.checks import CheckSummary, DayStats
from stockpipe.quality.guard import Shrink
from stockpipe.runlog import TickerOutcome

REFERENCE_NAMES = {"splits": "splits", "dividends": "dividends", "official_daily": "official daily bars"}
# Who fetches a deferred kind: a later run (it is still missing then); the official bars, market_daily.py too.
LATER = {"official_daily": "a later run or market_daily.py"}


def deferral_line(fetched: ReferenceFetch) -> str | None:
    """What a run left to a later one, in one line (None when nothing was deferred)."""
    if not fetched.deferred:
        return None
    name = REFERENCE_NAMES[fetched.kind].capitalize()
    who = LATER.get(fetched.kind, "a later run")
    if fetched.stats.calls:  # official bars: some calls made, the rest deferred
        return (f"{name}: {fetched.deferred} call{'s' if fetched.deferred != 1 else ''} deferred: no free call in the "
                f"pacing window; {who} fetches the rest")
    return f"{name} deferred: no free call in the pacing window; {who} fetches them"


@dataclass(frozen=True)
class TickerCounts:
    """One ticker's figures, from the per-day figures one Spark job made (only the days the run stores count as
    stored)."""

    bars_landed: int = 0
    outside_range: int = 0
    duplicates: int = 0
    quarantined: int = 0  # bars that broke a bar rule: in stocks_quarantine, not in the table
    rows_written: int = 0
    partitions: int = 0
    kept_back: tuple[dt.date, ...] = ()  # stored days a shrinking answer did not replace

    @classmethod
    def of(cls, figures: Sequence[DayStats], storing: Collection[dt.date], in_range: Collection[dt.date], *,
           kept_back: tuple[dt.date, ...] = ()) -> TickerCounts:
        """A ticker's counts from its per-day figures: the days it stores count as stored; a bar of a day outside
        the run's range counts as outside it."""
        return cls(
            bars_landed=sum(s.landed for s in figures),
            outside_range=sum(s.landed for s in figures if s.trade_date is not None and s.trade_date not in in_range),
            quarantined=sum(s.quarantined for s in figures),
            duplicates=sum(s.duplicates for s in figures if s.trade_date in storing),
            rows_written=sum(s.rows for s in figures if s.trade_date in storing),
            partitions=sum(1 for s in figures if s.trade_date in storing and s.rows),
            kept_back=kept_back,
        )


@dataclass(frozen=True)
class TickerReport:
    ticker: str
    stats: FetchStats
    not_in_plan: tuple[dt.date, ...] = ()
    plan_message: str = ""
    counts: TickerCounts = field(default_factory=TickerCounts)

    @classmethod
    def of(cls, fetched: TickerFetch, counts: TickerCounts | None = None) -> TickerReport:
        return cls(fetched.ticker, fetched.stats, tuple(fetched.not_in_plan), fetched.plan_message,
                   counts or TickerCounts())

    @property
    def status(self) -> Outcome:
        if self.stats.error:
            return Outcome.FAILED
        if self.not_in_plan:
            return Outcome.PARTIAL
        return Outcome.SUCCESS if self.counts.rows_written else Outcome.NO_BARS

    @property
    def skipped(self) -> bool:
        """Not fetched at all: the run stopped before its turn."""
        return (self.stats.error or "").startswith("not fetched:")

    def outcome(self) -> TickerOutcome:
        """The ticker as the run's row in pipeline_runs records it."""
        return TickerOutcome(self.ticker, self.status, days_stored=self.counts.partitions,
                             days_refused=list(self.not_in_plan), calls=self.stats.calls,
                             rate_limited=self.stats.http_429, retries=self.stats.retries,
                             quarantined=self.counts.quarantined, error=self.stats.error)


@dataclass(frozen=True)
class Written:
    """The run's one data commit."""

    version: int | None = None
    files: int = 0


@dataclass(frozen=True)
class References:
    """The reference tables the run refreshed: what of its tickers each holds, and the version it wrote (None when
    the table already matched)."""

    paths: dict[str, str] = field(default_factory=dict)  # stocks_splits, stocks_dividends, ... by kind
    known: dict[str, int] = field(default_factory=dict)  # rows of the run's tickers landed, by kind
    versions: dict[str, int | None] = field(default_factory=dict)


@dataclass(frozen=True)
class FixedReport:
    tickers: list[TickerReport]
    table_path: str
    engine: str
    layout: Layout
    days: list[dt.date]
    seconds: dict[str, float]
    source: str = "sample"
    written: Written = field(default_factory=Written)
    # Why the fetch stopped early (a rejected key, an unreachable API); the tickers fetched before are stored.
    stopped: StopError | None = None
    fetched_references: list[ReferenceFetch] = field(default_factory=list)  # splits, dividends, official bars
    references: References = field(default_factory=References)
    refetched_adjusted: dict[str, int] = field(default_factory=dict)
    checks_path: str = ""
    quarantine_path: str = ""
    checks: CheckSummary = field(default_factory=CheckSummary)
    shrinks: list[Shrink] = field(default_factory=list)  # stored days a refetch would have shrunk
    shrink_allowed: bool = False
    transformed_early: int = 0  # tickers transformed while the fetch went on (EarlyTransform)
    files: list[DayFetch] = field(default_factory=list)  # a flat-file run's days: landed, reused, lacking

    @property
    def started(self) -> bool:
        return self.engine != "not started"

    @property
    def failed(self) -> list[TickerReport]:
        return [t for t in self.tickers if t.status is Outcome.FAILED]

    @property
    def partial(self) -> list[TickerReport]:
        """Tickers stored without some requested days, because the key's plan refused them."""
        return [t for t in self.tickers if t.status is Outcome.PARTIAL]

    @property
    def rows_written(self) -> int:
        return sum(t.counts.rows_written for t in self.tickers)

    @property
    def partitions_written(self) -> int:
        """The (ticker, trade_date) days written with rows."""
        return sum(t.counts.partitions for t in self.tickers)

    def outcomes(self) -> list[TickerOutcome]:
        return [t.outcome() for t in self.tickers]

    # -- the exit-code policy: errors exit 1, what the plan refused exits 0 (1 with --strict) ---------------------
    def errors(self) -> list[str]:
        """Why the run exits 1 though it stored what it could: the fetch stopped (a rejected key, an unreachable
        API), tickers failed (retries exhausted, a past range refused), stored days a refetch would have shrunk,
        reference data not refreshed."""
        errors = []
        if self.shrinks and not self.shrink_allowed:
            days = ", ".join(s.where for s in self.shrinks)
            errors.append(f"refetch would shrink {len(self.shrinks)} stored day(s), kept as stored: {days} (check "
                          "the API's answer; --allow-shrink replaces them)")
        if self.stopped is not None:
            stored = f" (stored {len(self.tickers) - len(self.failed)} ticker(s) fetched before that)" \
                if self.started else ""
            errors.append(f"{self.stopped}{stored}")
        elif self.failed:
            errors.append(f"{len(self.failed)} ticker(s) failed: {', '.join(t.ticker for t in self.failed)}")
        for day in self.files:
            if day.status is DayStatus.MISSING:
                errors.append(f"{day.day}: no flat file ({day.reason}): that day is not stored")
        for fetched in self.fetched_references:
            if fetched.error is not None and not fetched.refused:
                errors.append(f"{REFERENCE_NAMES[fetched.kind]} were not refreshed ({fetched.error}); the bars are "
                              "stored, and the next run asks for them again")
        return errors

    def notes(self) -> list[str]:
        """What the run left to a later one, a line each: reference calls deferred because no slot was free in the
        pacing window. Neither an error nor a warning: the bars are stored and nothing was refused; the run's row in
        pipeline_runs says it as its message when the run has no error or warning to say instead."""
        return [line for fetched in self.fetched_references if (line := deferral_line(fetched)) is not None]

    def warnings(self) -> list[str]:
        """What the key's plan refused (the free tier refuses the current day), named by day: the run is `partial`
        and exits 0 (1 with --strict); everything else asked was stored."""
        found = [f"{day.day}: {day.reason}" for day in self.files if day.status is DayStatus.NOT_PUBLISHED]
        if not self.partial:
            return found
        refused = sorted({day for t in self.partial for day in t.not_in_plan})
        return [*found, f"your plan refused {', '.join(map(str, refused))} for {len(self.partial)} ticker(s) "
                f"({', '.join(t.ticker for t in self.partial)}); the other days are stored (--strict makes this "
                "exit 1)"]


@dataclass(frozen=True)
class BrokenReport:
    table_path: str
    engine: str
    fetched: dict[str, TickerFetch]
    total_rows: int
    rows_per_ticker: dict[str, int]
    schema_tree: str
    sample_rows: str
    partition_dirs_on_disk: int
    live_partitions: int
    files_on_disk: int
    seconds: float


class Laps:
    """Seconds since the previous call (or since creation): one phase of a run per call."""

    def __init__(self) -> None:
        self._last = time.monotonic()

    def __call__(self) -> float:
        now = time.monotonic()
        elapsed, self._last = now - self._last, now
        return elapsed

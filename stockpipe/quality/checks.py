"""Checks over many bars, recorded in `quality_checks`: one row per (run, ticker, trade_date, check), whatever its
status, so "what was wrong with AAPL on 2024-06-13?" is one query and a pass is on record too.

The facts every check reads come from one Spark job over the run's ranked bars (`day_stats`): per (ticker, day) the
bars landed, kept, quarantined and duplicated, and over the regular session's kept bars the minutes present, the
largest one-minute jump against the day's own minute returns (median absolute deviations), zero-volume bars and the
longest run of an unchanged price. Only those per-day figures reach the driver; each check is then a small function
of them, declared in `DAY_CHECKS`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from stockpipe.market_calendar import NEW_YORK, regular_minutes
from stockpipe.quality.rules import valid
from stockpipe.storage import DeltaStorage

Status = Literal["pass", "warn", "fail"]
STATUSES: tuple[Status, ...] = ("pass", "warn", "fail")

# Thresholds, named where they are defined so the table, the README and the code say the same.
COMPLETE_WARN_BELOW = 0.95  # share of the regular session's minutes with a bar
COMPLETE_FAIL_BELOW = 0.50
SPIKE_MADS = 10.0  # a one-minute jump beyond this many times the day's median absolute minute move ...
SPIKE_MIN_JUMP = 0.05  # ... and beyond 5%: flagged, the bar kept (real prints can be extreme)
STALE_MINUTES = 30  # a close unchanged for this many consecutive regular bars (minutes)
SHRINK_BELOW = 0.5  # a refetch answering fewer than half the stored rows of a day is kept back

CHECKS_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("ticker", pa.string()), ("trade_date", pa.date32()), ("check", pa.string()),
    ("status", pa.string()), ("observed", pa.float64()), ("threshold", pa.float64()), ("message", pa.string()),
    ("checked_at", pa.timestamp("us", "UTC")),
])


@dataclass(frozen=True)
class DayStats:
    """What the run's bars say about one (ticker, trade_date). `trade_date` is None for bars whose `t` could not be
    read (they are quarantined; no day is known)."""

    ticker: str
    trade_date: dt.date | None
    landed: int = 0  # every bar landed for the day, valid or not, in any fetch read
    assigned: int = 0  # valid bars of the fetch assigned to the day
    rows: int = 0  # rows stored: one per minute
    quarantined: int = 0
    regular_rows: int = 0
    zero_volume: int = 0
    spikes: int = 0
    max_jump: float | None = None  # the largest flagged one-minute jump (a fraction)
    first_spike_ms: int | None = None
    spike_threshold: float | None = None  # SPIKE_MADS x the day's median absolute minute move
    longest_flat: int = 0  # regular bars in the longest run at one close
    flat_from_ms: int | None = None

    @property
    def duplicates(self) -> int:
        return self.assigned - self.rows


@dataclass(frozen=True)
class CheckResult:
    ticker: str
    trade_date: dt.date | None
    check: str
    status: Status
    observed: float | None
    threshold: float | None
    message: str


@dataclass(frozen=True)
class DayCheck:
    """One check over one (ticker, day): a name and a function of the day's figures."""

    name: str
    evaluate: Callable[[DayStats, dt.date], CheckResult]


def day_stats(ranked: DataFrame, bounds: DataFrame) -> list[DayStats]:
    """One Spark job: the per-day figures of every landed bar of the run (see DayStats). `ranked` is the harvest's
    ranked frame (hash-partitioned by (ticker, trade_date), sorted by minute), `bounds` the regular session of each
    day. Two aggregations per day, joined: the counts over every bar, and the moves over the regular session's kept
    bars alone, where the previous close is the previous row (`lag`) and a run at one close needs two running
    windows in the frame's own order: no shuffle and no sort. The day's typical minute move is its median absolute
    move (percentile_approx), so no window over the whole day is needed: windows over every bar, or over whole
    days, measured slower (docs/measurements.md)."""
    from stockpipe.transforms import with_market_session

    sessioned = with_market_session(ranked, bounds)
    regular = F.col("_kept") & (F.col("market_session") == "regular")
    counts = sessioned.groupBy("ticker", "trade_date").agg(
        F.count(F.lit(1)).alias("landed"),
        _count(F.col("assigned") & valid()).alias("assigned"),
        _count(F.col("_kept")).alias("rows"),
        _count(~valid() & (F.col("assigned") | F.col("trade_date").isNull())).alias("quarantined"),
        _count(regular).alias("regular_rows"),
        _count(regular & (F.col("volume") == 0)).alias("zero_volume"),
    )
    ordered = Window.partitionBy("ticker", "trade_date").orderBy("timestamp_ms")
    through = ordered.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    previous = F.col("_previous")
    staged = (
        sessioned.filter(regular).select("ticker", "trade_date", "timestamp_ms", "close", "high", "low")
        .withColumn("_previous", F.lag("close").over(ordered))  # the previous regular close: one kept bar a minute
        .withColumn("_move", F.abs(F.col("close") / previous - 1))
        # A bad print shows in the high or the low as often as in the close: the jump is the bar's farthest price
        # from the previous close; the day's typical move is judged on close-to-close moves.
        .withColumn("_jump", F.greatest(F.abs(F.col("high") / previous - 1), F.abs(F.col("low") / previous - 1)))
        .withColumn("_changed", previous.isNull() | (F.col("close") != previous))
        # A flat run counts consecutive regular bars at one close (a gap in the minutes is completeness's to flag,
        # not a stale price): the bar's position among the day's regular bars less the position where it began.
        .withColumn("_position", F.row_number().over(ordered))
        .withColumn("_run_from", F.max(F.when(F.col("_changed"), F.col("timestamp_ms"))).over(through))
        .withColumn("_run_start", F.max(F.when(F.col("_changed"), F.col("_position"))).over(through))
        .withColumn("_flat", (F.col("_position") - F.col("_run_start") + 1).cast("int"))
    )
    big = F.col("_jump") > SPIKE_MIN_JUMP
    moves = staged.groupBy("ticker", "trade_date").agg(
        F.percentile_approx("_move", 0.5).alias("_typical"),
        _count(big).alias("_big"),
        F.max("_jump").alias("_largest"),
        F.min(F.when(big, F.col("timestamp_ms"))).alias("_first_big"),
        F.max("_flat").alias("_longest"),
        F.max_by(F.col("_run_from"), F.col("_flat")).alias("flat_from_ms"),
    )
    # A day has spikes when its largest jump is beyond 5% and beyond SPIKE_MADS typical moves; they are the jumps
    # beyond 5% (on a large cap SPIKE_MADS typical moves is well under 5%, so the two agree). A day without a regular
    # bar has no moves: no spike, no flat run.
    threshold = F.greatest(F.lit(SPIKE_MIN_JUMP), F.col("_typical") * SPIKE_MADS)
    spiky = F.col("_largest") > threshold
    result = counts.join(moves, ["ticker", "trade_date"], "left").select(
        "ticker", "trade_date", "landed", "assigned", "rows", "quarantined", "regular_rows", "zero_volume",
        F.when(spiky, F.col("_big")).otherwise(0).cast("long").alias("spikes"),
        F.when(spiky, F.col("_largest")).alias("max_jump"),
        F.when(spiky, F.col("_first_big")).alias("first_spike_ms"),
        (F.col("_typical") * SPIKE_MADS).alias("spike_threshold"),
        F.coalesce(F.col("_longest"), F.lit(0)).alias("longest_flat"), "flat_from_ms",
    ).collect()
    return [DayStats(**row.asDict()) for row in result]


def _count(condition: Column) -> Column:
    return F.sum(F.when(condition, 1).otherwise(0)).cast("long")


# -- the checks --------------------------------------------------------------------------------------------------
def _at(ms: int | None) -> str:
    if ms is None:
        return "?"
    return dt.datetime.fromtimestamp(ms / 1000, NEW_YORK).strftime("%H:%M")


def _result(stats: DayStats, check: str, status: Status, observed: float | None, threshold: float | None,
            message: str) -> CheckResult:
    return CheckResult(stats.ticker, stats.trade_date, check, status, observed, threshold, message)


def completeness(stats: DayStats, day: dt.date) -> CheckResult:
    expected = regular_minutes(day)
    share = stats.regular_rows / expected if expected else 1.0
    status: Status = "fail" if share < COMPLETE_FAIL_BELOW else "warn" if share < COMPLETE_WARN_BELOW else "pass"
    return _result(stats, "completeness", status, share, COMPLETE_WARN_BELOW,
                   f"{stats.regular_rows} of {expected} regular minutes have a bar ({share:.1%})")


def quarantined(stats: DayStats, day: dt.date) -> CheckResult:
    status: Status = "warn" if stats.quarantined else "pass"
    return _result(stats, "quarantined", status, stats.quarantined, 0,
                   f"{stats.quarantined} bar(s) broke a bar rule and went to stocks_quarantine")


def duplicates(stats: DayStats, day: dt.date) -> CheckResult:
    status: Status = "warn" if stats.duplicates else "pass"
    return _result(stats, "duplicates", status, stats.duplicates, 0,
                   f"{stats.duplicates} bar(s) repeated a minute of the answer; the later page's bar is stored")


def price_spike(stats: DayStats, day: dt.date) -> CheckResult:
    threshold = max(stats.spike_threshold or 0.0, SPIKE_MIN_JUMP)
    if not stats.spikes:
        return _result(stats, "price_spike", "pass", 0, threshold,
                       f"no one-minute jump beyond {SPIKE_MADS:g} typical moves and {SPIKE_MIN_JUMP:.0%}")
    return _result(stats, "price_spike", "warn", stats.max_jump, threshold,
                   f"{stats.spikes} one-minute jump(s) beyond {SPIKE_MADS:g} typical moves and {SPIKE_MIN_JUMP:.0%}, "
                   "the first "
                   f"at {_at(stats.first_spike_ms)} New York, largest {stats.max_jump or 0:.1%} (bars kept)")


def zero_volume(stats: DayStats, day: dt.date) -> CheckResult:
    status: Status = "warn" if stats.zero_volume else "pass"
    return _result(stats, "zero_volume", status, stats.zero_volume, 0,
                   f"{stats.zero_volume} regular bar(s) with zero volume")


def stale_price(stats: DayStats, day: dt.date) -> CheckResult:
    status: Status = "warn" if stats.longest_flat >= STALE_MINUTES else "pass"
    where = f" from {_at(stats.flat_from_ms)} New York" if status == "warn" else ""
    return _result(stats, "stale_price", status, stats.longest_flat, STALE_MINUTES,
                   f"longest unchanged close: {stats.longest_flat} consecutive regular bar(s){where}")


def no_bars(stats: DayStats, day: dt.date) -> CheckResult:
    status: Status = "pass" if stats.rows else "fail"
    return _result(stats, "no_bars", status, stats.rows, 1,
                   "no bar at all on a trading day" if not stats.rows else f"{stats.rows} bar(s) stored")


DAY_CHECKS: tuple[DayCheck, ...] = (
    DayCheck("completeness", completeness),
    DayCheck("quarantined", quarantined),
    DayCheck("duplicates", duplicates),
    DayCheck("price_spike", price_spike),
    DayCheck("zero_volume", zero_volume),
    DayCheck("stale_price", stale_price),
    DayCheck("no_bars", no_bars),
)
# Recorded elsewhere: the refetch guard's (stockpipe.quality.guard) and the daily build's against the provider's daily
# bar (stockpipe.daily).
CHECK_NAMES = (*(check.name for check in DAY_CHECKS), "refetch_shrink", "official_close", "official_volume")


def evaluate(stats: Iterable[DayStats], days: dict[str, list[dt.date]],
             checks: Sequence[DayCheck] = DAY_CHECKS) -> list[CheckResult]:
    """Every check for every (ticker, day) the run stores: `days` maps each ticker to its stored days; a day with no
    bar at all has no figures and is checked as empty. Quarantined bars with no readable day are one row per ticker
    (check `quarantined`, trade_date null)."""
    by_day = {(s.ticker, s.trade_date): s for s in stats}
    results: list[CheckResult] = []
    for ticker, wanted in days.items():
        for day in wanted:
            found = by_day.get((ticker, day), DayStats(ticker, day))
            results.extend(check.evaluate(found, day) for check in checks)
        undated = by_day.get((ticker, None))
        if undated is not None and undated.quarantined:
            results.append(_result(undated, "quarantined", "warn", undated.quarantined, 0,
                                   f"{undated.quarantined} bar(s) without a readable time went to stocks_quarantine"))
    return results


@dataclass
class CheckSummary:
    """Counts by status, and the rows that are not a pass, for the end summary."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    problems: list[CheckResult] = field(default_factory=list)

    @classmethod
    def of(cls, results: Iterable[CheckResult]) -> CheckSummary:
        summary = cls()
        for result in results:
            summary.counts[result.status] += 1
            if result.status != "pass":
                summary.problems.append(result)
        return summary


CHECK_KEY = ("run_id", "ticker", "trade_date", "check")


def checks_table(run_id: str, results: Sequence[CheckResult]) -> pa.Table:
    """The rows in CHECKS_SCHEMA."""
    now = dt.datetime.now(dt.UTC)
    table = pa.table({
        "run_id": [run_id] * len(results),
        "ticker": [r.ticker for r in results],
        "trade_date": [r.trade_date for r in results],
        "check": [r.check for r in results],
        "status": [r.status for r in results],
        "observed": [None if r.observed is None else float(r.observed) for r in results],
        "threshold": [None if r.threshold is None else float(r.threshold) for r in results],
        "message": [r.message for r in results],
        "checked_at": [now] * len(results),
    }, schema=CHECKS_SCHEMA)
    return table


def write_checks(storage: DeltaStorage, path: str, run_id: str, results: Sequence[CheckResult]) -> int:
    """Append the run's rows in one commit, as the run log is written (`storage.log_table`: delta-rs where it is
    installed and the path local, a blind append of milliseconds; else the run's engine); the rows recorded."""
    from stockpipe.storage.log_table import log_table

    if results:
        rows = checks_table(run_id, results)
        log_table(path, lambda: storage, CHECK_KEY, user_metadata=storage.user_metadata).append(rows)
    return len(results)

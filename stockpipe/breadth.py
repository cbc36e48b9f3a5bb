"""The whole market's derived daily table and its breadth, from stored tables alone (no API call): the official daily
bars (`stocks_official_daily`, as traded) and `stocks_splits`.

- `stocks_market_daily`, one row per (ticker, trade_date) of the official bars: close and volume as traded, dollar
  volume, the split factor and adjusted close, the gap-aware daily return (the split adjustment and the return are
  the daily table's own definitions, `stockpipe.daily.with_split_factor` / `with_daily_return`, not a copy), and the
  52-week range: the max of the adjusted highs and the min of the adjusted lows over the day and the 251 sessions
  before it (252 trading days), with `new_high` / `new_low` when the day's adjusted high (low) is above (below) every
  one of the 251 sessions before. The 52-week columns are null until the ticker's first stored day lies 251 sessions
  back or more (a ticker listed in March has no 52-week high in June); `new_high` / `new_low` are also null when none
  of those 251 sessions is stored (nothing to beat). Partitioned by trade_date (the market is many tickers a day),
  each day's file sorted by ticker.
- `stocks_market_breadth`, one row per trade_date: tickers with a bar, advancers / decliners / unchanged among those
  with a daily return, new 52-week highs and lows, and how many tickers' history reaches 52 weeks back. Each row
  also keeps `splits_fingerprint`, the splits table's content it was derived with (see below).

The build is incremental. The days to derive are the days the caller names (those market_daily.py just stored) and
the days where the tables disagree: an official day whose row count differs from the market table's (new, or
refetched with more tickers), a market day whose breadth row is missing (a build stopped between its two commits),
a market day the official table no longer holds (removed). A changed day moves the days whose windows hold it: the
next 251 sessions' 52-week columns and the next session's return. So the build rewrites every stored day from the
earliest changed day through 251 sessions after the latest one (further when a ticker's first stored day moved, as
a backfill before it does: whether its history reaches back 52 weeks changes up to 251 sessions after its old first
day), reading the 251 sessions before the earliest as context. A night's new days (a few sessions close together)
get their 52-week range by one aggregate over the year before them instead of the sliding window every other build
uses (the same columns, a quarter of the time over the whole market). It rebuilds everything on a first build, when
asked (`full`), or when the splits changed since the last build: a split reprices every earlier day of its ticker.
A build with nothing to do makes no commit. Breadth is written after the market rows it counts, and it carries the
splits fingerprint: a build stopped between the two commits is finished by the next one (the breadth rows are
missing, or still carry the old fingerprint), never left half-way.
"""

from __future__ import annotations

import bisect
import datetime as dt
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from stockpipe.daily import fingerprint, with_daily_return, with_split_adjusted, with_split_factor
from stockpipe.errors import PipelineError
from stockpipe.market_calendar import Session, sessions_between
from stockpipe.reference.corporate_actions import SPLITS_SCHEMA
from stockpipe.storage import DeltaStorage, ReplacePredicate, RowFilter

log = logging.getLogger(__name__)

YEAR_SESSIONS = 252  # 52 weeks of trading days: the day and the 251 sessions before it
LOOKBACK = YEAR_SESSIONS - 1
# Days to derive at most this many sessions apart take the aggregate route to their 52-week range (a night's new
# days); wider spans the sliding window, whose cost does not grow with the span.
FEW_SESSIONS = 8
# A return this close to zero is unchanged: a close repeated across a split is 1.0 only up to rounding.
UNCHANGED_TOLERANCE = 1e-9
MARKET_PARTITION_COLUMNS = ("trade_date",)
MARKET_SCHEMA = T.StructType([
    T.StructField("ticker", T.StringType(), False),
    T.StructField("trade_date", T.DateType(), False),
    T.StructField("close", T.DoubleType()),
    T.StructField("volume", T.DoubleType()),
    T.StructField("dollar_volume", T.DoubleType()),
    T.StructField("split_factor", T.DoubleType(), False),
    T.StructField("adj_close", T.DoubleType()),
    T.StructField("daily_return", T.DoubleType()),
    T.StructField("high_52w", T.DoubleType()),
    T.StructField("low_52w", T.DoubleType()),
    T.StructField("new_high", T.BooleanType()),
    T.StructField("new_low", T.BooleanType()),
])
BREADTH_SCHEMA = T.StructType([
    T.StructField("trade_date", T.DateType(), False),
    T.StructField("tickers", T.LongType(), False),
    T.StructField("advancers", T.LongType(), False),
    T.StructField("decliners", T.LongType(), False),
    T.StructField("unchanged", T.LongType(), False),
    T.StructField("new_highs", T.LongType(), False),
    T.StructField("new_lows", T.LongType(), False),
    T.StructField("with_52w_history", T.LongType(), False),
    T.StructField("splits_fingerprint", T.LongType(), False),
])


# -- the transforms: DataFrame in, DataFrame out ----------------------------------------------------------------------
def session_calendar(spark: SparkSession, sessions: Sequence[Session]) -> DataFrame:
    """(trade_date, session_index, previous_session) of the given exchange sessions: dates only, so the session
    time zone cannot move them."""
    table = pd.DataFrame({
        "trade_date": [s.day for s in sessions],
        "session_index": [s.index for s in sessions],
        "previous_session": [s.previous for s in sessions],
    })
    return spark.createDataFrame(table, "trade_date date, session_index int, previous_session date")


def first_sessions(official: DataFrame, calendar: DataFrame) -> DataFrame:
    """(ticker, first_session): the session index of each ticker's first stored day (over every row given: pass the
    whole table, not a window of it). A first day the calendar does not list has none: no 52-week history."""
    sessions = F.broadcast(calendar.select(F.col("trade_date").alias("_first_day"),
                                           F.col("session_index").alias("first_session")))
    return (official.groupBy("ticker").agg(F.min("trade_date").alias("_first_day"))
            .join(sessions, "_first_day", "left").select("ticker", "first_session"))


def with_prior_extremes(days: DataFrame) -> DataFrame:
    """Adds _prior_high / _prior_low: the max of adj_high / min of adj_low over the ticker's rows of the 251 sessions
    before the day (by `session_index`: weekends and holidays are not days, a missing day is simply absent), for every
    row, with a sliding window (each row reads its 251 predecessors)."""
    before = Window.partitionBy("ticker").orderBy("session_index").rangeBetween(-LOOKBACK, -1)
    return (days.withColumn("_prior_high", F.max("adj_high").over(before))
            .withColumn("_prior_low", F.min("adj_low").over(before)))


def prior_extremes_of(days: DataFrame, targets: Sequence[int]) -> DataFrame:
    """(ticker, session_index, _prior_high, _prior_low) of the rows of a few target sessions close together: the same
    values as `with_prior_extremes`, by aggregation instead of a sliding window. The sessions every target's window
    holds are aggregated once per ticker; the few at the windows' edges, once per target. A night's new day costs one
    aggregate over the year before it (a quarter of the window's time over the whole market)."""
    low, high = min(targets), max(targets)
    index = F.col("session_index")
    shared = days.filter(index.between(high - LOOKBACK, low - 1)).groupBy("ticker").agg(
        F.max("adj_high").alias("_shared_high"), F.min("adj_low").alias("_shared_low"))
    wanted = days.sparkSession.createDataFrame(pd.DataFrame({"_target": sorted(set(targets))}), "_target int")
    edges = days.filter(index.between(low - LOOKBACK, high - 1) & ~index.between(high - LOOKBACK, low - 1))
    in_window = (index >= F.col("_target") - LOOKBACK) & (index < F.col("_target"))
    edge = (edges.join(F.broadcast(wanted), in_window).groupBy("ticker", F.col("_target").alias("session_index"))
            .agg(F.max("adj_high").alias("_edge_high"), F.min("adj_low").alias("_edge_low")))
    return (days.filter(index.isin(*targets)).select("ticker", "session_index")
            .join(shared, "ticker", "left").join(edge, ["ticker", "session_index"], "left")
            .select("ticker", "session_index", F.greatest("_shared_high", "_edge_high").alias("_prior_high"),
                    F.least("_shared_low", "_edge_low").alias("_prior_low")))


def with_52_week_range(days: DataFrame) -> DataFrame:
    """Adds high_52w / low_52w (the max of adj_high / min of adj_low over the day and the 251 sessions before it) and
    new_high / new_low (the day's adj_high above every adj_high of the 251 sessions before; adj_low below every one)
    to rows with _prior_high / _prior_low. Null unless the ticker's first stored day (`first_session`) is 251 sessions
    back or more; new_high / new_low also null when none of the 251 sessions before is stored (nothing to beat)."""
    reaches = F.col("session_index") - F.col("first_session") >= LOOKBACK
    return (days.withColumn("high_52w", F.when(reaches, F.greatest("_prior_high", "adj_high")))
            .withColumn("low_52w", F.when(reaches, F.least("_prior_low", "adj_low")))
            .withColumn("new_high", F.when(reaches, F.col("adj_high") > F.col("_prior_high")))
            .withColumn("new_low", F.when(reaches, F.col("adj_low") < F.col("_prior_low")))
            .drop("_prior_high", "_prior_low"))


def market_days(official: DataFrame, splits: DataFrame, calendar: DataFrame, firsts: DataFrame, *,
                only: Sequence[int] | None = None) -> DataFrame:
    """stocks_market_daily's columns for the official rows given, or, with `only`, for those of these sessions
    (give the 251 sessions before them as well: their windows' context). `calendar` from `session_calendar`,
    `firsts` from `first_sessions` over the whole official table. A few sessions close together (a night's new
    days) take the aggregate route, `prior_extremes_of`; the rest the sliding window: the same columns either way."""
    sessions = F.broadcast(calendar.select("trade_date", "session_index"))
    adjusted = (
        official.select("ticker", "trade_date", "high", "low", "close", "volume")
        .transform(with_split_factor, splits)
        .transform(with_split_adjusted, ("high", "low", "close"), ())
        .join(sessions, "trade_date", "left")
    )
    if only is not None and only and max(only) - min(only) < FEW_SESSIONS:
        # The return needs the session before each day, the 52-week range the year before: read apart.
        near = adjusted.filter(F.col("session_index").between(min(only) - 1, max(only)))
        days = (near.transform(with_daily_return, calendar).filter(F.col("session_index").isin(*only))
                .join(prior_extremes_of(adjusted, only), ["ticker", "session_index"], "left"))
    else:
        days = adjusted.transform(with_daily_return, calendar).transform(with_prior_extremes)
        if only is not None:
            days = days.filter(F.col("session_index").isin(*only))
    rows = (days.join(F.broadcast(firsts), "ticker", "left").transform(with_52_week_range)
            .withColumn("dollar_volume", F.col("close") * F.col("volume")))
    return rows.select(*[F.col(f.name).cast(f.dataType) for f in MARKET_SCHEMA.fields])


def market_breadth(market: DataFrame) -> DataFrame:
    """One row per trade_date of market rows: tickers with a bar; advancers, decliners and unchanged among those
    with a daily return; new 52-week highs and lows; tickers whose history reaches 52 weeks back (high_52w set)."""
    ret = F.col("daily_return")

    def counted(condition: Any) -> Any:
        return F.count(F.when(condition, F.lit(1))).cast("long")

    return market.groupBy("trade_date").agg(
        F.count(F.lit(1)).cast("long").alias("tickers"),
        counted(ret > UNCHANGED_TOLERANCE).alias("advancers"),
        counted(ret < -UNCHANGED_TOLERANCE).alias("decliners"),
        counted(F.abs(ret) <= UNCHANGED_TOLERANCE).alias("unchanged"),
        counted(F.col("new_high")).alias("new_highs"),
        counted(F.col("new_low")).alias("new_lows"),
        counted(F.col("high_52w").isNotNull()).alias("with_52w_history"),
    )


def splits_fingerprint(splits: DataFrame) -> int:
    """One number for what the derivation reads of the splits table (ticker, execution_date, split_from, split_to),
    computed in Spark with one small aggregate: the row count and the sum of each row's xxhash64 as a decimal (no
    overflow, ANSI or not; a duplicate row counts; row order and the split's id do not matter)."""
    row_hash = F.xxhash64("ticker", "execution_date", "split_from", "split_to").cast("decimal(38,0)")
    found = splits.agg(F.count(F.lit(1)).alias("rows"), F.sum(row_hash).alias("hashes")).collect()[0]
    return fingerprint(["splits", found["rows"], found["hashes"]])


# -- the incremental build ------------------------------------------------------------------------------------------
@dataclass
class MarketReport:
    market_path: str
    breadth_path: str
    engine: str
    days: int  # trading days in the market table after the build
    rows: int  # its rows: one per (ticker, day) of the official table
    first_day: dt.date | None
    last_day: dt.date | None
    rewritten_days: int  # days this build derived and wrote (every day on a full build)
    rewritten_rows: int
    removed_days: int  # days gone from the official table, removed here too
    full: bool
    why_full: str | None  # "first build", "asked", "splits changed", "older table"; None when incremental
    market_version: int | None  # None: nothing to do, no commit
    breadth_version: int | None
    splits_fingerprint: int
    latest: dict[str, Any] | None  # the last day's breadth row, for the door to print
    seconds: float


@dataclass(frozen=True)
class Plan:
    """What a build writes: the days to derive (`rewrite`), the days to delete, the days to read (`read`: the
    rewritten ones and the 251 sessions before them), and why every day is derived when it is."""

    rewrite: tuple[dt.date, ...]
    removed: tuple[dt.date, ...] = ()
    read: tuple[dt.date, ...] = ()
    why_full: str | None = None

    @property
    def full(self) -> bool:
        return self.why_full is not None


def _counts(storage: DeltaStorage, path: str) -> dict[dt.date, int]:
    """Rows per trade_date (a small Arrow result: one row a day)."""
    table = storage.count_by(path, ["trade_date"])
    return dict(zip(table.column("trade_date").to_pylist(), table.column("rows").to_pylist(), strict=True))


class _Sessions:
    """Trading-day order over the exchange calendar: a day's index, and any date's place among sessions."""

    def __init__(self, sessions: Sequence[Session]) -> None:
        self.days = [s.day for s in sessions]
        self.index = {s.day: s.index for s in sessions}
        self.base = sessions[0].index if sessions else 0

    def position(self, day: dt.date) -> int:
        """The index of the last session on or before `day` (a day off sits with the session before it)."""
        return self.base + bisect.bisect_right(self.days, day) - 1


def _first_day_moves(storage: DeltaStorage, official: DataFrame, market_path: str) -> dt.date | None:
    """The latest of the stored first days of the tickers whose first day differs between the official table and
    the market table (a backfill before it, or a first day removed): their 52-week history's reach changes up to 251
    sessions after it. None when no ticker's first day moved."""
    stored = storage.read(market_path).groupBy("ticker").agg(F.min("trade_date").alias("_stored_first"))
    now = official.groupBy("ticker").agg(F.min("trade_date").alias("_first"))
    found = (now.join(stored, "ticker").filter(F.col("_first") != F.col("_stored_first"))
             .agg(F.max(F.greatest("_first", "_stored_first")).alias("latest")).collect()[0]["latest"])
    return found if isinstance(found, dt.date) else None


def plan_build(storage: DeltaStorage, official: DataFrame, official_days: dict[dt.date, int], market_path: str,
               breadth_path: str, sessions: _Sessions, fingerprint_now: int,
               changed_days: Iterable[dt.date] | None, full: bool) -> Plan:
    """Which days this build derives (see the module's docstring for the rule)."""
    every = tuple(sorted(official_days))
    wanted_market = [f.name for f in MARKET_SCHEMA.fields]
    wanted_breadth = [f.name for f in BREADTH_SCHEMA.fields]
    if full:
        return Plan(every, read=every, why_full="asked")
    if not (storage.is_delta(market_path) and storage.is_delta(breadth_path)):
        return Plan(every, read=every, why_full="first build")
    if (storage.read(market_path).columns != wanted_market
            or storage.read(breadth_path).columns != wanted_breadth):
        return Plan(every, read=every, why_full="older table")
    breadth = storage.read_arrow(breadth_path, columns=["trade_date", "splits_fingerprint"])
    if set(breadth.column("splits_fingerprint").to_pylist()) - {fingerprint_now}:
        return Plan(every, read=every, why_full="splits changed")
    market_days_now = _counts(storage, market_path)
    breadth_days = set(breadth.column("trade_date").to_pylist())
    changed = {d for d in (changed_days or ()) if d in official_days}
    changed |= {d for d, rows in official_days.items() if market_days_now.get(d) != rows}
    changed |= {d for d in market_days_now if d in official_days and d not in breadth_days}
    removed = {d for d in market_days_now if d not in official_days}
    touched = changed | removed
    if not touched:
        return Plan(())
    low, high = sessions.position(min(touched)), sessions.position(max(touched)) + LOOKBACK
    if market_days_now and min(touched) <= max(market_days_now):
        # Not only days after the table's end: a ticker's first stored day may have moved.
        moved = _first_day_moves(storage, official, market_path)
        if moved is not None:
            high = max(high, sessions.position(moved) + LOOKBACK - 1)
    rewrite = tuple(d for d in every if d >= min(touched) and sessions.position(d) <= high)
    read = tuple(d for d in every if sessions.position(d) >= low - LOOKBACK and d <= (rewrite or every)[-1])
    return Plan(rewrite, tuple(sorted(removed)), read)


def _read_splits(storage: DeltaStorage, path: str) -> DataFrame:
    if storage.is_delta(path):
        return storage.read(path)
    log.warning("no splits table at %s: taken as empty (prices stay as traded)", path)
    from pyspark.sql.pandas.types import from_arrow_schema

    return storage.spark.createDataFrame([], from_arrow_schema(SPLITS_SCHEMA))


def build_market(storage: DeltaStorage, official_path: str, splits_path: str, market_path: str, breadth_path: str,
                 *, changed_days: Iterable[dt.date] | None = None, full: bool = False) -> MarketReport:
    """Bring stocks_market_daily and stocks_market_breadth up to date with the official daily bars and the splits (no
    API call), in at most one commit each (market rows first, then the breadth that counts them). `changed_days`:
    days whose official rows changed (those the caller just stored); days where the tables disagree are found
    whatever it says, so None works it out alone. `full`: derive every day again."""
    started = time.monotonic()
    spark = storage.spark
    if not storage.is_delta(official_path):
        raise PipelineError(f"{official_path} is not a Delta table: run market_daily.py first")
    splits = _read_splits(storage, splits_path)
    fingerprint_now = splits_fingerprint(splits)
    official_days = _counts(storage, official_path)
    official = storage.read(official_path)
    every = sorted(official_days)
    sessions = sessions_between(every[0], every[-1]) if every else []
    order = _Sessions(sessions)
    plan = plan_build(storage, official, official_days, market_path, breadth_path, order, fingerprint_now,
                      changed_days, full)
    log.debug("market build of %s: %d day(s) to derive, %d to remove, %d read%s", market_path, len(plan.rewrite),
              len(plan.removed), len(plan.read), f" (every day: {plan.why_full})" if plan.full else "")
    market_version = breadth_version = None
    if plan.rewrite or plan.removed:
        calendar = session_calendar(spark, sessions)
        if plan.full:
            rows = market_days(official, splits, calendar, first_sessions(official, calendar))
        elif plan.rewrite:
            # The days to rewrite and the 251 sessions before them (their windows' context), kept to the first.
            source = storage.read(official_path, RowFilter.of(trade_date=plan.read))
            targets = [order.index[d] for d in plan.rewrite if d in order.index]
            rows = market_days(source, splits, calendar, first_sessions(official, calendar),
                               only=targets if len(targets) == len(plan.rewrite) else None)
            rows = rows.filter(F.col("trade_date").isin(*plan.rewrite))
        else:  # only days to remove
            rows = spark.createDataFrame([], MARKET_SCHEMA)
        replace = None if plan.full else ReplacePredicate.of(trade_date=plan.rewrite + plan.removed)
        market_version = storage.write(rows, market_path, mode="overwrite", partition_by=MARKET_PARTITION_COLUMNS,
                                       sort_by=["ticker"], replace=replace)
        if plan.full:
            written = storage.read(market_path)
        elif plan.rewrite:
            written = storage.read(market_path, RowFilter.of(trade_date=plan.rewrite))
        else:
            written = rows
        breadth = market_breadth(written).withColumn("splits_fingerprint", F.lit(fingerprint_now).cast("long"))
        breadth = breadth.select(*[F.col(f.name).cast(f.dataType) for f in BREADTH_SCHEMA.fields])
        if plan.full:
            breadth_version = storage.write(breadth, breadth_path, mode="overwrite", overwrite_schema=True)
        else:
            breadth_version = storage.write(breadth, breadth_path, mode="overwrite", replace=replace)
    latest = None
    if every and storage.is_delta(breadth_path):
        found = storage.read_arrow(breadth_path, RowFilter.of(trade_date=[every[-1]])).to_pylist()
        latest = found[0] if found else None
    return MarketReport(
        market_path, breadth_path, storage.name, len(every), sum(official_days.values()),
        every[0] if every else None, every[-1] if every else None, len(plan.rewrite),
        sum(official_days[d] for d in plan.rewrite), len(plan.removed), plan.full, plan.why_full, market_version,
        breadth_version, fingerprint_now, latest, time.monotonic() - started)

"""The daily table: one row per (ticker, trade_date), derived from stored tables alone (no API call): the minute table
as traded, `stocks_splits`, `stocks_dividends` and the provider's official daily bars.

- As traded: the regular session's open, high, low, close, volume and VWAP, from the 09:30 bar through the bar
  stamped at the exchange calendar's close (16:00, or 13:00 on an early close) inclusive: the closing auction prints
  in that bar, so the close is the closing print, as the provider's own daily close is. Pre- and post-market volume
  beside them. Sessions come from each bar's time and the calendar, not from the label stored with older rows.
- Split-adjusted: adj_open ... adj_volume divide by every split executed after the day (volume multiplied).
- Returns: `daily_return` (price) and `total_return` ((close + dividend) / previous close - 1, split-adjusted) are
  null when the ticker's previous trading day by the exchange calendar is not stored: a return across a gap is not
  daily. `dividend` is the cash going ex that day (0 when none), as declared.
- Indicators over trading-day order, gaps honoured (null unless every day of the window is stored): `sma_20`,
  `sma_50` of adj_close, `volatility_20` (annualised standard deviation of 20 consecutive daily log returns).
- `official_*`: the provider's daily bar of the day, when one was fetched; checked against the minutes into
  quality_checks (`official_close`: fail beyond a cent; `official_volume`: warn when the minutes hold under 90%).

The build is incremental: it rewrites only the rows whose inputs changed since the last build (a minute partition
rewritten, an official bar changed, every row of a ticker whose splits or dividends changed) plus the next 50
trading days their windows reach; a build with nothing new writes nothing. Each row keeps the fingerprints it was
built from (`source_fingerprint`: the minute partition's files; `actions_fingerprint`: the ticker's corporate actions).
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession, Window, WindowSpec
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import from_arrow_schema

from stockpipe.config import DIVIDENDS_TABLE, OFFICIAL_TABLE
from stockpipe.errors import PipelineError
from stockpipe.market_calendar import sessions_between
from stockpipe.paths import beside
from stockpipe.quality.checks import CheckResult, CheckSummary, Status, write_checks
from stockpipe.reference.corporate_actions import DIVIDENDS_SCHEMA, SPLITS_SCHEMA
from stockpipe.reference.official_bars import OFFICIAL_SCHEMA
from stockpipe.storage import AnyOf, DeltaStorage, Replacement, ReplacePredicate, RowFilter

log = logging.getLogger(__name__)

DAILY_TABLE = "stocks_daily"
WINDOW_DAYS = 50  # the longest look-back of a column (sma_50): a changed day reaches this many trading days on
TRADING_DAYS_A_YEAR = 252
OFFICIAL_CLOSE_TOLERANCE = 0.01  # dollars: the closing print against the provider's close
OFFICIAL_VOLUME_SHARE = 0.90  # the minutes hold less than this share of the official volume: warn
DAILY_SCHEMA = T.StructType([
    T.StructField("ticker", T.StringType(), False),
    T.StructField("trade_date", T.DateType(), False),
    T.StructField("open", T.DoubleType()),
    T.StructField("high", T.DoubleType()),
    T.StructField("low", T.DoubleType()),
    T.StructField("close", T.DoubleType()),
    T.StructField("volume", T.DoubleType()),
    T.StructField("vwap", T.DoubleType()),
    T.StructField("pre_market_volume", T.DoubleType(), False),
    T.StructField("post_market_volume", T.DoubleType(), False),
    T.StructField("bar_count", T.LongType(), False),
    T.StructField("split_factor", T.DoubleType(), False),
    T.StructField("adj_open", T.DoubleType()),
    T.StructField("adj_high", T.DoubleType()),
    T.StructField("adj_low", T.DoubleType()),
    T.StructField("adj_close", T.DoubleType()),
    T.StructField("adj_volume", T.DoubleType()),
    T.StructField("dividend", T.DoubleType(), False),
    T.StructField("daily_return", T.DoubleType()),
    T.StructField("total_return", T.DoubleType()),
    T.StructField("sma_20", T.DoubleType()),
    T.StructField("sma_50", T.DoubleType()),
    T.StructField("volatility_20", T.DoubleType()),
    T.StructField("official_open", T.DoubleType()),
    T.StructField("official_high", T.DoubleType()),
    T.StructField("official_low", T.DoubleType()),
    T.StructField("official_close", T.DoubleType()),
    T.StructField("official_volume", T.DoubleType()),
    T.StructField("source_fingerprint", T.LongType()),
    T.StructField("actions_fingerprint", T.LongType()),
])
OFFICIAL_COLUMNS = ("official_open", "official_high", "official_low", "official_close", "official_volume")


def calendar_frame(spark: SparkSession, first: dt.date, last: dt.date) -> DataFrame:
    """Every exchange session from WINDOW_DAYS sessions before `first` through `last`: its index (trading-day
    order), the session before it, and its regular session's bounds (the close stamp is the closing print's bar)."""
    sessions = sessions_between(first - dt.timedelta(days=WINDOW_DAYS * 2), last)
    table = pd.DataFrame({
        "trade_date": [s.day for s in sessions],
        "session_index": [s.index for s in sessions],
        "previous_session": [s.previous for s in sessions],
        "regular_open": pd.to_datetime([s.open for s in sessions], utc=True),
        "regular_close": pd.to_datetime([s.close for s in sessions], utc=True),
    })
    schema = ("trade_date date, session_index int, previous_session date, regular_open timestamp, "
              "regular_close timestamp")
    return spark.createDataFrame(table, schema)


def _in(session: str, value: str | Column) -> Column:
    column = F.col(value) if isinstance(value, str) else value
    return F.when(F.col("_session") == session, column)


def session_summary(minute: DataFrame, calendar: DataFrame) -> DataFrame:
    """As traded, per (ticker, trade_date): the regular session's OHLC, volume and VWAP (over the bars that carry
    `vwap`), the extended sessions' volumes, and every bar counted. The regular session runs from the open through
    the bar stamped at the close, inclusive; a day without a regular bar keeps its row, with nulls."""
    bounds = F.broadcast(calendar.select("trade_date", "regular_open", "regular_close"))
    timed = minute.join(bounds, "trade_date", "left").withColumn(
        "_session",
        F.when(F.col("trade_ts") < F.col("regular_open"), F.lit("pre"))
        .when(F.col("trade_ts") <= F.col("regular_close"), F.lit("regular"))
        .otherwise(F.lit("post")),
    )
    with_vw = (F.col("_session") == "regular") & F.col("vwap").isNotNull()
    return timed.groupBy("ticker", "trade_date").agg(
        F.min(_in("regular", F.struct("trade_ts", "open")))["open"].alias("open"),
        F.max(_in("regular", "high")).alias("high"),
        F.min(_in("regular", "low")).alias("low"),
        F.max(_in("regular", F.struct("trade_ts", "close")))["close"].alias("close"),
        F.sum(_in("regular", "volume")).alias("volume"),
        (F.sum(F.when(with_vw, F.col("vwap") * F.col("volume"))) / F.sum(F.when(with_vw, F.col("volume"))))
        .alias("vwap"),
        F.coalesce(F.sum(_in("pre", "volume")), F.lit(0.0)).alias("pre_market_volume"),
        F.coalesce(F.sum(_in("post", "volume")), F.lit(0.0)).alias("post_market_volume"),
        F.count(F.lit(1)).alias("bar_count"),
    )


PRICE_COLUMNS = ("open", "high", "low", "close")


def split_periods(splits: DataFrame) -> DataFrame:
    """(_split_ticker, _from, _until, _factor): each split closes a period of the ticker's days, [_from, _until): from
    the split before it (null: from the first day) up to the day before it executes. A day of the period is
    adjusted by this split and every later one. Days on or after the ticker's last split are in no period (factor 1).
    Small (one row a split), so joined by broadcast: a market of days pays no shuffle for it."""
    by_date = Window.partitionBy("ticker").orderBy("execution_date")
    this_and_later = by_date.rowsBetween(Window.currentRow, Window.unboundedFollowing)
    # Multiplied in order (execution dates ascending), not through exp(sum(log)), so 20 stays exactly 20.
    product = F.aggregate(F.collect_list("_ratio").over(this_and_later), F.lit(1.0), lambda acc, ratio: acc * ratio)
    return (
        splits.select("ticker", "execution_date", (F.col("split_to") / F.col("split_from")).alias("_ratio"))
        .select(F.col("ticker").alias("_split_ticker"), F.lag("execution_date").over(by_date).alias("_from"),
                F.col("execution_date").alias("_until"), product.alias("_factor"))
    )


def with_split_factor(days: DataFrame, splits: DataFrame) -> DataFrame:
    """Adds `split_factor` to (ticker, trade_date) rows: the product of split_to / split_from over the ticker's splits
    executed after the day; 1.0 where none was. The one definition of the split adjustment: the daily table and the
    market's table both take it from here. Each row keeps its place: no aggregation, one row out per row in."""
    periods = F.broadcast(split_periods(splits))
    in_period = ((days["ticker"] == periods["_split_ticker"]) & (days["trade_date"] < periods["_until"])
                 & (periods["_from"].isNull() | (days["trade_date"] >= periods["_from"])))
    return days.join(periods, in_period, "left").select(
        *[days[c] for c in days.columns], F.coalesce(periods["_factor"], F.lit(1.0)).alias("split_factor"))


def with_split_adjusted(days: DataFrame, prices: Sequence[str] = PRICE_COLUMNS,
                        volumes: Sequence[str] = ("volume",)) -> DataFrame:
    """Adds `adj_<price>` (the price divided by `split_factor`) and `adj_<volume>` (multiplied by it): the day in
    today's shares."""
    return days.select("*", *[(F.col(c) / F.col("split_factor")).alias(f"adj_{c}") for c in prices],
                       *[(F.col(c) * F.col("split_factor")).alias(f"adj_{c}") for c in volumes])


def with_daily_return(days: DataFrame, calendar: DataFrame) -> DataFrame:
    """Adds `previous_adj_close` and `daily_return` (adj_close / previous_adj_close - 1) to rows with `adj_close`.
    Gap-aware: the ticker's previous stored day counts only when it is the exchange's previous session
    (`calendar`: trade_date, previous_session), so a return across a day the table does not hold is null, not
    several days' move; a day the calendar does not list has no previous session, so no return. The one definition
    of a daily return: the daily table and the market's table both take it from here."""
    sessions = F.broadcast(calendar.select("trade_date", F.col("previous_session").alias("_previous_session")))
    by_date = Window.partitionBy("ticker").orderBy("trade_date")
    previous_close = F.when(F.lag("trade_date").over(by_date) == F.col("_previous_session"),
                            F.lag("adj_close").over(by_date))
    return (days.join(sessions, "trade_date", "left")
            .withColumn("previous_adj_close", previous_close)
            .withColumn("daily_return", F.col("adj_close") / F.col("previous_adj_close") - 1)
            .select(*days.columns, "previous_adj_close", "daily_return"))


def dividends_by_day(dividends: DataFrame) -> DataFrame:
    """(ticker, trade_date, dividend): the cash going ex that day (a regular and a special one add up)."""
    return (dividends.groupBy("ticker", F.col("ex_dividend_date").alias("trade_date"))
            .agg(F.sum("cash_amount").alias("dividend")))


def daily_bars(minute: DataFrame, splits: DataFrame, dividends: DataFrame, official: DataFrame,
               calendar: DataFrame) -> DataFrame:
    """The daily table's columns from the stored tables (fingerprints left null: the build fills them)."""
    summary = session_summary(minute, calendar)
    sessions = F.broadcast(calendar.select("trade_date", "session_index"))
    official_days = official.select("ticker", "trade_date", *[F.col(c.removeprefix("official_")).alias(c)
                                                               for c in OFFICIAL_COLUMNS])
    days = (
        summary.transform(with_split_factor, splits)
        .join(sessions, "trade_date", "left")
        .join(dividends_by_day(dividends), ["ticker", "trade_date"], "left")
        .join(official_days, ["ticker", "trade_date"], "left")
        .withColumn("dividend", F.coalesce("dividend", F.lit(0.0)))
        .transform(with_split_adjusted)
        .transform(with_daily_return, calendar)
    )
    returns = (
        days.withColumn("total_return", (F.col("adj_close") + F.col("dividend") / F.col("split_factor"))
                        / F.col("previous_adj_close") - 1)
        .withColumn("_log_return", F.log(F.col("adj_close") / F.col("previous_adj_close")))
    )

    def trailing(days_back: int) -> WindowSpec:
        return Window.partitionBy("ticker").orderBy("session_index").rangeBetween(-(days_back - 1), 0)

    def full(column: str, days_back: int, value: Column) -> Column:
        """The window's value only when every trading day of it holds one."""
        return F.when(F.count(column).over(trailing(days_back)) == days_back, value)

    indicators = (
        returns.withColumn("sma_20", full("adj_close", 20, F.avg("adj_close").over(trailing(20))))
        .withColumn("sma_50", full("adj_close", 50, F.avg("adj_close").over(trailing(50))))
        .withColumn("volatility_20", full("_log_return", 20, F.stddev_samp("_log_return").over(trailing(20))
                                          * math.sqrt(TRADING_DAYS_A_YEAR)))
        .withColumn("source_fingerprint", F.lit(None).cast("long"))
        .withColumn("actions_fingerprint", F.lit(None).cast("long"))
    )
    return indicators.select(*[F.col(f.name).cast(f.dataType) for f in DAILY_SCHEMA.fields])


# -- the incremental build -----------------------------------------------------------------------------------------
def fingerprint(parts: Iterable[Any]) -> int:
    """A stable signed 64-bit fingerprint of some values' text (the same in every process, unlike hash())."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass
class DailyReport:
    path: str
    engine: str
    rows: int
    tickers: int
    first_day: dt.date | None
    last_day: dt.date | None
    splits_known: int
    dividends_known: int
    version: int | None  # None: nothing had changed, no commit
    latest: list[dict[str, Any]]  # each ticker's last stored day, for the door to print
    seconds: float
    rewritten: int = 0  # rows this build wrote (all of them on a full build)
    removed: int = 0  # days gone from the minute table, removed here too
    full: bool = False
    checks: CheckSummary = field(default_factory=CheckSummary)


@dataclass(frozen=True)
class Inputs:
    """What the daily table is derived from, as the build sees it now."""

    sources: dict[tuple[str, dt.date], int]  # (ticker, day) -> fingerprint of its minute partition's files
    actions: dict[str, int]  # ticker -> fingerprint of its splits and dividends
    official: dict[tuple[str, dt.date], tuple[Any, ...]]


def _read_or_empty(storage: DeltaStorage, path: str, schema: str | pa.Schema, what: str) -> DataFrame:
    if storage.is_delta(path):
        return storage.read(path)
    log.warning("no %s table at %s: taken as empty (the fixed harvester fills it)", what, path)
    return storage.spark.createDataFrame([], schema if isinstance(schema, str) else from_arrow_schema(schema))


def current_inputs(storage: DeltaStorage, minute_path: str, splits: DataFrame, dividends: DataFrame,
                   official: DataFrame) -> Inputs:
    """Fingerprints of the inputs: each minute partition by its live files (a rewrite writes new ones; a by-date
    table's day by that day's files; any other layout gets its version instead, so any change rebuilds it), each
    ticker's corporate actions by their rows, and the official bars' values."""
    detail = storage.detail(minute_path)
    by_day: dict[tuple[str, dt.date], list[str]] = {}
    if detail.partition_columns == ["ticker", "trade_date"]:
        for info in detail.files:
            key = (info.partition["ticker"], dt.date.fromisoformat(info.partition["trade_date"]))
            by_day.setdefault(key, []).append(info.path.rsplit("/", 1)[-1])
        sources = {key: fingerprint(sorted(names)) for key, names in by_day.items()}
    elif detail.partition_columns == ["trade_date"]:
        # By date (the whole market): a day's files stand for each ticker of that day; a rewritten day (a file
        # landed again) rebuilds that day's rows and no other.
        files_of: dict[dt.date, list[str]] = {}
        for info in detail.files:
            files_of.setdefault(dt.date.fromisoformat(info.partition["trade_date"]), []).append(
                info.path.rsplit("/", 1)[-1])
        days = storage.read(minute_path).select("ticker", "trade_date").distinct().collect()
        sources = {(r.ticker, r.trade_date): fingerprint(sorted(files_of.get(r.trade_date, []))) for r in days}
    else:
        days = storage.read(minute_path).select("ticker", "trade_date").distinct().collect()
        sources = {(r.ticker, r.trade_date): fingerprint([detail.version]) for r in days}
    actions_rows: dict[str, list[str]] = {}
    for frame in (splits, dividends):
        for row in frame.collect():
            actions_rows.setdefault(row["ticker"], []).append(repr(tuple(row)))
    actions = {ticker: fingerprint(sorted(rows)) for ticker, rows in actions_rows.items()}
    official_values = {(r.ticker, r.trade_date): (r.open, r.high, r.low, r.close, r.volume)
                       for r in official.collect()}
    return Inputs(sources, actions, official_values)


def days_to_rewrite(inputs: Inputs, stored: list[Any], sessions: Mapping[dt.date, int]
                    ) -> tuple[dict[str, set[dt.date]], dict[str, set[dt.date]]]:
    """(ticker -> days to rewrite, ticker -> days to remove): days whose inputs changed since they were built, and
    the trading days their windows reach; days stored in the daily table that the minute table no longer has."""
    built = {(r.ticker, r.trade_date): r for r in stored}
    changed: dict[str, set[dt.date]] = {}
    for (ticker, day), source in inputs.sources.items():
        row = built.get((ticker, day))
        actions = inputs.actions.get(ticker, fingerprint([]))
        official = inputs.official.get((ticker, day), (None,) * len(OFFICIAL_COLUMNS))
        if (row is None or row.source_fingerprint != source or row.actions_fingerprint != actions
                or tuple(getattr(row, c) for c in OFFICIAL_COLUMNS) != official):
            changed.setdefault(ticker, set()).add(day)
    removed: dict[str, set[dt.date]] = {}
    for ticker, day in built:
        if (ticker, day) not in inputs.sources:
            removed.setdefault(ticker, set()).add(day)
            changed.setdefault(ticker, set())
    rewrite: dict[str, set[dt.date]] = {}
    by_ticker: dict[str, list[dt.date]] = {}
    for ticker, day in inputs.sources:
        by_ticker.setdefault(ticker, []).append(day)
    for ticker, days in changed.items():
        # A changed or removed day moves the windows of the next WINDOW_DAYS trading days: they are rewritten too.
        starts = sorted(sessions[d] for d in days | removed.get(ticker, set()) if d in sessions)
        if not starts:
            continue
        reach = set(days)
        for day in by_ticker.get(ticker, []):
            index = sessions.get(day)
            # the latest start at or before this day, found by bisection: within reach of it, or of none
            at = bisect.bisect_right(starts, index) - 1 if index is not None else -1
            if at >= 0 and index is not None and index - starts[at] <= WINDOW_DAYS:
                reach.add(day)
        rewrite[ticker] = reach
    return rewrite, removed


def replacement(days: Mapping[str, Iterable[dt.date]]) -> Replacement | None:
    """The daily rows a write replaces: tickers grouped by their days."""
    groups: dict[tuple[dt.date, ...], list[str]] = {}
    for ticker, chosen in days.items():
        key = tuple(sorted(chosen))
        if key:
            groups.setdefault(key, []).append(ticker)
    predicates = tuple(ReplacePredicate.of(ticker=tickers, trade_date=key) for key, tickers in groups.items())
    if not predicates:
        return None
    return predicates[0] if len(predicates) == 1 else AnyOf(predicates)


def build_daily(storage: DeltaStorage, minute_path: str, splits_path: str, daily_path: str, *,
                dividends_path: str | None = None, official_path: str | None = None, checks_path: str | None = None,
                full: bool = False) -> DailyReport:
    """Bring the daily table up to date with the stored tables (no API call), in at most one commit: only the rows
    whose inputs changed (and the trading days their windows reach), or every row on a first build, a table from an
    older version, or `full`. Days the minute table no longer holds are removed. The official-bar checks of the
    rewritten days go to quality_checks."""
    started = time.monotonic()
    spark = storage.spark
    storage.require_delta(minute_path)
    splits = _read_or_empty(storage, splits_path, SPLITS_SCHEMA, "splits")
    dividends = _read_or_empty(storage, dividends_path or beside(minute_path, DIVIDENDS_TABLE), DIVIDENDS_SCHEMA,
                               "dividends")
    official = _read_or_empty(storage, official_path or beside(minute_path, OFFICIAL_TABLE), OFFICIAL_SCHEMA,
                              "official daily bars")
    inputs = current_inputs(storage, minute_path, splits, dividends, official)
    days = sorted({day for _, day in inputs.sources})
    if not days:
        raise PipelineError(f"{minute_path} holds no bars: run the fixed harvester first")
    calendar = calendar_frame(spark, days[0], days[-1])
    sessions = {r.trade_date: r.session_index for r in calendar.select("trade_date", "session_index").collect()}
    wanted = [f.name for f in DAILY_SCHEMA.fields]
    current = storage.is_delta(daily_path) and storage.read(daily_path).columns == wanted
    full = full or not current
    if full:
        stored: list[Any] = []
        rewrite: dict[str, set[dt.date]] = {}
        for ticker, day in inputs.sources:
            rewrite.setdefault(ticker, set()).add(day)
        removed: dict[str, set[dt.date]] = {}
    else:
        stored = storage.read(daily_path).select("ticker", "trade_date", "source_fingerprint", "actions_fingerprint",
                                                 *OFFICIAL_COLUMNS).collect()
        rewrite, removed = days_to_rewrite(inputs, stored, sessions)
    rewritten = sum(len(d) for d in rewrite.values())
    log.debug("daily build of %s: %s day(s) of %d ticker(s) to rewrite, %d to remove", daily_path, rewritten,
              len(rewrite), sum(len(d) for d in removed.values()))
    version: int | None = None
    results: list[CheckResult] = []
    if rewritten or any(removed.values()):
        derived = derive(storage, minute_path, splits, dividends, official, calendar, rewrite, sessions, inputs, full)
        replace = None if full else replacement({t: rewrite.get(t, set()) | removed.get(t, set())
                                                 for t in set(rewrite) | set(removed)})
        if full:
            version = storage.write(derived, daily_path, mode="overwrite", overwrite_schema=True)
        elif replace is not None:
            version = storage.write(derived, daily_path, mode="overwrite", replace=replace)
        results = official_checks(storage.read(daily_path), rewrite)
        if checks_path is not None and results:
            write_checks(storage, checks_path, storage.run_id or "", results)
    stored_now = storage.read(daily_path)
    summary = stored_now.agg(F.count(F.lit(1)).alias("rows"), F.countDistinct("ticker").alias("tickers"),
                             F.min("trade_date").alias("first"), F.max("trade_date").alias("last")).collect()[0]
    last_of_each = Window.partitionBy("ticker").orderBy(F.col("trade_date").desc())
    latest = (stored_now.withColumn("_n", F.row_number().over(last_of_each)).filter("_n = 1").drop("_n")
              .orderBy("ticker").collect())
    return DailyReport(daily_path, storage.name, int(summary["rows"]), int(summary["tickers"]), summary["first"],
                       summary["last"], splits.count(), dividends.count(), version, [row.asDict() for row in latest],
                       time.monotonic() - started, rewritten=rewritten,
                       removed=sum(len(d) for d in removed.values()), full=full, checks=CheckSummary.of(results))


def derive(storage: DeltaStorage, minute_path: str, splits: DataFrame, dividends: DataFrame, official: DataFrame,
           calendar: DataFrame, rewrite: Mapping[str, set[dt.date]], sessions: Mapping[dt.date, int], inputs: Inputs,
           full: bool) -> DataFrame:
    """The rows to write: the daily columns computed over the days to rewrite and the WINDOW_DAYS trading days
    before each ticker's first one (their windows' context), kept to the days to rewrite, with fingerprints."""
    spark = storage.spark
    if full:
        minute = storage.read(minute_path)
    else:
        by_index = {index: day for day, index in sessions.items()}
        context: dict[str, set[dt.date]] = {}
        for ticker, chosen in rewrite.items():
            indexes = [sessions[d] for d in chosen if d in sessions]
            if not indexes:
                continue
            # Every trading day from WINDOW_DAYS before the first day to rewrite through the last: a window of a
            # rewritten day may reach any day between, rewritten or not.
            first, last = min(indexes), max(indexes)
            context[ticker] = set(chosen) | {by_index[i] for i in range(first - WINDOW_DAYS, last + 1) if i in by_index}
        every_day = sorted({d for chosen in context.values() for d in chosen})
        minute = storage.read(minute_path, where=RowFilter.of(ticker=sorted(context), trade_date=every_day))
    derived = daily_bars(minute, splits, dividends, official, calendar)
    keep = pd.DataFrame(
        [(t, d, inputs.sources[(t, d)], inputs.actions.get(t, fingerprint([]))) for t, chosen in rewrite.items()
         for d in chosen if (t, d) in inputs.sources],
        columns=["ticker", "trade_date", "source_fingerprint", "actions_fingerprint"],
    )
    marks = spark.createDataFrame(keep, "ticker string, trade_date date, source_fingerprint long, "
                                        "actions_fingerprint long")
    rows = derived.drop("source_fingerprint", "actions_fingerprint").join(F.broadcast(marks), ["ticker", "trade_date"])
    return rows.select(*[F.col(f.name).cast(f.dataType) for f in DAILY_SCHEMA.fields])


def official_checks(daily: DataFrame, rewrite: Mapping[str, set[dt.date]]) -> list[CheckResult]:
    """The rewritten days' agreement with the provider's daily bar: the closing print against its close (fail beyond
    a cent) and the minutes' volume against its volume (warn under 90%). Days without an official bar: no row."""
    wanted = {(t, d) for t, chosen in rewrite.items() for d in chosen}
    rows = daily.filter(F.col("official_close").isNotNull()).select(
        "ticker", "trade_date", "close", "official_close", "volume", "pre_market_volume", "post_market_volume",
        "official_volume").collect()
    results: list[CheckResult] = []
    for r in rows:
        if (r.ticker, r.trade_date) not in wanted:
            continue
        gap = None if r.close is None else abs(r.close - r.official_close)
        status: Status = "fail" if gap is None or gap > OFFICIAL_CLOSE_TOLERANCE + 1e-9 else "pass"
        results.append(CheckResult(r.ticker, r.trade_date, "official_close", status, gap, OFFICIAL_CLOSE_TOLERANCE,
                                   f"close {r.close} (the close-stamped bar) against the official {r.official_close}"))
        minutes = (r.volume or 0.0) + r.pre_market_volume + r.post_market_volume
        share = minutes / r.official_volume if r.official_volume else 1.0
        status = "warn" if share < OFFICIAL_VOLUME_SHARE else "pass"
        results.append(CheckResult(r.ticker, r.trade_date, "official_volume", status, share, OFFICIAL_VOLUME_SHARE,
                                   f"the minutes hold {share:.1%} of the official volume {r.official_volume:,.0f}"))
    return results

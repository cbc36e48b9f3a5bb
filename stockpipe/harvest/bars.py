"""The bar pipeline after landing: landed pages read and judged by the bar rules, ranked to one row per minute, and
shaped into the table's rows, with the per-day figures every count, guard and check reads."""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from stockpipe.compat import persisted
from stockpipe.fetching import TickerFetch
from stockpipe.landing import raw_bars_from_pages
from stockpipe.layout import DAY_KEY
from stockpipe.quality.checks import DayStats, day_stats
from stockpipe.quality.rules import compact, valid, with_reason
from stockpipe.transforms import session_bounds, to_silver, with_market_session, with_trade_date, with_trade_ts

# Runs storing at least this many (ticker, day) partitions keep their parsed bars on disk between the counts and the
# write; below it, parsing twice is cheaper (docs/backfill.md has the measurements).
PERSIST_FROM_PARTITIONS = 500


def landed_bars(spark: SparkSession, fetched: dict[str, TickerFetch]) -> DataFrame:
    """Every landed bar of the fetched tickers, with trade_ts, trade_date, `assigned` (true when the bar's fetch is
    the one assigned to its day, i.e. the bar is on a requested day and comes from the fetch that holds it) and the
    bar rules' verdict: `reason` (the first rule broken, null for a good bar) and `valid`. Replayed pages pass the
    same rules as fresh ones: a landed page with bad values never crashes a later run."""
    files: list[str] = []
    assignment_rows: list[tuple[str, str, dt.date, bool]] = []
    for ticker, item in fetched.items():
        if item.failed:
            continue
        for fetch in {f.path: f for f in item.assignment.values()}.values():
            files.extend(str(p) for p in fetch.pages())
        assignment_rows.extend((ticker, f.fetch_id, day, True) for day, f in item.assignment.items())
    bars = raw_bars_from_pages(spark, files).transform(with_trade_ts).transform(with_trade_date)
    assignment = spark.createDataFrame(
        assignment_rows, "ticker string, fetch_id string, trade_date date, assigned boolean"
    )
    judged = with_reason(bars.join(F.broadcast(assignment), ["ticker", "fetch_id", "trade_date"], "left")
                         .withColumn("assigned", F.coalesce("assigned", F.lit(False))))
    return compact(judged)


def ranked_bars(marked: DataFrame) -> DataFrame:
    """Landed bars with `_kept`: the one row per (ticker, minute) the table stores, among the valid assigned bars (the
    latest ingest wins; within one answer, the later page, then the later position on it). Both the counts and the
    stored rows come from this one frame.

    Its one shuffle is by (ticker, trade_date): a minute's duplicates share its day, so the de-duplication needs no
    other, and a table partitioned by that key finds each partition's rows in one task, sorted, and needs no shuffle
    or sort of its own to write them."""
    # The fetch id has done its work once `assigned` is known: every assigned bar of a (ticker, day) comes from the
    # one fetch assigned to that day (the newest landed one covering it), so the fetch id and the ingest time break
    # no tie among them, and the id's ~60 bytes a row stay out of the shuffle. trade_date leads the window's key
    # (the minute fixes the day, so the groups are the same), so its sort also orders rows as the write wants them.
    by_day = marked.drop("fetch_id").repartition(*DAY_KEY)
    one_per_minute = Window.partitionBy(*DAY_KEY, "timestamp_ms", "assigned", valid()).orderBy(
        F.col("ingested_at").desc(), F.col("_order").desc())
    return by_day.withColumn("_kept", F.col("assigned") & valid() & (F.row_number().over(one_per_minute) == 1))


def silver_bars(ranked: DataFrame, bounds: DataFrame) -> DataFrame:
    """The rows to store: kept bars, with their market session, in the table's schema."""
    return (
        ranked.filter("_kept")
        .transform(lambda df: with_market_session(df, bounds))
        .transform(to_silver)
    )


@dataclass(frozen=True)
class PreparedBars:
    """Some tickers' ranked bars (kept on disk when the session allows) and their per-day figures: what the write,
    the counts, the guard and the checks read."""

    tickers: frozenset[str]
    ranked: DataFrame
    stats: list[DayStats]


def prepare_bars(spark: SparkSession, fetched: dict[str, TickerFetch], days: list[dt.date], keep: bool,
                 kept: contextlib.ExitStack) -> PreparedBars:
    """The transform of the fetched tickers: landed bars judged and ranked, kept on disk (`keep`, until `kept`
    closes), counted per day. Per (ticker, day) throughout, so tickers prepared apart add up to tickers prepared
    together."""
    ranked = ranked_bars(landed_bars(spark, fetched))
    if keep:
        ranked = kept.enter_context(persisted(ranked))
    return PreparedBars(frozenset(fetched), ranked, day_stats(ranked, session_bounds(spark, days)))

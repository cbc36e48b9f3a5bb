"""The daily table: one row per (ticker, trade_date), derived from the minute table and the splits table alone.

The as-traded columns summarise the regular session (09:30 to the close the exchange calendar gives: 16:00, or 13:00
on an early-close day, already in each bar's `market_session`); the extended sessions count only as volume. The
adjusted columns divide by every split of the ticker executed after the day (prices divided, volume multiplied), so
they change when a new split is known and the as-traded ones never do. `daily_return` compares adjusted closes of
consecutive stored trading days.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from stockpipe.splits import SPLITS_SCHEMA
from stockpipe.storage import DeltaStorage

log = logging.getLogger(__name__)

DAILY_TABLE = "stocks_daily"
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
    T.StructField("daily_return", T.DoubleType()),
])


def _in(session: str, value: str | Column) -> Column:
    column = F.col(value) if isinstance(value, str) else value
    return F.when(F.col("market_session") == session, column)


def session_summary(minute: DataFrame) -> DataFrame:
    """As traded, per (ticker, trade_date): the regular session's OHLC, volume and VWAP (over the bars that carry
    `vwap`), the extended sessions' volumes, and every bar counted. A day without a regular bar keeps its row, with
    nulls where the regular session has nothing to say."""
    with_vw = (F.col("market_session") == "regular") & F.col("vwap").isNotNull()
    return minute.groupBy("ticker", "trade_date").agg(
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


def split_factors(days: DataFrame, splits: DataFrame) -> DataFrame:
    """(ticker, trade_date, split_factor): the product of split_to / split_from over the ticker's splits executed
    after the day; 1.0 where none was. Multiplied in order, not through exp(sum(log)), so 20 stays exactly 20."""
    later = splits.select(
        F.col("ticker").alias("_ticker"), "execution_date", (F.col("split_to") / F.col("split_from")).alias("ratio")
    )
    joined = days.join(later, (days["ticker"] == later["_ticker"]) & (later["execution_date"] > days["trade_date"]),
                       "left")
    product = F.aggregate(F.collect_list("ratio"), F.lit(1.0), lambda acc, ratio: acc * ratio)
    return joined.groupBy("ticker", "trade_date").agg(product.alias("split_factor"))


def daily_bars(minute: DataFrame, splits: DataFrame) -> DataFrame:
    """The daily table from the minute table (as traded) and the splits table, in DAILY_SCHEMA."""
    summary = session_summary(minute)
    factors = split_factors(summary.select("ticker", "trade_date"), splits)
    adjusted = summary.join(factors, ["ticker", "trade_date"]).select(
        "*",
        *[(F.col(c) / F.col("split_factor")).alias(f"adj_{c}") for c in ("open", "high", "low", "close")],
        (F.col("volume") * F.col("split_factor")).alias("adj_volume"),
    )
    previous = F.lag("adj_close").over(Window.partitionBy("ticker").orderBy("trade_date"))
    with_return = adjusted.withColumn("daily_return", F.col("adj_close") / previous - 1)
    return with_return.select(*[F.col(f.name).cast(f.dataType) for f in DAILY_SCHEMA.fields])


@dataclass
class DailyReport:
    path: str
    engine: str
    rows: int
    tickers: int
    first_day: dt.date | None
    last_day: dt.date | None
    splits_known: int
    version: int
    latest: list[dict[str, Any]]  # each ticker's last stored day, for the door to print
    seconds: float


def build_daily(storage: DeltaStorage, minute_path: str, splits_path: str, daily_path: str) -> DailyReport:
    """Rebuild the daily table from the minute table and the splits table in one commit (no API call). The whole
    table is replaced, so a rerun changes no row and a split learned since the last build re-adjusts every day
    before it. A minute table without a splits table beside it (built before splits were kept) is taken as
    having none, with a warning."""
    started = time.monotonic()
    storage.require_delta(minute_path)
    if storage.is_delta(splits_path):
        splits = storage.read(splits_path)
    else:
        log.warning("no splits table at %s: the adjusted columns assume no split (run the fixed harvester to "
                    "fetch them)", splits_path)
        splits = storage.spark.createDataFrame([], SPLITS_SCHEMA)
    daily = daily_bars(storage.read(minute_path), splits)
    version = storage.write(daily, daily_path, mode="overwrite")
    stored = storage.read(daily_path)
    summary = stored.agg(F.count(F.lit(1)).alias("rows"), F.countDistinct("ticker").alias("tickers"),
                         F.min("trade_date").alias("first"), F.max("trade_date").alias("last")).collect()[0]
    last_of_each = Window.partitionBy("ticker").orderBy(F.col("trade_date").desc())
    latest = (stored.withColumn("_n", F.row_number().over(last_of_each)).filter("_n = 1").drop("_n")
              .orderBy("ticker").collect())
    return DailyReport(daily_path, storage.name, int(summary["rows"]), int(summary["tickers"]), summary["first"],
                       summary["last"], splits.count(), version, [row.asDict() for row in latest],
                       time.monotonic() - started)

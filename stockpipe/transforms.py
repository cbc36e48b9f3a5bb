"""DataFrame in, DataFrame out: small pure functions chained with `DataFrame.transform`.

Nothing here reads or writes: landed pages become bars in `landing.raw_bars_from_pages`, tables are written through
the storage port. `session_bounds` builds a small frame from the exchange calendar.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from stockpipe.market_calendar import session_hours

NEW_YORK_TZ = "America/New_York"
MILLIS_PER_DAY = 86_400_000

# The fixed table: the starter's names, plus the time columns it lacked.
SILVER_SCHEMA = T.StructType(
    [
        T.StructField("ticker", T.StringType(), False),
        T.StructField("timestamp_ms", T.LongType(), False),
        T.StructField("trade_ts", T.TimestampType(), False),
        T.StructField("trade_date", T.DateType(), False),
        T.StructField("market_session", T.StringType(), False),
        T.StructField("open", T.DoubleType(), False),
        T.StructField("high", T.DoubleType(), False),
        T.StructField("low", T.DoubleType(), False),
        T.StructField("close", T.DoubleType(), False),
        T.StructField("volume", T.DoubleType(), False),
        T.StructField("vwap", T.DoubleType(), True),
        T.StructField("num_transactions", T.LongType(), True),
        T.StructField("ingested_at", T.TimestampType(), False),
    ]
)
PARTITION_COLUMNS = ("ticker", "trade_date")

# The starter's table, faithfully: no date or timestamp column, and a per-minute partition key.
BROKEN_COLUMNS = [
    "ticker", "open", "high", "low", "close", "volume", "vwap", "timestamp_ms", "num_transactions", "minute",
]
BROKEN_PARTITION_COLUMNS = ("ticker", "minute")


def with_trade_ts(bars: DataFrame) -> DataFrame:
    """trade_ts is the bar's start instant (the API's `t`, epoch milliseconds, UTC)."""
    return bars.withColumn("trade_ts", F.timestamp_millis("timestamp_ms"))


def with_trade_date(bars: DataFrame, tz: str = NEW_YORK_TZ) -> DataFrame:
    """trade_date is the exchange's calendar date: a 19:59 New York bar is 00:59 UTC the next day.

    Computed from the instant alone, so the session time zone (any zone a Databricks cluster is set to) cannot move
    it: from_utc_timestamp shifts the epoch value by New York's offset at that instant (DST included), and the
    day number of the shifted value is New York's calendar date. `to_date` of a timestamp would read it in the
    session's zone instead, which put 04:00 pre-market bars on the previous day under America/New_York.
    """
    new_york_wall_ms = F.unix_millis(F.from_utc_timestamp("trade_ts", tz))
    day_number = F.floor(new_york_wall_ms / F.lit(MILLIS_PER_DAY)).cast("int")
    return bars.withColumn("trade_date", F.date_from_unix_date(day_number))


def session_bounds(spark: SparkSession, days: Iterable[dt.date]) -> DataFrame:
    """(trade_date, regular_open, regular_close) per trading day, from the exchange calendar (early closes too);
    regular_close is the close's stamp: the bar stamped then holds the closing auction's print."""
    rows = []
    for day in days:
        hours = session_hours(day)
        rows.append((day, hours.open.astimezone(dt.UTC), hours.close.astimezone(dt.UTC)))
    schema = "trade_date date, regular_open timestamp, regular_close timestamp"
    return spark.createDataFrame(rows, schema)


def with_market_session(bars: DataFrame, bounds: DataFrame) -> DataFrame:
    """market_session: pre (before the open), regular (from the open through the bar stamped at the close, 16:00 or
    13:00 on early-close days: the closing auction prints at the close, in that bar), or post (after it)."""
    joined = bars.join(F.broadcast(bounds), "trade_date", "left")
    session = (
        F.when(F.col("regular_open").isNull(), F.lit("closed"))
        .when(F.col("trade_ts") < F.col("regular_open"), F.lit("pre"))
        .when(F.col("trade_ts") <= F.col("regular_close"), F.lit("regular"))
        .otherwise(F.lit("post"))
    )
    return joined.withColumn("market_session", session).drop("regular_open", "regular_close")


def to_silver(bars: DataFrame) -> DataFrame:
    return bars.select(*[F.col(f.name).cast(f.dataType) for f in SILVER_SCHEMA.fields])


def with_minute_partition(bars: DataFrame) -> DataFrame:
    """The starter's partition key (bug 2): the bar time as yyyy-MM-dd_HH-mm, one value per bar."""
    return bars.withColumn(
        "minute", F.date_format(F.timestamp_millis("timestamp_ms"), "yyyy-MM-dd_HH-mm")
    )


def to_broken(bars: DataFrame) -> DataFrame:
    """The starter's columns (bug 3: only epoch milliseconds, no date or timestamp column)."""
    return bars.transform(with_minute_partition).select(*BROKEN_COLUMNS)

"""Each transform on a handful of hand-built rows that pin its edge (DST, after-hours, duplicates, early close)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from chispa import assert_df_equality

from stockpipe.transforms import (
    session_bounds,
    to_broken,
    to_silver,
    with_market_session,
    with_trade_date,
    with_trade_ts,
)

# Spark code whose behaviour Spark Connect (and Spark 4) may change: run in both lanes.
pytestmark = pytest.mark.connect

UTC = dt.UTC


def ms(year, month, day, hour, minute) -> int:
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp() * 1000)


def test_trade_ts_is_the_bar_start_instant(spark):
    given = spark.createDataFrame([(ms(2024, 1, 8, 14, 30),)], "timestamp_ms long")
    expected = spark.createDataFrame([(ms(2024, 1, 8, 14, 30), dt.datetime(2024, 1, 8, 14, 30))],
                                     "timestamp_ms long, trade_ts timestamp")
    assert_df_equality(with_trade_ts(given), expected)


def test_after_hours_bar_keeps_new_york_trade_date(spark):
    # 19:59 New York in winter is 00:59 UTC the next day: it still belongs to its New York trading day.
    given = spark.createDataFrame([(dt.datetime(2024, 1, 9, 0, 59),)], "trade_ts timestamp")
    expected = spark.createDataFrame([(dt.datetime(2024, 1, 9, 0, 59), dt.date(2024, 1, 8))],
                                     "trade_ts timestamp, trade_date date")
    assert_df_equality(with_trade_date(given), expected)


def test_trade_date_follows_dst_in_both_directions(spark):
    rows = [
        # Friday before spring-forward (EST, UTC-5): 19:30 NY = 00:30 UTC Saturday.
        (dt.datetime(2024, 3, 9, 0, 30), dt.date(2024, 3, 8)),
        # Monday after (EDT, UTC-4): 19:30 NY = 23:30 UTC the same day; 20:30 NY would be 00:30 UTC next day.
        (dt.datetime(2024, 3, 11, 23, 30), dt.date(2024, 3, 11)),
        (dt.datetime(2024, 3, 12, 0, 30), dt.date(2024, 3, 11)),
        # Pre-market 04:00 NY in summer = 08:00 UTC, in winter = 09:00 UTC: same calendar day either way.
        (dt.datetime(2024, 7, 1, 8, 0), dt.date(2024, 7, 1)),
        (dt.datetime(2024, 11, 4, 9, 0), dt.date(2024, 11, 4)),
    ]
    given = spark.createDataFrame([(r[0],) for r in rows], "trade_ts timestamp")
    expected = spark.createDataFrame(rows, "trade_ts timestamp, trade_date date")
    assert_df_equality(with_trade_date(given), expected, ignore_row_order=True)


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Tokyo"])
def test_trade_date_ignores_the_session_time_zone(spark, session_time_zone, zone):
    """04:00 pre-market and 19:59 after-hours bars on both sides of spring-forward (Fri 2024-03-08 EST, Mon
    2024-03-11 EDT) and of fall-back (Fri 2024-11-01 EDT, Mon 2024-11-04 EST) keep their New York date under any
    session time zone a cluster may be set to."""
    new_york = ZoneInfo("America/New_York")
    days = [dt.date(2024, 3, 8), dt.date(2024, 3, 11), dt.date(2024, 11, 1), dt.date(2024, 11, 4)]
    rows = []
    for day in days:
        for hour, minute in ((4, 0), (19, 59)):
            local = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=new_york)
            rows.append((int(local.timestamp() * 1000), day))
    session_time_zone(zone)
    given = spark.createDataFrame([(t,) for t, _ in rows], "timestamp_ms long")
    got = sorted(tuple(r) for r in given.transform(with_trade_ts).transform(with_trade_date)
                 .select("timestamp_ms", "trade_date").collect())
    assert got == sorted(rows)


def test_market_session_uses_the_calendar_including_early_closes(spark):
    friday_after_thanksgiving = dt.date(2024, 11, 29)  # closes 13:00 NY = 18:00 UTC
    bounds = session_bounds(spark, [dt.date(2024, 1, 8), friday_after_thanksgiving])
    rows = [
        (dt.datetime(2024, 1, 8, 14, 29), dt.date(2024, 1, 8), "pre"),
        (dt.datetime(2024, 1, 8, 14, 30), dt.date(2024, 1, 8), "regular"),
        (dt.datetime(2024, 1, 8, 20, 59), dt.date(2024, 1, 8), "regular"),
        (dt.datetime(2024, 1, 8, 21, 0), dt.date(2024, 1, 8), "regular"),  # 16:00 NY: the closing print's bar
        (dt.datetime(2024, 1, 8, 21, 1), dt.date(2024, 1, 8), "post"),
        (dt.datetime(2024, 11, 29, 17, 59), friday_after_thanksgiving, "regular"),
        (dt.datetime(2024, 11, 29, 18, 0), friday_after_thanksgiving, "regular"),  # 13:00: the early close's print
        (dt.datetime(2024, 11, 29, 18, 1), friday_after_thanksgiving, "post"),
    ]
    given = spark.createDataFrame([r[:2] for r in rows], "trade_ts timestamp, trade_date date")
    expected = spark.createDataFrame(rows, "trade_ts timestamp, trade_date date, market_session string")
    actual = with_market_session(given, bounds).select("trade_ts", "trade_date", "market_session")
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_ranked_bars_keep_one_valid_assigned_bar_per_minute_the_latest_answer(spark):
    """The harvester's one de-duplication (harvest.ranked_bars): per (ticker, minute) the latest ingest among the
    valid bars of the day's assigned fetch, and within one answer the later page, then the later position on it; a
    bar from any other fetch is never kept, however recent, and neither is a bar that broke a rule."""
    from pyspark.sql import functions as F

    from stockpipe.harvest.bars import ranked_bars
    from stockpipe.quality.rules import compact

    schema = ("ticker string, fetch_id string, trade_date date, timestamp_ms long, close double, assigned boolean, "
              "valid boolean, ingested_at timestamp, page int, position int")
    day = dt.date(2024, 1, 8)
    early, late, latest = (dt.datetime(2024, 1, d, 12) for d in (8, 9, 10))
    rows = spark.createDataFrame(
        [("AAPL", "a", day, 1, 10.0, True, True, early, 1, 0), ("AAPL", "b", day, 1, 11.0, True, True, late, 1, 0),
         ("AAPL", "c", day, 1, 12.0, False, True, latest, 1, 0), ("AAPL", "a", day, 2, 13.0, True, True, early, 1, 1),
         ("AAPL", "c", day, 3, 14.0, False, True, latest, 1, 1), ("MSFT", "a", day, 1, 20.0, True, True, early, 1, 0),
         # one answer repeating a minute: on a later page, and later on the same page; the later one wins
         ("MSFT", "a", day, 2, 21.0, True, True, early, 1, 5), ("MSFT", "a", day, 2, 22.0, True, True, early, 2, 0),
         ("MSFT", "a", day, 3, 23.0, True, True, early, 1, 7), ("MSFT", "a", day, 3, 24.0, True, True, early, 1, 9),
         # a newer bar that broke a rule never displaces a good one, and is never kept itself
         ("MSFT", "a", day, 4, 25.0, True, True, early, 1, 2), ("MSFT", "b", day, 4, -1.0, True, False, late, 1, 0),
         ("MSFT", "b", day, 5, -1.0, True, False, late, 1, 1)],
        schema,
    )
    # as the harvest hands them over: judged (a rule's name for the bad ones), then compacted for the shuffle
    given = compact(rows.withColumn("reason", F.when(~F.col("valid"), F.lit("prices_positive")))
                    .withColumn("raw", F.lit(None).cast("string")).withColumn("t_value", F.lit(None).cast("double"))
                    .withColumn("open", F.col("close")).withColumn("high", F.col("close")).withColumn("low",
                                                                                                   F.col("close"))
                    .withColumn("volume", F.lit(1.0)).withColumn("vwap", F.lit(None).cast("double"))
                    .withColumn("n_value", F.lit(None).cast("double")))
    kept = sorted((r.ticker, r.timestamp_ms, r.close) for r in ranked_bars(given).filter("_kept").collect())
    assert kept == [("AAPL", 1, 11.0), ("AAPL", 2, 13.0), ("MSFT", 1, 20.0), ("MSFT", 2, 22.0), ("MSFT", 3, 24.0),
                    ("MSFT", 4, 25.0)]


def test_silver_casts_the_landed_types_to_the_tables_schema(spark):
    """to_silver takes rows as the harvest holds them (extra columns, other order, integer volume and counts, a
    32-bit minute) and gives exactly the table's columns and types; the values survive the cast."""
    given = spark.createDataFrame(
        [(3, 303067, 1.5, 0.5, 2.0, 1.0, "regular", dt.date(2024, 1, 8), dt.datetime(2024, 1, 8, 14, 30), 1704724200000,
          "AAPL", dt.datetime(2024, 1, 9), None, "x", 7)],
        "num_transactions int, volume long, close double, low double, high double, open double, "
        "market_session string, trade_date date, trade_ts timestamp, timestamp_ms long, ticker string, "
        "ingested_at timestamp, vwap float, reason string, page int",
    )
    silver = to_silver(given)
    assert [(f.name, f.dataType.simpleString()) for f in silver.schema.fields] == [
        ("ticker", "string"), ("timestamp_ms", "bigint"), ("trade_ts", "timestamp"), ("trade_date", "date"),
        ("market_session", "string"), ("open", "double"), ("high", "double"), ("low", "double"),
        ("close", "double"), ("volume", "double"), ("vwap", "double"), ("num_transactions", "bigint"),
        ("ingested_at", "timestamp"),
    ]
    row = silver.first()
    assert (row["volume"], row["num_transactions"], row["open"], row["close"], row["vwap"]) == (303067.0, 3, 1.0,
                                                                                               1.5, None)
    assert isinstance(row["volume"], float) and row["timestamp_ms"] == 1704724200000


def test_broken_shape_has_only_epoch_millis_and_a_minute_key(spark):
    given = spark.createDataFrame(
        [("JPM", 1.0, 2.0, 0.5, 1.5, 10.0, 1.2, ms(2024, 1, 8, 14, 30), 3)],
        "ticker string, open double, high double, low double, close double, volume double, vwap double, "
        "timestamp_ms long, num_transactions long",
    )
    broken = to_broken(given)
    assert broken.first()["minute"] == "2024-01-08_14-30"
    types = {f.dataType.simpleString() for f in broken.schema.fields}
    assert "date" not in types and "timestamp" not in types

"""Each transform on a handful of hand-built rows that pin its edge (DST, after-hours, duplicates, early close)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from chispa import assert_df_equality

from stockpipe.transforms import (
    SILVER_SCHEMA,
    ohlc_violation,
    session_bounds,
    to_broken,
    to_silver,
    with_market_session,
    with_trade_date,
    with_trade_ts,
)

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
        (dt.datetime(2024, 1, 8, 21, 0), dt.date(2024, 1, 8), "post"),
        (dt.datetime(2024, 11, 29, 17, 59), friday_after_thanksgiving, "regular"),
        (dt.datetime(2024, 11, 29, 18, 0), friday_after_thanksgiving, "post"),
    ]
    given = spark.createDataFrame([r[:2] for r in rows], "trade_ts timestamp, trade_date date")
    expected = spark.createDataFrame(rows, "trade_ts timestamp, trade_date date, market_session string")
    actual = with_market_session(given, bounds).select("trade_ts", "trade_date", "market_session")
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_ranked_bars_keep_one_assigned_bar_per_minute_the_latest_ingest(spark):
    """The harvester's one de-duplication (harvest.ranked_bars): per (ticker, minute) the latest ingest among the
    bars of the day's assigned fetch; a bar from any other fetch is never kept, however recent."""
    from stockpipe.harvest import ranked_bars

    schema = ("ticker string, fetch_id string, trade_date date, timestamp_ms long, close double, assigned boolean, "
              "ingested_at timestamp")
    day = dt.date(2024, 1, 8)
    early, late, latest = (dt.datetime(2024, 1, d, 12) for d in (8, 9, 10))
    given = spark.createDataFrame(
        [("AAPL", "a", day, 1, 10.0, True, early), ("AAPL", "b", day, 1, 11.0, True, late),
         ("AAPL", "c", day, 1, 12.0, False, latest), ("AAPL", "a", day, 2, 13.0, True, early),
         ("AAPL", "c", day, 3, 14.0, False, latest), ("MSFT", "a", day, 1, 20.0, True, early)],
        schema,
    )
    kept = sorted((r.ticker, r.timestamp_ms, r.close) for r in ranked_bars(given).filter("_kept").collect())
    assert kept == [("AAPL", 1, 11.0), ("AAPL", 2, 13.0), ("MSFT", 1, 20.0)]


def test_ohlc_violation_flags_each_broken_rule(spark):
    rows = [
        (10.0, 11.0, 9.0, 10.5, 100.0, False),  # sane
        (10.0, 11.0, 10.2, 10.5, 100.0, True),  # low above open
        (10.0, 10.4, 9.0, 10.5, 100.0, True),  # high below close
        (10.0, 11.0, 9.0, 10.5, -1.0, True),  # negative volume
    ]
    given = spark.createDataFrame(
        rows, "open double, high double, low double, close double, volume double, bad boolean"
    )
    flagged = [r["bad"] == r["flag"] for r in given.withColumn("flag", ohlc_violation()).collect()]
    assert all(flagged)


def test_silver_schema_and_types(spark):
    row = ("AAPL", 1704724200000, dt.datetime(2024, 1, 8, 14, 30), dt.date(2024, 1, 8), "regular", 1.0, 2.0, 0.5,
           1.5, 303067.656, None, None, dt.datetime(2024, 1, 9))
    given = spark.createDataFrame([row], SILVER_SCHEMA)
    silver = to_silver(given)
    assert [(f.name, f.dataType.simpleString()) for f in silver.schema.fields] == [
        ("ticker", "string"), ("timestamp_ms", "bigint"), ("trade_ts", "timestamp"), ("trade_date", "date"),
        ("market_session", "string"), ("open", "double"), ("high", "double"), ("low", "double"),
        ("close", "double"), ("volume", "double"), ("vwap", "double"), ("num_transactions", "bigint"),
        ("ingested_at", "timestamp"),
    ]
    assert silver.first()["volume"] == 303067.656


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

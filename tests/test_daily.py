"""The daily table against an independent computation: hand-built minute bars pinning the edges (an early close,
pre- and post-market bars, a bar without vw, a split, a day without a regular bar), and the sample pipeline end to
end across NVDA's split; its idempotence; the door."""

from __future__ import annotations

import datetime as dt

import pytest

import daily_bars
import fixed_stock_harvester
from stockpipe.daily import DAILY_SCHEMA, build_daily
from stockpipe.market_calendar import NEW_YORK, session_hours
from stockpipe.sample import range_bars, split_factor
from stockpipe.splits import SPLITS_SCHEMA
from stockpipe.transforms import PARTITION_COLUMNS, SILVER_SCHEMA
from tests.helpers import run_door

pytestmark = pytest.mark.slow
NORMAL, EARLY, NEXT = dt.date(2023, 11, 22), dt.date(2023, 11, 24), dt.date(2023, 11, 27)  # 24th closes at 13:00
QUIET = dt.date(2023, 11, 28)  # only a pre-market bar: the regular columns are null, the row stays


def bar(day: dt.date, hhmm: str, session: str, o: float, h: float, lo: float, c: float, v: float,
        vw: float | None, ticker: str = "ABC") -> tuple:
    local = dt.datetime.combine(day, dt.time.fromisoformat(hhmm), NEW_YORK)
    ms = int(local.timestamp() * 1000)
    return (ticker, ms, local.astimezone(dt.UTC), day, session, o, h, lo, c, float(v), vw, 1,
            dt.datetime(2024, 1, 1, tzinfo=dt.UTC))


MINUTES = [
    bar(NORMAL, "08:00", "pre", 10.0, 10.5, 9.5, 10.2, 100, 10.1),
    bar(NORMAL, "09:30", "regular", 10.0, 11.0, 9.8, 10.5, 1000, 10.4),
    bar(NORMAL, "12:00", "regular", 10.5, 12.0, 10.4, 11.5, 3000, None),  # no vw: out of the VWAP, in the volume
    bar(NORMAL, "15:59", "regular", 11.5, 11.9, 11.1, 11.2, 2000, 11.6),
    bar(NORMAL, "16:30", "post", 11.2, 11.3, 11.0, 11.1, 50, 11.2),
    bar(EARLY, "09:30", "regular", 12.0, 12.2, 11.9, 12.1, 500, 12.05),
    bar(EARLY, "12:59", "regular", 12.1, 12.4, 12.0, 12.3, 700, 12.2),
    bar(EARLY, "13:30", "post", 12.3, 12.5, 12.2, 12.4, 80, None),  # after the early close: post-market
    bar(NEXT, "09:30", "regular", 6.0, 6.2, 5.9, 6.1, 900, 6.05),  # after the 2-for-1 split of the 27th
    bar(QUIET, "07:00", "pre", 6.1, 6.1, 6.1, 6.1, 10, 6.1),
]
SPLIT = ("ABC", NEXT, 1.0, 2.0, "E-abc-2023-11-27")


def expected_rows() -> dict[tuple[str, dt.date], dict]:
    """The same numbers, computed by hand from MINUTES: independent of the Spark transform."""
    vw_normal = (10.4 * 1000 + 11.6 * 2000) / 3000
    return {
        ("ABC", NORMAL): dict(open=10.0, high=12.0, low=9.8, close=11.2, volume=6000.0, vwap=vw_normal,
                              pre_market_volume=100.0, post_market_volume=50.0, bar_count=5, split_factor=2.0,
                              adj_close=5.6, adj_volume=12000.0, daily_return=None),
        ("ABC", EARLY): dict(open=12.0, high=12.4, low=11.9, close=12.3, volume=1200.0,
                             vwap=(12.05 * 500 + 12.2 * 700) / 1200, pre_market_volume=0.0, post_market_volume=80.0,
                             bar_count=3, split_factor=2.0, adj_close=6.15, adj_volume=2400.0,
                             daily_return=6.15 / 5.6 - 1),
        ("ABC", NEXT): dict(open=6.0, high=6.2, low=5.9, close=6.1, volume=900.0, vwap=6.05, pre_market_volume=0.0,
                            post_market_volume=0.0, bar_count=1, split_factor=1.0, adj_close=6.1, adj_volume=900.0,
                            daily_return=6.1 / 6.15 - 1),
        ("ABC", QUIET): dict(open=None, high=None, low=None, close=None, volume=None, vwap=None,
                             pre_market_volume=10.0, post_market_volume=0.0, bar_count=1, split_factor=1.0,
                             adj_close=None, adj_volume=None, daily_return=None),
    }


def assert_matches(actual: dict, expected: dict) -> None:
    for key, want in expected.items():
        got = actual[key]
        assert (got is None) == (want is None) and (want is None or got == pytest.approx(want, rel=1e-12)), (key, got)


@pytest.fixture(scope="module")
def built(spark, storage, tmp_path_factory):
    base = tmp_path_factory.mktemp(f"daily-{storage.name}")
    minute, splits, daily = str(base / "stocks_fixed"), str(base / "stocks_splits"), str(base / "stocks_daily")
    storage.write(spark.createDataFrame(MINUTES, SILVER_SCHEMA), minute, mode="append",
                  partition_by=PARTITION_COLUMNS)
    storage.write(spark.createDataFrame([SPLIT], SPLITS_SCHEMA), splits, mode="append")
    report = build_daily(storage, minute, splits, daily)
    return storage, daily, report


def test_each_day_matches_a_computation_by_hand(built):
    storage, daily, report = built
    rows = {(r["ticker"], r["trade_date"]): r.asDict() for r in storage.read(daily).collect()}
    assert set(rows) == set(expected_rows())  # the quiet day is kept, not dropped
    for key, expected in expected_rows().items():
        assert_matches(rows[key], expected)
    assert report.rows == 4 and report.splits_known == 1
    assert [f.name for f in storage.read(daily).schema.fields] == [f.name for f in DAILY_SCHEMA.fields]


def test_a_rebuild_changes_no_row_and_a_new_split_readjusts_only_the_adjusted_columns(built, spark):
    storage, daily, _ = built
    before = sorted(tuple(r) for r in storage.read(daily).collect())
    base = daily.rsplit("/", 1)[0]
    build_daily(storage, f"{base}/stocks_fixed", f"{base}/stocks_splits", daily)
    assert sorted(tuple(r) for r in storage.read(daily).collect()) == before
    storage.write(spark.createDataFrame([("ABC", QUIET, 1.0, 3.0, "E-abc-2023-11-28")], SPLITS_SCHEMA),
                  f"{base}/stocks_splits", mode="append")
    build_daily(storage, f"{base}/stocks_fixed", f"{base}/stocks_splits", daily)
    after = {(r["ticker"], r["trade_date"]): r for r in storage.read(daily).collect()}
    assert after[("ABC", NORMAL)]["close"] == 11.2  # as traded never moves
    assert after[("ABC", NORMAL)]["adj_close"] == pytest.approx(11.2 / 6)
    assert after[("ABC", NEXT)]["adj_close"] == pytest.approx(6.1 / 3)


def test_the_sample_pipeline_across_a_split_matches_the_bars_it_served(storage, tmp_path, capsys):
    """End to end: the fixed harvester (as traded, splits fetched) and the daily door over NVDA's 10-for-1 split,
    checked against the sample source's own bars and split list."""
    table = tmp_path / "stocks_fixed"
    code, _, _ = run_door(fixed_stock_harvester, ["--source", "sample", "--tickers", "NVDA", "--from", "2024-06-06",
                                                  "--to", "2024-06-11", "--table-path", str(table), "--engine",
                                                  storage.name], capsys)
    assert code == 0
    code, out, _ = run_door(daily_bars, ["--table-path", str(table), "--engine", storage.name], capsys)
    assert code == 0 and "Each ticker's last day" in out and "1 split(s) known" in out
    rows = {r["trade_date"]: r for r in storage.read(str(tmp_path / "stocks_daily")).collect()}
    for day in (dt.date(2024, 6, 6), dt.date(2024, 6, 7), dt.date(2024, 6, 10), dt.date(2024, 6, 11)):
        bars = range_bars("NVDA", day, day)
        hours = session_hours(day)
        lo, hi = int(hours.open.timestamp() * 1000), int(hours.close.timestamp() * 1000)
        regular = [i for i, t in enumerate(bars["t"]) if lo <= t < hi]
        factor = split_factor("NVDA", day) / split_factor("NVDA", dt.date(2026, 12, 1))  # splits known today
        row = rows[day]
        assert row["open"] == bars["o"][regular[0]] and row["close"] == bars["c"][regular[-1]]
        assert row["high"] == max(bars["h"][i] for i in regular) and row["low"] == min(bars["l"][i] for i in regular)
        assert row["volume"] == pytest.approx(sum(bars["v"][i] for i in regular))
        assert row["bar_count"] == len(bars["t"])
        assert row["adj_close"] == pytest.approx(row["close"] / factor)
    assert rows[dt.date(2024, 6, 7)]["split_factor"] == 10.0 and rows[dt.date(2024, 6, 10)]["split_factor"] == 1.0
    # Adjusted, the split is no jump: the return across it is an ordinary day's, not -90 %.
    assert abs(rows[dt.date(2024, 6, 10)]["daily_return"]) < 0.5


def test_the_door_shows_paths_relative_to_where_it_ran(built, capsys, monkeypatch):
    """Evidence a reader can use: `stocks_daily` under the folder the command ran in, not this machine's path."""
    storage, daily, _ = built
    base = daily.rsplit("/", 1)[0]
    monkeypatch.chdir(base)
    code, out, _ = run_door(daily_bars, ["--table-path", "stocks_fixed", "--engine", storage.name], capsys)
    assert code == 0 and "Table stocks_daily: version" in out and base not in out

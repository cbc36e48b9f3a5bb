"""The daily table against an independent computation: hand-built minute bars pinning the edges (the closing print
at 16:00 and 13:00, pre- and post-market bars, a bar without vw, a split, a dividend, a gap in the stored days, a day
without a regular bar, an official bar), indicators over sixty trading days with a gap, the incremental build (only
changed rows rewritten, nothing when nothing changed, the same rows as a full build), and the sample pipeline end to
end across NVDA's split; the door."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
from pyspark.sql.pandas.types import from_arrow_schema

import daily_bars
import fixed_stock_harvester
from stockpipe.daily import DAILY_SCHEMA, build_daily
from stockpipe.market_calendar import NEW_YORK, session_hours, trading_days
from stockpipe.reference.corporate_actions import DIVIDENDS_SCHEMA, SPLITS_SCHEMA
from stockpipe.reference.official_bars import OFFICIAL_SCHEMA
from stockpipe.sample import range_bars, split_factor
from stockpipe.transforms import PARTITION_COLUMNS, SILVER_SCHEMA
from tests.helpers import run_door

pytestmark = pytest.mark.slow
NORMAL, EARLY, NEXT = dt.date(2023, 11, 22), dt.date(2023, 11, 24), dt.date(2023, 11, 27)  # 24th closes at 13:00
QUIET = dt.date(2023, 11, 28)  # only a pre-market bar: the regular columns are null, the row stays
AFTER_GAP = dt.date(2023, 11, 30)  # the 29th is a trading day the table does not hold: no return across it


def bar(day: dt.date, hhmm: str, session: str, o: float, h: float, lo: float, c: float, v: float,
        vw: float | None, ticker: str = "ABC") -> tuple:
    local = dt.datetime.combine(day, dt.time.fromisoformat(hhmm), NEW_YORK)
    ms = int(local.timestamp() * 1000)
    return (ticker, ms, local.astimezone(dt.UTC), day, session, o, h, lo, c, float(v), vw, 1,
            dt.datetime(2024, 1, 1, tzinfo=dt.UTC))


# The stored session labels are the ones older versions wrote (16:00 as post): the daily table must not trust them.
MINUTES = [
    bar(NORMAL, "08:00", "pre", 10.0, 10.5, 9.5, 10.2, 100, 10.1),
    bar(NORMAL, "09:30", "regular", 10.0, 11.0, 9.8, 10.5, 1000, 10.4),
    bar(NORMAL, "12:00", "regular", 10.5, 12.0, 10.4, 11.5, 3000, None),  # no vw: out of the VWAP, in the volume
    bar(NORMAL, "15:59", "regular", 11.5, 11.9, 11.1, 11.2, 2000, 11.6),
    bar(NORMAL, "16:00", "post", 11.2, 11.25, 11.1, 11.22, 9000, 11.21),  # the closing print: regular
    bar(NORMAL, "16:30", "post", 11.2, 11.3, 11.0, 11.1, 50, 11.2),
    bar(EARLY, "09:30", "regular", 12.0, 12.2, 11.9, 12.1, 500, 12.05),
    bar(EARLY, "12:59", "regular", 12.1, 12.4, 12.0, 12.3, 700, 12.2),
    bar(EARLY, "13:00", "post", 12.3, 12.35, 12.25, 12.32, 4000, 12.3),  # the early close's print: regular
    bar(EARLY, "13:30", "post", 12.3, 12.5, 12.2, 12.4, 80, None),  # after the early close: post-market
    bar(NEXT, "09:30", "regular", 6.0, 6.2, 5.9, 6.1, 900, 6.05),  # after the 2-for-1 split of the 27th
    bar(QUIET, "07:00", "pre", 6.1, 6.1, 6.1, 6.1, 10, 6.1),
    bar(AFTER_GAP, "09:30", "regular", 6.3, 6.4, 6.2, 6.35, 700, 6.3),
]
SPLIT = ("ABC", NEXT, 1.0, 2.0, "E-abc-2023-11-27")
DIVIDEND = ("ABC", EARLY, 0.24, "USD", dt.date(2023, 11, 2), EARLY, dt.date(2023, 12, 1), 4, "CD", "E-div-1")
OFFICIAL = ("ABC", NORMAL, 10.0, 12.0, 9.8, 11.22, 15_000.0, 11.0, 100)


def expected_rows() -> dict[tuple[str, dt.date], dict]:
    """The same numbers, computed by hand from MINUTES: independent of the Spark transform."""
    vw_normal = (10.4 * 1000 + 11.6 * 2000 + 11.21 * 9000) / 12000
    return {
        ("ABC", NORMAL): dict(open=10.0, high=12.0, low=9.8, close=11.22, volume=15000.0, vwap=vw_normal,
                              pre_market_volume=100.0, post_market_volume=50.0, bar_count=6, split_factor=2.0,
                              adj_close=5.61, adj_volume=30000.0, dividend=0.0, daily_return=None,
                              total_return=None, official_close=11.22, official_volume=15_000.0),
        ("ABC", EARLY): dict(open=12.0, high=12.4, low=11.9, close=12.32, volume=5200.0,
                             vwap=(12.05 * 500 + 12.2 * 700 + 12.3 * 4000) / 5200, pre_market_volume=0.0,
                             post_market_volume=80.0, bar_count=4, split_factor=2.0, adj_close=6.16,
                             adj_volume=10400.0, dividend=0.24, daily_return=6.16 / 5.61 - 1,
                             total_return=(6.16 + 0.12) / 5.61 - 1, official_close=None),
        ("ABC", NEXT): dict(open=6.0, high=6.2, low=5.9, close=6.1, volume=900.0, vwap=6.05, pre_market_volume=0.0,
                            post_market_volume=0.0, bar_count=1, split_factor=1.0, adj_close=6.1, adj_volume=900.0,
                            dividend=0.0, daily_return=6.1 / 6.16 - 1, total_return=6.1 / 6.16 - 1),
        ("ABC", QUIET): dict(open=None, high=None, low=None, close=None, volume=None, vwap=None,
                             pre_market_volume=10.0, post_market_volume=0.0, bar_count=1, split_factor=1.0,
                             adj_close=None, adj_volume=None, daily_return=None, total_return=None),
        ("ABC", AFTER_GAP): dict(close=6.35, adj_close=6.35, daily_return=None, total_return=None, sma_20=None,
                                 volatility_20=None),
    }


def assert_matches(actual: dict, expected: dict) -> None:
    for key, want in expected.items():
        got = actual[key]
        assert (got is None) == (want is None) and (want is None or got == pytest.approx(want, rel=1e-12)), (key, got)


def write_inputs(spark, storage, base, minutes=MINUTES, splits=(SPLIT,), dividends=(DIVIDEND,),
                 official=(OFFICIAL,)) -> str:
    minute = str(base / "stocks_fixed")
    storage.write(spark.createDataFrame(minutes, SILVER_SCHEMA), minute, mode="append", partition_by=PARTITION_COLUMNS)
    storage.write(spark.createDataFrame(list(splits), from_arrow_schema(SPLITS_SCHEMA)), str(base / "stocks_splits"),
                  mode="append")
    storage.write(spark.createDataFrame(list(dividends), from_arrow_schema(DIVIDENDS_SCHEMA)),
                  str(base / "stocks_dividends"), mode="append")
    storage.write(spark.createDataFrame(list(official), OFFICIAL_SCHEMA), str(base / "stocks_official_daily"),
                  mode="append")
    return minute


def build(storage, base, **kwargs):
    return build_daily(storage, str(base / "stocks_fixed"), str(base / "stocks_splits"), str(base / "stocks_daily"),
                       checks_path=str(base / "quality_checks"), **kwargs)


@pytest.fixture(scope="module")
def built(spark, storage, tmp_path_factory):
    base = tmp_path_factory.mktemp(f"daily-{storage.name}")
    write_inputs(spark, storage, base)
    report = build(storage, base)
    return storage, base, report


def test_each_day_matches_a_computation_by_hand(built):
    storage, base, report = built
    rows = {(r["ticker"], r["trade_date"]): r.asDict() for r in storage.read(str(base / "stocks_daily")).collect()}
    assert set(rows) == set(expected_rows())  # the quiet day is kept, not dropped
    for key, expected in expected_rows().items():
        assert_matches(rows[key], expected)
    assert report.rows == 5 and report.splits_known == 1 and report.dividends_known == 1 and report.full
    assert [f.name for f in storage.read(str(base / "stocks_daily")).schema.fields] == [
        f.name for f in DAILY_SCHEMA.fields]


def test_the_official_bar_is_checked_against_the_closing_print(built):
    storage, base, report = built
    checks = {(r.trade_date, r.check): (r.status, r.observed) for r in
              storage.read(str(base / "quality_checks")).collect()}
    # 15,150 minute shares of 15,000 official: the minutes hold more than 90% (pass); the closes agree to the cent
    assert checks == {(NORMAL, "official_close"): ("pass", pytest.approx(0.0, abs=1e-9)),
                      (NORMAL, "official_volume"): ("pass", pytest.approx(15_150 / 15_000))}
    assert report.checks.counts == {"pass": 2, "warn": 0, "fail": 0}


def test_a_build_with_nothing_new_writes_nothing(built):
    storage, base, _ = built
    before = storage.detail(str(base / "stocks_daily")).version
    report = build(storage, base)
    assert report.version is None and report.rewritten == 0
    assert storage.detail(str(base / "stocks_daily")).version == before


def test_a_new_split_rederives_that_tickers_rows_and_as_traded_never_moves(built, spark):
    storage, base, _ = built
    storage.write(spark.createDataFrame([("ABC", QUIET, 1.0, 3.0, "E-abc-2023-11-28")],
                                        from_arrow_schema(SPLITS_SCHEMA)),
                  str(base / "stocks_splits"), mode="append")
    report = build(storage, base)
    assert report.rewritten == 5 and not report.full
    after = {(r["ticker"], r["trade_date"]): r for r in storage.read(str(base / "stocks_daily")).collect()}
    assert after[("ABC", NORMAL)]["close"] == 11.22  # as traded never moves
    assert after[("ABC", NORMAL)]["adj_close"] == pytest.approx(11.22 / 6)
    assert after[("ABC", NEXT)]["adj_close"] == pytest.approx(6.1 / 3)


# -- indicators over trading days, and the incremental build ------------------------------------------------------
SIXTY = trading_days(dt.date(2024, 1, 2), dt.date(2024, 4, 30))[:62]
MISSING = SIXTY[55]  # one trading day the table does not hold (after 55 in a row: sma_50 fills first)


def closes(ticker: str) -> dict[dt.date, float]:
    rng = np.random.default_rng(7 if ticker == "AAA" else 8)
    path = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, len(SIXTY))))
    return {day: round(float(p), 2) for day, p in zip(SIXTY, path, strict=True) if day != MISSING}


def one_bar_days(ticker: str) -> list[tuple]:
    return [bar(day, "10:00", "regular", c, c, c, c, 100, c, ticker) for day, c in closes(ticker).items()]


def independent_indicators(ticker: str) -> dict[dt.date, tuple]:
    """sma_20, sma_50, volatility_20 and daily_return by plain Python over the trading-day sequence: a window counts
    only when every trading day in it is stored, a return only when the day before was."""
    values = closes(ticker)
    out = {}
    for i, day in enumerate(SIXTY):
        if day not in values:
            continue

        def window(n: int, index: int = i) -> list[float] | None:
            days = SIXTY[index - n + 1:index + 1] if index >= n - 1 else None
            return [values[d] for d in days] if days and all(d in values for d in days) else None

        previous = values.get(SIXTY[i - 1]) if i else None
        ret = values[day] / previous - 1 if previous else None
        logs = []
        for j in range(i - 19, i + 1):
            if j < 1 or SIXTY[j] not in values or SIXTY[j - 1] not in values:
                logs = None
                break
            logs.append(math.log(values[SIXTY[j]] / values[SIXTY[j - 1]]))
        sma20, sma50 = window(20), window(50)
        out[day] = (None if sma20 is None else sum(sma20) / 20, None if sma50 is None else sum(sma50) / 50,
                    None if logs is None else float(np.std(logs, ddof=1) * math.sqrt(252)), ret)
    return out


@pytest.fixture(scope="module")
def sixty(spark, storage, tmp_path_factory):
    base = tmp_path_factory.mktemp(f"sixty-{storage.name}")
    write_inputs(spark, storage, base, minutes=one_bar_days("AAA") + one_bar_days("BBB"), splits=(), dividends=(),
                 official=())
    build(storage, base)
    return storage, base


def daily_of(storage, base) -> dict:
    return {(r["ticker"], r["trade_date"]): r.asDict() for r in storage.read(str(base / "stocks_daily")).collect()}


def test_indicators_match_an_independent_computation_and_honour_the_gap(sixty):
    storage, base = sixty
    rows = daily_of(storage, base)
    for ticker in ("AAA", "BBB"):
        for day, (sma20, sma50, vol20, ret) in independent_indicators(ticker).items():
            row = rows[(ticker, day)]
            assert_matches(row, {"sma_20": sma20, "sma_50": sma50, "volatility_20": vol20, "daily_return": ret})
    assert sum(r["sma_50"] is not None for r in rows.values()) > 0  # the windows do fill, after the gap too
    after_gap = rows[("AAA", SIXTY[56])]
    assert after_gap["daily_return"] is None and after_gap["sma_20"] is None


def test_a_rewritten_day_rewrites_it_and_the_days_its_windows_reach_and_equals_a_full_build(sixty, spark):
    storage, base = sixty
    changed_day = SIXTY[5]
    minute = str(base / "stocks_fixed")
    from stockpipe.storage import ReplacePredicate

    new_bar = bar(changed_day, "10:00", "regular", 99.0, 99.0, 99.0, 99.0, 100, 99.0, "AAA")
    storage.write(spark.createDataFrame([new_bar], SILVER_SCHEMA), minute, mode="overwrite",
                  partition_by=PARTITION_COLUMNS, replace=ReplacePredicate.of(ticker=["AAA"], trade_date=[changed_day]))
    daily_version = storage.detail(str(base / "stocks_daily")).version
    report = build(storage, base)
    stored_after = [d for d in SIXTY[5:5 + 51] if d != MISSING]
    assert report.rewritten == len(stored_after) and not report.full and report.version == daily_version + 1
    incremental = daily_of(storage, base)
    assert incremental[("AAA", changed_day)]["close"] == 99.0
    build(storage, base, full=True)
    assert daily_of(storage, base) == incremental


def test_two_changes_far_apart_each_get_their_windows_context_and_equal_a_full_build(sixty, spark):
    """Days changed 52 trading days apart: the later one's 50-day window reaches a day between them that is not
    rewritten (the 53rd); it is computed over it all the same (the incremental rows equal a full build's)."""
    storage, base = sixty
    minute = str(base / "stocks_fixed")
    from stockpipe.storage import ReplacePredicate

    for day, price in ((SIXTY[2], 51.0), (SIXTY[54], 77.0)):
        new_bar = bar(day, "10:00", "regular", price, price, price, price, 100, price, "BBB")
        storage.write(spark.createDataFrame([new_bar], SILVER_SCHEMA), minute, mode="overwrite",
                      partition_by=PARTITION_COLUMNS, replace=ReplacePredicate.of(ticker=["BBB"], trade_date=[day]))
    report = build(storage, base)
    assert report.rewritten == len([d for d in SIXTY[2:53] + SIXTY[54:] if d != MISSING])
    incremental = daily_of(storage, base)
    assert incremental[("BBB", SIXTY[54])]["sma_50"] is not None
    build(storage, base, full=True)
    assert daily_of(storage, base) == incremental


def test_a_daily_table_from_an_older_version_is_rebuilt_whole(spark, storage, tmp_path):
    minute = write_inputs(spark, storage, tmp_path, minutes=MINUTES[:6], splits=(), dividends=(), official=())
    old = spark.createDataFrame([("ABC", NORMAL, 1.0)], "ticker string, trade_date date, close double")
    storage.write(old, str(tmp_path / "stocks_daily"), mode="overwrite")
    report = build(storage, tmp_path)
    assert report.full and report.rows == 1 and minute
    assert storage.read(str(tmp_path / "stocks_daily")).columns == [f.name for f in DAILY_SCHEMA.fields]


def test_the_sample_pipeline_across_a_split_matches_the_bars_it_served(storage, tmp_path, capsys):
    """End to end: the fixed harvester (as traded, splits fetched) and the daily door over NVDA's 10-for-1 split,
    checked against the sample source's own bars and split list."""
    table = tmp_path / "stocks_fixed"
    code, _, _ = run_door(fixed_stock_harvester, ["--source", "sample", "--tickers", "NVDA", "--from", "2024-06-06",
                                                  "--to", "2024-06-11", "--table-path", str(table), "--engine",
                                                  storage.name], capsys)
    assert code == 0
    code, out, _ = run_door(daily_bars, ["--table-path", str(table), "--engine", storage.name], capsys)
    assert code == 0 and "Each ticker's last day" in out and "1 split(s) and" in out
    rows = {r["trade_date"]: r for r in storage.read(str(tmp_path / "stocks_daily")).collect()}
    for day in (dt.date(2024, 6, 6), dt.date(2024, 6, 7), dt.date(2024, 6, 10), dt.date(2024, 6, 11)):
        bars = range_bars("NVDA", day, day)
        hours = session_hours(day)
        lo, hi = int(hours.open.timestamp() * 1000), int(hours.close.timestamp() * 1000)
        regular = [i for i, t in enumerate(bars["t"]) if lo <= t <= hi]  # through the closing print
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
    storage, base, _ = built
    monkeypatch.chdir(base)
    code, out, _ = run_door(daily_bars, ["--table-path", "stocks_fixed", "--engine", storage.name, "--full"], capsys)
    assert code == 0 and "Table stocks_daily: every row rebuilt; version" in out and str(base) not in out

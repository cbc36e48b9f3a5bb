"""The whole market's derived tables (stockpipe/breadth.py) against an independent computation in plain Python, over
official bars built by hand for about 290 sessions: a ticker with more than a year of history (new 52-week highs and
lows), a 2-for-1 split in the middle, a missing trading day, a holiday (MLK day 2024), a ticker listed later (no
52-week columns until its history reaches back), a flat one (unchanged). Then the incremental build, one change at a
time, each checked against the same computation: nothing new (no commit), a new day (only it rewritten), a corrected
day in the middle (it and the 251 sessions after it), a backfill before the first day (up to 251 sessions after the
old first day), a removed day, a new split (everything rebuilt)."""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterable

import numpy as np
import pandas as pd
import pytest
from pyspark.sql.pandas.types import from_arrow_schema

from stockpipe.breadth import (
    BREADTH_SCHEMA,
    FEW_SESSIONS,
    MARKET_SCHEMA,
    UNCHANGED_TOLERANCE,
    build_market,
    first_sessions,
    market_days,
    session_calendar,
    splits_fingerprint,
)
from stockpipe.market_calendar import sessions_between, trading_days
from stockpipe.reference.corporate_actions import SPLITS_SCHEMA
from stockpipe.reference.official_bars import OFFICIAL_SCHEMA
from stockpipe.storage import ReplacePredicate

# Each scenario derives 291 sessions through Spark (2-8 s each): `make test` and CI run them, the fast loop does not.
pytestmark = pytest.mark.slow

DAYS = trading_days(dt.date(2023, 1, 3), dt.date(2024, 2, 29))  # 291 sessions
SPLIT_DAY = DAYS[270]  # SPLT splits 2-for-1: as traded its price halves
GAP_DAY = DAYS[275]  # GAPS has no bar that day
YOUNG_FROM = 30  # YOUNG is listed at DAYS[30]: 52-week columns from DAYS[281]
HIGH_DAY, LOW_DAY = DAYS[280], DAYS[283]  # LONG's spike up, and its plunge
AFTER_HOLIDAY = dt.date(2024, 1, 16)  # Monday the 15th is MLK day: the previous session is Friday the 12th
FIRST_STORED = 10  # the first build holds DAYS[10:-2]; a later test backfills DAYS[0:5]


def path_of(seed: int, n: int = len(DAYS)) -> list[float]:
    rng = np.random.default_rng(seed)
    return [round(float(p), 2) for p in 50 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))]


def official_bar(ticker: str, day: dt.date, close: float, high: float | None = None,
                 low: float | None = None) -> tuple:
    high = round(close * 1.01, 2) if high is None else high
    low = round(close * 0.99, 2) if low is None else low
    return (ticker, day, close, high, low, close, 1000.0 + len(ticker), close, 100)


def all_bars() -> dict[tuple[str, dt.date], tuple]:
    """Every official bar of the scenario, by (ticker, day); the tests store a selection of them."""
    bars = {}
    for i, (day, close) in enumerate(zip(DAYS, path_of(1), strict=True)):
        high = 1000.0 if day == HIGH_DAY else None
        low = 0.01 if day == LOW_DAY else None
        bars[("LONG", day)] = official_bar("LONG", day, close, high, low)
        bars[("FLAT", day)] = official_bar("FLAT", day, 10.0, 10.0, 10.0)
        if day != GAP_DAY:
            bars[("GAPS", day)] = official_bar("GAPS", day, path_of(3)[i])
        if i >= YOUNG_FROM:
            bars[("YOUNG", day)] = official_bar("YOUNG", day, path_of(4)[i])
    split_prices = path_of(2)
    split_prices[269], split_prices[270] = 50.0, 51.0  # adjusted: +2 % across the split
    for day, adjusted in zip(DAYS, split_prices, strict=True):
        traded = adjusted * 2 if day < SPLIT_DAY else adjusted
        bars[("SPLT", day)] = official_bar("SPLT", day, traded)
    return bars


BARS = all_bars()
SPLIT = ("SPLT", SPLIT_DAY, 1.0, 2.0, "E-splt-1")


# -- the independent computation ------------------------------------------------------------------------------------
def expected_tables(official: Iterable[tuple], splits: Iterable[tuple]) -> tuple[dict, dict]:
    """(market rows by (ticker, day), breadth rows by day), in plain Python over the trading-day sequence."""
    sessions = trading_days(dt.date(2022, 1, 3), dt.date(2024, 3, 29))
    index = {day: i for i, day in enumerate(sessions)}
    by_ticker: dict[str, list[tuple]] = defaultdict(list)
    for row in official:
        by_ticker[row[0]].append(row)
    split_list = list(splits)
    market = {}
    for ticker, rows in by_ticker.items():
        rows.sort(key=lambda r: r[1])
        first = index[rows[0][1]]
        adjusted = []
        for row in rows:
            factor = math.prod(to / frm for t, when, frm, to, _ in split_list if t == ticker and when > row[1])
            adjusted.append((row[1], factor, row[3] / factor, row[4] / factor, row[5] / factor))
        for n, (row, (day, factor, adj_high, adj_low, adj_close)) in enumerate(zip(rows, adjusted, strict=True)):
            before = adjusted[n - 1] if n else None
            ret = adj_close / before[4] - 1 if before and index[before[0]] == index[day] - 1 else None
            window = [a for a in adjusted if index[day] - 251 <= index[a[0]] < index[day]]
            reaches = index[day] - first >= 251
            market[(ticker, day)] = dict(
                close=row[5], volume=row[6], dollar_volume=row[5] * row[6], split_factor=factor, adj_close=adj_close,
                daily_return=ret,
                high_52w=max([adj_high] + [a[2] for a in window]) if reaches else None,
                low_52w=min([adj_low] + [a[3] for a in window]) if reaches else None,
                new_high=adj_high > max(a[2] for a in window) if reaches and window else None,
                new_low=adj_low < min(a[3] for a in window) if reaches and window else None)
    breadth: dict[dt.date, dict] = {}
    for (_, day), row in market.items():
        counts = breadth.setdefault(day, dict.fromkeys(
            ("tickers", "advancers", "decliners", "unchanged", "new_highs", "new_lows", "with_52w_history"), 0))
        ret = row["daily_return"]
        counts["tickers"] += 1
        counts["advancers"] += ret is not None and ret > UNCHANGED_TOLERANCE
        counts["decliners"] += ret is not None and ret < -UNCHANGED_TOLERANCE
        counts["unchanged"] += ret is not None and abs(ret) <= UNCHANGED_TOLERANCE
        counts["new_highs"] += row["new_high"] is True
        counts["new_lows"] += row["new_low"] is True
        counts["with_52w_history"] += row["high_52w"] is not None
    return market, breadth


def same(got, want) -> bool:
    if want is None or got is None or isinstance(want, bool):
        return got == want
    return got == pytest.approx(want, rel=1e-12)


def tables(storage, base) -> tuple[dict, dict]:
    market = {(r["ticker"], r["trade_date"]): r for r in storage.read_arrow(str(base / "market")).to_pylist()}
    breadth = {r["trade_date"]: r for r in storage.read_arrow(str(base / "breadth")).to_pylist()}
    return market, breadth


def assert_tables_match_the_computation(storage, base) -> tuple[dict, dict]:
    official = [tuple(r.values()) for r in storage.read_arrow(str(base / "official")).to_pylist()]
    splits = [tuple(r.values()) for r in storage.read_arrow(str(base / "splits")).to_pylist()]
    want_market, want_breadth = expected_tables(official, splits)
    market, breadth = tables(storage, base)
    assert set(market) == set(want_market)
    wrong = [(key, name, row[name], want) for key, row in market.items() for name, want in want_market[key].items()
             if not same(row[name], want)]
    assert not wrong, wrong[:5]
    assert set(breadth) == set(want_breadth)
    wrong = [(day, name, breadth[day][name], want) for day, counts in want_breadth.items()
             for name, want in counts.items() if breadth[day][name] != want]
    assert not wrong, wrong[:5]
    return market, breadth


# -- the scenario -----------------------------------------------------------------------------------------------------
OFFICIAL_COLUMNS = [c.split()[0] for c in OFFICIAL_SCHEMA.split(", ")]


def store_official(spark, storage, base, bars: Iterable[tuple], replace_days=None) -> None:
    """Official rows into the table, through pandas (Arrow), as the harvest hands them over."""
    rows = pd.DataFrame(list(bars), columns=OFFICIAL_COLUMNS)
    frame = spark.createDataFrame(rows, OFFICIAL_SCHEMA)
    if replace_days is None:
        storage.write(frame, str(base / "official"), mode="append")
    else:
        storage.write(frame, str(base / "official"), mode="overwrite",
                      replace=ReplacePredicate.of(trade_date=replace_days))


def store_splits(spark, storage, base, splits: Iterable[tuple]) -> None:
    frame = spark.createDataFrame(list(splits), from_arrow_schema(SPLITS_SCHEMA))
    storage.write(frame, str(base / "splits"), mode="append")


def build(storage, base, **kwargs):
    return build_market(storage, str(base / "official"), str(base / "splits"), str(base / "market"),
                        str(base / "breadth"), **kwargs)


def files_by_day(storage, base) -> dict[dt.date, set[str]]:
    found: dict[dt.date, set[str]] = defaultdict(set)
    for info in storage.detail(str(base / "market")).files:
        found[dt.date.fromisoformat(info.partition["trade_date"])].add(info.path)
    return found


def bars_of(days: Iterable[dt.date], tickers: Iterable[str] | None = None) -> list[tuple]:
    wanted, names = set(days), None if tickers is None else set(tickers)
    return [bar for (ticker, day), bar in BARS.items() if day in wanted and (names is None or ticker in names)]


@pytest.fixture(scope="module")
def market(spark, storage, tmp_path_factory):
    base = tmp_path_factory.mktemp(f"market-{storage.name}")
    store_official(spark, storage, base, bars_of(DAYS[FIRST_STORED:-2]))
    store_splits(spark, storage, base, [SPLIT])
    return storage, base, build(storage, base)


def test_a_first_build_derives_every_day_in_one_commit_each(market):
    storage, base, report = market
    stored = DAYS[FIRST_STORED:-2]
    assert report.full and report.why_full == "first build"
    assert report.rewritten_days == report.days == len(stored) and report.rows == len(bars_of(stored))
    assert report.market_version == 0 and report.breadth_version == 0
    assert (report.first_day, report.last_day) == (stored[0], stored[-1])
    assert report.latest is not None and report.latest["trade_date"] == stored[-1] and report.latest["tickers"] == 5
    assert [f.name for f in storage.read(str(base / "market")).schema.fields] == MARKET_SCHEMA.names
    assert [f.name for f in storage.read(str(base / "breadth")).schema.fields] == BREADTH_SCHEMA.names


def test_each_row_and_each_days_breadth_match_a_computation_by_hand(market):
    storage, base, _ = market
    assert_tables_match_the_computation(storage, base)


def test_the_market_table_is_by_date_one_file_a_day_sorted_by_ticker(market):
    storage, base, _ = market
    detail = storage.detail(str(base / "market"))
    assert detail.partition_columns == ["trade_date"]
    assert all(len(files) == 1 for files in files_by_day(storage, base).values())
    import pyarrow.parquet as pq

    one = pq.read_table(base / "market" / next(iter(files_by_day(storage, base)[DAYS[200]])))
    assert one.column("ticker").to_pylist() == sorted(one.column("ticker").to_pylist())


def test_the_split_is_no_jump_and_as_traded_never_moves(market):
    storage, base, _ = market
    rows, _ = tables(storage, base)
    before, on = rows[("SPLT", DAYS[269])], rows[("SPLT", SPLIT_DAY)]
    assert (before["close"], before["split_factor"], before["adj_close"]) == (100.0, 2.0, 50.0)
    assert (on["close"], on["split_factor"], on["adj_close"]) == (51.0, 1.0, 51.0)
    assert on["daily_return"] == pytest.approx(0.02)  # not -49 %
    assert on["new_low"] is False  # the as-traded halving is no 52-week low


def test_a_return_across_a_missing_day_is_null_across_a_holiday_it_is_not(market):
    storage, base, _ = market
    rows, _ = tables(storage, base)
    after_gap = rows[("GAPS", DAYS[DAYS.index(GAP_DAY) + 1])]
    assert after_gap["daily_return"] is None and after_gap["high_52w"] is not None
    friday = rows[("LONG", dt.date(2024, 1, 12))]["adj_close"]
    assert rows[("LONG", AFTER_HOLIDAY)]["daily_return"] == pytest.approx(
        rows[("LONG", AFTER_HOLIDAY)]["adj_close"] / friday - 1)


def test_52_week_columns_wait_for_a_year_of_history_then_flag_the_extremes(market):
    storage, base, _ = market
    rows, breadth = tables(storage, base)
    young_first_year = DAYS[YOUNG_FROM + 250]
    assert rows[("YOUNG", young_first_year)]["high_52w"] is None
    assert rows[("YOUNG", young_first_year)]["new_high"] is None
    assert rows[("YOUNG", DAYS[YOUNG_FROM + 251])]["high_52w"] is not None
    spike, plunge = rows[("LONG", HIGH_DAY)], rows[("LONG", LOW_DAY)]
    assert spike["new_high"] is True and spike["high_52w"] == 1000.0
    assert plunge["new_low"] is True and plunge["low_52w"] == 0.01
    assert rows[("LONG", DAYS[DAYS.index(HIGH_DAY) + 1])]["new_high"] is False  # 1,000 stays the year's high
    assert rows[("FLAT", HIGH_DAY)]["new_high"] is False  # equal is not above
    assert breadth[HIGH_DAY]["new_highs"] >= 1 and breadth[HIGH_DAY]["unchanged"] >= 1  # FLAT
    assert breadth[DAYS[FIRST_STORED + 250]]["with_52w_history"] == 0
    assert breadth[DAYS[FIRST_STORED + 251]]["with_52w_history"] == 4  # all but YOUNG (listed later)


def test_a_build_with_nothing_new_makes_no_commit(market):
    storage, base, _ = market
    versions = storage.detail(str(base / "market")).version, storage.detail(str(base / "breadth")).version
    report = build(storage, base)
    assert report.market_version is None and report.breadth_version is None and report.rewritten_days == 0
    assert not report.full
    assert (storage.detail(str(base / "market")).version, storage.detail(str(base / "breadth")).version) == versions


def test_a_new_day_rewrites_that_day_alone(market, spark):
    storage, base, _ = market
    files = files_by_day(storage, base)
    store_official(spark, storage, base, bars_of([DAYS[-2]]))
    report = build(storage, base)  # no changed_days: the tables tell
    assert report.rewritten_days == 1 and report.rewritten_rows == 5 and not report.full
    after = files_by_day(storage, base)
    assert set(after) == set(files) | {DAYS[-2]} and all(after[d] == files[d] for d in files)
    assert report.latest is not None and report.latest["trade_date"] == DAYS[-2]
    assert_tables_match_the_computation(storage, base)


@pytest.mark.slow  # 252 partitions rewritten: about 5 s
def test_a_corrected_day_rewrites_it_and_the_251_sessions_after_it(market, spark):
    storage, base, _ = market
    corrected = DAYS[20]
    files = files_by_day(storage, base)
    fixed = [official_bar("LONG", corrected, 500.0) if bar[0] == "LONG" else bar for bar in bars_of([corrected])]
    store_official(spark, storage, base, fixed, replace_days=[corrected])
    report = build(storage, base, changed_days=[corrected])  # the same tickers that day: only the caller knows
    rewritten = [d for d in files if corrected <= d <= DAYS[20 + 251]]
    assert report.rewritten_days == len(rewritten) and not report.full
    after = files_by_day(storage, base)
    assert all((after[d] == files[d]) == (d not in rewritten) for d in files)
    rows, _ = assert_tables_match_the_computation(storage, base)
    assert rows[("LONG", DAYS[21])]["daily_return"] < -0.8  # from 500 back to about 50


def test_a_backfill_before_the_first_day_reaches_251_sessions_past_the_old_first_day(market, spark):
    """DAYS[0:5] arrive after DAYS[10:]: LONG's history now reaches a year back from DAYS[251] instead of DAYS[261],
    five sessions beyond the 251 after the last new day (DAYS[4])."""
    storage, base, _ = market
    store_official(spark, storage, base, bars_of(DAYS[:5]))
    report = build(storage, base)
    stored = DAYS[:5] + DAYS[FIRST_STORED:-1]
    assert report.rewritten_days == len([d for d in stored if d <= DAYS[FIRST_STORED + 250]])
    rows, _ = assert_tables_match_the_computation(storage, base)
    assert rows[("LONG", DAYS[258])]["high_52w"] is not None


def test_a_day_gone_from_the_official_table_is_removed(market, spark):
    storage, base, _ = market
    store_official(spark, storage, base, [], replace_days=[DAYS[-2]])
    report = build(storage, base)
    assert report.removed_days == 1 and report.rewritten_days == 0 and report.market_version is not None
    market_rows, breadth = assert_tables_match_the_computation(storage, base)
    assert max(breadth) == DAYS[-3]


def test_a_new_split_rebuilds_every_day(market, spark):
    storage, base, report_before = market
    store_splits(spark, storage, base, [("LONG", DAYS[200], 1.0, 3.0, "E-long-1")])
    report = build(storage, base)
    assert report.full and report.why_full == "splits changed" and report.splits_fingerprint != (
        report_before.splits_fingerprint)
    rows, _ = assert_tables_match_the_computation(storage, base)
    assert rows[("LONG", DAYS[199])]["split_factor"] == 3.0 and rows[("LONG", DAYS[200])]["split_factor"] == 1.0
    assert build(storage, base).market_version is None  # and it is remembered


def test_a_few_days_close_together_take_the_aggregate_route_to_the_same_rows(spark):
    """A night's new days get their 52-week range by aggregation (`prior_extremes_of`), not the sliding window: the
    same rows, over targets whose windows' edges cross the missing day, the split, the spike and the plunge."""
    official = spark.createDataFrame(pd.DataFrame(list(BARS.values()), columns=OFFICIAL_COLUMNS), OFFICIAL_SCHEMA)
    splits = spark.createDataFrame([SPLIT], from_arrow_schema(SPLITS_SCHEMA))
    sessions = sessions_between(DAYS[0], DAYS[-1])
    calendar = session_calendar(spark, sessions)
    firsts = first_sessions(official, calendar)
    index = {s.day: s.index for s in sessions}
    targets = [index[DAYS[i]] for i in (280, 281, 283, 286)]  # within FEW_SESSIONS of each other
    assert max(targets) - min(targets) < FEW_SESSIONS
    every = {(r.ticker, r.trade_date): r for r in market_days(official, splits, calendar, firsts).collect()}
    few = market_days(official, splits, calendar, firsts, only=targets).collect()
    assert {r.trade_date for r in few} == {DAYS[i] for i in (280, 281, 283, 286)} and len(few) == 4 * 5
    assert all(r == every[(r.ticker, r.trade_date)] for r in few)
    assert any(r.new_high for r in few) and any(r.new_low for r in few)


def test_the_splits_fingerprint_ignores_order_and_ids_and_counts_duplicates(spark):
    schema = from_arrow_schema(SPLITS_SCHEMA)
    one = ("AAA", dt.date(2024, 1, 2), 1.0, 2.0, "a")
    two = ("BBB", dt.date(2024, 2, 1), 1.0, 10.0, "b")

    def of(rows):
        return splits_fingerprint(spark.createDataFrame(rows, schema))

    assert of([one, two]) == of([two, one[:4] + ("another id",)])
    assert of([one, two]) != of([one, two, one]) != of([one])
    assert of([]) == of([])


@pytest.mark.connect
def test_end_to_end_under_a_far_session_time_zone(spark, storage, tmp_path, session_time_zone):
    """The whole build on a session whose time zone is a day away from New York's (Kiritimati, UTC+14), then a new
    day and a rerun: the dates and every number are those of the computation by hand; the rerun commits nothing."""
    session_time_zone("Pacific/Kiritimati")
    later = DAYS[-30:]
    store_official(spark, storage, tmp_path, bars_of(later[:-1], ("SPLT", "GAPS")))
    store_splits(spark, storage, tmp_path, [SPLIT])
    assert build(storage, tmp_path).full
    store_official(spark, storage, tmp_path, bars_of(later[-1:], ("SPLT", "GAPS")))
    assert build(storage, tmp_path).rewritten_days == 1
    rows, _ = assert_tables_match_the_computation(storage, tmp_path)
    assert rows[("SPLT", SPLIT_DAY)]["daily_return"] == pytest.approx(0.02)
    assert build(storage, tmp_path).market_version is None

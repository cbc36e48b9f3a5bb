"""History stays true run after run: bars stored as traded whatever the provider later learns about splits, the
splits themselves known and stored once, and no answer that stops short taken as the whole range."""

from __future__ import annotations

import datetime as dt
import json
import logging

import pytest

from stockpipe.landing import COMPLETE_MARKER, LandingZone, default_landing_path
from stockpipe.sample import SAMPLE_SPLITS, Split, range_bars
from stockpipe.testing import ApiBehaviour, FakeMassiveServer, Fault
from tests.helpers import KEY, aggs_calls, expected_rows, harvest, splits_calls, table_rows

pytestmark = pytest.mark.slow
NVDA_SPLIT = dt.date(2024, 6, 10)  # 10-for-1


def stored_splits(storage, path) -> list[tuple]:
    frame = storage.read(str(path))
    return sorted((r["ticker"], r["execution_date"], r["split_from"], r["split_to"]) for r in frame.collect())


def test_a_split_learned_between_runs_and_a_refetch_leave_every_stored_bar_identical(storage, tmp_path, clock):
    """The provider adds a split after the first run (as it does, retroactively): an adjusted fetch would now
    come back at half the price. Stored as traded, a --refetch reproduces exactly what is there."""
    path = tmp_path / "t"
    with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:
        harvest(storage, path, server, clock, tickers=("AAPL", "NVDA"))
    first = table_rows(storage, path)
    later = (*SAMPLE_SPLITS, Split("AAPL", dt.date(2024, 3, 1), 1, 2))
    with FakeMassiveServer(ApiBehaviour(api_key=KEY, splits=later)) as server:
        harvest(storage, path, server, clock, tickers=("AAPL", "NVDA"), refetch=True)
        assert all("adjusted=false" in entry.query for entry in aggs_calls(server))
    assert table_rows(storage, path) == first == expected_rows(["AAPL", "NVDA"], dt.date(2024, 1, 8),
                                                                 dt.date(2024, 1, 12))


def test_a_sample_backfill_across_a_split_shows_the_jump_as_traded(storage, tmp_path, clock):
    """NVDA's 10-for-1 split of 2024-06-10: the last close before it is about ten times the first after it."""
    path = tmp_path / "t"
    with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:
        harvest(storage, path, server, clock, tickers=("NVDA",), date_from="2024-06-07", date_to="2024-06-10")
    closes = {}
    for row in storage.read(str(path)).groupBy("trade_date").agg({"close": "avg"}).collect():
        closes[row["trade_date"]] = row["avg(close)"]
    assert 7 < closes[dt.date(2024, 6, 7)] / closes[NVDA_SPLIT] < 14


def test_the_splits_table_holds_each_split_once_after_repeated_runs(storage, tmp_path, clock):
    path = tmp_path / "t"
    splits_path = tmp_path / "stocks_splits"
    with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:
        for refetch in (False, True, True):
            report = harvest(storage, path, server, clock, tickers=("NVDA", "MSFT"), date_from="2024-06-05",
                             date_to="2024-06-12", refetch=refetch)
        assert len(splits_calls(server)) == 1  # refreshed through today by the first run: not asked again
    assert stored_splits(storage, splits_path) == [("NVDA", NVDA_SPLIT, 1.0, 10.0)]
    assert report.references.versions["splits"] is None  # the last two runs found the rows already right
    assert len(storage.history(str(splits_path))) <= 2  # created (delta-rs: empty first), then written once


def test_a_daily_run_rereads_the_year_before_it_a_rerun_none_and_a_gap_misses_no_split(storage, tmp_path, clock):
    """Day runs: each re-reads the splits of the year before its first day through today (the provider lists some
    late), so a split executed while no run happened (NVDA's, during a week without runs) is found by the next run,
    in one call; a rerun the same day, served from the landing zone, makes no call at all."""
    path = tmp_path / "t"
    with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:
        harvest(storage, path, server, clock, tickers=("NVDA",), date_from="2024-06-03", date_to="2024-06-03",
                today=dt.date(2024, 6, 4))
        assert [e.query for e in splits_calls(server)] == [
            "execution_date.gte=2023-06-04&execution_date.lte=2024-06-04&sort=execution_date&order=asc&limit=1000"]
        assert stored_splits(storage, tmp_path / "stocks_splits") == []
        before = len(server.log)
        harvest(storage, path, server, clock, tickers=("NVDA",), date_from="2024-06-03", date_to="2024-06-03",
                today=dt.date(2024, 6, 4))
        assert len(server.log) == before  # served from the landing zone: no call, not even for reference data
        harvest(storage, path, server, clock, tickers=("NVDA",), date_from="2024-06-12", date_to="2024-06-12",
                today=dt.date(2024, 6, 13))
        gap_window = splits_calls(server)[-1].query
        assert len(splits_calls(server)) == 2
    assert gap_window.startswith("execution_date.gte=2023-06-13&execution_date.lte=2024-06-13")
    assert stored_splits(storage, tmp_path / "stocks_splits") == [("NVDA", NVDA_SPLIT, 1.0, 10.0)]


def test_a_failed_splits_call_stores_the_bars_and_says_so(storage, tmp_path, clock):

    path = tmp_path / "t"
    with FakeMassiveServer(ApiBehaviour(api_key=KEY, faults=[Fault("503", ticker="splits", times=100)])) as server:
        report = harvest(storage, path, server, clock, tickers=("AAPL",), max_attempts=2)
    assert table_rows(storage, path) == expected_rows(["AAPL"], dt.date(2024, 1, 8), dt.date(2024, 1, 12))
    splits = next(f for f in report.fetched_references if f.kind == "splits")
    assert splits.error is not None and not splits.refused
    assert any(line.startswith("splits were not refreshed (") for line in report.errors())
    assert stored_splits(storage, tmp_path / "stocks_splits") == []  # what earlier windows knew: nothing yet
    landed = LandingZone(default_landing_path(str(path))).reference_fetches("splits")
    assert not [f for f in landed if f.complete]  # nothing counts as refreshed: asked again next run


def test_an_answer_that_stops_short_is_continued_and_every_bar_lands(storage, tmp_path, clock):
    path = tmp_path / "t"
    with FakeMassiveServer(ApiBehaviour(api_key=KEY, faults=[Fault("short", ticker="AAPL")])) as server:
        report = harvest(storage, path, server, clock, tickers=("AAPL", "MSFT"))
        aapl = [e for e in aggs_calls(server) if "/AAPL/" in e.path]
    assert not report.failed and len(aapl) == 2
    first_bar_after_monday = int(range_bars("AAPL", dt.date(2024, 1, 8), dt.date(2024, 1, 8))["t"][-1]) + 1
    assert aapl[1].path.endswith(f"/{first_bar_after_monday}/2024-01-12")  # right after the last bar it got
    assert table_rows(storage, path) == expected_rows(["AAPL", "MSFT"], dt.date(2024, 1, 8), dt.date(2024, 1, 12))


def test_an_answer_that_stays_short_fails_that_ticker_naming_the_days(storage, tmp_path, clock):
    path = tmp_path / "t"
    with FakeMassiveServer(ApiBehaviour(api_key=KEY, faults=[Fault("short", ticker="AAPL", times=10)])) as server:
        report = harvest(storage, path, server, clock, tickers=("AAPL", "MSFT"))
        assert len([e for e in aggs_calls(server) if "/AAPL/" in e.path]) == 4  # the answer and 3 continuations
    assert [t.ticker for t in report.failed] == ["AAPL"]
    assert "stopped short after 3 continuations: no bars for 2024-01-12" in report.failed[0].stats.error
    assert table_rows(storage, path) == expected_rows(["MSFT"], dt.date(2024, 1, 8), dt.date(2024, 1, 12))


def test_landed_pages_fetched_split_adjusted_are_fetched_again_not_reused(storage, tmp_path, clock, caplog):
    """Every landing zone from before this version holds adjusted pages: marked so (their _complete.json has no
    `adjusted`), they are fetched again as traded, and the run says so in one line."""
    path = tmp_path / "t"
    with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:
        harvest(storage, path, server, clock, tickers=("AAPL", "MSFT"))
        for fetch in LandingZone(default_landing_path(str(path))).fetches("AAPL"):
            marker = fetch.path / COMPLETE_MARKER
            marker.write_text(json.dumps({k: v for k, v in json.loads(marker.read_text()).items() if k != "adjusted"}))
        before = len(aggs_calls(server))
        with caplog.at_level(logging.WARNING, logger="stockpipe"):
            harvest(storage, path, server, clock, tickers=("AAPL", "MSFT"))
        again = [e.path.split("/")[4] for e in aggs_calls(server)[before:]]
    assert again == ["AAPL"]
    notices = [r.getMessage() for r in caplog.records if "split-adjusted" in r.getMessage()]
    assert len(notices) == 1 and notices[0].startswith("landed pages of AAPL were split-adjusted")
    assert table_rows(storage, path) == expected_rows(["AAPL", "MSFT"], dt.date(2024, 1, 8), dt.date(2024, 1, 12))

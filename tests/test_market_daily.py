"""market_daily.py: the whole market's official daily bars, one grouped call a trading day, on the free key's pace.

One scenario of eight trading days on a paced key with an injected clock (what it calls, how long the calls take,
what it stores and quarantines, a second run that calls nothing), a run that stops part way and the run that resumes
it, the plan's refusal of the current day, and the door itself (its summary, its record in pipeline_runs, its exit
codes, the over-the-counter names)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

import market_daily
from stockpipe.breadth import build_market
from stockpipe.config import HarvestConfig
from stockpipe.landing import GROUPED, LandingZone, default_landing_path
from stockpipe.market_calendar import new_york_today, trading_days
from stockpipe.marketdaily import MarketDailyConfig, bar_problem, run_market_daily
from stockpipe.reports import render_market_daily
from stockpipe.sample.universe import MARKET_SIZE, otc_symbols
from stockpipe.testing import ApiBehaviour, FakeMassiveServer, Fault
from tests.helpers import ROOT, FakeClock, run_door

FIRST, LAST = dt.date(2024, 1, 8), dt.date(2024, 1, 18)  # eight sessions: Monday 15 January is a holiday
DAYS = trading_days(FIRST, LAST)
FREE_FLOOR_S = 60.0  # ten calls at five a rolling minute: the second five wait for the first minute to pass


def config(server: FakeMassiveServer, table: Path, clock: FakeClock, *, first: dt.date = FIRST, last: dt.date = LAST,
           today: dt.date = dt.date(2024, 1, 19), include_otc: bool = False) -> MarketDailyConfig:
    harvest = HarvestConfig(
        tickers=(), date_from=first, date_to=last, table_path=str(table), landing_path=default_landing_path(str(table)),
        source="api", base_url=server.base_url, api_key="k", calls_per_minute=5, show_progress=False, today=today,
        clock=clock, sleep=clock.sleep)
    return MarketDailyConfig(harvest, include_otc=include_otc, derive=False)


def grouped_calls(server: FakeMassiveServer) -> list[str]:
    return [entry.path for entry in server.log if "/grouped/" in entry.path and entry.status == 200]


@pytest.fixture(scope="module")
def free_key_run(storage, tmp_path_factory):
    """Eight trading days of the whole (faulty) sample market on a 5-a-minute key, then the same run again."""
    table = tmp_path_factory.mktemp("market") / "stocks_fixed"
    clock = FakeClock()  # the client's pacing waits on it (the limiter's own test meets a real server's window)
    with FakeMassiveServer(ApiBehaviour(sample_faults=True)) as server:
        started = clock.now
        first = run_market_daily(config(server, table, clock), storage)
        elapsed = clock.now - started
        calls_first = len(server.log)
        grouped_first = grouped_calls(server)
        second = run_market_daily(config(server, table, clock), storage)
        calls_second = len(server.log) - calls_first
    return table, first, elapsed, calls_first, grouped_first, second, calls_second


@pytest.mark.slow
def test_eight_days_take_ten_calls_within_the_free_keys_floor(free_key_run):
    _, first, elapsed, calls, grouped, _, _ = free_key_run
    assert len(grouped) == len(DAYS) == 8  # one a trading day; the holiday and the weekend make none
    assert calls == first.calls == 10  # the eight, the splits list and the dividends list
    assert elapsed <= 1.15 * FREE_FLOOR_S and first.count("fetched") == 8


@pytest.mark.slow
def test_every_ticker_of_every_day_is_stored_once_and_the_bad_bars_are_quarantined(free_key_run, storage):
    table, first, *_ = free_key_run
    official = DeltaTable(str(table.parent / "stocks_official_daily")).to_pyarrow_table()
    assert official.num_rows == first.rows == 8 * (MARKET_SIZE - 2)  # two bars a day break a rule
    assert official.group_by(["ticker", "trade_date"]).aggregate([]).num_rows == official.num_rows
    assert sorted(set(official.column("trade_date").to_pylist())) == DAYS
    assert pc.min(official.column("low")).as_py() > 0
    assert pc.all(pc.greater_equal(official.column("high"), official.column("low"))).as_py()
    quarantine = DeltaTable(str(table.parent / "stocks_quarantine")).to_pyarrow_table().to_pylist()
    assert len(quarantine) == first.quarantined == 16
    assert {row["reason"] for row in quarantine} == {"missing_close", "high_low_inconsistent"}
    assert all(row["landed_page"].startswith("reference=official_daily/ticker=_grouped/") for row in quarantine)
    stored = {(row["ticker"], row["trade_date"]) for row in official.select(["ticker", "trade_date"]).to_pylist()}
    assert not {(row["ticker"], row["trade_date"]) for row in quarantine} & stored


@pytest.mark.slow
def test_a_second_run_over_the_same_days_calls_nothing_and_writes_nothing(free_key_run):
    table, first, _, _, _, second, calls = free_key_run
    assert calls == 0 and second.calls == 0 and second.count("stored") == 8 and second.version is None
    history = DeltaTable(str(table.parent / "stocks_official_daily")).history()
    # Created, the first minute's three days (stored while the next calls waited on the window), the last five; the
    # second run added none.
    assert len(history) == 3
    quarantined = DeltaTable(str(table.parent / "stocks_quarantine")).to_pyarrow_table().num_rows
    assert quarantined == first.quarantined  # a bad bar is recorded once


@pytest.mark.slow
def test_the_derived_tables_are_built_while_the_calls_wait_so_the_last_build_takes_the_last_minute_alone(
        storage, tmp_path):
    """The first minute's three days are stored and derived while the next five calls wait on the window; after the
    last call the build derives those five alone, and the tables are those one build of the eight days makes."""
    table, clock = tmp_path / "stocks_fixed", FakeClock()
    with FakeMassiveServer() as server:
        cfg = dataclasses.replace(config(server, table, clock), derive=True)
        report = run_market_daily(cfg, storage, derive=market_daily._derive(str(table)))
    assert report.calls == 10 and report.derived_early == 1
    last = report.derived
    assert not last.full and last.rewritten_days == 5 and last.days == 8 and last.rows == 8 * MARKET_SIZE
    assert "Derived 1 time(s) while the calls waited" in render_market_daily(report)
    whole = tmp_path / "whole"
    built = build_market(storage, str(tmp_path / "stocks_official_daily"), str(tmp_path / "stocks_splits"),
                         str(whole / "market"), str(whole / "breadth"), full=True)
    assert built.rewritten_days == 8
    for early, once, key in (("stocks_market_daily", "market", ["trade_date", "ticker"]),
                             ("stocks_market_breadth", "breadth", ["trade_date"])):
        got = DeltaTable(str(tmp_path / early)).to_pyarrow_table().sort_by([(k, "ascending") for k in key])
        expected = DeltaTable(str(whole / once)).to_pyarrow_table().sort_by([(k, "ascending") for k in key])
        assert got.to_pylist() == expected.select(got.column_names).to_pylist()


@pytest.mark.slow
def test_a_run_that_stops_part_way_keeps_what_landed_and_the_next_run_fetches_only_the_rest(storage, tmp_path,
                                                                                           monkeypatch):
    import stockpipe.marketdaily as module

    monkeypatch.setattr(module, "DAYS_PER_COMMIT", 2)
    table, clock = tmp_path / "stocks_fixed", FakeClock()
    rejected = ApiBehaviour(faults=[Fault("401", ticker="grouped", after=3, times=100)])
    with FakeMassiveServer(rejected) as server:
        stopped = run_market_daily(config(server, table, clock), storage)
    assert stopped.stopped is not None and stopped.count("fetched") == 3 and len(stopped.failed) == 5
    with FakeMassiveServer() as server:
        resumed = run_market_daily(config(server, table, clock), storage)
        assert len(grouped_calls(server)) == 5
    assert resumed.count("stored") == 3 and resumed.count("fetched") == 5
    official = DeltaTable(str(tmp_path / "stocks_official_daily")).to_pyarrow_table()
    assert official.num_rows == 8 * MARKET_SIZE


def test_the_day_the_plan_refuses_is_partial_and_fetched_later(storage, tmp_path):
    table, clock = tmp_path / "stocks_fixed", FakeClock()
    last = DAYS[-1]
    with FakeMassiveServer(ApiBehaviour(plan_refuses_from=last)) as server:
        report = run_market_daily(config(server, table, clock, first=DAYS[-2], last=last, today=last), storage)
    assert report.refused == [last] and report.count("fetched") == 1 and not report.failed
    with FakeMassiveServer() as server:
        later = run_market_daily(config(server, table, clock, first=DAYS[-2], last=last,
                                        today=last + dt.timedelta(days=1)), storage)
        assert grouped_calls(server) == [f"/v2/aggs/grouped/locale/us/market/stocks/{last}"]
    assert later.count("fetched") == 1 and later.count("stored") == 1


@pytest.mark.parametrize("item, problem", [
    ({"T": "A", "o": 1, "h": 2, "l": 1, "c": 2, "v": 10}, None),
    ({"T": "A", "o": 1, "h": 2, "l": 1, "v": 10}, "missing_close"),
    ({"T": "A", "o": 1, "h": 2, "l": 1, "c": "2", "v": 10}, "missing_close"),
    ({"T": "A", "o": 1, "h": 2, "l": 0, "c": 2, "v": 10}, "non_positive_price"),
    ({"T": "A", "o": 1, "h": 1.5, "l": 1, "c": 2, "v": 10}, "high_low_inconsistent"),
    ({"T": "A", "o": 1, "h": 2, "l": 1.5, "c": 2, "v": 10}, "high_low_inconsistent"),
    ({"T": "A", "o": 1, "h": 2, "l": 1, "c": 2, "v": -1}, "bad_volume"),
    ({"T": "A", "o": 1, "h": 2, "l": 1, "c": 2, "v": float("nan")}, "bad_volume"),
    ({"o": 1, "h": 2, "l": 1, "c": 2, "v": 10}, "no_ticker"),
    ("not a bar", "no_ticker"),
])
def test_the_rules_a_grouped_bar_keeps(item, problem):
    assert bar_problem(item) == problem


# -- the door --------------------------------------------------------------------------------------------------------
@pytest.mark.connect
@pytest.mark.slow
def test_the_door_stores_the_sample_market_records_its_run_and_adds_otc_on_request(tmp_path, capsys):
    table = tmp_path / "stocks_fixed"
    argv = ["--source", "sample", "--from", "2024-01-10", "--to", "2024-01-12", "--table-path", str(table),
            "--engine", "delta-rs", "--no-derive"]
    code, out, err = run_door(market_daily, [a for a in argv if a != "--no-derive"], capsys)
    assert code == 0, err
    assert "3 trading day(s): 3 fetched" in out and "33,000 row(s) written, 11,000 tickers" in out
    # Then the derived tables, with no call: each day's breadth counts the market's returns (none the first day).
    assert "every day derived again (first build); 33,000 rows, 3 days" in out
    breadth = DeltaTable(str(tmp_path / "stocks_market_breadth")).to_pyarrow_table().sort_by("trade_date").to_pylist()
    assert [b["tickers"] for b in breadth] == [MARKET_SIZE] * 3
    assert breadth[0]["advancers"] + breadth[0]["decliners"] + breadth[0]["unchanged"] == 0
    assert all(b["advancers"] + b["decliners"] + b["unchanged"] == MARKET_SIZE for b in breadth[1:])
    assert f"Breadth 2024-01-12: {breadth[2]['advancers']:,} up" in out
    runs = DeltaTable(str(tmp_path / "pipeline_runs")).to_pyarrow_table().to_pylist()
    assert [(r["script"], r["status"], r["calls"], r["rows_written"]) for r in runs] == [
        ("market_daily", "success", 5, 33_000)]
    code, out, _ = run_door(market_daily, argv, capsys)
    assert code == 0 and "3 already stored (no call)" in out and "0 call(s)" in out

    otc_table = tmp_path / "otc" / "stocks_fixed"
    code, out, _ = run_door(market_daily, [*argv[:-3], "--table-path", str(otc_table), "--include-otc",
                                           "--engine", "delta-rs", "--no-derive"], capsys)
    tickers = set(DeltaTable(str(tmp_path / "otc" / "stocks_official_daily")).to_pyarrow_table()
                  .column("ticker").to_pylist())
    assert code == 0 and set(otc_symbols()) <= tickers and len(tickers) == MARKET_SIZE + len(otc_symbols())


def test_the_door_says_partial_for_the_refused_day_and_strict_makes_it_fail(tmp_path, capsys, monkeypatch):
    today = new_york_today()
    last = trading_days(today - dt.timedelta(days=10), today)[-1]
    monkeypatch.setenv("MASSIVE_API_KEY", "a-key-of-test")
    with FakeMassiveServer(ApiBehaviour(plan_refuses_from=last)) as server:
        argv = ["--source", "api", "--base-url", server.base_url, "--from", str(last), "--to", str(last),
                "--table-path", str(tmp_path / "stocks_fixed"), "--engine", "delta-rs", "--no-derive",
                "--calls-per-minute", "600"]
        code, out, err = run_door(market_daily, argv, capsys)
        assert code == 0 and "refused by the plan" in out and "warning: the key's plan refused" in err
        code, _, err = run_door(market_daily, [*argv, "--strict"], capsys)
        assert code == 1 and "error: the key's plan refused" in err
    runs = DeltaTable(str(tmp_path / "pipeline_runs")).to_pyarrow_table().to_pylist()
    assert sorted((r["status"], r["exit_code"]) for r in runs) == [("partial", 0), ("partial", 1)]


@pytest.mark.parametrize("argv, message", [
    (["--from", "2024-01-12", "--to", "2024-01-08"], "is after --to"),
    (["--from", "2024-01-08", "--to", "2999-01-01"], "is in the future"),
    (["--source", "api", "--sample-faults"], "--sample-faults needs --source sample"),
])
def test_the_door_refuses_bad_input_in_one_line(argv, message, tmp_path, capsys):
    code, out, err = run_door(market_daily, [*argv, "--table-path", str(tmp_path / "t")], capsys)
    assert code == 2 and message in err and "Traceback" not in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_sigkill_mid_run_then_the_rerun_stores_what_landed_and_fetches_only_the_rest(tmp_path, capsys, monkeypatch):
    """A real kill of the door's process: ten days landed, the eleventh call hanging, nothing stored yet (a commit is
    twenty days). The rerun stores the ten without a call, fetches the other eleven, and marks the killed run."""
    table = tmp_path / "stocks_fixed"
    january = trading_days(dt.date(2024, 1, 2), dt.date(2024, 1, 31))
    hang = Fault("delay", ticker="grouped", after=10, seconds=30, times=100)
    env = {**os.environ, "MASSIVE_API_KEY": "a-key-of-test"}

    def argv(base_url: str) -> list[str]:
        return ["--source", "api", "--base-url", base_url, "--from", "2024-01-02", "--to", "2024-01-31",
                "--table-path", str(table), "--engine", "delta-rs", "--no-derive", "--calls-per-minute", "100000"]

    with FakeMassiveServer(ApiBehaviour(faults=[hang])) as server:
        process = subprocess.Popen([sys.executable, str(ROOT / "market_daily.py"), *argv(server.base_url)], cwd=ROOT,
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        zone = LandingZone(default_landing_path(str(table))).official()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and sum(f.complete for f in zone.fetches(GROUPED)) < 10:
            time.sleep(0.1)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    assert sum(f.complete for f in zone.fetches(GROUPED)) == 10
    assert not (tmp_path / "stocks_official_daily" / "_delta_log").exists() or \
        DeltaTable(str(tmp_path / "stocks_official_daily")).to_pyarrow_table().num_rows == 0
    monkeypatch.setenv("MASSIVE_API_KEY", "a-key-of-test")
    with FakeMassiveServer() as server:
        code, out, err = run_door(market_daily, argv(server.base_url), capsys)
        assert len(grouped_calls(server)) == len(january) - 10
    assert code == 0, err
    assert "11 fetched, 10 stored from answers an earlier run landed" in out
    official = DeltaTable(str(tmp_path / "stocks_official_daily")).to_pyarrow_table()
    assert official.num_rows == len(january) * MARKET_SIZE
    assert sorted(f.date_from for f in zone.fetches(GROUPED) if f.complete) == january  # each day landed once
    runs = DeltaTable(str(tmp_path / "pipeline_runs")).to_pyarrow_table().to_pylist()
    assert sorted(r["status"] for r in runs) == ["abandoned", "success"]

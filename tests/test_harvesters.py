"""End to end on sample data: the broken script shows its three bugs; the fixed one is complete and idempotent."""

from __future__ import annotations

import datetime as dt

import pytest

import broken_stock_harvester
import fixed_stock_harvester
from stockpipe.reports import render_fixed
from stockpipe.sample import FakeMassiveServer, Fault
from stockpipe.storage import DeltaRsStorage
from tests.helpers import EIGHT, WEEK, expected_rows, harvest, live_files_by_partition, run_door, table_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def broken_table(tmp_path_factory, spark):
    path = tmp_path_factory.mktemp("broken") / "stocks_raw"
    code = broken_stock_harvester.main(
        ["--source", "sample", "--tickers", "AAPL,MSFT,JPM", "--from", "2024-01-08", "--to", "2024-01-09",
         "--table-path", str(path)]
    )
    assert code == 0
    return path


@pytest.fixture(scope="module")
def fixed_table(tmp_path_factory, spark):
    path = tmp_path_factory.mktemp("fixed") / "stocks_fixed"
    assert fixed_stock_harvester.main(["--source", "sample", *WEEK, "--table-path", str(path)]) == 0
    return path


# -- the broken script ---------------------------------------------------------------------------------------------
def test_broken_bug1_only_the_last_ticker_survives(spark, broken_table):
    tickers = {r["ticker"] for r in DeltaRsStorage(spark).read(str(broken_table)).select("ticker").collect()}
    assert tickers == {"JPM"}


def test_broken_bug2_one_partition_directory_per_minute(spark, broken_table):
    storage = DeltaRsStorage(spark)
    detail = storage.detail(str(broken_table))
    assert detail.partition_columns == ["ticker", "minute"]
    jpm_bars = len(expected_rows(["JPM"], dt.date(2024, 1, 8), dt.date(2024, 1, 9)))
    assert detail.num_partitions == jpm_bars == detail.num_files  # one folder and one file per bar
    minute_dirs = [p for p in broken_table.glob("ticker=*/minute=*") if p.is_dir()]
    assert len(minute_dirs) > 2 * jpm_bars  # the overwritten tickers' folders are still on disk


def test_broken_bug3_no_date_or_timestamp_column(spark, broken_table):
    schema = DeltaRsStorage(spark).read(str(broken_table)).schema
    assert [f.name for f in schema.fields] == ["ticker", "open", "high", "low", "close", "volume", "vwap",
                                              "timestamp_ms", "num_transactions", "minute"]
    assert not {"date", "timestamp"} & {f.dataType.simpleString() for f in schema.fields}


def test_broken_prints_the_starters_analysis(capsys, tmp_path, spark):
    code, out, _ = run_door(broken_stock_harvester, ["--source", "sample", "--tickers", "AAPL,JPM", "--from",
                                                     "2024-01-08", "--to", "2024-01-08", "--table-path",
                                                     str(tmp_path / "raw")], capsys)
    assert code == 0
    assert "Tickers expected: 2, present: 1 (JPM)" in out
    assert "Partition directories created on disk:" in out and "timestamp_ms: long" in out


# -- the fixed script ------------------------------------------------------------------------------------------------
def test_fixed_writes_all_eight_tickers_in_forty_partitions(spark, fixed_table):
    detail = DeltaRsStorage(spark).detail(str(fixed_table))
    assert detail.partition_columns == ["ticker", "trade_date"]
    assert detail.num_partitions == 40
    assert {f.partition["ticker"] for f in detail.files} == set(EIGHT.split(","))


def test_fixed_holds_every_bar_exactly_once(spark, fixed_table):
    assert table_rows(spark, fixed_table) == expected_rows(EIGHT.split(","), dt.date(2024, 1, 8),
                                                          dt.date(2024, 1, 12))


def test_fixed_schema_has_time_columns(spark, fixed_table):
    schema = {f.name: f.dataType.simpleString() for f in DeltaRsStorage(spark).read(str(fixed_table)).schema}
    assert schema["trade_ts"] == "timestamp" and schema["trade_date"] == "date"
    assert schema["timestamp_ms"] == "bigint" and schema["volume"] == "double"


def test_rerun_changes_no_row(spark, tmp_path, capsys):
    path = tmp_path / "t"
    argv = ["--source", "sample", "--tickers", "AAPL,MSFT", *WEEK, "--table-path", str(path)]
    assert fixed_stock_harvester.main(argv) == 0
    first = sorted(tuple(r) for r in DeltaRsStorage(spark).read(str(path)).collect())
    code, out, _ = run_door(fixed_stock_harvester, argv, capsys)
    assert code == 0
    assert sorted(tuple(r) for r in DeltaRsStorage(spark).read(str(path)).collect()) == first
    assert "AAPL    ok          0       1      0" in out  # no call: the landed page was reused


def test_narrower_rerun_leaves_other_partitions_untouched(spark, tmp_path):
    path = tmp_path / "t"
    assert fixed_stock_harvester.main(["--source", "sample", "--tickers", "AAPL,MSFT", *WEEK, "--table-path",
                                       str(path)]) == 0
    before = live_files_by_partition(path)
    assert fixed_stock_harvester.main(["--source", "sample", "--tickers", "AAPL", "--from", "2024-01-09", "--to",
                                       "2024-01-09", "--table-path", str(path), "--refetch"]) == 0
    after = live_files_by_partition(path)
    replaced = ("AAPL", "2024-01-09")
    assert after[replaced] != before[replaced]
    assert {k: v for k, v in after.items() if k != replaced} == {k: v for k, v in before.items() if k != replaced}


def test_partial_failure_keeps_what_succeeded_and_names_the_ticker(spark, tmp_path, clock):
    path = tmp_path / "t"
    assert fixed_stock_harvester.main(["--source", "sample", "--tickers", "AAPL,MSFT", *WEEK, "--table-path",
                                       str(path)]) == 0
    msft_before = {k: v for k, v in live_files_by_partition(path).items() if k[0] == "MSFT"}
    with FakeMassiveServer(api_key="k", faults=[Fault("503", ticker="MSFT", times=1000)]) as server:
        report = harvest(spark, path, server, clock, tickers=("AAPL", "MSFT", "NVDA"), refetch=True)
    assert [t.ticker for t in report.failed] == ["MSFT"]
    assert "FAILED MSFT: HTTP 503" in render_fixed(report)
    after = live_files_by_partition(path)
    assert {k: v for k, v in after.items() if k[0] == "MSFT"} == msft_before
    assert table_rows(spark, path) == expected_rows(["AAPL", "MSFT", "NVDA"], dt.date(2024, 1, 8),
                                                    dt.date(2024, 1, 12))


def test_ticker_without_bars_warns_and_exits_zero(tmp_path, capsys, monkeypatch, spark):
    monkeypatch.setenv("MASSIVE_API_KEY", "k")
    with FakeMassiveServer(api_key="k", empty_tickers=frozenset({"XYZ"})) as server:
        code, out, _ = run_door(fixed_stock_harvester, [
            "--tickers", "AAPL,XYZ", *WEEK, "--table-path", str(tmp_path / "t"), "--base-url", server.base_url,
            "--calls-per-minute", "100000"], capsys)
    assert code == 0
    assert "warning: XYZ has no bars" in out


def test_range_without_trading_days_writes_nothing(tmp_path, capsys, spark):
    code, out, _ = run_door(fixed_stock_harvester, ["--source", "sample", "--from", "2024-01-13", "--to",
                                                    "2024-01-15", "--table-path", str(tmp_path / "t")], capsys)
    assert code == 0 and "no NYSE trading day" in out
    assert not (tmp_path / "t").exists()


def test_clustered_layout_is_refused_on_delta_rs(tmp_path, capsys, spark):
    code, _, err = run_door(fixed_stock_harvester, ["--source", "sample", "--layout", "clustered", "--engine",
                                                    "delta-rs", *WEEK, "--table-path", str(tmp_path / "t")], capsys)
    assert code == 2 and "liquid clustering" in err
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("door", [broken_stock_harvester, fixed_stock_harvester], ids=["broken", "fixed"])
def test_a_folder_that_is_not_a_delta_table_is_never_touched(door, tmp_path, capsys, spark):
    foreign = tmp_path / "my_documents"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("irreplaceable")
    code, _, err = run_door(door, ["--source", "sample", "--tickers", "AAPL", "--from", "2024-01-08", "--to",
                                   "2024-01-08", "--table-path", str(foreign)], capsys)
    assert code == 1 and "is not a Delta table: refusing to touch it" in err
    assert [p.name for p in foreign.iterdir()] == ["thesis.txt"]

"""End to end on sample data, on both engines: the broken script shows its three bugs; the fixed one is complete,
idempotent, one file per partition and exact whatever the session time zone."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import broken_stock_harvester
import fixed_stock_harvester
from stockpipe.reports import render_fixed
from stockpipe.testing import ApiBehaviour, FakeMassiveServer, Fault
from tests.helpers import (
    DELTA_SPARK_ONLY,
    EIGHT,
    WEEK,
    expected_rows,
    harvest,
    live_files_by_partition,
    run_door,
    summary_rows,
    table_rows,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory, storage) -> tuple[Path, str]:
    """One run of the starter (two tickers, one day: its folder per minute makes every bar a file) and what it
    printed."""
    path = tmp_path_factory.mktemp("broken") / "stocks_raw"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = broken_stock_harvester.main(["--source", "sample", "--tickers", "AAPL,JPM", "--from", "2024-01-08",
                                            "--to", "2024-01-08", "--table-path", str(path), "--engine",
                                            storage.name])
    assert code == 0
    return path, printed.getvalue()


@pytest.fixture(scope="module")
def broken_table(broken_run) -> Path:
    return broken_run[0]


@pytest.fixture(scope="module")
def fixed_table(tmp_path_factory, storage):
    path = tmp_path_factory.mktemp("fixed") / "stocks_fixed"
    assert fixed_stock_harvester.main(["--source", "sample", *WEEK, "--table-path", str(path), "--engine",
                                       storage.name]) == 0
    return path


# -- the broken script ---------------------------------------------------------------------------------------------
def test_broken_bug1_only_the_last_ticker_survives(storage, broken_table):
    tickers = {r["ticker"] for r in storage.read(str(broken_table)).select("ticker").collect()}
    assert tickers == {"JPM"}


def test_broken_bug2_one_partition_directory_per_minute(storage, broken_table):
    detail = storage.detail(str(broken_table))
    assert detail.partition_columns == ["ticker", "minute"]
    jpm_bars = len(expected_rows(["JPM"], dt.date(2024, 1, 8), dt.date(2024, 1, 8)))
    assert detail.num_partitions == jpm_bars == detail.num_files  # one folder and one file per bar
    aapl_dirs = [p for p in broken_table.glob("ticker=AAPL/minute=*") if p.is_dir()]
    assert len(aapl_dirs) == len(expected_rows(["AAPL"], dt.date(2024, 1, 8), dt.date(2024, 1, 8)))  # overwritten,
    # and still on disk


def test_broken_bug3_no_date_or_timestamp_column(storage, broken_table):
    schema = storage.read(str(broken_table)).schema
    assert [f.name for f in schema.fields] == ["ticker", "open", "high", "low", "close", "volume", "vwap",
                                              "timestamp_ms", "num_transactions", "minute"]
    assert not {"date", "timestamp"} & {f.dataType.simpleString() for f in schema.fields}


def test_broken_prints_the_starters_analysis(broken_run):
    out = broken_run[1]
    assert "Tickers expected: 2, present: 1 (JPM)" in out
    assert "Partition directories created on disk:" in out and "timestamp_ms: long" in out


# -- the fixed script ------------------------------------------------------------------------------------------------
def test_fixed_writes_all_eight_tickers_in_forty_partitions(storage, fixed_table):
    detail = storage.detail(str(fixed_table))
    assert detail.partition_columns == ["ticker", "trade_date"]
    assert detail.num_partitions == 40
    assert {f.partition["ticker"] for f in detail.files} == set(EIGHT.split(","))


def test_fixed_writes_one_file_per_partition(storage, fixed_table):
    per_partition = live_files_by_partition(storage, fixed_table)
    assert len(per_partition) == 40
    assert {len(files) for files in per_partition.values()} == {1}


def test_fixed_holds_every_bar_exactly_once(storage, fixed_table):
    assert table_rows(storage, fixed_table) == expected_rows(EIGHT.split(","), dt.date(2024, 1, 8),
                                                          dt.date(2024, 1, 12))


def test_fixed_schema_has_time_columns(storage, fixed_table):
    schema = {f.name: f.dataType.simpleString() for f in storage.read(str(fixed_table)).schema}
    assert schema["trade_ts"] == "timestamp" and schema["trade_date"] == "date"
    assert schema["timestamp_ms"] == "bigint" and schema["volume"] == "double"


def test_rerun_changes_no_row(storage, tmp_path, capsys):
    path = tmp_path / "t"
    argv = ["--source", "sample", "--tickers", "AAPL,MSFT", *WEEK, "--table-path", str(path), "--engine", storage.name]
    assert run_door(fixed_stock_harvester, argv, capsys)[0] == 0  # its output read and set aside
    first = sorted(tuple(r) for r in storage.read(str(path)).collect())
    code, out, _ = run_door(fixed_stock_harvester, argv, capsys)
    assert code == 0
    assert sorted(tuple(r) for r in storage.read(str(path)).collect()) == first
    assert {len(files) for files in live_files_by_partition(storage, path).values()} == {1}
    # success, 5 days stored, none refused, no call, no page fetched: the landed page was reused
    aapl = summary_rows(out)["AAPL"]
    assert (aapl["status"], aapl["days stored"], aapl["days refused"], aapl["calls"], aapl["pages"], aapl["reused"]) \
        == ("success", "5", "0", "0", "0", "1")


def test_narrower_rerun_leaves_other_partitions_untouched(storage, tmp_path):
    path = tmp_path / "t"
    assert fixed_stock_harvester.main(["--source", "sample", "--tickers", "AAPL,MSFT", *WEEK, "--table-path",
                                       str(path), "--engine", storage.name]) == 0
    before = live_files_by_partition(storage, path)
    assert fixed_stock_harvester.main(["--source", "sample", "--tickers", "AAPL", "--from", "2024-01-09", "--to",
                                       "2024-01-09", "--table-path", str(path), "--refetch", "--engine",
                                       storage.name]) == 0
    after = live_files_by_partition(storage, path)
    replaced = ("AAPL", "2024-01-09")
    assert after[replaced] != before[replaced]
    assert {k: v for k, v in after.items() if k != replaced} == {k: v for k, v in before.items() if k != replaced}


def test_partial_failure_keeps_what_succeeded_and_names_the_ticker(storage, tmp_path, clock):
    path = tmp_path / "t"
    assert fixed_stock_harvester.main(["--source", "sample", "--tickers", "AAPL,MSFT", *WEEK, "--table-path",
                                       str(path), "--engine", storage.name]) == 0
    msft_before = {k: v for k, v in live_files_by_partition(storage, path).items() if k[0] == "MSFT"}
    with FakeMassiveServer(ApiBehaviour(api_key="k", faults=[Fault("503", ticker="MSFT", times=1000)])) as server:
        report = harvest(storage, path, server, clock, tickers=("AAPL", "MSFT", "NVDA"), refetch=True)
    assert [t.ticker for t in report.failed] == ["MSFT"]
    assert "FAILED MSFT: HTTP 503" in render_fixed(report)
    after = live_files_by_partition(storage, path)
    assert {k: v for k, v in after.items() if k[0] == "MSFT"} == msft_before
    assert table_rows(storage, path) == expected_rows(["AAPL", "MSFT", "NVDA"], dt.date(2024, 1, 8),
                                                    dt.date(2024, 1, 12))


def test_a_symbol_without_a_bar_in_the_range_is_named_once_and_nothing_is_written_for_it(tmp_path, capsys,
                                                                                       monkeypatch, storage):
    """The API answers an unknown (or delisted, or mistyped) symbol with no bars: one warning names it and asks
    whether it is right; it gets no partition and no check row, and the other tickers are stored whole."""
    monkeypatch.setenv("MASSIVE_API_KEY", "k")
    with FakeMassiveServer(ApiBehaviour(api_key="k", empty_tickers=frozenset({"XYZ", "QQQQ"}))) as server:
        code, out, _ = run_door(fixed_stock_harvester, [
            "--tickers", "AAPL,XYZ,QQQQ", *WEEK, "--table-path", str(tmp_path / "t"), "--base-url", server.base_url,
            "--calls-per-minute", "100000", "--engine", storage.name], capsys)
    assert code == 0
    assert [line for line in out.splitlines() if "no bar" in line] == [
        "warning: no bar at all from 2024-01-08 to 2024-01-12 for XYZ, QQQQ: is the symbol right? Nothing was "
        "written for them"]
    assert summary_rows(out)["XYZ"]["status"] == "no_bars"
    stored = table_rows(storage, tmp_path / "t")
    assert stored == expected_rows(["AAPL"], dt.date(2024, 1, 8), dt.date(2024, 1, 12))  # no XYZ row, AAPL whole
    checks = storage.read(str(tmp_path / "quality_checks")).collect()
    assert {r.ticker for r in checks} == {"AAPL"}
    assert sorted(r.status for r in checks if r.check == "no_bars") == ["pass"] * 5


def test_the_sample_answers_a_symbol_it_does_not_list_as_the_api_answers_an_unknown_one(tmp_path, capsys):
    """A typo (APPL) or a placeholder (FOO) is not in the sample market: no made-up bars, one warning, exit 0."""
    code, out, _ = run_door(fixed_stock_harvester, ["--source", "sample", "--tickers", "APPL,FOO", *WEEK,
                                                    "--table-path", str(tmp_path / "t")], capsys)
    assert code == 0
    assert "warning: no bar at all from 2024-01-08 to 2024-01-12 for APPL, FOO: is the symbol right?" in out
    assert not (tmp_path / "t").exists()
    assert not (tmp_path / "quality_checks").exists()


@pytest.mark.parametrize("door", [broken_stock_harvester, fixed_stock_harvester], ids=["broken", "fixed"])
def test_a_range_without_a_trading_day_is_one_line_and_writes_nothing(door, tmp_path, capsys):
    """Saturday to Martin Luther King Day: one warning with the dates, not a line per ticker; exit 0, no call, no
    table, no landed page (the run's own row in pipeline_runs says it succeeded with nothing to do)."""
    code, out, err = run_door(door, ["--source", "sample", "--from", "2024-01-13", "--to", "2024-01-15",
                                     "--table-path", str(tmp_path / "t")], capsys)
    assert code == 0 and out == ""
    assert err.splitlines() == ["warning: no NYSE trading day from 2024-01-13 to 2024-01-15 (weekends and market "
                                "holidays): nothing fetched, nothing written"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipeline_runs"]
    from stockpipe import readers

    assert [(r["status"], r["exit_code"]) for r in readers.read(str(tmp_path / "pipeline_runs")).to_pylist()] == [
        ("success", 0)]


def test_clustered_layout_is_refused_on_delta_rs(tmp_path, capsys, spark):
    code, _, err = run_door(fixed_stock_harvester, ["--source", "sample", "--layout", "clustered", "--engine",
                                                    "delta-rs", *WEEK, "--table-path", str(tmp_path / "t")], capsys)
    assert code == 2 and "liquid clustering" in err
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("door", [broken_stock_harvester, fixed_stock_harvester], ids=["broken", "fixed"])
def test_a_folder_that_is_not_a_delta_table_is_never_touched(door, tmp_path, capsys, storage):
    foreign = tmp_path / "my_documents"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("irreplaceable")
    code, _, err = run_door(door, ["--source", "sample", "--tickers", "AAPL", "--from", "2024-01-08", "--to",
                                   "2024-01-08", "--table-path", str(foreign), "--engine", storage.name], capsys)
    assert code == 1 and "is not a Delta table: refusing to touch it" in err
    assert [p.name for p in foreign.iterdir()] == ["thesis.txt"]
    # Refused before the fetch: not one page was landed for a table that could not be written.
    assert not (tmp_path / "my_documents_landing").exists()


@DELTA_SPARK_ONLY
def test_clustered_layout_end_to_end_with_maintenance(storage, tmp_path, capsys):
    """delta-rs cannot create liquid clustering: its refusal is pinned above."""
    import maintenance

    path = tmp_path / "clustered"
    argv = ["--source", "sample", "--tickers", "AAPL,MSFT,NVDA", *WEEK, "--table-path", str(path), "--layout",
            "clustered", "--engine", storage.name]
    assert fixed_stock_harvester.main(argv) == 0
    assert fixed_stock_harvester.main([*argv, "--refetch"]) == 0  # the replace predicate works without partitions
    detail = storage.detail(str(path))
    assert detail.partition_columns == [] and detail.clustering_columns == ["ticker", "trade_date"]
    assert table_rows(storage, path) == expected_rows(["AAPL", "MSFT", "NVDA"], dt.date(2024, 1, 8),
                                                      dt.date(2024, 1, 12))
    capsys.readouterr()
    code, out, _ = run_door(maintenance, ["--table-path", str(path), "--engine", storage.name], capsys)
    assert code == 0 and "liquid clustering by (ticker, trade_date)" in out
    after = storage.detail(str(path))
    assert after.num_files <= detail.num_files and after.clustering_columns == ["ticker", "trade_date"]
    assert "OPTIMIZE" in [h.operation for h in storage.history(str(path))]
    assert table_rows(storage, path) == expected_rows(["AAPL", "MSFT", "NVDA"], dt.date(2024, 1, 8),
                                                      dt.date(2024, 1, 12))


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Tokyo"])
def test_trade_date_and_every_bar_exact_whatever_the_session_time_zone(storage, tmp_path, clock, session_time_zone,
                                                                       zone):
    """Across a DST change (Fri 2024-03-08 is EST, Mon 2024-03-11 EDT): 04:00 pre-market and 19:59 after-hours bars
    keep their New York date, and no bar is lost, whatever time zone the cluster's session uses."""
    session_time_zone(zone)
    path = tmp_path / "t"
    with FakeMassiveServer(ApiBehaviour(api_key="k")) as server:
        report = harvest(storage, path, server, clock, tickers=("AAPL",), date_from="2024-03-08",
                         date_to="2024-03-11")
    assert not report.failed and all(t.counts.outside_range == 0 for t in report.tickers)
    assert table_rows(storage, path) == expected_rows(["AAPL"], dt.date(2024, 3, 8), dt.date(2024, 3, 11))
    frame = storage.read(str(path)).select("timestamp_ms", "trade_date", "ingested_at").collect()
    new_york = ZoneInfo("America/New_York")
    for row in frame:
        assert row["trade_date"] == dt.datetime.fromtimestamp(row["timestamp_ms"] / 1000, new_york).date()
    landed = {p.name for p in (tmp_path / "t_landing" / "ticker=AAPL").iterdir()}
    stamp = dt.datetime.strptime(next(iter(landed)).split("_")[2], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=dt.UTC)
    # collect() renders in the driver's local zone; compared as instants, ingested_at is the fetch's UTC stamp.
    assert {row["ingested_at"].astimezone(dt.UTC) for row in frame} == {stamp}

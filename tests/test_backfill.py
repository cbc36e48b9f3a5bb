"""Backfills: files written a partition at a time and committed once, progress on long work, and a multi-page
range killed half-way that resumes after its last landed page."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fixed_stock_harvester
from stockpipe import DEFAULT_TICKERS, config
from stockpipe.landing import LandingZone, default_landing_path
from stockpipe.market_calendar import trading_days
from stockpipe.paths import parquet_files_on_disk
from stockpipe.progress import WorkProgress
from stockpipe.sample.faults import sample_faults
from stockpipe.storage import ReplacePredicate
from stockpipe.storage.staged import STAGING_DIR, footer_stats, key_runs
from stockpipe.testing import ApiBehaviour, FakeMassiveServer, Fault
from tests.helpers import (
    BOTH_ENGINES,
    DELTA_SPARK_ONLY,
    KEY,
    ROOT,
    aggs_calls,
    expected_rows,
    run_door,
    summary_rows,
    table_rows,
)

D1, D2, D3 = dt.date(2024, 1, 8), dt.date(2024, 1, 9), dt.date(2024, 1, 10)


# -- a partition at a time ---------------------------------------------------------------------------------------------
def test_sorted_rows_are_cut_where_the_partition_key_changes():
    batch = pa.RecordBatch.from_pydict({
        "ticker": ["A", "A", "A", "B", "B", None, None],
        "trade_date": [D1, D1, D2, D2, D2, D2, D2],
        "close": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
    })
    runs = [(key, piece.column("close").to_pylist()) for key, piece in key_runs(batch, ["ticker", "trade_date"])]
    assert runs == [(("A", D1), [1.0, 2.0]), (("A", D2), [3.0]), (("B", D2), [4.0, 5.0]), ((None, D2), [6.0, 7.0])]
    assert list(key_runs(batch.slice(0, 0), ["ticker"])) == []


def test_file_statistics_are_deltas_from_the_footer(tmp_path):
    table = pa.table({
        "ts": pa.array([dt.datetime(2024, 1, 8, 14, 30, 0, 123456), dt.datetime(2024, 1, 8, 20, 59)],
                       pa.timestamp("us", tz="UTC")),
        "close": [2.5, 3.0],
        "n": pa.array([None, 7], pa.int64()),
    })
    pq.write_table(table, tmp_path / "f.parquet")
    stats = footer_stats(pq.read_metadata(tmp_path / "f.parquet"))
    assert stats["numRecords"] == 2
    assert stats["minValues"]["ts"] == "2024-01-08T14:30:00.123Z"
    assert stats["maxValues"]["ts"] == "2024-01-08T20:59:00.000Z"
    assert (stats["minValues"]["close"], stats["maxValues"]["close"]) == (2.5, 3.0)
    assert stats["minValues"]["n"] == stats["maxValues"]["n"] == 7  # the null is counted, not a bound
    assert stats["nullCount"] == {"ts": 0, "close": 0, "n": 1}


@BOTH_ENGINES
@pytest.mark.slow
def test_a_partitioned_write_leaves_one_file_per_partition_and_nothing_staged(spark, storage, tmp_path):
    path = str(tmp_path / "t")
    data = [("A", D1, float(i)) for i in range(5)] + [("B", D2, 9.0)]
    frame = spark.createDataFrame(data, "ticker string, trade_date date, close double").repartition(3)
    storage.write(frame, path, mode="overwrite", partition_by=["ticker", "trade_date"])
    replace = ReplacePredicate.of(ticker=["A"], trade_date=[D1])
    storage.write(spark.createDataFrame([("A", D1, 1.5)], frame.schema), path, mode="overwrite", replace=replace,
                  partition_by=["ticker", "trade_date"])
    assert sorted(tuple(r) for r in storage.read(path).collect()) == [("A", D1, 1.5), ("B", D2, 9.0)]
    last = storage.history(path)[-1].changes
    assert (last.files_added, last.files_removed) == (1, 1)
    assert len(storage.detail(path).files) == 2
    assert not (Path(path) / STAGING_DIR).exists()
    assert not [p for p in Path(path).rglob("*.crc") if "_delta_log" not in p.parts]  # no checksum per data file


@pytest.mark.slow
def test_a_commit_that_fails_leaves_no_file_behind(spark, storage, tmp_path, monkeypatch):
    """delta-rs's staged write (delta-spark writes and commits inside one Spark call)."""
    from deltalake import DeltaTable

    path = str(tmp_path / "t")
    frame = spark.createDataFrame([("A", D1, 1.0)], "ticker string, trade_date date, close double")
    storage.write(frame, path, mode="overwrite", partition_by=["ticker", "trade_date"])
    before = sorted(parquet_files_on_disk(path))

    def refuse(*_: object, **__: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(DeltaTable, "create_write_transaction", refuse)
    with pytest.raises(OSError, match="disk full"):
        storage.write(frame, path, mode="overwrite", partition_by=["ticker", "trade_date"])
    assert sorted(parquet_files_on_disk(path)) == before
    assert not (Path(path) / STAGING_DIR).exists()
    assert storage.count(path) == 1


@DELTA_SPARK_ONLY
def test_a_replace_finds_its_partition_folders_made_before_spark_writes_and_leaves_none_empty(spark, storage,
                                                                                              tmp_path):
    """Hadoop's local file system forks `chmod` for each folder it makes (half the forks of a backfill's write), so
    the delta-spark engine makes a replace's partition folders first. Seen from inside the write: each row, computed
    as Spark writes it, finds its folder already there. Named partitions that got no row keep no folder."""
    from pyspark.sql import functions as F

    root = tmp_path / "t"
    schema = "ticker string, trade_date date, folder_there boolean"
    storage.create_if_missing(str(root), spark.createDataFrame([], schema).schema,
                              partition_by=["ticker", "trade_date"])
    where = str(root)

    @F.udf("boolean")
    def folder_there(ticker: str, day: dt.date) -> bool:
        return os.path.isdir(f"{where}/ticker={ticker}/trade_date={day}")

    rows = spark.createDataFrame([("A", D1), ("A", D1), ("A", D2)], "ticker string, trade_date date")
    storage.write(rows.withColumn("folder_there", folder_there("ticker", "trade_date")), str(root),
                  mode="overwrite", partition_by=["ticker", "trade_date"],
                  replace=ReplacePredicate.of(ticker=["A", "B"], trade_date=[D1, D2, D3]))
    assert [r.folder_there for r in storage.read(str(root)).collect()] == [True, True, True]
    folders = sorted(p.relative_to(root).as_posix() for p in root.rglob("trade_date=*"))
    assert folders == [f"ticker=A/trade_date={D1}", f"ticker=A/trade_date={D2}"]
    assert not (root / "ticker=B").exists()


@pytest.mark.slow
def test_each_engine_reads_and_replaces_what_the_other_wrote(spark_info, tmp_path):
    """delta-rs's staged commits (a creating commit with its files, transaction ids, explicit removes for AnyOf)
    are plain Delta: delta-spark reads them and replaces into them, and delta-rs reads what delta-spark wrote."""
    if not spark_info.has_delta_spark:
        pytest.skip("delta-spark's jars cannot be loaded here")
    from stockpipe.storage import AnyOf
    from stockpipe.storage.delta_rs import DeltaRsStorage
    from stockpipe.storage.delta_spark import DeltaSparkStorage

    spark = spark_info.spark
    rs, ds = DeltaRsStorage(spark), DeltaSparkStorage(spark)
    path, by = str(tmp_path / "t"), ["ticker", "trade_date"]
    schema = "ticker string, trade_date date, close double"
    rs.write(spark.createDataFrame([("A", D1, 1.0), ("B", D1, 2.0), ("B", D2, 3.0)], schema), path,
             mode="overwrite", partition_by=by)
    each_own_day = AnyOf((ReplacePredicate.of(ticker=["A"], trade_date=[D1]),
                          ReplacePredicate.of(ticker=["B"], trade_date=[D2])))
    rs.write(spark.createDataFrame([("A", D1, 1.5), ("B", D2, 3.5)], schema), path, mode="overwrite",
             replace=each_own_day, partition_by=by)
    assert sorted(tuple(r) for r in ds.read(path).collect()) == [("A", D1, 1.5), ("B", D1, 2.0), ("B", D2, 3.5)]
    ds.write(spark.createDataFrame([("B", D1, 2.5)], schema), path, mode="overwrite",
             replace=ReplacePredicate.of(ticker=["B"], trade_date=[D1]), partition_by=by)
    assert sorted(tuple(r) for r in rs.read(path).collect()) == [("A", D1, 1.5), ("B", D1, 2.5), ("B", D2, 3.5)]
    assert [h.operation for h in ds.history(path)] == ["CREATE TABLE", "WRITE", "WRITE"]


# -- progress ----------------------------------------------------------------------------------------------------------
def test_long_work_says_its_phase_and_files_written_of_expected(caplog):
    work = WorkProgress(interval_s=0.02)
    work.expected_files = 40
    written = iter(range(10, 10_000, 10))
    with caplog.at_level(logging.INFO, logger="stockpipe.progress"):
        work.phase("write", "Spark tasks write a file per partition")
        with work.ticking(), work.ticking(lambda: next(written)):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and len(caplog.records) < 3:
                time.sleep(0.01)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("write: Spark tasks write a file per partition, ")
    assert "10 of 40 files written, about" in lines[0]
    assert len({line.split(";")[1] for line in lines}) == len(lines)  # one ticker thread, counting on


def test_short_work_prints_nothing(caplog):
    work = WorkProgress(interval_s=5.0)
    with caplog.at_level(logging.INFO, logger="stockpipe.progress"):
        work.phase("write", "quick")
        with work.ticking(lambda: 1):
            pass
    assert not caplog.records


# -- a backfill killed half-way ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_multi_page_backfill_killed_half_way_resumes_after_its_last_landed_page(storage, tmp_path, monkeypatch):
    """Half a year of one ticker is two pages of 50,000 bars. The second page hangs and the process is killed: the
    rerun asks only for the page after the first, from its cursor, and stores every bar of the half year once (its
    parsed bars kept on disk between the counts and the write, as a long backfill's are)."""
    monkeypatch.setattr("stockpipe.harvest.steps.PERSIST_FROM_PARTITIONS", 1)
    path = tmp_path / "t"
    first, last = dt.date(2023, 1, 3), dt.date(2023, 6, 30)
    argv = ["--tickers", "AAPL", "--from", str(first), "--to", str(last), "--table-path", str(path),
            "--calls-per-minute", "100000", "--engine", storage.name]
    env = {**os.environ, "MASSIVE_API_KEY": KEY}
    hang = Fault("delay", ticker="AAPL", seconds=60, after=1)
    with FakeMassiveServer(ApiBehaviour(api_key=KEY, faults=[hang])) as server:
        process = subprocess.Popen([sys.executable, str(ROOT / "fixed_stock_harvester.py"), *argv, "--base-url",
                                    server.base_url], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        landing = LandingZone(default_landing_path(str(path)))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(f.pages() for f in landing.fetches("AAPL")):
            time.sleep(0.1)
        while time.monotonic() < deadline and not server.held:
            time.sleep(0.05)  # the second page is asked for, and hangs
        assert server.held == 1, "the second page was never asked for"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    assert not path.exists(), "nothing is written before the fetch is done"
    landed = landing.fetches("AAPL")
    assert len(landed) == 1 and len(landed[0].pages()) == 1 and not landed[0].complete
    cursor = landed[0].last_next_url()
    assert cursor is not None
    with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:
        os.environ["MASSIVE_API_KEY"] = KEY
        try:
            code = fixed_stock_harvester.main([*argv, "--base-url", server.base_url])
        finally:
            del os.environ["MASSIVE_API_KEY"]
        calls = aggs_calls(server)
    assert code == 0
    assert len(calls) == 1, [c.path + "?" + c.query for c in calls]  # page two only
    assert calls[0].path == urlsplit(cursor).path  # from the landed page's cursor, not from the range's start
    assert table_rows(storage, path) == expected_rows(["AAPL"], first, last)


# -- transformed while the fetch goes on -------------------------------------------------------------------------------
def _run_rows(storage, path: Path, drop: tuple[str, ...]) -> list[tuple]:
    frame = storage.read(str(path))
    return sorted(tuple(r) for r in frame.select(*[c for c in frame.columns if c not in drop]).collect())


@pytest.mark.slow
def test_tickers_transformed_as_they_land_store_what_one_transform_stores(storage, tmp_path, capsys, monkeypatch):
    """A long run transforms its tickers in batches as they land (`harvest.EarlyTransform`, the sample server in a
    process of its own): every stored column, every check and every quarantined bar are those of the same run
    transformed at once after the fetch, on a week where the sample's faults put a bad print, a malformed bar,
    missing minutes and a short answer in the bars."""
    week = trading_days(dt.date(2024, 1, 8), dt.date(2024, 1, 12))
    faulted = [t for t in DEFAULT_TICKERS if any(sample_faults(t, day) for day in week)]
    assert len(faulted) >= 2  # more than one ticker, or nothing runs early
    argv = ["--source", "sample", "--sample-faults", "--tickers", ",".join(faulted), "--from", "2024-01-08", "--to",
            "2024-01-12", "--engine", storage.name]
    at_once, early = tmp_path / "at_once" / "stocks_fixed", tmp_path / "early" / "stocks_fixed"
    code, out_at_once, _ = run_door(fixed_stock_harvester, [*argv, "--table-path", str(at_once)], capsys)
    assert code == 0 and "while the fetch went on" not in out_at_once
    monkeypatch.setattr(config, "EARLY_FROM_DAYS", 1)  # the same week counts as a long run
    code, out_early, _ = run_door(fixed_stock_harvester, [*argv, "--table-path", str(early)], capsys)
    assert code == 0
    assert f"Transformed while the fetch went on: {len(faulted)} of {len(faulted)} tickers" in out_early

    assert table_rows(storage, early) == table_rows(storage, at_once)
    checks = _run_rows(storage, early.parent / "quality_checks", ("run_id", "checked_at"))
    assert checks == _run_rows(storage, at_once.parent / "quality_checks", ("run_id", "checked_at"))
    assert {row[3] for row in checks} >= {"pass", "warn"}
    quarantined = _run_rows(storage, early.parent / "stocks_quarantine", ("run_id", "fetched_at", "landed_page"))
    assert quarantined and quarantined == _run_rows(storage, at_once.parent / "stocks_quarantine",
                                                    ("run_id", "fetched_at", "landed_page"))
    assert summary_rows(out_early) == summary_rows(out_at_once)

"""One contract, two engines: every test runs on delta-rs, and on delta-spark wherever its jars load; in both lanes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from stockpipe.errors import EngineUnsupportedError, NotDeltaTableError, PipelineError
from stockpipe.paths import parquet_files_on_disk
from stockpipe.storage import ReplacePredicate, RowFilter
from stockpipe.storage.delta_rs import DeltaRsStorage
from stockpipe.storage.delta_spark import DeltaSparkStorage
from tests.helpers import BOTH_ENGINES

pytestmark = [BOTH_ENGINES, pytest.mark.connect]
SCHEMA = "ticker string, trade_date date, trade_ts timestamp, close double, volume double, n long"
D1, D2, D3 = dt.date(2024, 1, 8), dt.date(2024, 1, 9), dt.date(2024, 1, 10)


def rows(ticker: str, day: dt.date, count: int = 3, close: float = 1.0):
    return [(ticker, day, dt.datetime.combine(day, dt.time(15, i)), close + i, 100.5 + i, i) for i in range(count)]


def frame(spark, data):
    return spark.createDataFrame(data, SCHEMA)


def collect(storage, path):
    return sorted(tuple(r) for r in storage.read(path).collect())


def test_rows_round_trip_with_types(spark, storage, tmp_path):
    path = str(tmp_path / "t")
    data = rows("AAPL", D1) + rows("BRK.B", D2)
    storage.write(frame(spark, data), path, mode="append", partition_by=["ticker", "trade_date"])
    back = storage.read(path)
    assert [(f.name, f.dataType.simpleString()) for f in back.schema.fields] == [
        ("ticker", "string"), ("trade_date", "date"), ("trade_ts", "timestamp"), ("close", "double"),
        ("volume", "double"), ("n", "bigint"),
    ]
    assert collect(storage, path) == sorted(data)


def test_partition_columns_and_directory_layout(spark, storage, tmp_path):
    path = tmp_path / "t"
    storage.write(frame(spark, rows("AAPL", D1) + rows("MSFT", D2)), str(path), mode="append",
                  partition_by=["ticker", "trade_date"])
    detail = storage.detail(str(path))
    assert detail.partition_columns == ["ticker", "trade_date"]
    leaves = {p.parent.relative_to(path).as_posix() for p in parquet_files_on_disk(str(path))}
    assert leaves == {"ticker=AAPL/trade_date=2024-01-08", "ticker=MSFT/trade_date=2024-01-09"}
    assert detail.num_partitions == 2 and detail.num_files == 2
    assert detail.size_bytes == sum(p.stat().st_size for p in parquet_files_on_disk(str(path)))


def test_replace_predicate_touches_only_its_partitions(spark, storage, tmp_path):
    path = str(tmp_path / "t")
    original = rows("AAPL", D1) + rows("AAPL", D2) + rows("MSFT", D1)
    storage.write(frame(spark, original), path, mode="append", partition_by=["ticker", "trade_date"])
    replacement = rows("AAPL", D1, count=2, close=50.0)
    storage.write(frame(spark, replacement), path, mode="overwrite", partition_by=["ticker", "trade_date"],
                  replace=ReplacePredicate.of(ticker=["AAPL"], trade_date=[D1]))
    assert collect(storage, path) == sorted(replacement + rows("AAPL", D2) + rows("MSFT", D1))


def test_replace_predicate_rejects_rows_outside_it_and_writes_nothing(spark, storage, tmp_path):
    path = str(tmp_path / "t")
    storage.write(frame(spark, rows("AAPL", D1)), path, mode="append", partition_by=["ticker", "trade_date"])
    version = storage.detail(path).version
    with pytest.raises(PipelineError, match="outside the replace predicate"):
        storage.write(frame(spark, rows("MSFT", D1)), path, mode="overwrite", partition_by=["ticker", "trade_date"],
                      replace=ReplacePredicate.of(ticker=["AAPL"], trade_date=[D1]))
    assert storage.detail(path).version == version
    assert collect(storage, path) == sorted(rows("AAPL", D1))


def test_replace_on_a_missing_table_creates_it(spark, storage, tmp_path):
    path = str(tmp_path / "t")
    storage.write(frame(spark, rows("AAPL", D1)), path, mode="overwrite", partition_by=["ticker", "trade_date"],
                  replace=ReplacePredicate.of(ticker=["AAPL"], trade_date=[D1, D2]))
    assert collect(storage, path) == sorted(rows("AAPL", D1))


def test_replace_on_a_missing_table_refuses_rows_outside_it_and_creates_nothing(spark, storage, tmp_path):
    path = str(tmp_path / "t")
    with pytest.raises(PipelineError, match="outside the replace predicate"):
        storage.write(frame(spark, rows("AAPL", D1) + rows("MSFT", D1)), path, mode="overwrite",
                      partition_by=["ticker", "trade_date"], replace=ReplacePredicate.of(ticker=["AAPL"],
                                                                                        trade_date=[D1]))
    assert not storage.is_delta(path)


@pytest.mark.slow
def test_optimize_reduces_live_files_and_keeps_every_row(spark, storage, tmp_path):
    path = str(tmp_path / "t")
    for i in range(4):
        storage.write(frame(spark, rows("AAPL", D1, close=float(i))), path, mode="append",
                      partition_by=["ticker", "trade_date"])
    before_rows = collect(storage, path)
    assert storage.detail(path).num_files == 4
    compacted = storage.optimize(path).changes
    assert storage.detail(path).num_files == 1
    assert collect(storage, path) == before_rows
    # The same words from both engines: 4 small files became 1, in 1 partition.
    assert (compacted.files_added, compacted.files_removed, compacted.partitions) == (1, 4, 1)
    assert compacted.bytes_added == storage.detail(path).size_bytes
    last = storage.history(path)[-1]
    assert last.operation == "OPTIMIZE" and (last.changes.files_added, last.changes.files_removed) == (1, 4)


@pytest.mark.slow
def test_zorder_optimize_keeps_every_row(spark, storage, tmp_path):
    path = str(tmp_path / "t")
    for day in (D1, D2, D3):
        storage.write(frame(spark, rows("AAPL", day) + rows("MSFT", day)), path, mode="append",
                      partition_by=["trade_date"])
    before_rows = collect(storage, path)
    storage.optimize(path, zorder_by=["ticker"])
    assert collect(storage, path) == before_rows
    assert storage.detail(path).num_files == 3


@pytest.mark.slow
def test_vacuum_at_zero_hours_leaves_exactly_the_live_files(spark, storage, tmp_path):
    path = str(tmp_path / "t")
    for i in range(3):
        storage.write(frame(spark, rows("AAPL", D1, close=float(i))), path, mode="append",
                      partition_by=["ticker", "trade_date"])
    storage.optimize(path)
    assert len(parquet_files_on_disk(path)) == 4  # 3 tombstoned + 1 compacted
    deleted = storage.vacuum(path, retain_hours=0).changes.files_removed
    live = {Path(f.path).name for f in storage.detail(path).files}
    assert {p.name for p in parquet_files_on_disk(path)} == live
    assert deleted == 3 and len(live) == 1


@pytest.mark.slow
def test_history_lists_each_operation(spark, storage, tmp_path):
    path = str(tmp_path / "t")
    storage.write(frame(spark, rows("AAPL", D1)), path, mode="append", partition_by=["ticker", "trade_date"])
    storage.write(frame(spark, rows("AAPL", D1)), path, mode="overwrite", partition_by=["ticker", "trade_date"],
                  replace=ReplacePredicate.of(ticker=["AAPL"], trade_date=[D1]))
    storage.write(frame(spark, rows("AAPL", D1)), path, mode="append", partition_by=["ticker", "trade_date"])
    storage.optimize(path)
    history = storage.history(path)
    assert [h.version for h in history] == [0, 1, 2, 3]
    # The write that creates the table is delta-rs's CREATE TABLE with its files (one commit, as Spark's WRITE is).
    assert [h.operation for h in history] == ["CREATE TABLE" if storage.name == "delta-rs" else "WRITE", "WRITE",
                                              "WRITE", "OPTIMIZE"]
    assert history[1].parameters.get("predicate")
    # Every engine fills the one shape: what each write added, and what the replacing write removed.
    assert [(h.changes.files_added, h.changes.rows_added) for h in history[:3]] == [(1, 3), (1, 3), (1, 3)]
    assert history[1].changes.files_removed == 1
    assert (history[3].changes.files_added, history[3].changes.files_removed) == (1, 2)
    assert [h.version for h in storage.history(path, limit=1)] == [3]
    assert all(isinstance(h.timestamp, dt.datetime) for h in history)


def test_not_a_delta_table_is_named(spark, storage, tmp_path):
    with pytest.raises(NotDeltaTableError, match="is not a Delta table"):
        storage.detail(str(tmp_path))
    assert storage.is_delta(str(tmp_path)) is False


@pytest.mark.slow
def test_registered_view_reads_the_table_by_name(spark, storage, tmp_path):
    path = str(tmp_path / "t")
    storage.write(frame(spark, rows("AAPL", D1)), path, mode="append", partition_by=["ticker", "trade_date"])
    storage.register_view(path, "contract_view")
    assert spark.sql("SELECT count(*) AS c FROM contract_view").first()["c"] == 3


def test_clustering_is_refused_where_the_engine_cannot_create_it(spark, tmp_path):
    with pytest.raises(EngineUnsupportedError, match="liquid clustering"):
        DeltaRsStorage(spark).write(frame(spark, rows("AAPL", D1)), str(tmp_path / "t"), cluster_by=["ticker"])


@pytest.mark.delta_spark
@pytest.mark.slow
def test_a_table_written_by_one_engine_reads_in_the_other(spark_info, tmp_path):
    if not spark_info.has_delta_spark:
        pytest.skip("needs both engines; " + "delta-spark's jars cannot be loaded here")
    spark = spark_info.spark
    for writer, reader in ((DeltaRsStorage(spark), DeltaSparkStorage(spark)),
                           (DeltaSparkStorage(spark), DeltaRsStorage(spark))):
        path = str(tmp_path / writer.name)
        writer.write(frame(spark, rows("AAPL", D1)), path, mode="append", partition_by=["ticker", "trade_date"])
        assert collect(reader, path) == sorted(rows("AAPL", D1))


@pytest.mark.slow
def test_filtered_read_skips_files_by_partition_and_statistics(spark, storage, tmp_path):
    path = str(tmp_path / "t")
    for ticker in ("AAPL", "MSFT", "NVDA"):  # one file per ticker inside one date partition: stats tell them apart
        storage.write(frame(spark, rows(ticker, D1) + rows(ticker, D2)), path, mode="append",
                      partition_by=["trade_date"])
    where = RowFilter.of(ticker=["MSFT"], trade_date=[D2])
    result = storage.read(path, where=where)
    assert sorted(tuple(r) for r in result.collect()) == sorted(rows("MSFT", D2))
    from stockpipe.external import scan_files_read

    assert scan_files_read(result) == 1


def test_a_lost_commit_race_is_retried_with_a_bounded_backoff(spark, storage, tmp_path, monkeypatch):
    """Each engine's own conflict error is retried after 0.4, 0.8, ... s (jitter pinned at its maximum), through the
    injected sleep: no real waiting; after COMMIT_ATTEMPTS conflicts the write gives up with one clear line."""
    from deltalake.exceptions import CommitFailedError

    from stockpipe.errors import PipelineError
    from stockpipe.storage import COMMIT_ATTEMPTS

    conflict = (CommitFailedError("a concurrent transaction won") if storage.name == "delta-rs"
                else RuntimeError("[DELTA_CONCURRENT_APPEND] ConcurrentAppendException: files were added"))
    attempts: list[int] = []
    pauses: list[float] = []

    def loses_twice(*_: object) -> int:
        attempts.append(1)
        if len(attempts) <= 2:
            raise conflict
        return 7

    monkeypatch.setattr(storage, "_sleep", pauses.append)
    monkeypatch.setattr(storage, "_jitter", lambda: 1.0)
    monkeypatch.setattr(storage, "_write", loses_twice)
    path = str(tmp_path / "t")
    assert storage.write(frame(spark, rows("AAPL", D1)), path) == 7
    assert len(attempts) == 3 and pauses == pytest.approx([0.4, 0.8])

    def always_loses(*_: object) -> int:
        raise conflict

    pauses.clear()
    monkeypatch.setattr(storage, "_write", always_loses)
    with pytest.raises(PipelineError, match=f"gave up after {COMMIT_ATTEMPTS} concurrent-commit conflicts"):
        storage.write(frame(spark, rows("AAPL", D1)), path)
    assert len(pauses) == COMMIT_ATTEMPTS - 1 and max(pauses) <= 5.0

    def refuses(*_: object) -> int:
        raise ValueError("not a conflict")

    pauses.clear()
    monkeypatch.setattr(storage, "_write", refuses)
    with pytest.raises(ValueError, match="not a conflict"):
        storage.write(frame(spark, rows("AAPL", D1)), path)
    assert pauses == []  # anything else is raised at once


@pytest.mark.slow
def test_two_writers_creating_the_same_table_at_once_store_each_row_once(spark, storage, tmp_path):
    """Both start before the table exists and replace the same partition. One wins, the other conflicts and is
    retried as a replace: each row once. (delta-rs committed both creating writes, 6 rows for 3, before the
    create-empty-first fix.)"""
    import threading

    path = str(tmp_path / "t")
    barrier = threading.Barrier(2, timeout=60)
    errors: list[Exception] = []

    def write() -> None:
        barrier.wait()
        try:
            storage.write(frame(spark, rows("AAPL", D1)), path, mode="overwrite", partition_by=["ticker", "trade_date"],
                          replace=ReplacePredicate.of(ticker=["AAPL"], trade_date=[D1]))
        except Exception as exc:  # noqa: BLE001 - a writer may give up after its retries; the table must stay right
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not any(thread.is_alive() for thread in threads)
    assert all("concurrent" in str(exc).lower() for exc in errors), errors
    assert collect(storage, path) == sorted(rows("AAPL", D1))


@pytest.mark.slow
def test_a_replace_of_each_tickers_own_days_touches_only_those_partitions(spark, storage, tmp_path):
    """Tickers replacing different days (AnyOf: the plan refused today for some of them) replace exactly their own
    partitions on either engine (delta-spark makes their folders first, delta-rs removes their files itself)."""
    from stockpipe.storage import AnyOf

    path = str(tmp_path / "t")
    by = ["ticker", "trade_date"]
    storage.write(frame(spark, rows("AAPL", D1) + rows("AAPL", D2) + rows("MSFT", D1) + rows("MSFT", D2)), path,
                  mode="append", partition_by=by)
    each = AnyOf((ReplacePredicate.of(ticker=["AAPL"], trade_date=[D1, D2]),
                  ReplacePredicate.of(ticker=["MSFT"], trade_date=[D1])))
    new = rows("AAPL", D1, close=50.0) + rows("AAPL", D2, close=60.0) + rows("MSFT", D1, close=70.0)
    storage.write(frame(spark, new), path, mode="overwrite", partition_by=by, replace=each)
    assert collect(storage, path) == sorted(new + rows("MSFT", D2))
    assert each.partitions(by) == {("AAPL", "2024-01-08"), ("AAPL", "2024-01-09"), ("MSFT", "2024-01-08")}
    assert AnyOf((ReplacePredicate.of(ticker=["AAPL"]),)).partitions(by) is None  # a day left free: not named


def test_predicates_check_arrow_rows_as_sql_would():
    """The check delta-rs's creating write runs on the Arrow table in hand: every row must match; a null matches
    nothing; AnyOf matches a row that any of its predicates matches."""
    import pyarrow as pa

    from stockpipe.storage import AnyOf

    table = pa.table({"ticker": ["AAPL", "MSFT"], "trade_date": pa.array([D1, D2], pa.date32())})
    both = ReplacePredicate.of(ticker=["AAPL", "MSFT"], trade_date=[D1, D2])
    assert both.matches_all(table) and both.matches_all(table.slice(0, 0))
    assert not ReplacePredicate.of(ticker=["AAPL"]).matches_all(table)
    each_its_day = AnyOf((ReplacePredicate.of(ticker=["AAPL"], trade_date=[D1]),
                          ReplacePredicate.of(ticker=["MSFT"], trade_date=[D2])))
    swapped = AnyOf((ReplacePredicate.of(ticker=["AAPL"], trade_date=[D2]),
                     ReplacePredicate.of(ticker=["MSFT"], trade_date=[D2])))
    assert each_its_day.matches_all(table) and not swapped.matches_all(table)
    assert not ReplacePredicate.of(ticker=["AAPL"]).matches_all(pa.table({"ticker": pa.array(["AAPL", None])}))


def test_long_predicates_match_exactly_their_values_and_compare_dates_as_dates(spark):
    """A backfill's predicate names years of days (and may name many tickers): its SQL matches exactly those values
    and compares the date column as dates; with quoted text, Spark cast every row's date to text and Delta's row
    check compared it with each day in turn (~15 s of a five-year delta-spark backfill). Text the two engines would
    unquote differently is refused."""
    from pyspark.sql import functions as F

    days = [dt.date(2023, 1, 1) + dt.timedelta(days=n) for n in range(300)]
    tickers = [f"T{n:03d}" for n in range(70)] + ["BRK.B"]
    chosen_days, chosen_tickers = days[::3] + [days[-1]], tickers[1::2] + ["BRK.B"]  # 101 days, 36 tickers
    predicate = ReplacePredicate.of(ticker=chosen_tickers, trade_date=chosen_days)
    probe = spark.createDataFrame([(t, d) for t in tickers for d in days], "ticker string, trade_date date")
    matched = {(r.ticker, r.trade_date) for r in probe.filter(F.expr(predicate.sql())).collect()}
    assert matched == {(t, d) for t in chosen_tickers for d in chosen_days}

    probe.createOrReplaceTempView("predicate_probe")
    plan = spark.sql(f"EXPLAIN EXTENDED SELECT * FROM predicate_probe WHERE {predicate.sql()}").collect()[0][0]
    analyzed = plan.split("== Analyzed Logical Plan ==")[1].split("== Optimized Logical Plan ==")[0]
    assert "trade_date" in analyzed and "as string" not in analyzed.lower()
    with pytest.raises(ValueError, match="quotes"):
        ReplacePredicate.of(ticker=["O'NEIL"]).sql()


@pytest.mark.parametrize("partition_by", [["ticker", "trade_date"], []], ids=["partitioned", "unpartitioned"])
@pytest.mark.slow
def test_a_replace_naming_many_days_replaces_exactly_those_days(spark, storage, tmp_path, partition_by):
    """Each engine reads the long predicate's SQL (delta-rs where it evaluates the text: an unpartitioned table):
    only the named days are replaced, and a day inside the named range but not named is refused."""
    path = str(tmp_path / "t")
    days = [D1 + dt.timedelta(days=n) for n in range(140)]
    named = days[::2]  # 70 days: more than one block of the predicate's SQL
    storage.write(frame(spark, [r for d in days for r in rows("AAPL", d, count=1)]), path, mode="append",
                  partition_by=partition_by)
    replace = ReplacePredicate.of(ticker=["AAPL"], trade_date=named)
    replacement = [r for d in named for r in rows("AAPL", d, count=1, close=50.0)]
    storage.write(frame(spark, replacement), path, mode="overwrite", partition_by=partition_by, replace=replace)
    kept = [r for d in days[1::2] for r in rows("AAPL", d, count=1)]
    assert collect(storage, path) == sorted(replacement + kept)
    version = storage.detail(path).version
    with pytest.raises(PipelineError, match="outside the replace predicate"):
        storage.write(frame(spark, rows("AAPL", days[71], count=1, close=9.0)), path, mode="overwrite",
                      partition_by=partition_by, replace=replace)
    assert storage.detail(path).version == version


def test_upsert_updates_matches_inserts_the_rest_and_creates_a_missing_table(spark, storage, tmp_path):
    """MERGE on a key: the run log's row is written when a run starts and replaced when it ends. A table it creates
    has deletion vectors off (Databricks turns them on for new tables), and delta-rs reads it."""
    from deltalake import DeltaTable

    path = str(tmp_path / "t")
    schema = "k string, status string, n int"
    storage.upsert(spark.createDataFrame([("a", "running", 1), ("b", "running", 2)], schema), path, ["k"])
    version = storage.upsert(spark.createDataFrame([("a", "done", 10), ("c", "running", 3)], schema), path, ["k"])
    assert collect(storage, path) == [("a", "done", 10), ("b", "running", 2), ("c", "running", 3)]
    assert version == storage.detail(path).version and storage.history(path)[-1].operation == "MERGE"
    delta_rs_view = DeltaTable(path)
    assert delta_rs_view.metadata().configuration.get("delta.enableDeletionVectors", "false") == "false"
    assert "deletionVectors" not in (delta_rs_view.protocol().reader_features or [])


def test_upsert_adds_new_columns_nested_ones_too_and_updates_only_where_told(spark, storage, tmp_path):
    """A table written before a column existed takes it (older rows read null); an array of structs round-trips;
    `update_if` leaves rows that fail it alone, and `insert=False` adds no row."""
    path = str(tmp_path / "t")
    storage.write(spark.createDataFrame([("a", "ok"), ("b", "running")], "k string, status string"), path)
    nested = "k string, status string, outcomes array<struct<ticker:string,days:array<date>>>"
    # Null in every row, into a table it creates: Spark's Arrow hands the column over with an empty offsets buffer,
    # on which delta-rs's MERGE panicked ("Max offset ... exceeds length of values 0").
    fresh = str(tmp_path / "fresh")
    storage.upsert(spark.createDataFrame([("c", "running", None), ("d", "running", None)], nested), fresh, ["k"])
    assert collect(storage, fresh) == [("c", "running", None), ("d", "running", None)]
    source = spark.createDataFrame([("a", "abandoned", None), ("b", "abandoned", [("AAPL", [D1, D2])]),
                                    ("z", "abandoned", None)], nested)
    storage.upsert(source, path, ["k"], update_if="t.status = 'running'", insert=False)
    back = sorted((r.asDict(recursive=True) for r in storage.read(path).collect()), key=lambda r: r["k"])
    assert back == [{"k": "a", "status": "ok", "outcomes": None},
                    {"k": "b", "status": "abandoned", "outcomes": [{"ticker": "AAPL", "days": [D1, D2]}]}]

"""The one module where Spark 3.5 classic and Spark 4 / Connect differ: each branch runs in the lane of its mode
(make test: classic; make test-connect: Connect), and nothing else in the product may use JVM-private API."""

from __future__ import annotations

import datetime as dt
import os
import re

import pyarrow as pa
import pytest

from stockpipe.compat import (
    conf_for_call,
    is_connect,
    jvm_launched,
    persisted,
    scan_metrics,
    schema_tree,
    show_string,
    to_arrow,
)
from tests.helpers import DELTA_SPARK_ONLY, ROOT

# Spark code whose behaviour Spark Connect (and Spark 4) may change: run in both lanes.
pytestmark = pytest.mark.connect

PRIVATE_SPARK_API = re.compile(r"\._jdf|\._jvm|\._jsc|sparkContext|input_file_name|_collect_as_arrow")


def test_no_jvm_private_spark_api_outside_the_compat_module():
    offenders = []
    for path in [*ROOT.glob("*.py"), *(ROOT / "stockpipe").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]:
        if path.name == "compat.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if PRIVATE_SPARK_API.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_nothing_in_the_product_caches_but_through_the_helper_that_does_without():
    """Serverless refuses cache()/persist(): no result may depend on it. compat.persisted keeps a frame where the
    session allows and computes it twice where it does not; nothing else may call them (the bench, run locally
    only, may)."""
    doors_and_package = [*ROOT.glob("*.py"), *(ROOT / "stockpipe").rglob("*.py")]
    offenders = [f"{path.relative_to(ROOT)}:{number}" for path in doors_and_package
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if re.search(r"\.(cache|persist|unpersist)\(", line) and path.name != "compat.py"]
    assert offenders == []


def test_a_session_that_refuses_to_persist_computes_the_frame_instead(spark):
    frame = spark.range(5)

    class Serverless:  # what Databricks serverless answers to persist()
        def __getattr__(self, name: str) -> object:
            return getattr(frame, name)

        def persist(self, *_: object) -> None:
            raise RuntimeError("[NOT_SUPPORTED_WITH_SERVERLESS] PERSIST TABLE is not supported on serverless compute.")

    refused = Serverless()
    with persisted(refused) as kept:  # type: ignore[arg-type]
        assert kept is refused and kept.count() == 5
    compressed = spark.conf.get("spark.sql.inMemoryColumnarStorage.compressed")
    with persisted(frame) as kept:
        assert kept.count() == 5
        assert kept.storageLevel.useDisk and not kept.storageLevel.useMemory
        # On local disk, compressing the kept copy costs more than it saves (make bench, the backfill section).
        assert spark.conf.get("spark.sql.inMemoryColumnarStorage.compressed") == "false"
    assert not frame.storageLevel.useDisk  # unpersisted when the block ends
    assert spark.conf.get("spark.sql.inMemoryColumnarStorage.compressed") == compressed


def test_the_lane_runs_the_spark_mode_it_claims(spark):
    # make test-connect sets SPARK_REMOTE; a lane that silently fell back to classic would prove nothing.
    assert is_connect(spark) == bool(os.environ.get("SPARK_REMOTE"))


def test_a_process_that_started_its_local_session_has_launched_its_jvm(spark):
    """The suite's session is local (classic, or a Connect server in this process): its JVM runs, so a session built
    now could not change its class path (stockpipe.hadoop.local_fs keeps Hadoop's own file system then)."""
    assert spark.range(1).count() == 1
    assert jvm_launched()


def test_to_arrow_keeps_rows_types_and_instants(spark):
    instant = dt.datetime(2024, 1, 9, 0, 59, tzinfo=dt.UTC)
    frame = spark.createDataFrame([("AAPL", dt.date(2024, 1, 8), instant, 1.5, 7)],
                                  "ticker string, trade_date date, trade_ts timestamp, close double, n long")
    table = to_arrow(frame)
    assert table.schema.field("trade_ts").type == pa.timestamp("us", tz="UTC")
    assert table.to_pylist() == [{"ticker": "AAPL", "trade_date": dt.date(2024, 1, 8), "trade_ts": instant,
                                  "close": 1.5, "n": 7}]
    empty = to_arrow(frame.limit(0))
    assert empty.num_rows == 0 and empty.schema == table.schema


def test_show_string_and_schema_tree_are_what_show_prints(spark):
    frame = spark.createDataFrame([("AAPL", 1)], "ticker string, bars long")
    assert show_string(frame).splitlines()[:4] == ["+------+----+", "|ticker|bars|", "+------+----+",
                                                   "|  AAPL|   1|"]
    assert show_string(frame, truncate=False).splitlines()[3] == "|AAPL  |1   |"
    assert schema_tree(frame).strip().splitlines() == ["root", " |-- ticker: string (nullable = true)",
                                               " |-- bars: long (nullable = true)"]


@pytest.mark.slow
def test_scan_metrics_count_the_files_a_pruned_scan_read(spark, tmp_path):
    frame = spark.createDataFrame([(day, i) for day in ("a", "b", "c") for i in range(3)], "day string, i long")
    frame.repartition("day").write.partitionBy("day").parquet(str(tmp_path / "t"))
    query = spark.read.parquet(str(tmp_path / "t")).filter("day = 'b'").groupBy().count()
    assert query.collect()[0][0] == 3
    files_read, filters = scan_metrics(query)
    assert files_read == 1
    assert "day" in filters  # the executed plan names its partition filters


class RefusingConf:
    """A session conf that refuses some keys, as Databricks serverless does."""

    def __init__(self, real, refused: set[str]) -> None:
        self.real, self.refused = real, refused

    def get(self, key, default=None):
        return self.real.get(key, default)

    def set(self, key, value):
        if key in self.refused:
            raise RuntimeError(f"[CONFIG_NOT_AVAILABLE] Configuration {key} is not available.")
        self.real.set(key, value)

    def unset(self, key):
        self.real.unset(key)


class RefusingSession:
    """The real session, but its conf refuses the given keys."""

    def __init__(self, spark, refused: set[str]) -> None:
        self._spark, self.conf = spark, RefusingConf(spark.conf, refused)

    def __getattr__(self, name):
        return getattr(self._spark, name)


def test_conf_for_call_sets_for_the_call_and_restores(spark):
    key = "spark.sql.shuffle.partitions"
    before = spark.conf.get(key)
    with conf_for_call(spark, key, "3") as applied:
        assert applied and spark.conf.get(key) == "3"
    assert spark.conf.get(key) == before


def test_a_refused_conf_changes_nothing_and_says_so(spark):
    key = "spark.sql.shuffle.partitions"
    before = spark.conf.get(key)
    with conf_for_call(RefusingSession(spark, {key}), key, "3") as applied:
        assert applied is False and spark.conf.get(key) == before
    assert spark.conf.get(key) == before


@DELTA_SPARK_ONLY  # the retention check is a delta-spark session conf; delta-rs lifts it per call
def test_vacuum_keeps_the_safe_retention_where_the_session_refuses_to_lift_the_check(spark, storage, tmp_path, caplog):
    from stockpipe.paths import parquet_files_on_disk
    from stockpipe.storage.delta_spark import DeltaSparkStorage

    path = str(tmp_path / "t")
    frame = spark.createDataFrame([(1, "a")], "id long, p string")
    storage.write(frame, path, mode="overwrite", partition_by=["p"])
    storage.write(frame, path, mode="overwrite", partition_by=["p"])  # one file tombstoned
    refusing = DeltaSparkStorage(RefusingSession(spark, {"spark.databricks.delta.retentionDurationCheck.enabled"}))
    with caplog.at_level("WARNING"):
        vacuumed = refusing.vacuum(path, 0)
    # The fresh tombstoned file is kept, and the result says the 168 hours that ran.
    assert vacuumed.changes.files_removed == 0 and len(parquet_files_on_disk(path)) == 2
    assert vacuumed.retain_hours == 168
    assert "keeps Delta's 168-hour safety retention" in caplog.text


@DELTA_SPARK_ONLY
def test_the_maintenance_report_prints_the_vacuum_that_ran_when_the_session_refuses_the_check(spark, storage,
                                                                                               tmp_path):
    """A session that refuses to lift VACUUM's safety check (Databricks serverless) runs RETAIN 168 HOURS: the
    report's VACUUM line and its calls must say 168, not the 0 that was asked."""
    from stockpipe.health import run_maintenance
    from stockpipe.reports import render_maintenance
    from stockpipe.storage.delta_spark import DeltaSparkStorage

    path = str(tmp_path / "t")
    frame = spark.createDataFrame([(1, "a")], "id long, p string")
    storage.write(frame, path, mode="overwrite", partition_by=["p"])
    refusing = DeltaSparkStorage(RefusingSession(spark, {"spark.databricks.delta.retentionDurationCheck.enabled"}))
    out = render_maintenance(run_maintenance(refusing, path, retain_hours=0))
    assert "VACUUM RETAIN 168 HOURS:" in out and f"VACUUM delta.`{path}` RETAIN 168 HOURS" in out
    assert "RETAIN 0 HOURS" not in out and "retentionDurationCheck" not in out  # no conf was set

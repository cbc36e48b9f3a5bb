"""Sessions and engines: which engine a session gets and why, where delta-spark's jars come from, the local
session's settings, and databricks_utils' course helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

import databricks_utils
from stockpipe.errors import PipelineError
from stockpipe.session import find_delta_jars, session_has_delta
from stockpipe.storage import choose_engine

# Spark code whose behaviour Spark Connect (and Spark 4) may change: run in both lanes.
pytestmark = pytest.mark.connect


class SessionWithoutDelta:
    """A session whose conf has no Delta extension, as a laptop without delta-spark's jars gets."""

    class conf:  # noqa: N801 - mirrors SparkSession.conf
        @staticmethod
        def get(key: str, default: str | None = None) -> str | None:
            return "" if key == "spark.sql.extensions" else default


def test_auto_engine_is_delta_rs_with_a_reason_when_jars_are_missing():
    storage, why = choose_engine(SessionWithoutDelta(), "auto")
    assert storage.name == "delta-rs" and "jars are not available" in why


def test_spark_engine_requested_without_jars_is_a_clear_error():
    with pytest.raises(PipelineError, match="--engine spark needs delta-spark's jars"):
        choose_engine(SessionWithoutDelta(), "spark")


@pytest.mark.delta_spark
def test_engine_detection_sees_jars_added_through_spark_jars(spark_info):
    """py4j's Class.forName cannot see jars given through spark.jars; the session's own data source lookup can."""
    if not spark_info.has_delta_spark:
        pytest.skip("delta-spark's jars cannot be loaded here (set DELTA_JARS_DIR to run this case)")
    assert session_has_delta(spark_info.spark) is True
    storage, why = choose_engine(spark_info.spark, "spark")
    assert storage.name == "delta-spark"
    assert choose_engine(spark_info.spark, "delta-spark")[0].name == "delta-spark"
    assert choose_engine(spark_info.spark, "auto")[0].name == "delta-spark"


def test_session_is_quiet_utc_and_without_ui(spark):
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.conf.get("spark.ui.enabled") == "false"


def test_local_session_lists_and_rebuilds_tables_with_few_tasks(spark):
    """VACUUM lists folders with parallelPartitionDiscovery tasks (10,000 by default) and Delta rebuilds state over
    snapshotPartitions (50): on two cores that made VACUUM of 1,000 files take 47.6 s (make bench measures it)."""
    assert int(spark.conf.get("spark.sql.sources.parallelPartitionDiscovery.parallelism")) <= 64
    assert int(spark.conf.get("spark.databricks.delta.snapshotPartitions")) <= 64


def test_delta_jars_from_a_named_folder_are_found(tmp_path, monkeypatch):
    from stockpipe.session import DELTA_JAR_NAMES

    for name in DELTA_JAR_NAMES:
        (tmp_path / name).write_bytes(b"PK")
    monkeypatch.setenv("DELTA_JARS_DIR", str(tmp_path))
    jars = find_delta_jars()
    assert [Path(j).name for j in jars.files] == list(DELTA_JAR_NAMES) and "DELTA_JARS_DIR" in jars.why
    assert jars.found and not jars.from_maven


def test_without_local_jars_or_maven_the_walk_ends_at_delta_rs(tmp_path, monkeypatch):
    monkeypatch.delenv("DELTA_JARS_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # an empty Ivy cache
    monkeypatch.setenv("STOCKS_DELTA_DOWNLOAD", "0")  # Maven unreachable, as in CI
    jars = find_delta_jars()
    assert not jars.found and jars.files == () and "using delta-rs" in jars.why
    # and how to get delta-spark, the course's engine, instead
    assert "set DELTA_JARS_DIR to a folder holding delta-spark_" in jars.why and "reach Maven once" in jars.why


def test_base_path_local_env_and_databricks(monkeypatch, tmp_path):
    monkeypatch.delenv("STOCKS_BASE_PATH", raising=False)
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    assert databricks_utils.get_base_path("stocks_fixed").endswith("delta_tables/stocks_fixed")
    monkeypatch.setenv("STOCKS_BASE_PATH", "/Volumes/main/default/stocks/")
    assert databricks_utils.get_base_path("stocks_fixed") == "/Volumes/main/default/stocks/stocks_fixed"
    monkeypatch.delenv("STOCKS_BASE_PATH")
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")
    assert databricks_utils.is_databricks()
    with pytest.raises(PipelineError, match="STOCKS_BASE_PATH"):
        databricks_utils.get_base_path("stocks_fixed")


def test_cleanup_path_removes_a_local_folder(spark, tmp_path):
    (tmp_path / "t" / "x").mkdir(parents=True)
    databricks_utils.cleanup_path(spark, str(tmp_path / "t"))
    assert not (tmp_path / "t").exists()

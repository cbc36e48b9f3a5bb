"""The sample source's realism and determinism; the environment helpers' choices."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

import databricks_utils
from stockpipe.errors import PipelineError
from stockpipe.market_calendar import NEW_YORK, trading_days
from stockpipe.sample import day_bars, range_bars
from stockpipe.session import _local_delta_jars, session_has_delta
from stockpipe.storage import choose_engine
from stockpipe.testing import ApiBehaviour, FakeMassiveServer


def ny(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, NEW_YORK)


def test_only_nyse_trading_days_have_bars():
    # 2024-01-13/14 weekend, 2024-01-15 Martin Luther King Jr. Day, 2024-03-29 Good Friday.
    assert trading_days(dt.date(2024, 1, 12), dt.date(2024, 1, 16)) == [dt.date(2024, 1, 12), dt.date(2024, 1, 16)]
    assert range_bars("AAPL", dt.date(2024, 3, 29), dt.date(2024, 3, 29))["t"].size == 0


def test_regular_session_starts_at_0930_new_york_in_winter_and_summer():
    for day in (dt.date(2024, 1, 8), dt.date(2024, 7, 8)):
        times = [ny(int(t)) for t in day_bars("MSFT", day)["t"]]
        regular = [t for t in times if dt.time(9, 30) <= t.time() < dt.time(16, 0)]
        assert len(regular) == 390 and regular[0].time() == dt.time(9, 30)
        assert min(times).time() >= dt.time(4, 0) and max(times).time() < dt.time(20, 0)


def test_early_close_day_ends_regular_trading_at_1300():
    times = [ny(int(t)) for t in day_bars("MSFT", dt.date(2024, 11, 29))["t"]]
    regular = [t for t in times if dt.time(9, 30) <= t.time() < dt.time(13, 0)]
    assert len(regular) == 210 and max(times).time() < dt.time(17, 0)


def test_a_day_is_identical_whatever_range_was_asked():
    wide = range_bars("NVDA", dt.date(2024, 1, 8), dt.date(2024, 1, 12))
    day = day_bars.__wrapped__("NVDA", dt.date(2024, 1, 10))
    mask = np.isin(wide["t"], day["t"])
    assert mask.sum() == day["t"].size
    assert np.array_equal(wide["c"][mask], day["c"]) and np.array_equal(wide["v"][mask], day["v"])


def test_bars_are_sane_and_volumes_mix_whole_and_fractional():
    bars = range_bars("TSLA", dt.date(2024, 1, 8), dt.date(2024, 1, 12))
    assert (bars["l"] <= np.minimum(bars["o"], bars["c"])).all()
    assert (bars["h"] >= np.maximum(bars["o"], bars["c"])).all()
    whole = np.mod(bars["v"], 1) == 0
    assert 0.5 < whole.mean() < 0.95
    assert (np.diff(bars["t"]) > 0).all()


def test_server_rolling_window_answers_429_with_retry_after():
    import requests

    with FakeMassiveServer(ApiBehaviour(calls_per_window=2, window_seconds=30, rate_limit_retry_after=True)) as server:
        url = f"{server.base_url}/v2/aggs/ticker/AAPL/range/1/minute/2024-01-08/2024-01-08"
        codes = [requests.get(url, timeout=5) for _ in range(3)]
    assert [r.status_code for r in codes] == [200, 200, 429]
    assert 1 <= int(codes[2].headers["Retry-After"]) <= 30


# -- environment -----------------------------------------------------------------------------------------------------
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
    jars, why = _local_delta_jars()
    assert [Path(j).name for j in jars] == list(DELTA_JAR_NAMES) and "DELTA_JARS_DIR" in why


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

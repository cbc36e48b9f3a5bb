"""Which engine a session gets: delta-spark where its jars loaded (always on Databricks), delta-rs otherwise."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

from pyspark.sql import SparkSession

from stockpipe.errors import EngineUnsupportedError
from stockpipe.session import session_has_delta
from stockpipe.storage.port import DeltaStorage

log = logging.getLogger(__name__)

EngineName = Literal["auto", "spark", "delta-spark", "delta-rs"]


def delta_spark(spark: SparkSession) -> DeltaStorage:
    from stockpipe.storage.delta_spark import DeltaSparkStorage

    return DeltaSparkStorage(spark)


def delta_rs(spark: SparkSession) -> DeltaStorage:
    # Imported when chosen: Databricks runtimes have Delta built in and no `deltalake` package.
    from stockpipe.storage.delta_rs import DeltaRsStorage

    return DeltaRsStorage(spark)


def choose_engine(spark: SparkSession, requested: EngineName = "auto") -> tuple[DeltaStorage, str]:
    """The engine for this session, and one line saying which and why."""
    requested = "spark" if requested == "delta-spark" else requested
    has_delta = session_has_delta(spark)
    if requested == "spark":
        if not has_delta:
            raise EngineUnsupportedError(
                "--engine spark needs delta-spark's jars, which this session could not load "
                "(set DELTA_JARS_DIR, or reach Maven once to fill the Ivy cache); use --engine delta-rs or auto"
            )
        return delta_spark(spark), "engine delta-spark (requested)"
    if requested == "delta-rs":
        return delta_rs(spark), "engine delta-rs (requested)"
    if has_delta:
        return delta_spark(spark), "engine delta-spark (auto: the session has Delta's jars)"
    return delta_rs(spark), "engine delta-rs (auto: delta-spark's jars are not available in this session)"


def open_storage(
    get_spark: Callable[..., SparkSession], engine: EngineName, app_name: str
) -> tuple[SparkSession, DeltaStorage]:
    """Build the session (through databricks_utils.get_spark) and pick the engine, logging one line why."""
    spark = get_spark(app_name, want_delta_spark=engine != "delta-rs")
    storage, why = choose_engine(spark, engine)
    log.info("%s", why)
    return spark, storage

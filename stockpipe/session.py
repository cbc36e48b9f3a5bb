"""SparkSession for a laptop, CI or Databricks, with Delta through delta-spark when its jars can be had.

delta-spark loads its jars from Maven when the session starts. Machines that reach PyPI but not Maven (CI here,
air-gapped companies) get a plain Spark session and the delta-rs engine instead; the probe that decides costs at
most a few seconds and never hangs.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

DELTA_VERSION = "3.3.2"
SCALA_BINARY = "2.12"
DELTA_JAR_NAMES = (f"delta-spark_{SCALA_BINARY}-{DELTA_VERSION}.jar", f"delta-storage-{DELTA_VERSION}.jar")
IVY_JAR_NAMES = tuple(f"io.delta_{name}" for name in DELTA_JAR_NAMES)
MAVEN_HOST = ("repo1.maven.org", 443)
SPARK_CONF_DIR = Path(__file__).with_name("spark_conf")
DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"


@dataclass(frozen=True)
class SessionInfo:
    spark: SparkSession
    has_delta_spark: bool
    reason: str


def is_databricks() -> bool:
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def _local_delta_jars() -> tuple[list[str], str] | None:
    """Delta jars already on this machine: a folder named by DELTA_JARS_DIR, or Ivy's cache from an earlier run."""
    folder = os.environ.get("DELTA_JARS_DIR")
    if folder:
        jars = [Path(folder) / name for name in DELTA_JAR_NAMES]
        if all(jar.is_file() for jar in jars):
            return [str(j) for j in jars], f"Delta jars from DELTA_JARS_DIR={folder}"
        log.warning("DELTA_JARS_DIR=%s lacks %s", folder, " or ".join(DELTA_JAR_NAMES))
    ivy = Path.home() / ".ivy2" / "jars"
    jars = [ivy / name for name in IVY_JAR_NAMES]
    if all(jar.is_file() for jar in jars):
        return [str(j) for j in jars], f"Delta jars from the Ivy cache ({ivy})"
    return None


def _maven_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("STOCKS_DELTA_DOWNLOAD", "1") == "0":
        return False
    try:
        with socket.create_connection(MAVEN_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def _builder(app_name: str, master: str) -> SparkSession.Builder:
    # Spark puts SPARK_CONF_DIR on the driver's classpath, where log4j2 finds our quiet log4j2.properties before
    # the JVM prints anything (an -D option in the builder arrives too late for the launcher's own lines).
    os.environ.setdefault("SPARK_CONF_DIR", str(SPARK_CONF_DIR))
    return (
        SparkSession.builder.appName(app_name)
        .master(master)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.driver.memory", os.environ.get("STOCKS_DRIVER_MEMORY", "4g"))
    )


def _with_delta(builder: SparkSession.Builder) -> SparkSession.Builder:
    return builder.config("spark.sql.extensions", DELTA_EXTENSION).config(
        "spark.sql.catalog.spark_catalog", DELTA_CATALOG
    )


def session_has_delta(spark: SparkSession) -> bool:
    if is_databricks():
        return True
    try:
        spark._jvm.java.lang.Class.forName("io.delta.tables.DeltaTable")  # type: ignore[union-attr]
        return True
    except Exception:  # noqa: BLE001 - py4j raises its own error types for a missing class
        return False


def build_session(
    app_name: str = "stocks", *, master: str | None = None, want_delta_spark: bool = True, warehouse: str | None = None
) -> SessionInfo:
    """The active session on Databricks; locally a quiet local session, with delta-spark when it can be had."""
    if is_databricks():
        spark = SparkSession.builder.getOrCreate()
        return SessionInfo(spark, True, "Databricks runtime: Delta is built in")
    active = SparkSession.getActiveSession()
    if active is not None:
        has = session_has_delta(active)
        return SessionInfo(active, has, "reusing the active session" + (" (with delta-spark)" if has else ""))
    master = master or os.environ.get("STOCKS_SPARK_MASTER", "local[*]")
    builder = _builder(app_name, master)
    if warehouse:
        # A persistent catalog (Hive's embedded Derby metastore) under the base path, so a registered table
        # outlives the session, as it would in Unity Catalog.
        builder = (
            builder.config("spark.sql.warehouse.dir", f"{warehouse}/warehouse")
            .config(
                "spark.hadoop.javax.jdo.option.ConnectionURL",
                f"jdbc:derby:;databaseName={warehouse}/metastore_db;create=true",
            )
            .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={warehouse}")
            .enableHiveSupport()
        )
    if not want_delta_spark:
        return SessionInfo(_quiet(builder.getOrCreate()), False, "delta-rs requested")
    local = _local_delta_jars()
    if local is not None:
        jars, why = local
        spark = _with_delta(builder.config("spark.jars", ",".join(jars))).getOrCreate()
        return SessionInfo(_quiet(spark), True, why)
    if _maven_reachable():
        from delta import configure_spark_with_delta_pip

        try:
            spark = configure_spark_with_delta_pip(_with_delta(builder)).getOrCreate()
            return SessionInfo(_quiet(spark), True, "Delta jars resolved from Maven")
        except Exception as exc:  # noqa: BLE001 - the JVM launch fails with a generic error when Ivy cannot resolve
            log.warning("delta-spark unavailable (%s); falling back to delta-rs", str(exc).splitlines()[0][:120])
            builder = _builder(app_name, master)
    spark = builder.getOrCreate()
    return SessionInfo(_quiet(spark), False, "Delta jars not cached and Maven unreachable: using delta-rs")


def _quiet(spark: SparkSession) -> SparkSession:
    spark.sparkContext.setLogLevel("ERROR")
    return spark

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

from stockpipe.compat import quiet_logs

log = logging.getLogger(__name__)

DELTA_VERSION = "3.3.2"
SCALA_BINARY = "2.12"
DELTA_JAR_NAMES = (f"delta-spark_{SCALA_BINARY}-{DELTA_VERSION}.jar", f"delta-storage-{DELTA_VERSION}.jar")
IVY_JAR_NAMES = tuple(f"io.delta_{name}" for name in DELTA_JAR_NAMES)
MAVEN_HOST = ("repo1.maven.org", 443)
SPARK_CONF_DIR = Path(__file__).with_name("spark_conf")
DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
LISTING_PARALLELISM = 8
_PROBE_PATH = "/nonexistent/stockpipe-delta-probe"


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
        # Absolute, so a relative DELTA_JARS_DIR (../shared/delta-jars) means the same folder to the JVM.
        jars = [Path(folder).expanduser().resolve() / name for name in DELTA_JAR_NAMES]
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
        # Delta's VACUUM lists a table's folders with this many tasks (default 10,000): on a laptop's two cores
        # that alone took ~40 s for a 74-file table. A few tasks per core list the same folders in seconds.
        .config("spark.sql.sources.parallelPartitionDiscovery.parallelism", str(LISTING_PARALLELISM))
        # Delta rebuilds a table's state over 50 partitions by default, sized for clusters; a laptop's cores are
        # few. Measured with VACUUM of a 1,000-file table on 2 cores: 47.6 s with both defaults, 12.7 s with the
        # listing parallelism above, 6.5 s with this as well (make bench prints the current figure).
        .config("spark.databricks.delta.snapshotPartitions", str(max(2, os.cpu_count() or 2)))
    )


def _with_delta(builder: SparkSession.Builder) -> SparkSession.Builder:
    return builder.config("spark.sql.extensions", DELTA_EXTENSION).config(
        "spark.sql.catalog.spark_catalog", DELTA_CATALOG
    )


def session_has_delta(spark: SparkSession) -> bool:
    """Whether this session can read and write Delta through delta-spark, asked through public API only.

    Spark resolves the `delta` data source with the session's own class loader, which sees jars added through
    `spark.jars` (py4j's Class.forName does not). A missing source is DATA_SOURCE_NOT_FOUND; any other answer (here:
    the probe path does not exist) means the source loaded. Delta's SQL (OPTIMIZE, VACUUM) also needs the extension.
    """
    if is_databricks():
        return True
    extensions = spark.conf.get("spark.sql.extensions", "") or ""
    if DELTA_EXTENSION not in extensions:
        return False
    try:
        spark.read.format("delta").load(_PROBE_PATH).schema  # noqa: B018 - resolving the source is the probe
    except Exception as exc:  # noqa: BLE001 - classic and Connect raise different types for the same answer
        return "DATA_SOURCE_NOT_FOUND" not in str(exc) and "Failed to find data source" not in str(exc)
    return True


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
    quiet_logs(spark)
    return spark

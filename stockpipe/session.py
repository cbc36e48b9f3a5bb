"""SparkSession for a laptop, CI or Databricks, with Delta through delta-spark when its jars can be had.

delta-spark loads its jars from Maven when the session starts. Machines that reach PyPI but not Maven (CI here,
air-gapped companies) get a plain Spark session and the delta-rs engine instead; the probe that decides costs at
most a few seconds and never hangs.

Spark Connect (Databricks serverless and Free Edition, or `SPARK_REMOTE`): a session on someone else's server is
taken as it is. `SPARK_REMOTE=local[N]` starts PySpark's in-process Connect server; its static settings (jars, the
Delta extension, loopback-only binding) reach the server's launch through PYSPARK_SUBMIT_ARGS, because a Connect
client may not set them and PySpark warns for each one it tries.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shlex
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import pyspark
from pyspark.sql import SparkSession

from stockpipe.compat import quiet_logs
from stockpipe.hadoop.local_fs import local_file_system

log = logging.getLogger(__name__)

# The Delta release that matches the installed delta-spark package: 3.3.x for Spark 3.5 (Scala 2.12), 4.0.x for
# Spark 4.0 (Scala 2.13), as configure_spark_with_delta_pip pairs them.
SPARK_MAJOR = int(pyspark.__version__.split(".")[0])
DELTA_VERSION = importlib.metadata.version("delta-spark")
SCALA_BINARY = "2.13" if SPARK_MAJOR >= 4 else "2.12"
DELTA_JAR_NAMES = (f"delta-spark_{SCALA_BINARY}-{DELTA_VERSION}.jar", f"delta-storage-{DELTA_VERSION}.jar")
IVY_JAR_NAMES = tuple(f"io.delta_{name}" for name in DELTA_JAR_NAMES)
DELTA_PACKAGE = f"io.delta:delta-spark_{SCALA_BINARY}:{DELTA_VERSION}"
# What to do to get delta-spark, the course's engine, where it could not be had: said wherever delta-rs stands in.
HOW_TO_GET_DELTA_SPARK = (f"for delta-spark, the course's engine, set DELTA_JARS_DIR to a folder holding "
                          f"{' and '.join(DELTA_JAR_NAMES)}, or reach Maven once (the Ivy cache keeps them)")
NO_DELTA_JARS = f"Delta jars not cached and Maven unreachable: using delta-rs ({HOW_TO_GET_DELTA_SPARK})"
NO_DOWNLOAD = f"Delta jars not cached and STOCKS_DELTA_DOWNLOAD=0: using delta-rs ({HOW_TO_GET_DELTA_SPARK})"
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


@dataclass(frozen=True)
class DeltaJars:
    """Where a session this project starts gets delta-spark's jars: files on this machine, Maven (through Ivy, at
    the session's start), or nowhere (the delta-rs engine then)."""

    files: tuple[str, ...] = ()
    from_maven: bool = False
    why: str = ""

    @property
    def found(self) -> bool:
        return bool(self.files) or self.from_maven


def find_delta_jars() -> DeltaJars:
    """The one walk, for classic and Connect sessions alike: local jars, then Maven, then none."""
    local = _local_delta_jars()
    if local is not None:
        return DeltaJars(files=tuple(local[0]), why=local[1])
    if _maven_reachable():
        return DeltaJars(from_maven=True, why="Delta jars resolved from Maven")
    return DeltaJars(why=NO_DOWNLOAD if os.environ.get("STOCKS_DELTA_DOWNLOAD", "1") == "0" else NO_DELTA_JARS)


def _maven_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("STOCKS_DELTA_DOWNLOAD", "1") == "0":
        return False
    try:
        with socket.create_connection(MAVEN_HOST, timeout=timeout):
            return True
    except OSError:
        return False


LOCAL_JAVA_OPTIONS = "-Djdk.lang.Process.launchMechanism=VFORK"


def local_confs(master: str = "local[*]") -> tuple[dict[str, str], dict[str, str]]:
    """(static, runtime) settings of a session this project starts on the local machine."""
    file_system = local_file_system(master)
    log.debug("local file system: %s", file_system.why)
    static = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.memory": os.environ.get("STOCKS_DRIVER_MEMORY", "4g"),
        # Hadoop's local file system sets each new file's and folder's permissions by forking `chmod` (without its
        # native library, which pip's Spark lacks), and its checksummed variant writes a .crc file beside each
        # file, chmod-ed too: most of what each data file costs on two cores. The raw variant writes no .crc files;
        # NioLocalFileSystem, the raw variant setting permissions in the JVM, forks nothing
        # (stockpipe/hadoop/local_fs.py), and vfork makes a fork cheaper where one is left (docs/measurements.md).
        "spark.hadoop.fs.file.impl": file_system.impl,
        "spark.driver.extraJavaOptions": LOCAL_JAVA_OPTIONS,
    }
    if file_system.classpath:  # local-cluster masters run executors in JVMs of their own
        static["spark.driver.extraClassPath"] = static["spark.executor.extraClassPath"] = file_system.classpath
    runtime = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": "8",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Delta's VACUUM lists a table's folders with this many tasks (default 10,000), sized for clusters: on a
        # laptop's two cores the listing alone took most of a VACUUM. A few tasks per core list the same folders.
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": str(LISTING_PARALLELISM),
        # Delta rebuilds a table's state over 50 partitions by default, sized for clusters; a laptop's cores are
        # few (docs/measurements.md; make bench prints the current figure).
        "spark.databricks.delta.snapshotPartitions": str(max(2, os.cpu_count() or 2)),
    }
    return static, runtime


def _local_python_workers() -> None:
    # Spark starts its Python workers (mapInArrow) with `python3` from PATH unless told: a venv not on PATH would
    # give them another interpreter, without pyarrow. A local session's workers run this interpreter.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


def _quiet_jvm_logs() -> None:
    # Spark puts SPARK_CONF_DIR on the driver's classpath, where log4j2 finds our quiet log4j2.properties before
    # the JVM prints anything (an -D option in the builder arrives too late for the launcher's own lines).
    os.environ.setdefault("SPARK_CONF_DIR", str(SPARK_CONF_DIR))


def _builder(app_name: str, master: str) -> SparkSession.Builder:
    _quiet_jvm_logs()
    _local_python_workers()
    static, runtime = local_confs(master)
    builder = SparkSession.builder.appName(app_name).master(master)
    for key, value in {**static, **runtime}.items():
        builder = builder.config(key, value)
    return builder


def _with_delta(builder: SparkSession.Builder) -> SparkSession.Builder:
    return builder.config("spark.sql.extensions", DELTA_EXTENSION).config(
        "spark.sql.catalog.spark_catalog", DELTA_CATALOG
    )


def _catalog_confs(warehouse: str) -> dict[str, str]:
    """A persistent catalog (Hive's embedded Derby metastore) under the base path, so a registered table outlives
    the session, as it would in Unity Catalog."""
    return {
        "spark.sql.catalogImplementation": "hive",
        "spark.sql.warehouse.dir": f"{warehouse}/warehouse",
        "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={warehouse}/metastore_db;create=true",
        "spark.driver.extraJavaOptions": f"{LOCAL_JAVA_OPTIONS} -Dderby.system.home={warehouse}",
    }


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


def existing_session() -> SparkSession | None:
    """The session this process already has, from any thread: getActiveSession() is per thread, and the harvester
    starts Spark on a worker thread while it fetches."""
    try:
        return SparkSession.active()
    except Exception:  # noqa: BLE001 - NO_ACTIVE_OR_DEFAULT_SESSION, raised as different types per mode
        return None


def build_session(
    app_name: str = "stocks", *, master: str | None = None, want_delta_spark: bool = True, warehouse: str | None = None
) -> SessionInfo:
    """The active session on Databricks; locally a quiet local session, with delta-spark when it can be had."""
    if is_databricks():
        spark = SparkSession.builder.getOrCreate()
        return SessionInfo(spark, True, "Databricks runtime: Delta is built in")
    active = existing_session()
    if active is not None:
        has = session_has_delta(active)
        return SessionInfo(active, has, "reusing the active session" + (" (with delta-spark)" if has else ""))
    remote = os.environ.get("SPARK_REMOTE")
    if remote:
        return _connect_session(app_name, remote, want_delta_spark=want_delta_spark, warehouse=warehouse)
    master = master or os.environ.get("STOCKS_SPARK_MASTER", "local[*]")
    builder = _builder(app_name, master)
    if warehouse:
        for key, value in _catalog_confs(warehouse).items():
            builder = builder.config(key, value)
    if not want_delta_spark:
        return SessionInfo(_quiet(builder.getOrCreate()), False, "delta-rs requested")
    jars = find_delta_jars()
    if jars.files:
        spark = _with_delta(builder.config("spark.jars", ",".join(jars.files))).getOrCreate()
        return SessionInfo(_quiet(spark), True, jars.why)
    if jars.from_maven:
        from delta import configure_spark_with_delta_pip

        try:
            spark = configure_spark_with_delta_pip(_with_delta(builder)).getOrCreate()
            return SessionInfo(_quiet(spark), True, jars.why)
        except Exception as exc:  # noqa: BLE001 - the JVM launch fails with a generic error when Ivy cannot resolve
            log.warning("delta-spark unavailable (%s); falling back to delta-rs", str(exc).splitlines()[0][:120])
            builder = _builder(app_name, master)
    spark = builder.getOrCreate()
    return SessionInfo(_quiet(spark), False, jars.why if not jars.from_maven else NO_DELTA_JARS)


def _connect_session(app_name: str, remote: str, *, want_delta_spark: bool, warehouse: str | None) -> SessionInfo:
    """A Spark Connect session. `local[N]` starts PySpark's in-process server, configured here; any other remote
    (`sc://host:port`) is a server someone else configured, taken as it is."""
    if not remote.startswith("local"):
        spark = _quiet(SparkSession.builder.remote(remote).getOrCreate())
        has = want_delta_spark and session_has_delta(spark)
        return SessionInfo(spark, has, f"Spark Connect server {remote}" + (" with delta-spark" if has else ""))
    _quiet_jvm_logs()
    _local_python_workers()
    static, runtime = local_confs(remote)
    # Loopback only: PySpark's in-process server listens on every interface (0.0.0.0:15002) unless told otherwise.
    confs = {**static, **runtime, "spark.connect.grpc.binding.address": "127.0.0.1", "spark.app.name": app_name}
    if warehouse:
        confs.update(_catalog_confs(warehouse))
    jars = find_delta_jars() if want_delta_spark else DeltaJars(why="delta-rs requested")
    why = jars.why
    if jars.from_maven:
        # What configure_spark_with_delta_pip asks for on a classic session: Spark resolves it through Ivy.
        confs["spark.jars.packages"] = DELTA_PACKAGE
    if jars.found:
        confs.update({"spark.sql.extensions": DELTA_EXTENSION, "spark.sql.catalog.spark_catalog": DELTA_CATALOG})
    if "PYSPARK_SUBMIT_ARGS" in os.environ:
        log.warning("PYSPARK_SUBMIT_ARGS is set: the local Connect server gets those settings, not this project's")
        spark = SparkSession.builder.remote(remote).getOrCreate()
    else:
        args = [f"--jars {shlex.quote(','.join(jars.files))}"] if jars.files else []
        args += [f"--conf {shlex.quote(f'{key}={value}')}" for key, value in confs.items()]
        os.environ["PYSPARK_SUBMIT_ARGS"] = " ".join([*args, "pyspark-shell"])
        try:
            spark = SparkSession.builder.remote(remote).getOrCreate()
        finally:
            del os.environ["PYSPARK_SUBMIT_ARGS"]  # this server's launch only, not child processes'
    has = "spark.sql.extensions" in confs and session_has_delta(spark)
    if not has and "spark.sql.extensions" in confs:
        why = f"{why}, but delta-spark did not load: using delta-rs"
    return SessionInfo(_quiet(spark), has, f"local Spark Connect server ({remote}); {why}")


def _quiet(spark: SparkSession) -> SparkSession:
    quiet_logs(spark)
    return spark

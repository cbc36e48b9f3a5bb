"""Spark 3.5 classic and Spark 4 / Spark Connect, in one place.

The rest of the package uses only the public DataFrame and SQL API. Where the two modes need two different calls,
both branches live here, each tested (tests/test_compat.py). Spark Connect is what Databricks serverless and Free
Edition run: no `sparkContext`, no `_jdf`/`_jvm`/`_jsc`, and the driver talks to the server over gRPC.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


def is_connect(spark: SparkSession) -> bool:
    """True for a Spark Connect session (pyspark.sql.connect), whatever the server is."""
    module = type(spark).__module__
    if module.startswith("pyspark."):
        return module.startswith("pyspark.sql.connect")
    # Something wrapping a session (a test double, a notebook helper): a process runs one mode, ask PySpark.
    from pyspark.sql.utils import is_remote

    return bool(is_remote())


def jvm_launched() -> bool:
    """Whether this process has already started a JVM (a classic session or a local Spark Connect server, running or
    since stopped): its class path and launch options are then fixed for the life of the process."""
    try:
        from pyspark import SparkContext
    except ImportError:  # the Connect-only client package: no JVM in this process
        return False
    return SparkContext._gateway is not None


# PySpark 4 logs every SQL error it raises, even one the caller catches (a probe, a refused conf), through these
# loggers with their own handler; the scripts report the errors that matter in one line.
PYSPARK_ERROR_LOGGERS = ("SQLQueryContextLogger", "DataFrameQueryContextLogger")


def quiet_logs(spark: SparkSession) -> None:
    """ERROR-level driver logs on a classic session (a Connect server keeps its own log settings), and no PySpark
    error echo for exceptions the caller handles."""
    for name in PYSPARK_ERROR_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    if not is_connect(spark):
        spark.sparkContext.setLogLevel("ERROR")


@contextlib.contextmanager
def conf_for_call(spark: SparkSession, key: str, value: str) -> Iterator[bool]:
    """Set a session conf for the duration of one call and restore it afterwards. Yields False, changing nothing,
    when the session refuses the key (Databricks serverless accepts only some confs): the caller then keeps the safe
    default and says so."""
    try:
        previous = spark.conf.get(key, None)
        spark.conf.set(key, value)
    except Exception as exc:  # noqa: BLE001 - classic and Connect raise different types for a refused conf
        log.debug("session refused %s=%s: %s", key, value, str(exc).splitlines()[0][:200] if str(exc) else exc)
        yield False
        return
    try:
        yield True
    finally:
        if previous is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, previous)


# Spark compresses the columns of a frame it keeps; on local disk that costs more than it saves
# (docs/measurements.md).
KEPT_UNCOMPRESSED = ("spark.sql.inMemoryColumnarStorage.compressed", "false")


@contextlib.contextmanager
def persisted(df: DataFrame) -> Iterator[DataFrame]:
    """`df` kept on local disk, uncompressed, while the block runs, so two jobs over it compute it once; disk, not
    memory, so the JVM's memory stays bounded by a partition. Sessions that refuse to persist (Databricks
    serverless) compute it twice instead."""
    from pyspark import StorageLevel

    with contextlib.ExitStack() as stack:
        # Set before the frame is kept, and read when the kept copy is built (the block's first job); a session
        # that refuses the key keeps Spark's default.
        stack.enter_context(conf_for_call(df.sparkSession, *KEPT_UNCOMPRESSED))
        try:
            kept = df.persist(StorageLevel.DISK_ONLY)
        except Exception as exc:  # noqa: BLE001 - serverless answers NOT_SUPPORTED_WITH_SERVERLESS, typed per mode
            log.debug("persist refused: %s", str(exc).splitlines()[0][:200] if str(exc) else exc)
            yield df
            return
        stack.callback(kept.unpersist)
        yield kept


def to_arrow(df: DataFrame) -> pa.Table:
    """Spark -> Arrow without rows in Python: toArrow() from Spark 4.0 (classic and Connect), the classic collector
    before it."""
    from pyspark.sql.pandas.types import to_arrow_schema

    schema = to_arrow_schema(df.schema)
    if hasattr(df, "toArrow"):
        table = df.toArrow()  # type: ignore[operator]  # Spark 4 only: the 3.5 stubs take it for a column
    else:  # Spark 3.5 classic: Arrow batches straight from the JVM
        batches = df._collect_as_arrow()
        table = pa.Table.from_batches(batches) if batches else schema.empty_table()
    return table.cast(schema) if table.num_rows else schema.empty_table()


def show_string(df: DataFrame, rows: int = 20, truncate: bool | int = True) -> str:
    """What `df.show()` prints, as text: `show` prints from Python in both modes, so its output can be captured."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        df.show(rows, truncate=truncate)
    return buffer.getvalue()


def schema_tree(df: DataFrame) -> str:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        df.printSchema()
    return buffer.getvalue()


def scan_metrics(df: DataFrame) -> tuple[int | None, str]:
    """Files read by the executed query's file scan, and its partition filters, after `df` has run.

    Classic: the executed plan's scan node metrics. Connect (Spark 4): the ExecutionInfo the server sends back with
    the result. None when the runtime exposes neither (e.g. Photon), never a guess.
    """
    if is_connect(df.sparkSession):
        return _connect_scan_metrics(df)
    return _classic_scan_metrics(df)


def _classic_scan_metrics(df: DataFrame) -> tuple[int | None, str]:
    try:
        scan = _find_scan(df._jdf.queryExecution().executedPlan())
        if scan is None:
            return None, ""
        files = scan.metrics().get("numFiles")
        return (int(files.get().value()) if files.isDefined() else None), _partition_filters(scan.toString())
    except Exception:  # noqa: BLE001 - plan internals differ across runtimes (Photon); the count still stands
        return None, ""


def _partition_filters(scan_text: str) -> str:
    """The scan's PartitionFilters, without expression ids (ticker#2151 -> ticker); Spark may cut the text with
    '...', which stays (the filter is cut, not wrong) rather than run into the next field."""
    match = re.search(r"PartitionFilters: \[(.*?)(?:\](?:, [A-Z]\w+: |$)|, [A-Z]\w+: )", scan_text)
    if not match:
        return ""
    return "[" + re.sub(r"#\d+", "", match[1]).rstrip(", ") + "]"


def _find_scan(node: Any, depth: int = 0) -> Any:
    """The first file scan below `node`, looking inside adaptive plans and their query stages (AQE stays on)."""
    if depth > 64:
        return None
    name = node.getClass().getSimpleName()
    if "FileSourceScan" in name or "FileScan" in name or node.nodeName().startswith("Scan"):
        return node
    if name == "AdaptiveSparkPlanExec":
        return _find_scan(node.executedPlan(), depth + 1)
    if name.endswith("QueryStageExec"):
        return _find_scan(node.plan(), depth + 1)
    children = node.children()
    for index in range(children.size()):
        found = _find_scan(children.apply(index), depth + 1)
        if found is not None:
            return found
    return None


def _connect_scan_metrics(df: DataFrame) -> tuple[int | None, str]:
    """The server sends each plan node's SQL metrics with the result (Spark 4: `DataFrame.executionInfo`); the file
    scan's `numFiles` is the files it read. Its partition filters are in the physical plan `explain` prints."""
    info: Any = getattr(df, "executionInfo", None)
    metrics = getattr(info, "metrics", None) if info is not None else None
    files = None
    for node in getattr(metrics, "_metrics", None) or []:
        name = str(getattr(node, "name", ""))
        if name.startswith("Scan") or "FileScan" in name:
            values = {m.name: m.value for m in getattr(node, "metrics", [])}
            found = values.get("numFiles", values.get("number of files read"))
            files = int(found) if found is not None else None
            break
    return files, _partition_filters(_explain_text(df))


def _explain_text(df: DataFrame) -> str:
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            df.explain()
    except Exception:  # noqa: BLE001 - the filters are a nicety next to the count
        return ""
    return buffer.getvalue()


def default_parallelism(spark: SparkSession) -> int:
    """The tasks the session runs at once: the classic context's default parallelism; through Connect, the conf when
    set, else this machine's cores (what a local Connect server has)."""
    import os

    if not is_connect(spark):
        return int(spark.sparkContext.defaultParallelism)
    try:
        return int(spark.conf.get("spark.default.parallelism", None) or os.cpu_count() or 2)
    except Exception:  # noqa: BLE001 - a Connect server may refuse to show a conf
        return os.cpu_count() or 2


_SHIPPED: set[tuple[int, str]] = set()


def ship_package(spark: SparkSession, package: str = "stockpipe") -> None:
    """Make the package importable in the session's Python workers (a task that runs the package's own code: a flat
    file prepared where it is read), once a session: a zip of it added to the session, through `addPyFile` on a
    classic session, through `addArtifacts(pyfile=True)` on a Connect one (Databricks serverless). Locally the workers
    could import it from the working folder only when the run started there."""
    import importlib
    import tempfile
    import zipfile
    from pathlib import Path

    key = (id(spark), package)
    if key in _SHIPPED:
        return
    root = Path(importlib.import_module(package).__file__ or "").parent
    target = Path(tempfile.mkdtemp(prefix="stocks-ship-")) / f"{package}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(root.rglob("*.py")):
            archive.write(file, Path(package) / file.relative_to(root))
    if is_connect(spark):
        spark.addArtifacts(str(target), pyfile=True)
    else:
        spark.sparkContext.addPyFile(str(target))
    _SHIPPED.add(key)

"""The course's environment helpers, same names and behaviour, extended for laptops without Maven.

On Databricks: the active session, Delta built in, tables under a Unity Catalog volume (STOCKS_BASE_PATH) and the
API key from a secret scope. Locally: a quiet local[*] session (UI off, UTC), tables under ./delta_tables, Delta
through delta-spark when its jars can be had and through delta-rs otherwise (see stockpipe/session.py).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from pyspark.sql import SparkSession

from stockpipe.errors import PipelineError
from stockpipe.session import build_session, existing_session
from stockpipe.session import is_databricks as _is_databricks

log = logging.getLogger("databricks_utils")

LOCAL_BASE = Path(os.environ.get("STOCKS_LOCAL_BASE", "delta_tables"))


def is_databricks() -> bool:
    """True inside a Databricks runtime (notebook or job)."""
    return _is_databricks()


def get_spark(app_name: str = "stocks", *, want_delta_spark: bool = True, warehouse: str | None = None) -> SparkSession:
    """The session to use; logs one line saying whether Delta comes from delta-spark and why."""
    session = build_session(app_name, want_delta_spark=want_delta_spark, warehouse=warehouse)
    line = f"spark {session.spark.version}: {session.reason}"
    if logging.getLogger().handlers:
        log.info("%s", line)
    else:  # called from a notebook or `python -c` without logging set up: still say which engine and why
        print(line, file=sys.stderr)
    return session.spark


def get_base_path(subdir: str = "") -> str:
    """Where tables live: STOCKS_BASE_PATH (a Unity Catalog volume on Databricks) or ./delta_tables locally."""
    configured = os.environ.get("STOCKS_BASE_PATH")
    if configured:
        base = configured.rstrip("/")
    elif is_databricks():
        raise PipelineError(
            "set STOCKS_BASE_PATH to a Unity Catalog volume you can write, e.g. /Volumes/main/default/stocks "
            "(or pass --table-path)"
        )
    else:
        base = str(LOCAL_BASE.resolve())
    return f"{base}/{subdir}" if subdir else base


def cleanup_path(spark: SparkSession, path: str) -> None:
    """Remove a table folder: dbutils on Databricks, the local filesystem elsewhere."""
    if is_databricks():
        dbutils = _dbutils(spark)
        try:
            dbutils.fs.rm(path, True)
        except Exception as exc:  # noqa: BLE001 - dbutils raises a generic error for a missing path
            log.debug("nothing to remove at %s (%s)", path, exc)
        return
    shutil.rmtree(path, ignore_errors=True)


def stop_spark_if_local(spark: SparkSession | None) -> None:
    """Stop the session locally; never on Databricks, where the session belongs to the cluster."""
    if spark is not None and not is_databricks():
        spark.stop()


def get_secret(scope: str, key: str) -> str | None:
    """An API key from a Databricks secret scope; None off Databricks or when unset."""
    if not is_databricks():
        return None
    spark = existing_session() or SparkSession.builder.getOrCreate()
    try:
        return _dbutils(spark).secrets.get(scope=scope, key=key)
    except Exception:  # noqa: BLE001 - never echo secret-store errors that might contain names we do not own
        log.warning("could not read secret %s/%s", scope, key)
        return None


def _dbutils(spark: SparkSession) -> Any:  # dbutils, only importable on Databricks
    try:
        # Notebooks and job tasks on classic clusters, serverless and Free Edition alike.
        from databricks.sdk.runtime import dbutils

        return dbutils
    except ImportError:  # older runtimes: the classic-cluster constructor
        from pyspark.dbutils import DBUtils

        return DBUtils(spark)


def run_as_script(main: Callable[[], int]) -> NoReturn:
    """Run a script's main() and exit with its code. A Spark Connect session it built locally is stopped; a classic
    local one is left to its JVM, which stops it in its own shutdown hook (the one a spark-submit job that never calls
    stop() meets) as soon as this process exits and the gateway's stdin closes: the same stop, with Spark's temporary
    folders removed, without holding the exit for it (pyspark's own stop() took 0.3 to 0.9 s, most of it its
    accumulator server waiting out a poll interval). Never on Databricks, where the session is the cluster's."""
    from stockpipe.compat import is_connect

    code = main()
    session = existing_session()
    if session is not None and is_connect(session):
        stop_spark_if_local(session)
    sys.exit(code)

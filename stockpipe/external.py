"""Register the fixed table under a name (Part 4) and query it through that name only.

- Databricks: an external table in Unity Catalog (`CREATE TABLE ... USING DELTA LOCATION ...`).
- Local with delta-spark: a real external table in Spark's persistent catalog, plus the proof of what "external"
  means: DROP TABLE removes the name, the files and rows stay, registering again shows the same rows.
- Local with delta-rs: the assignment's temporary view over the table.

`register_and_query` is the whole of Part 4: the registration, the daily query through the name, and the
partition-pruning query with the scan's own file counts.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession

from stockpipe.compat import scan_metrics, show_string
from stockpipe.errors import PipelineError, UsageError
from stockpipe.storage import DeltaStorage

log = logging.getLogger(__name__)

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
COMMENT = "Fixed stock OHLCV minute bars from the Massive (formerly Polygon.io) API: external table"

DAILY_QUERY = """
    SELECT ticker, trade_date, COUNT(*) AS bar_count, MIN(low) AS day_low, MAX(high) AS day_high
    FROM {name}
    GROUP BY ticker, trade_date
    ORDER BY ticker, trade_date
"""


def identifier(value: str, flag: str) -> str:
    """Letters, digits and underscore only, then backquoted: nothing from the command line reaches SQL unchecked."""
    if not IDENTIFIER.match(value):
        raise UsageError(f"{flag}: {value!r} is not an identifier (letters, digits, underscore; not starting with a "
                         "digit)")
    return f"`{value}`"


def location_literal(location: str) -> str:
    if any(ch in location for ch in "'\\`\n\r\x00"):
        raise UsageError(f"--location: {location!r} contains a quote, backslash or control character")
    return f"'{location}'"


@dataclass
class Registration:
    kind: str  # "unity-catalog table" | "external table (local catalog)" | "temporary view"
    name: str
    statements: list[str] = field(default_factory=list)
    table_type: str | None = None
    drop_demo: dict[str, int] | None = None


def register_unity_catalog(spark: SparkSession, storage: DeltaStorage, catalog: str, schema: str, name: str,
                           location: str) -> Registration:
    """An external table in Unity Catalog. UC keeps tables out of volumes and needs an external location for
    LOCATION (Free Edition has none): when it refuses, the table is still queried by name, through the
    assignment's temporary view, and the log says why in one line."""
    cat, sch, tbl = identifier(catalog, "--catalog"), identifier(schema, "--schema"), identifier(name, "--name")
    statements = [
        f"USE CATALOG {cat}",
        f"CREATE SCHEMA IF NOT EXISTS {cat}.{sch}",
        f"CREATE TABLE IF NOT EXISTS {cat}.{sch}.{tbl} USING DELTA LOCATION {location_literal(location)} "
        f"COMMENT '{COMMENT}'",
    ]
    try:
        for statement in statements:
            log.debug("%s", statement)
            spark.sql(statement)
    except Exception as exc:  # noqa: BLE001 - UC answers with several error classes for a refused location
        first_line = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        log.warning("Unity Catalog refused the external table at %s (%s); pass --location on an external location "
                    "to register one. Querying through a temporary view instead", location, first_line)
        return register_temp_view(storage, name, location)
    full = f"{cat}.{sch}.{tbl}"
    return Registration("unity-catalog table", full, statements, _table_type(spark, full))


def register_local_catalog(spark: SparkSession, storage: DeltaStorage, schema: str, name: str, location: str,
                           demonstrate_drop: bool = True) -> Registration:
    sch, tbl = identifier(schema, "--schema"), identifier(name, "--name")
    full = f"{sch}.{tbl}"
    create = (f"CREATE TABLE IF NOT EXISTS {full} USING DELTA LOCATION {location_literal(location)} "
              f"COMMENT '{COMMENT}'")
    statements = [f"CREATE SCHEMA IF NOT EXISTS {sch}", create]
    for statement in statements:
        log.debug("%s", statement)
        spark.sql(statement)
    registration = Registration("external table (local catalog)", full, statements, _table_type(spark, full))
    if demonstrate_drop:
        rows_before = spark.table(full).count()
        files_before = storage.detail(location).num_files
        spark.sql(f"DROP TABLE {full}")
        # The name is gone; the data is not: that is what EXTERNAL means.
        name_exists = spark.catalog.tableExists(f"{schema}.{name}")
        rows_at_path = storage.count(location)
        files_after = storage.detail(location).num_files
        spark.sql(create)
        registration.drop_demo = {
            "rows_before_drop": rows_before, "files_before_drop": files_before,
            "name_exists_after_drop": int(name_exists), "rows_at_path_after_drop": rows_at_path,
            "files_at_path_after_drop": files_after, "rows_after_reregister": spark.table(full).count(),
        }
    return registration


def register_temp_view(storage: DeltaStorage, name: str, location: str) -> Registration:
    view = identifier(name, "--name").strip("`")
    storage.register_view(location, view)
    return Registration("temporary view", view, [f"temporary view {view} over {location} ({storage.name})"])


def _table_type(spark: SparkSession, full_name: str) -> str | None:
    try:
        rows = spark.sql(f"DESCRIBE TABLE EXTENDED {full_name}").collect()
    except Exception:  # noqa: BLE001 - a catalog that cannot describe is reported as unknown, not fatal
        return None
    for row in rows:
        if str(row[0]).strip() == "Type":
            return str(row[1]).strip()
    return None


@dataclass
class PruningResult:
    ticker: str
    trade_date: str
    rows: int
    files_read: int | None
    files_in_table: int
    partition_filters: str


def pruning_demo(spark: SparkSession, name: str, ticker: str, day: str, files_in_table: int) -> PruningResult:
    """Count one ticker's one day through the name, and read the scan's own metrics: files read vs files in the
    table. AQE stays as the session has it (serverless may refuse to change it): the metrics are read through the
    adaptive plan."""
    if not re.fullmatch(r"[A-Z0-9.\-]{1,12}", ticker) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day):
        raise UsageError("pruning demo needs a ticker symbol and a YYYY-MM-DD day")
    frame = spark.sql(f"SELECT COUNT(*) AS bars FROM {name} WHERE ticker = '{ticker}' AND trade_date = DATE '{day}'")
    rows = int(frame.collect()[0]["bars"])
    files_read, filters = scan_metrics(frame)
    return PruningResult(ticker, day, rows, files_read, files_in_table, filters)


def scan_files_read(frame: DataFrame) -> int | None:
    """Run the frame and return how many files its scan read.

    A fresh plan every time: a scan node computes its file list once, so a second run of the same plan reports 0.
    """
    frame = frame.select("*")
    frame.collect()
    return scan_metrics(frame)[0]


@dataclass
class ExternalReport:
    path: str
    registration: Registration
    daily_table: str  # the daily query's result as Spark shows it
    pruning: PruningResult


@dataclass(frozen=True)
class ExternalOptions:
    """What to register, where, and which ticker and day the pruning query reads (the table's first by default)."""

    path: str
    on_databricks: bool
    catalog: str = "main"
    schema: str = "dataexpert"
    name: str = "stocks_external"
    location: str | None = None  # Unity Catalog's external location; the table path when None
    ticker: str | None = None
    day: str | None = None
    demonstrate_drop: bool = True  # local catalog: DROP TABLE, look at the files, register again


def register_and_query(spark: SparkSession, storage: DeltaStorage, options: ExternalOptions) -> ExternalReport:
    """Register the table where this session can (Unity Catalog, the local catalog with delta-spark, else a
    temporary view), then query it through that name only: every ticker's days, and one ticker's one day."""
    o = options
    storage.require_delta(o.path)
    if o.on_databricks:
        registration = register_unity_catalog(spark, storage, o.catalog, o.schema, o.name, o.location or o.path)
    elif storage.supports_catalog_tables:
        registration = register_local_catalog(spark, storage, o.schema, o.name, o.path,
                                              demonstrate_drop=o.demonstrate_drop)
    else:
        registration = register_temp_view(storage, o.name, o.path)
    daily = spark.sql(DAILY_QUERY.format(name=registration.name))
    first = daily.first()
    if first is None:
        raise PipelineError(f"{registration.name} is empty: run the fixed harvester first")
    pruning = pruning_demo(spark, registration.name, o.ticker or first["ticker"],
                           o.day or first["trade_date"].isoformat(), storage.detail(o.path).num_files)
    return ExternalReport(o.path, registration, show_string(daily, 10_000, truncate=False), pruning)

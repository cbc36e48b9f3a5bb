"""The run log: one row in the Delta table `pipeline_runs` for every run of a door, whatever its outcome.

Each door's run gets an id when its arguments are checked; every data commit it makes carries that id as Delta's
`userMetadata` (so "which run wrote version 7?" is one DESCRIBE HISTORY away), and at the end one row says what the
run did. Writing the row never fails the run or hides its result: a log that cannot be written is one warning line.
The key never reaches it: messages are masked like everything the doors print.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import from_arrow_schema

from stockpipe.compat import is_connect
from stockpipe.massive import FetchStats
from stockpipe.paths import beside, local_path
from stockpipe.storage import DeltaStorage

log = logging.getLogger(__name__)

RUNS_TABLE = "pipeline_runs"
# Written once, in Arrow (delta-rs appends with it); Spark's schema is derived from it.
RUNS_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("script", pa.string()), ("started_at", pa.timestamp("us", "UTC")),
    ("finished_at", pa.timestamp("us", "UTC")), ("status", pa.string()), ("exit_code", pa.int32()),
    ("engine", pa.string()), ("spark_mode", pa.string()), ("tickers", pa.string()), ("date_from", pa.date32()),
    ("date_to", pa.date32()), ("calls", pa.int32()), ("retries", pa.int32()), ("rate_limited", pa.int32()),
    ("waited_s", pa.float64()), ("rows_written", pa.int64()), ("partitions_written", pa.int32()),
    ("files_written", pa.int32()), ("table_version", pa.int64()), ("message", pa.string()),
])
MESSAGE_CHARS = 1_000


@dataclass
class RunRecord:
    """One row of pipeline_runs."""

    run_id: str
    script: str
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    status: str = "failed"  # ok | partial (something stored, not everything asked) | failed
    exit_code: int = 1
    engine: str | None = None
    spark_mode: str | None = None  # classic | connect; None when Spark never started
    tickers: str | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    calls: int = 0
    retries: int = 0
    rate_limited: int = 0  # 429s met
    waited_s: float = 0.0
    rows_written: int | None = None
    partitions_written: int | None = None
    files_written: int | None = None
    table_version: int | None = None
    message: str | None = None

    def as_row(self) -> tuple[object, ...]:
        return dataclasses.astuple(self)


@dataclass
class Run:
    """One door run, as the door's body fills it in; `finish` appends its row (see `append_run`)."""

    script: str
    record: RunRecord = field(init=False)
    log_path: str | None = None  # pipeline_runs; set once the door knows where its tables are
    storage: DeltaStorage | None = None  # the run's engine, once it has one
    errors: list[str] = field(default_factory=list)  # why a run that did what it could still exits 1

    def __post_init__(self) -> None:
        self.record = RunRecord(uuid.uuid4().hex, self.script, dt.datetime.now(dt.UTC))

    @property
    def run_id(self) -> str:
        return self.record.run_id

    def using(self, session: tuple[SparkSession, DeltaStorage]) -> tuple[SparkSession, DeltaStorage]:
        """The run's session and engine, passed through: its commits carry the run id from now on."""
        spark, storage = session
        self.storage = storage
        storage.run_id = self.run_id
        self.record.engine = storage.name
        self.record.spark_mode = "connect" if is_connect(spark) else "classic"
        return session

    def beside(self, table_path: str) -> None:
        """Log this run in pipeline_runs beside the table it works on."""
        self.log_path = beside(table_path, RUNS_TABLE)

    def asked(self, tickers: Iterable[str], date_from: dt.date, date_to: dt.date) -> None:
        self.record.tickers = ",".join(tickers)
        self.record.date_from, self.record.date_to = date_from, date_to

    def fetched(self, stats: Iterable[FetchStats]) -> None:
        for item in stats:
            self.record.calls += item.calls
            self.record.retries += item.retries
            self.record.rate_limited += item.http_429
            self.record.waited_s += item.waited_s

    def wrote(self, *, rows: int | None = None, partitions: int | None = None, files: int | None = None,
              version: int | None = None) -> None:
        self.record.rows_written, self.record.partitions_written = rows, partitions
        self.record.files_written, self.record.table_version = files, version

    def finish(self, exit_code: int, message: str | None) -> None:
        """Close the record and append it; never raises (the run's own result stands whatever happens here)."""
        record = self.record
        record.finished_at = dt.datetime.now(dt.UTC)
        record.exit_code = exit_code
        stored = bool(record.rows_written) or record.table_version is not None
        record.status = "ok" if exit_code == 0 else ("partial" if exit_code == 1 and stored else "failed")
        record.message = message[:MESSAGE_CHARS] if message else None
        if self.log_path is None:
            return  # the run ended before it knew where its tables are (bad input): nothing to log beside
        try:
            append_run(self.log_path, record, self.storage)
        except Exception as exc:  # noqa: BLE001 - a log that cannot be written must not change the run's result
            log.warning("run log not written to %s: %s", self.log_path, str(exc).splitlines()[0][:200] or exc)


def append_run(path: str, record: RunRecord, storage: DeltaStorage | None, *, delta_rs_first: bool = True) -> None:
    """Append one row: with delta-rs where it is installed and the path is local (one row in milliseconds, and a
    run that ended before Spark started needs no Spark for it); otherwise through the run's own engine, or
    Databricks' session (no `deltalake` there). Both write the same table format."""
    if delta_rs_first and local_path(path) is not None and _has_deltalake():
        _append_with_delta_rs(path, record)
        return
    if storage is not None:
        storage.write(_frame(storage.spark, [record]), path, mode="append")
        return
    from stockpipe.session import is_databricks

    if is_databricks():
        from stockpipe.storage.engines import delta_spark

        spark = SparkSession.builder.getOrCreate()
        delta_spark(spark).write(_frame(spark, [record]), path, mode="append")
        return
    log.warning("run log not written to %s: no engine for it without Spark (install deltalake)", path)


def _frame(spark: SparkSession, records: list[RunRecord]) -> DataFrame:
    return spark.createDataFrame([r.as_row() for r in records], from_arrow_schema(RUNS_SCHEMA))


def _has_deltalake() -> bool:
    try:
        import deltalake  # noqa: F401
    except ImportError:
        return False
    return True


def _append_with_delta_rs(path: str, record: RunRecord) -> None:
    from deltalake import write_deltalake
    from deltalake.exceptions import CommitFailedError

    table = pa.Table.from_pylist([dataclasses.asdict(record)], schema=RUNS_SCHEMA)
    for attempt in range(1, 6):  # concurrent appends: a lost race is retried, bounded
        try:
            write_deltalake(path, table, mode="append")
            return
        except CommitFailedError:
            if attempt == 5:
                raise


def last_runs(storage: DeltaStorage, path: str, limit: int = 5) -> list[RunRecord]:
    """The newest runs first."""
    if not storage.is_delta(path):
        return []
    rows = storage.read(path).orderBy("started_at", ascending=False).limit(limit).collect()
    return [RunRecord(**row.asDict()) for row in rows]

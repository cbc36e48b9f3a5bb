"""The run log: one row in the Delta table `pipeline_runs` for every run of a door, written when the run starts and
replaced when it ends, so a run killed half-way still has a row.

Lifecycle. A door's run gets an id when its arguments are checked. As soon as it knows where its tables are
(`Run.beside`), it writes its row with status `running`: what it was asked, its arguments (secrets masked), the API
source and host, and the machine, process id and process start time that identify its writer. It then marks
`abandoned` every other `running` row whose writer is gone (`gone_reason`). At the end it replaces its row (an
upsert on run_id) with how it ended: `success`; `partial` (what is missing was refused by the key's plan: exit 0, or
1 under --strict); `failed`; with the exit code, finish time, duration, what it wrote and, for a harvest, one outcome
per ticker. Rows written before this lifecycle say `ok` for `success` (`normal_status`).

A run killed before its end (SIGKILL, a preempted cluster, a task timeout) leaves `running`; the next run of any door
beside the same tables turns it into `abandoned`, with the reason: on the same machine when its process is gone (or
its pid now belongs to a process that started at another time); from another machine, where no process can be
checked, when it started longer ago than any run may last (`ABANDONED_AFTER`, which every task timeout of the bundle
stays within). A run wrongly taken for gone still replaces its row when it ends: the end always wins.

Each data commit a run makes carries its id as Delta's `userMetadata`, so "which run wrote version 7?" is one
DESCRIBE HISTORY away. Writing the row never fails the run or changes its exit code: a log that cannot be written is
one warning line. The key never reaches it: messages and arguments are masked like everything the doors print.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import re
import shlex
import socket
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
from pyspark.sql import SparkSession

from stockpipe.compat import is_connect
from stockpipe.massive import FetchStats
from stockpipe.paths import beside
from stockpipe.storage import DeltaStorage
from stockpipe.storage.log_table import LogTable, log_table

log = logging.getLogger(__name__)

RUNS_TABLE = "pipeline_runs"
STATUSES = ("running", "success", "partial", "failed", "abandoned")
# What rows written before the run lifecycle call a status (`ok` is today's `success`).
OLD_STATUSES = {"ok": "success"}
# No run lasts longer: every task of the Databricks job times out within it (tests/test_bundle.py pins that), so a
# `running` row older than this, written on another machine, has no live writer.
ABANDONED_AFTER = dt.timedelta(hours=1)
# The loopback fake API the sample source starts: the host a sample run calls.
SAMPLE_HOST = "127.0.0.1"
# A pid's start time as read back from /proc varies by up to a clock tick and the boot time's rounding.
SAME_PROCESS_WITHIN = dt.timedelta(seconds=2)
MESSAGE_CHARS = 1_000
# Secrets a URL may carry in its query (?apiKey=...), masked in the arguments a run logs.
URL_SECRET = re.compile(r"(?i)\b((?:api[_-]?key|apikey|token|secret|password)=)[^&\s'\"]+")

# One per ticker of a harvest: what it stored, what the key's plan refused, what it cost, what went wrong.
TICKER_OUTCOME = pa.struct([
    ("ticker", pa.string()), ("status", pa.string()), ("days_stored", pa.int32()),
    ("days_refused", pa.list_(pa.date32())), ("calls", pa.int32()), ("rate_limited", pa.int32()),
    ("retries", pa.int32()), ("quarantined", pa.int32()), ("error", pa.string()),
])
# Written once, in Arrow (delta-rs writes with it); Spark's schema is derived from it. Columns after `message` came
# with the run lifecycle: a table written before has none of them until a run adds them (older rows read null).
RUNS_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("script", pa.string()), ("started_at", pa.timestamp("us", "UTC")),
    ("finished_at", pa.timestamp("us", "UTC")), ("status", pa.string()), ("exit_code", pa.int32()),
    ("engine", pa.string()), ("spark_mode", pa.string()), ("tickers", pa.string()), ("date_from", pa.date32()),
    ("date_to", pa.date32()), ("calls", pa.int32()), ("retries", pa.int32()), ("rate_limited", pa.int32()),
    ("waited_s", pa.float64()), ("rows_written", pa.int64()), ("partitions_written", pa.int32()),
    ("files_written", pa.int32()), ("table_version", pa.int64()), ("message", pa.string()),
    ("arguments", pa.string()), ("source", pa.string()), ("api_host", pa.string()), ("host", pa.string()),
    ("pid", pa.int32()), ("process_started_at", pa.timestamp("us", "UTC")), ("duration_s", pa.float64()),
    ("ticker_outcomes", pa.list_(TICKER_OUTCOME)),
])
# What deciding whether a `running` row's writer is gone reads.
WRITER_COLUMNS = ("run_id", "status", "script", "started_at", "host", "pid", "process_started_at")


@dataclass
class TickerOutcome:
    """One ticker of a harvest, as its run's row and its end summary show it."""

    ticker: str
    status: str  # success | partial (the plan refused some days) | failed | no_bars
    days_stored: int = 0
    days_refused: list[dt.date] = field(default_factory=list)  # by the key's plan
    calls: int = 0
    rate_limited: int = 0  # 429s met
    retries: int = 0
    quarantined: int = 0  # bars that broke a rule and went to stocks_quarantine
    error: str | None = None


@dataclass
class RunRecord:
    """One row of pipeline_runs."""

    run_id: str
    script: str
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    status: str = "running"
    exit_code: int | None = None  # None while running
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
    message: str | None = None  # the first error, else the first warning; an abandoned run's reason
    arguments: str | None = None  # the command line's arguments, secrets masked
    source: str | None = None  # api | sample, for the runs that fetch
    api_host: str | None = None  # host[:port] of the API called (never the key)
    host: str | None = None  # the machine the run's process ran on
    pid: int | None = None
    process_started_at: dt.datetime | None = None  # with host and pid, tells the writer from a later owner of its pid
    duration_s: float | None = None
    ticker_outcomes: list[TickerOutcome] | None = None

    def as_row(self) -> tuple[object, ...]:
        return dataclasses.astuple(self)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunRecord:
        """A row as read back: columns it lacks (a row written before them) keep their defaults, `ok` reads
        `success`, naive timestamps (Spark's collect) are taken as this machine's local time."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in row.items() if k in names and v is not None}
        for key in ("started_at", "finished_at", "process_started_at"):
            if key in values:
                values[key] = as_utc(values[key])
        if "ticker_outcomes" in values:
            values["ticker_outcomes"] = [TickerOutcome(**dict(o)) for o in values["ticker_outcomes"]]
        values["status"] = normal_status(values.get("status"))
        return cls(**values)


def normal_status(status: str | None) -> str:
    return OLD_STATUSES.get(status or "", status or "")


def as_utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC)  # a naive value is local time, as Spark's collect gives it


@dataclass
class Run:
    """One door run, as the door's body fills it in: `beside` writes its `running` row, `finish` replaces it."""

    script: str
    arguments: Sequence[str] = ()
    secrets: list[str] = field(default_factory=list)  # masked in every cell this run writes
    record: RunRecord = field(init=False)
    log_path: str | None = None  # pipeline_runs; set once the door knows where its tables are
    log: LogTable | None = None  # its writer, chosen once with the path
    storage: DeltaStorage | None = None  # the run's engine, once it has one
    errors: list[str] = field(default_factory=list)  # each forces exit 1
    warnings: list[str] = field(default_factory=list)  # what the key's plan refused: exit 0 unless --strict
    notes: list[str] = field(default_factory=list)  # what a run that succeeded did, when its numbers cannot say it
    _log_failed: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        pid = os.getpid()
        self.record = RunRecord(uuid.uuid4().hex, self.script, dt.datetime.now(dt.UTC), host=socket.gethostname(),
                                pid=pid, process_started_at=process_started_at(pid))

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

    def calls_api(self, source: str, base_url: str, api_key: str = "") -> None:
        """Where the run's bars come from: the source, the API's host (the sample source's loopback fake for
        `sample`); the key only to mask it."""
        self.record.source = source
        self.record.api_host = SAMPLE_HOST if source == "sample" else api_host(base_url)
        if api_key:
            self.secrets.append(api_key)

    def asked(self, tickers: Iterable[str], date_from: dt.date, date_to: dt.date) -> None:
        self.record.tickers = ",".join(tickers)
        self.record.date_from, self.record.date_to = date_from, date_to

    def beside(self, table_path: str) -> None:
        """Log this run in pipeline_runs beside the table it works on: its `running` row now, then the rows of
        runs whose writer is gone marked abandoned."""
        self.log_path = beside(table_path, RUNS_TABLE)
        self.log = log_table(self.log_path, self._engine, ["run_id"])
        self._write(start_run)
        try:
            for run_id, reason in abandon_gone_runs(self.log, this_run=self.run_id):
                log.warning("run %s marked abandoned: %s", run_id[:8], reason)
        except Exception as exc:  # noqa: BLE001 - someone else's row must not stop this run
            self._warn(exc)

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

    def outcomes(self, outcomes: list[TickerOutcome]) -> None:
        self.record.ticker_outcomes = [dataclasses.replace(o, error=self.masked(o.error) if o.error else None)
                                       for o in outcomes]

    def status(self, exit_code: int) -> str:
        """success, partial (only the key's plan kept something out: exit 0, or 1 under --strict) or failed."""
        if self.errors or exit_code not in (0, 1):
            return "failed"
        if self.warnings:
            return "partial"
        return "success" if exit_code == 0 else "failed"

    def finish(self, exit_code: int, message: str | None) -> None:
        """Close the record and replace the run's row with it; never raises (the run's result stands whatever
        happens here)."""
        record = self.record
        record.finished_at = dt.datetime.now(dt.UTC)
        record.duration_s = (record.finished_at - record.started_at).total_seconds()
        record.exit_code = exit_code
        record.status = self.status(exit_code)
        record.message = self.masked(message)[:MESSAGE_CHARS] if message else None
        if self.log_path is None:
            return  # the run ended before it knew where its tables are (bad input): nothing to log beside
        self._write(end_run)

    def masked(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return URL_SECRET.sub(r"\1***", text)

    def _engine(self) -> DeltaStorage:
        """The run's own engine, or on Databricks (no `deltalake`) delta-spark on its session: the writer of a log
        that delta-rs cannot reach."""
        if self.storage is not None:
            return self.storage
        from stockpipe.session import is_databricks

        if is_databricks():
            from stockpipe.storage.engines import delta_spark

            return delta_spark(SparkSession.builder.getOrCreate())
        raise RuntimeError(f"no engine for {self.log_path} before Spark started (install deltalake)")

    def _write(self, write: Callable[[LogTable, RunRecord], None]) -> None:
        assert self.log is not None
        self.record.arguments = self.masked(shlex.join(self.arguments))
        try:
            write(self.log, self.record)
        except Exception as exc:  # noqa: BLE001 - a log that cannot be written must not change the run's result
            self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        if not self._log_failed:  # one line per run, however many of its writes fail
            self._log_failed = True
            log.warning("run log not written to %s: %s", self.log_path,
                        self.masked(str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__))


def api_host(base_url: str) -> str:
    """host[:port] of a base URL, without any user or password it may carry."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    return f"{host}:{parts.port}" if parts.port else host


# -- writing rows ---------------------------------------------------------------------------------------------------
def start_run(log: LogTable, record: RunRecord) -> None:
    """The run's row as it starts; a table written before the lifecycle's columns gains them."""
    log.append(_arrow([record]))


def end_run(log: LogTable, record: RunRecord) -> None:
    """The run's row replaced by how it ended: an upsert on run_id (inserted when its start row is missing)."""
    log.merge(_arrow([record]), ["run_id"])


def abandon_gone_runs(log: LogTable, *, this_run: str = "", now: dt.datetime | None = None,
                      here: str | None = None) -> list[tuple[str, str]]:
    """Mark `abandoned`, with the reason as their message, the `running` rows whose writer is gone (`gone_reason`);
    a row that finished meanwhile is left as it ended. Returns (run_id, reason) of each."""
    now, here = now or dt.datetime.now(dt.UTC), here or socket.gethostname()
    found = log.read(WRITER_COLUMNS)
    running = [row for row in (found.to_pylist() if found is not None else []) if row["status"] == "running"]
    gone = [(row["run_id"], reason) for row in running
            if row["run_id"] != this_run and (reason := gone_reason(row, now, here))]
    if not gone:
        return []
    update = pa.table({"run_id": [run_id for run_id, _ in gone], "status": ["abandoned"] * len(gone),
                       "message": [reason for _, reason in gone]})
    log.merge(update, ["run_id"], update_if="t.status = 'running'", insert=False)
    return gone


def gone_reason(row: Mapping[str, Any], now: dt.datetime, here: str) -> str | None:
    """Why a `running` row's writer is gone, or None while it may still be at work. On this machine the process
    answers: gone, or its pid now belongs to a process started at another time. From another machine only the age
    can: longer than ABANDONED_AFTER, no run is still at work."""
    host, pid, born = row.get("host"), row.get("pid"), row.get("process_started_at")
    if host == here and pid is not None:
        running = pid_running(int(pid))
        if running is False:
            return f"its process {pid} on {host} is gone"
        if running:
            started = process_started_at(int(pid))
            if born is not None and started is not None and abs(started - as_utc(born)) > SAME_PROCESS_WITHIN:
                return (f"pid {pid} on {host} belongs to another process now (started {started:%Y-%m-%d %H:%M:%S} "
                        f"UTC, the run's at {as_utc(born):%Y-%m-%d %H:%M:%S} UTC)")
            return None
        # running is None: this machine cannot tell (no /proc, not POSIX); the age decides, as from elsewhere
    age = now - as_utc(row["started_at"])
    if age <= ABANDONED_AFTER:
        return None
    return (f"started {age_text(age)} ago on {host or 'an unknown machine'}, longer than any run lasts "
            f"({age_text(ABANDONED_AFTER)}, the job's task timeout); its process cannot be checked from {here}")


def age_text(age: dt.timedelta) -> str:
    minutes = int(age.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def pid_running(pid: int) -> bool | None:
    """Whether process `pid` runs on this machine (a zombie does not); None where it cannot be told."""
    if Path("/proc/self/stat").is_file():  # Linux, Databricks drivers included
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X")
    if os.name != "posix":
        return None  # os.kill(pid, 0) would terminate it on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def process_started_at(pid: int) -> dt.datetime | None:
    """When process `pid` started, from /proc (its start in clock ticks after boot); None elsewhere or when gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        ticks = int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return dt.datetime.fromtimestamp(boot + ticks, dt.UTC)


def _arrow(records: list[RunRecord]) -> pa.Table:
    return pa.Table.from_pylist([dataclasses.asdict(r) for r in records], schema=RUNS_SCHEMA)


def last_runs(storage: DeltaStorage, path: str, limit: int = 5) -> list[RunRecord]:
    """The newest runs first."""
    if not storage.is_delta(path):
        return []
    rows = storage.read(path).orderBy("started_at", ascending=False).limit(limit).collect()
    return [RunRecord.from_row(row.asDict(recursive=True)) for row in rows]

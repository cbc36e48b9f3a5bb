"""The storage port: what the scripts need from a Delta table, whatever engine writes it, in one vocabulary.

What a commit, OPTIMIZE or VACUUM changed comes back as `FileChanges` (each engine translates its own metric names
through its `metric_names` table), reads filter with a `RowFilter`, replacing writes take a `Replacement`. Callers
never see an engine's metric names or sentinels. Both engines answer one contract (tests/test_storage_contract.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from stockpipe.errors import ClusteringUnsupportedError, NotDeltaTableError, PipelineError
from stockpipe.paths import parquet_files_on_disk
from stockpipe.progress import WorkProgress
from stockpipe.storage.predicates import Replacement, ReplacePredicate, RowFilter, outside_predicate_error

log = logging.getLogger(__name__)

WriteMode = Literal["append", "overwrite"]
COMMIT_ATTEMPTS = 6
# Delta's default retention, which its VACUUM safety check enforces and production keeps (7 days of time travel).
RETENTION_HOURS = 168


@dataclass(frozen=True)
class FileInfo:
    path: str
    size_bytes: int
    partition: dict[str, str]
    num_records: int | None = None


@dataclass(frozen=True)
class TableDetail:
    path: str
    engine: str
    version: int
    partition_columns: list[str]
    clustering_columns: list[str]
    files: list[FileInfo]

    @property
    def num_files(self) -> int:
        return len(self.files)

    @property
    def size_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)

    @property
    def num_partitions(self) -> int:
        return len({tuple(sorted(f.partition.items())) for f in self.files}) if self.partition_columns else 0


@dataclass(frozen=True)
class FileChanges:
    """What a commit, an OPTIMIZE or a VACUUM changed, in one vocabulary whichever engine did it. None where the
    engine did not say (a VACUUM of a path this process cannot list cannot count what it deleted)."""

    files_added: int | None = None
    files_removed: int | None = None
    rows_added: int | None = None
    bytes_added: int | None = None
    bytes_removed: int | None = None
    partitions: int | None = None  # partitions written or compacted
    files_skipped: int | None = None  # OPTIMIZE: files already at their target, left as they were


@dataclass(frozen=True)
class Maintained:
    """What an OPTIMIZE or a VACUUM changed, and the calls that did it exactly as they ran (a session that refuses
    to lift VACUUM's safety check runs RETAIN 168 HOURS, whatever was asked), for the report to show."""

    changes: FileChanges
    calls: tuple[str, ...]
    retain_hours: float | None = None  # VACUUM: the retention it kept


# Each engine names the same facts differently (and differently per operation); the port speaks FileChanges only.
MetricNames = dict[str, tuple[str, ...]]


def file_changes(metrics: dict[str, Any], names: MetricNames) -> FileChanges:
    """Translate an engine's metrics (history operationMetrics or an OPTIMIZE result) through its name table. A
    dotted name reads a nested struct, which delta-rs history stores as JSON text."""
    found: dict[str, int | None] = {}
    for field_name, keys in names.items():
        found[field_name] = next((v for v in (_metric(metrics, k) for k in keys) if v is not None), None)
    return FileChanges(**found)


def _metric(metrics: dict[str, Any], key: str) -> int | None:
    head, _, rest = key.partition(".")
    value = metrics.get(head)
    if rest:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return None
        value = value.get(rest) if isinstance(value, dict) else None
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class HistoryEntry:
    version: int
    timestamp: dt.datetime
    operation: str
    parameters: dict[str, Any] = field(default_factory=dict)
    changes: FileChanges = field(default_factory=FileChanges)
    run_id: str | None = None  # the pipeline run that made the commit (Delta's userMetadata)
    source: str | None = None  # where the run's data came from: api or sample (None: not a harvest, or older)


def user_metadata(run_id: str | None, source: str | None) -> str | None:
    """What a commit carries as Delta's userMetadata: the run and, for a harvest, its source, as JSON text (one
    string is all Delta keeps; DESCRIBE HISTORY shows it, `get_json_object` reads it)."""
    found = {key: value for key, value in (("run_id", run_id), ("source", source)) if value}
    return json.dumps(found, separators=(",", ":")) if found else None


def parse_user_metadata(text: str | None) -> tuple[str | None, str | None]:
    """(run_id, source) from a commit's userMetadata: JSON since runs recorded their source, a bare run id before."""
    if not text:
        return None, None
    if text.startswith("{"):
        try:
            found = json.loads(text)
        except ValueError:
            return None, None
        if isinstance(found, dict):
            return found.get("run_id") or None, found.get("source") or None
        return None, None
    return text, None


def shape_for_write(df: DataFrame, partition_by: Sequence[str], cluster_by: Sequence[str]) -> DataFrame:
    """One file per partition, whatever the shuffle settings: each Spark task writes one file into every partition
    it holds rows of, so 8 shuffle partitions made 8 files per (ticker, trade_date) on delta-spark. Hashing on the
    partition columns puts each partition's rows in one task. A clustered table gets contiguous key ranges instead,
    so each file covers a narrow slice of the clustering keys before OPTIMIZE has run."""
    if partition_by:
        # With a number, as many tasks as the session's shuffle partitions: adaptive execution coalesces a small
        # shuffle by column into one task, which then writes every file alone (the starter's 2,900 one-bar
        # partitions a ticker, on one core of two), where the per-file cost, not the bytes, is the work.
        tasks = df.sparkSession.conf.get("spark.sql.shuffle.partitions", None) or ""
        return df.repartition(int(tasks), *partition_by) if tasks.isdigit() else df.repartition(*partition_by)
    if cluster_by:
        return df.repartitionByRange(*cluster_by)
    return df


class DeltaStorage(ABC):
    """What the scripts need from a Delta table, whatever writes it."""

    name: str
    supports_clustering: bool = False
    supports_catalog_tables: bool = False
    metric_names: ClassVar[MetricNames]

    def __init__(self, spark: SparkSession, *, sleep: Callable[[float], None] = time.sleep,
                 jitter: Callable[[], float] = random.random) -> None:
        self.spark = spark
        # The commit-conflict back-off's clock and dice, injectable so a test can pin it without waiting.
        self._sleep = sleep
        self._jitter = jitter
        # Every commit this engine makes carries it as Delta's userMetadata, so DESCRIBE HISTORY says which
        # pipeline run wrote each version.
        self.run_id: str | None = None
        # And the harvest's source (api or sample), so a table says which of its versions hold real data.
        self.source: str | None = None
        # Long writes say how far they are (phase lines, files written); the harvester sets what it expects.
        self.progress = WorkProgress()

    # -- shared behaviour -------------------------------------------------------------------------------------------
    def write(
        self,
        df: DataFrame,
        path: str,
        *,
        mode: WriteMode = "append",
        partition_by: Sequence[str] = (),
        replace: Replacement | None = None,
        cluster_by: Sequence[str] = (),
        shaped: bool = False,
        overwrite_schema: bool = False,
        sort_by: Sequence[str] = (),
    ) -> int:
        """Write in one commit; return the new table version. `replace` overwrites only the rows it matches.
        `shaped`: the caller already holds each partition's rows in one Spark task (hash-partitioned by the
        partition columns), so the write adds no shuffle of its own. `overwrite_schema`: replace every row and the
        table's schema with the frame's (a derived table whose columns changed between versions; unpartitioned).
        `sort_by`: the order of the rows inside each file (after the partition columns), so Parquet's statistics
        skip to a value of them (a by-date table's files sorted by ticker)."""
        if replace is not None and mode != "overwrite":
            raise ValueError("a replace predicate needs mode='overwrite'")
        if overwrite_schema:
            if replace is not None or mode != "overwrite" or partition_by or cluster_by:
                raise ValueError("overwrite_schema replaces a whole unpartitioned table")
            return self._with_commit_retries(lambda: self._replace_table(df, path), path)
        if cluster_by and not self.supports_clustering:
            raise ClusteringUnsupportedError(self.name)
        if not shaped:
            df = shape_for_write(df, partition_by, cluster_by)
            if sort_by:
                df = df.sortWithinPartitions(*partition_by, *sort_by)
        order = [*partition_by, *sort_by] if sort_by else list(partition_by)
        try:
            return self._with_commit_retries(
                lambda: self._write(df, path, mode, list(partition_by), replace, list(cluster_by), order), path
            )
        except Exception as exc:
            # Both engines check every written row against the predicate while writing (no extra pass over the
            # data) and commit nothing when one fails: the same refusal, whichever engine said it.
            if replace is not None and self._is_outside_predicate(exc):
                raise outside_predicate_error(replace) from None
            raise

    def write_batches(self, batches: Iterable[pa.RecordBatch], schema: pa.Schema, path: str, *,
                      mode: WriteMode = "append", partition_by: Sequence[str] = (),
                      replace: Replacement | None = None) -> int:
        """Rows already in Arrow, a batch at a time (each partition's rows together and in their file order), in one
        commit; return the new table version. What a write without Spark's compute hands over (the flat files read
        with Arrow): delta-rs writes the batches itself, holding one partition at a time; delta-spark takes them
        into its session. The same refusal of a row outside `replace` as `write`."""
        if replace is not None and mode != "overwrite":
            raise ValueError("a replace predicate needs mode='overwrite'")
        return self._with_commit_retries(
            lambda: self._write_batches(batches, schema, path, mode, list(partition_by), replace), path)

    def _write_batches(self, batches: Iterable[pa.RecordBatch], schema: pa.Schema, path: str, mode: WriteMode,
                       partition_by: list[str], replace: Replacement | None) -> int:
        """The general way, for an engine without its own: the batches into the session as one frame."""
        table = pa.Table.from_batches(list(batches), schema=schema)
        return self.write(self.spark.createDataFrame(table.to_pandas(), schema=_spark_schema(schema)), path,
                          mode=mode, partition_by=partition_by, replace=replace)

    def _with_commit_retries(self, attempt: Callable[[], int], path: str) -> int:
        """Concurrent writers: a commit that lost the race is retried (bounded), since each write is idempotent."""
        for number in range(1, COMMIT_ATTEMPTS + 1):
            try:
                return attempt()
            except Exception as exc:
                if not self._is_commit_conflict(exc) or number == COMMIT_ATTEMPTS:
                    if self._is_commit_conflict(exc):
                        raise PipelineError(
                            f"gave up after {number} concurrent-commit conflicts on {path}: another writer keeps "
                            "replacing the same partitions; the table is consistent, rerun when it is done"
                        ) from None
                    raise
                pause = min(5.0, 0.2 * 2**number) * (0.5 + 0.5 * self._jitter())
                log.info("commit conflict on %s (attempt %d): retrying in %.1f s", path, number, pause)
                self._sleep(pause)
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def tagged(self, run_id: str, source: str | None) -> Iterator[None]:
        """Commits inside the block carry this run id and source; what was set before comes back after."""
        before = self.run_id, self.source
        self.run_id, self.source = run_id, source
        try:
            yield
        finally:
            self.run_id, self.source = before

    @property
    def user_metadata(self) -> str | None:
        """This engine's commits' userMetadata (see `user_metadata`)."""
        return user_metadata(self.run_id, self.source)

    def upsert(self, df: DataFrame, path: str, keys: Sequence[str], *, update_if: str | None = None,
               insert: bool = True) -> int:
        """MERGE `df` into the table on `keys`, in one commit; return the new version. A row matching on the keys
        takes df's values for df's columns and keeps the rest; a row without a match is inserted (unless `insert`
        is False). `update_if` narrows the update to rows meeting an SQL condition over `t.<column>` (the table) and
        `s.<column>` (df), lower-case names. Columns df has and the table lacks are added first (older rows read
        them as null); a missing table is created. Commit conflicts are retried like a write's. A table this creates
        or merges into keeps deletion vectors off, so both engines read it."""
        if not keys:
            raise ValueError("an upsert needs at least one key column")
        return self._with_commit_retries(lambda: self._upsert(df, path, list(keys), update_if, insert), path)

    def count(self, path: str) -> int:
        return self.read(path).count()

    def files_on_disk(self, path: str) -> int:
        return len(parquet_files_on_disk(path))

    def changes(self, metrics: dict[str, Any]) -> FileChanges:
        return file_changes(metrics, self.metric_names)

    # -- engine specifics --------------------------------------------------------------------------------------------
    @abstractmethod
    def is_delta(self, path: str) -> bool: ...

    @abstractmethod
    def _write(
        self,
        df: DataFrame,
        path: str,
        mode: WriteMode,
        partition_by: list[str],
        replace: Replacement | None,
        cluster_by: list[str],
        order: list[str],
    ) -> int:
        """`order`: how the rows are sorted inside each task already (the partition columns first), which a writer
        that sorts again keeps."""

    @abstractmethod
    def _replace_table(self, df: DataFrame, path: str) -> int:
        """Every row and the schema replaced by the frame's, in one commit (the table is created when missing)."""

    @abstractmethod
    def _upsert(self, df: DataFrame, path: str, keys: list[str], update_if: str | None, insert: bool) -> int: ...

    @abstractmethod
    def create_if_missing(self, path: str, schema: StructType, partition_by: Sequence[str] = (),
                          cluster_by: Sequence[str] = ()) -> None:
        """An empty table with this schema and layout, unless one is there. A replacing write into an existing
        table is checked row by row as it writes; one that creates the table needs a pass of its own first."""

    @abstractmethod
    def _is_commit_conflict(self, exc: Exception) -> bool: ...

    @abstractmethod
    def _is_outside_predicate(self, exc: Exception) -> bool:
        """Whether the engine refused the write because a row did not match the replace predicate."""

    @abstractmethod
    def read(self, path: str, where: RowFilter | None = None) -> DataFrame:
        """The table as a Spark DataFrame; `where` filters it, skipping files whose partition values or column
        statistics cannot match (Delta's data skipping)."""

    def read_arrow(self, path: str, where: RowFilter | None = None, columns: Sequence[str] | None = None) -> pa.Table:
        """Rows a run reads back to decide something (a small table, a few columns) as Arrow: through the session
        here; delta-rs reads the files itself, with no Spark job."""
        from stockpipe.compat import to_arrow

        frame = self.read(path, where)
        return to_arrow(frame.select(*columns) if columns else frame)

    def count_by(self, path: str, by: Sequence[str], where: RowFilter | None = None) -> pa.Table:
        """Rows counted per value of the `by` columns (`by` and `rows`): one small Spark job here; delta-rs counts
        with Arrow."""
        from pyspark.sql import functions as F

        from stockpipe.compat import to_arrow

        return to_arrow(self.read(path, where).groupBy(*by).agg(F.count(F.lit(1)).cast("long").alias("rows")))

    @abstractmethod
    def optimize(self, path: str, zorder_by: Sequence[str] = (), target_file_bytes: int | None = None,
                 where: ReplacePredicate | None = None) -> Maintained:
        """Compact (or Z-ORDER) into files of about target_file_bytes (the engine's default when None); `where`
        names the partitions to touch (a Z-ORDER rewrites every file it is given, so a table whose other partitions
        are in order is spared)."""

    @abstractmethod
    def vacuum(self, path: str, retain_hours: float) -> Maintained:
        """Delete data files no longer referenced and older than the retention; less than Delta's 168 hours lifts
        the safety check for this call only, where the session allows it. `changes.files_removed` is the number
        deleted, None where it cannot be counted; `retain_hours` is the retention that really ran."""

    @abstractmethod
    def history(self, path: str, limit: int | None = None) -> list[HistoryEntry]:
        """Commits oldest first; `limit` keeps only the newest ones (a long-lived table has thousands)."""

    @abstractmethod
    def detail(self, path: str) -> TableDetail: ...

    @abstractmethod
    def register_view(self, path: str, name: str) -> None:
        """A temporary view over the table (the assignment's local simulation of an external table)."""

    def require_delta(self, path: str) -> None:
        if not self.is_delta(path):
            raise NotDeltaTableError(path)




def _spark_schema(schema: pa.Schema) -> StructType:
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)

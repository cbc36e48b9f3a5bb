"""The delta-rs engine (the `deltalake` package, PyPI only): Spark -> Arrow -> write_deltalake; reads through
Spark's parquet reader over exactly the snapshot's live files, never collected on the driver and never scanned
through pyarrow datasets (deltalake >= 1.2 can abort the interpreter at exit after one)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction, RemoveAction, Transaction, create_table_with_add_actions
from pyspark.sql import DataFrame
from pyspark.sql import types as T
from pyspark.sql.types import StructType

from stockpipe.compat import to_arrow
from stockpipe.errors import ClusteringUnsupportedError
from stockpipe.paths import local_path
from stockpipe.storage.port import (
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
from stockpipe.storage.predicates import AnyOf, Replacement, ReplacePredicate, RowFilter, outside_predicate_error
from stockpipe.storage.staged import (
    StagedFile,
    count_files_under,
    move_into_table,
    new_staging_dir,
    partition_file_writer,
    partition_text,
    remove_moved,
    write_files,
)


class DeltaRsStorage(DeltaStorage):
    """delta-rs: the same Delta table format from PyPI alone, for machines that cannot load delta-spark's jars."""

    name = "delta-rs"
    metric_names: ClassVar[MetricNames] = {
        "files_added": ("num_added_files", "numFilesAdded"),
        "files_removed": ("num_removed_files", "numFilesRemoved", "numDeletedFiles"),
        "rows_added": ("num_added_rows",),
        "bytes_added": ("filesAdded.totalSize",),
        "bytes_removed": ("filesRemoved.totalSize",),
        "partitions": ("num_partitions", "partitionsOptimized"),
        "files_skipped": ("totalFilesSkipped",),
    }

    def _table(self, path: str) -> DeltaTable:
        self.require_delta(path)
        return DeltaTable(path)

    def is_delta(self, path: str) -> bool:
        return DeltaTable.is_deltatable(str(path))

    def _write(self, df: DataFrame, path: str, mode: WriteMode, partition_by: list[str],
               replace: Replacement | None, cluster_by: list[str], order: list[str]) -> int:
        root = local_path(path)
        if partition_by and root is not None and (replace is None or replace.columns() <= set(partition_by)):
            return self._write_staged(df, path, root, mode, partition_by, replace, order)
        return self._write_arrow(df, path, mode, partition_by, replace)

    def _write_staged(self, df: DataFrame, path: str, root: Path, mode: WriteMode, partition_by: list[str],
                      replace: Replacement | None, order: list[str]) -> int:
        """Spark's tasks write the files, delta-rs commits them (`staged`): memory bounded by a partition.
        The replace predicate is on partition columns, so every file is checked by its partition values (no pass
        over the rows) and the replaced files are exactly those of the matching partitions."""
        from pyspark.sql.pandas.types import to_arrow_schema  # pyspark's pandas helpers load on first use

        with _staging_dir(root) as staging:
            self.progress.phase("write", "Spark tasks write a file per partition")
            with self.progress.ticking(lambda: count_files_under(staging)):
                files = write_files(df, staging, partition_by, order)
            self.progress.phase("commit", f"{len(files):,} files in one Delta commit")
            with self.progress.ticking():
                return self._commit_staged(path, root, staging, files, to_arrow_schema(df.schema), mode,
                                           partition_by, replace)

    def _commit_staged(self, path: str, root: Path, staging: Path, files: list[StagedFile], schema: pa.Schema,
                       mode: WriteMode, partition_by: list[str], replace: Replacement | None) -> int:
        """The staged files checked against the replace predicate by their partition values, moved into the table's
        folder and committed (`_commit_files`); the table's new version. A commit that fails leaves no file
        behind."""
        if replace is not None and not all(replace.matches_partition(f.partition) for f in files):
            raise outside_predicate_error(replace)
        moved = list(files)
        try:
            move_into_table(staging, root, files)
            self._commit_files(path, files, schema, mode, partition_by, replace)
            moved = []
        finally:
            remove_moved(root, moved)
        return DeltaTable(path).version()

    def _commit_files(self, path: str, files: list[StagedFile], schema: pa.Schema, mode: WriteMode,
                      partition_by: list[str], replace: Replacement | None) -> None:
        """One commit adding `files` (already in the table's folder) and, for an overwrite, removing the replaced
        partitions' files, with the metrics and parameters delta-rs's own writes record."""
        adds = [AddAction(f.relative, f.size, dict(f.partition), f.modified_ms, True, f.stats) for f in files]
        metrics = {"num_added_files": len(files), "num_removed_files": 0, "num_added_rows": sum(f.rows for f in files),
                   "num_partitions": len({tuple(f.partition.values()) for f in files})}
        if replace is None and not self.is_delta(path):
            try:  # the table and its files in one commit, as a creating write makes it
                create_table_with_add_actions(path, DeltaSchema.from_arrow(schema), adds, mode="error",
                                              partition_by=partition_by,
                                              commit_properties=self._commit(operationMetrics=metrics))
                return
            except Exception:
                if not self.is_delta(path):
                    raise
                # A concurrent writer created it first: these files go into the table it made.
        # Created empty first, as the Arrow write does, so a concurrent creator's rows conflict as they must.
        self._create_empty(path, schema, partition_by)
        table = DeltaTable(path)
        replaced = _replaced_files(table, mode, replace)
        metrics["num_removed_files"] = len(replaced)
        parameters = {"predicate": replace.sql()} if replace is not None else {}
        filters = replace.partition_filters() if isinstance(replace, ReplacePredicate) else None
        actions: list[AddAction | RemoveAction] = [*adds]
        if isinstance(replace, AnyOf):
            # delta-rs's overwrite takes one conjunction of partition filters; tickers replacing different days
            # (AnyOf) remove exactly their own partitions' files instead, in the same commit. Another writer
            # removing the same files meanwhile makes this commit conflict, and the retry starts over.
            now_ms = int(time.time() * 1000)
            actions += [RemoveAction(a["path"], True, now_ms, a["size_bytes"], a["partition"]) for a in replaced]
        commit_mode = "overwrite" if mode == "overwrite" and not isinstance(replace, AnyOf) else "append"
        table.create_write_transaction(
            actions, commit_mode, schema, partition_by=partition_by, partition_filters=filters,
            commit_properties=self._commit(operationMetrics=metrics, operationParameters=parameters,
                                           app_transactions=_claims(partition_by, files, replaced)),
        )

    def _write_batches(self, batches: Iterable[pa.RecordBatch], schema: pa.Schema, path: str, mode: WriteMode,
                       partition_by: list[str], replace: Replacement | None) -> int:
        """The batches written a partition at a time by the staged writer Spark's tasks run (no Spark here), and
        committed as `_write_staged` commits; a predicate on other columns than the partitions' needs delta-rs's
        rewrite of the matching files, with the rows in hand."""
        root = local_path(path)
        if not partition_by or root is None or (replace is not None and not replace.columns() <= set(partition_by)):
            table = pa.Table.from_batches(list(batches), schema=schema)
            return self._write_arrow_table(table, path, mode, partition_by, replace)
        with _staging_dir(root) as staging:
            data_columns = [name for name in schema.names if name not in partition_by]
            writer = partition_file_writer(str(staging), partition_by, data_columns)
            records = [r for batch in writer(iter(batches)) for r in batch.to_pylist()]
            files = [StagedFile(r["relative"], r["size"], r["modified_ms"], json.loads(r["partition"]), r["rows"],
                                r["stats"]) for r in records]
            return self._commit_staged(path, root, staging, files, schema, mode, partition_by, replace)

    def _write_arrow(self, df: DataFrame, path: str, mode: WriteMode, partition_by: list[str],
                     replace: Replacement | None) -> int:
        """Small or unpartitioned tables (the run log, splits, daily bars): the rows as one Arrow table, written by
        delta-rs (a row predicate needs its rewrite of matching files)."""
        return self._write_arrow_table(to_arrow(df), path, mode, partition_by, replace)  # no Python rows

    def _write_arrow_table(self, table: pa.Table, path: str, mode: WriteMode, partition_by: list[str],
                           replace: Replacement | None) -> int:
        if replace is not None and not self.is_delta(path):
            # delta-rs commits a write that creates a table without looking at what a concurrent creator committed
            # meanwhile: two runs creating the same table at once both landed all their rows (40 of 40 forced races;
            # the two-writers reliability test caught it). Created empty first, the replacing write that follows
            # conflicts as it must, and the commit retry settles it; a concurrent empty create changes nothing.
            # The rows are checked against the predicate first, on the Arrow table already in hand, so a refused
            # first write still creates nothing.
            if not replace.matches_all(table):
                raise outside_predicate_error(replace)
            self._create_empty(path, table.schema, partition_by)
        if replace is not None:
            write_deltalake(path, table, mode="overwrite", partition_by=partition_by or None, predicate=replace.sql(),
                            commit_properties=self._commit())
        else:
            write_deltalake(path, table, mode=mode, partition_by=partition_by or None,
                            commit_properties=self._commit())
        return DeltaTable(path).version()

    def _replace_table(self, df: DataFrame, path: str) -> int:
        write_deltalake(path, to_arrow(df), mode="overwrite", schema_mode="overwrite", commit_properties=self._commit())
        return DeltaTable(path).version()

    def _upsert(self, df: DataFrame, path: str, keys: list[str], update_if: str | None, insert: bool) -> int:
        # Rebuilt by `take`: Spark's Arrow gives a list nested in a struct whose every value is null an empty offsets
        # buffer, which delta-rs's MERGE reads past and panics on (an upsert is rows, not a table: the copy is free).
        source = to_arrow(df)
        source = source.take(pa.array(range(source.num_rows), pa.int64()))
        if not self.is_delta(path):
            if not insert:
                self.require_delta(path)
            self._create_empty(path, source.schema, ())  # then merged into, so a concurrent creator conflicts
        merge_arrow(path, source, keys, update_if=update_if, insert=insert, commit_properties=self._commit())
        return DeltaTable(path).version()

    def create_if_missing(self, path: str, schema: StructType, partition_by: Sequence[str] = (),
                          cluster_by: Sequence[str] = ()) -> None:
        from pyspark.sql.pandas.types import to_arrow_schema

        if cluster_by:
            raise ClusteringUnsupportedError(self.name)
        self._create_empty(path, to_arrow_schema(schema), partition_by)

    def _create_empty(self, path: str, schema: pa.Schema, partition_by: Sequence[str]) -> None:
        """The table with no rows, unless it exists (a concurrent empty create changes nothing)."""
        if not self.is_delta(path):
            write_deltalake(path, schema.empty_table(), mode="append", partition_by=list(partition_by) or None,
                            commit_properties=self._commit())

    def _commit(self, app_transactions: list[Transaction] | None = None, **info: Any) -> CommitProperties | None:
        # userMetadata, the key Delta's own commitInfo uses: Spark's DESCRIBE HISTORY shows it too.
        found = {**info, **({"userMetadata": self.user_metadata} if self.user_metadata else {})}
        if not found and not app_transactions:
            return None
        return CommitProperties(custom_metadata=found or None, app_transactions=app_transactions)

    def _is_commit_conflict(self, exc: Exception) -> bool:
        return isinstance(exc, CommitFailedError)

    def _is_outside_predicate(self, exc: Exception) -> bool:
        return "failed validation check" in str(exc)

    def read(self, path: str, where: RowFilter | None = None) -> DataFrame:
        table = self._table(path)
        schema = T.StructType.fromJson(json.loads(table.schema().to_json()))
        files = table.file_uris() if where is None else self._skip_files(table, path, where)
        if not files:
            empty = self.spark.createDataFrame([], schema)
            return empty if where is None else empty.filter(where.column())
        partitions = set(table.metadata().partition_columns)
        data_schema = T.StructType([f for f in schema.fields if f.name not in partitions])
        part_schema = T.StructType([f for f in schema.fields if f.name in partitions])
        # Partition values come from the hive-style paths of exactly the snapshot's live files.
        frame = (
            self.spark.read.schema(T.StructType(data_schema.fields + part_schema.fields))
            .option("basePath", str(path))
            .parquet(*files)
        )
        frame = frame.select(*[f.name for f in schema.fields])
        return frame if where is None else frame.filter(where.column())

    def read_arrow(self, path: str, where: RowFilter | None = None, columns: Sequence[str] | None = None) -> pa.Table:
        from stockpipe import readers

        local = local_path(path)
        if local is None:  # an object store: through the session
            return super().read_arrow(path, where, columns)
        wanted = list(columns) if columns else None
        needed = None if wanted is None else sorted(set(wanted) | (where.columns() if where else set()))
        table = readers.read(local, columns=needed, keep=None if where is None else (
            lambda action: all(_may_match(action, column, values) for column, values in where.clauses)))
        if where is not None:
            table = table.filter(where.mask(table))
        return table.select(wanted) if wanted else table

    def count_by(self, path: str, by: Sequence[str], where: RowFilter | None = None) -> pa.Table:
        if local_path(path) is None:
            return super().count_by(path, by, where)
        counted = self.read_arrow(path, where, columns=by).group_by(list(by)).aggregate([([], "count_all")])
        return counted.select([*by, "count_all"]).rename_columns([*by, "rows"])

    def _skip_files(self, table: DeltaTable, path: str, where: RowFilter) -> list[str]:
        """Data skipping as a Delta reader does it: keep a file only if, for every clause, its partition value is
        one of the values, or one of the values lies within the file's min/max statistics."""
        actions = pa.table(table.get_add_actions(flatten=True)).to_pylist()
        root = str(Path(path).resolve())
        kept = []
        for action in actions:
            if all(_may_match(action, column, values) for column, values in where.clauses):
                kept.append(f"{root}/{unquote(action['path'])}")
        return kept

    def optimize(self, path: str, zorder_by: Sequence[str] = (), target_file_bytes: int | None = None,
                 where: ReplacePredicate | None = None) -> Maintained:
        table = self._table(path)
        filters = where.partition_filters() if where is not None else None
        shown = f", partition_filters={filters!r}" if filters else ""
        if zorder_by:
            metrics = table.optimize.z_order(list(zorder_by), partition_filters=filters, target_size=target_file_bytes,
                                             commit_properties=self._commit())
            call = f"z_order({list(zorder_by)!r}{shown})"
        else:
            metrics = table.optimize.compact(partition_filters=filters, target_size=target_file_bytes,
                                             commit_properties=self._commit())
            call = f"compact({shown.removeprefix(', ')})"
        return Maintained(self.changes(metrics), (f"DeltaTable('{path}').optimize.{call}",))

    def vacuum(self, path: str, retain_hours: float) -> Maintained:
        # delta-rs counts retention in whole hours: a fraction is rounded up, so no file younger than asked goes.
        hours = math.ceil(retain_hours)
        # enforce_retention_duration=False lifts the 168-hour safety check for this call only; full=True also
        # removes files no commit ever referenced, as Spark's VACUUM does.
        deleted = self._table(path).vacuum(
            retention_hours=hours, dry_run=False, enforce_retention_duration=False, full=True,
            commit_properties=self._commit(),
        )
        call = (f"DeltaTable('{path}').vacuum(retention_hours={hours}, enforce_retention_duration=False, "
                "dry_run=False, full=True)")
        return Maintained(FileChanges(files_removed=len(deleted)), (call,), retain_hours=hours)

    def history(self, path: str, limit: int | None = None) -> list[HistoryEntry]:
        entries = []
        for item in self._table(path).history(limit):
            entries.append(
                HistoryEntry(
                    version=int(item["version"]),
                    timestamp=dt.datetime.fromtimestamp(item["timestamp"] / 1000, dt.UTC),
                    operation=str(item.get("operation", "")),
                    parameters=dict(item.get("operationParameters") or {}),
                    changes=self.changes(dict(item.get("operationMetrics") or {})),
                    run_id=(meta := parse_user_metadata(item.get("userMetadata")))[0],
                    source=meta[1],
                )
            )
        return sorted(entries, key=lambda e: e.version)

    def detail(self, path: str) -> TableDetail:
        table = self._table(path)
        partition_columns = list(table.metadata().partition_columns)
        actions = pa.table(table.get_add_actions(flatten=True)).to_pylist()
        files = [
            FileInfo(
                path=row["path"],
                size_bytes=int(row["size_bytes"]),
                partition={c: _partition_text(row.get(f"partition.{c}")) for c in partition_columns},
                num_records=row.get("num_records"),
            )
            for row in actions
        ]
        return TableDetail(str(path), self.name, table.version(), partition_columns, [], files)

    def register_view(self, path: str, name: str) -> None:
        self.read(path).createOrReplaceTempView(name)


def merge_arrow(path: str, source: pa.Table, keys: Sequence[str], *, update_if: str | None = None, insert: bool = True,
                commit_properties: CommitProperties | None = None) -> dict[str, Any]:
    """delta-rs's MERGE of an Arrow table into an existing table on `keys` (the port's `upsert`, also used by the run
    log where no Spark runs): matched rows take the source's columns, unmatched ones are inserted when `insert`.
    `merge_schema` adds the source's new columns (nested ones too: the run log's array of structs). A lost commit
    race raises CommitFailedError; the caller retries."""
    on = " AND ".join(f"t.{key} = s.{key}" for key in keys)
    columns = {name: f"s.{name}" for name in source.column_names}
    merger = DeltaTable(path).merge(source, on, source_alias="s", target_alias="t", merge_schema=True,
                                    commit_properties=commit_properties)
    merger = merger.when_matched_update(updates=columns, predicate=update_if)
    if insert:
        merger = merger.when_not_matched_insert(updates=columns)
    return dict(merger.execute())


def _claims(partition_by: list[str], files: list[StagedFile], replaced: list[dict[str, Any]]) -> list[Transaction]:
    """One Delta transaction id per value of the first partition column the commit adds or removes files in. A file
    transaction commits on a snapshot without a predicate delta-rs can check concurrent appends against: two runs
    replacing the same (empty) partitions at once both landed their files (the two-writers test caught it). A commit
    carrying an id that a concurrent commit also carried conflicts instead, and the write is retried on the new
    snapshot, which now removes the other run's files."""
    first = partition_by[0]
    values = {f.partition.get(first) for f in files} | {r["partition"].get(first) for r in replaced}
    now_ms = int(time.time() * 1000)
    return [Transaction(f"stockpipe:{first}={value}", now_ms, now_ms) for value in sorted(values, key=str)]


def _replaced_files(table: DeltaTable, mode: WriteMode, replace: Replacement | None) -> list[dict[str, Any]]:
    """The files an overwrite of `replace`'s partitions removes from the snapshot it commits against (all of them
    without a predicate; none for an append): path, size and partition values."""
    if mode != "overwrite":
        return []
    columns = list(table.metadata().partition_columns)
    found = []
    for action in pa.table(table.get_add_actions(flatten=True)).to_pylist():
        partition = {c: partition_text(action.get(f"partition.{c}")) for c in columns}
        if replace is None or replace.matches_partition(partition):
            found.append({"path": action["path"], "size_bytes": int(action["size_bytes"]), "partition": partition})
    return found


def _may_match(action: dict[str, Any], column: str, values: tuple[Any, ...]) -> bool:
    if f"partition.{column}" in action:
        return _partition_text(action[f"partition.{column}"]) in {_partition_text(v) for v in values}
    low, high = action.get(f"min.{column}"), action.get(f"max.{column}")
    if low is None or high is None:
        return True  # no statistics: the file must be read
    return any(low <= value <= high for value in values)


def _partition_text(value: Any) -> str:
    return "" if value is None else str(value)


@contextlib.contextmanager
def _staging_dir(root: Path) -> Iterator[Path]:
    """A staging folder beside the table for one write's files, removed after it whatever happened."""
    staging = new_staging_dir(root)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            staging.parent.rmdir()  # only when no other write is staging beside it

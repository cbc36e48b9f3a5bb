"""Data files written where the rows are, committed by delta-rs: the delta-rs engine's write for partitioned tables.

Spark shuffles the rows so each task holds whole partitions, sorted by partition key; in each task a Python worker
(`mapInArrow`) receives them as Arrow batches and writes one parquet file per partition with pyarrow as soon as the
partition is complete. No process ever holds more than one partition and one Arrow batch: memory is bounded by a
partition, not by the table, and the driver keeps one small record per file. (Spark's own parquet writer would do
the same, but on a local file system Hadoop forks a `chmod` for every file and folder it creates: most of what a
long backfill's write costs on two cores; docs/measurements.md.)

The files land in a staging folder inside the table (same file system, so moving them in is a rename), with their
statistics taken from the footers pyarrow just wrote; one delta-rs transaction then adds them and removes the
replaced partitions' files. Until that commit nothing a reader can see has changed; a crash leaves only unreferenced
files, which VACUUM removes (and the next write tidies staging folders a day old).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark import cloudpickle
from pyspark.sql import DataFrame

# The writer runs in Spark's Python workers, which need not have this project on their path: this module's
# functions travel to them by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

STAGING_DIR = "_staging"  # Delta readers and VACUUM leave "_"-prefixed folders alone
STALE_STAGING_S = 86_400.0  # no live write stages for a day: older folders are a crashed run's
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
FILE_RECORD_SCHEMA = "relative string, size long, modified_ms long, rows long, partition string, stats string"

# Rows a Parquet row group holds: a market day file (~2 M bars, sorted by ticker) is ~16 groups, whose statistics
# a one-ticker query skips by; a (ticker, day) file (a few hundred bars) is one.
ROW_GROUP_ROWS = 131_072

@dataclass(frozen=True)
class StagedFile:
    """One data file a task wrote, as a Delta add action needs it."""

    relative: str  # its path inside the table once moved in (partition folders / file name)
    size: int
    modified_ms: int
    partition: Mapping[str, str | None]
    rows: int
    stats: str  # Delta's per-file statistics: numRecords, minValues, maxValues, nullCount


def write_files(df: DataFrame, staging: Path, partition_by: Sequence[str], order: Sequence[str] = ()
                ) -> list[StagedFile]:
    """One parquet file per partition under `staging`, written in Spark's Python workers; what each file is, for
    its add action. `df` must hold each partition in one Spark task (`shape_for_write` does that); each file's rows
    are in `order` (the partition columns first, then what the table sorts its files by)."""
    data_columns = [c for c in df.columns if c not in partition_by]
    writer = partition_file_writer(str(staging), list(partition_by), data_columns)
    rows = df.sortWithinPartitions(*(order or partition_by)).mapInArrow(writer, FILE_RECORD_SCHEMA).collect()
    return [StagedFile(r["relative"], r["size"], r["modified_ms"], json.loads(r["partition"]), r["rows"], r["stats"])
            for r in rows]


def partition_file_writer(staging: str, partition_by: list[str], data_columns: list[str]
                          ) -> Callable[[Iterable[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """What each Spark task runs on its sorted rows: a file per run of equal partition keys, written when the run
    ends, so at most one partition (and one batch) is held at a time."""

    def write(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        task = uuid.uuid4().hex
        held: list[pa.RecordBatch] = []
        held_key: tuple[Any, ...] | None = None
        records: list[dict[str, Any]] = []
        for batch in batches:
            for key, piece in key_runs(batch, partition_by):
                if held and key != held_key:
                    records.append(_write_partition(staging, f"{len(records):05d}-{task}", partition_by, held_key,
                                                    held, data_columns))
                    held = []
                held_key = key
                held.append(piece)
        if held:
            records.append(_write_partition(staging, f"{len(records):05d}-{task}", partition_by, held_key, held,
                                            data_columns))
        if records:
            yield pa.RecordBatch.from_pylist(records)

    return write


def key_runs(batch: pa.RecordBatch, partition_by: list[str]) -> Iterator[tuple[tuple[Any, ...], pa.RecordBatch]]:
    """The batch cut wherever the partition key changes (rows arrive sorted by it; nulls sort together)."""
    if batch.num_rows == 0:
        return
    changed: Any = pa.array([False] * (batch.num_rows - 1), pa.bool_())
    for name in partition_by:
        column = batch.column(name)
        after, before = column.slice(1), column.slice(0, batch.num_rows - 1)
        differs = pc.fill_null(pc.not_equal(after, before), True)
        same_null = pc.and_(pc.is_null(after), pc.is_null(before))
        changed = pc.or_(changed, pc.and_(differs, pc.invert(same_null)))
    starts = [0, *(i + 1 for i in pc.indices_nonzero(changed).to_pylist())]
    for index, start in enumerate(starts):
        stop = starts[index + 1] if index + 1 < len(starts) else batch.num_rows
        key = tuple(batch.column(name)[start].as_py() for name in partition_by)
        yield key, batch.slice(start, stop - start)


def _write_partition(staging: str, name: str, partition_by: list[str], key: tuple[Any, ...] | None,
                     pieces: list[pa.RecordBatch], data_columns: list[str]) -> dict[str, Any]:
    assert key is not None
    values = {column: partition_text(value) for column, value in zip(partition_by, key, strict=True)}
    folders = "/".join(f"{column}={folder_value(values[column])}" for column in partition_by)
    relative = f"{folders}/part-{name}.snappy.parquet"
    target = Path(staging) / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_batches(pieces).select(data_columns)
    written: list[pq.FileMetaData] = []  # the footer as written, so it is not read back
    pq.write_table(table, target, compression="snappy", metadata_collector=written, row_group_size=ROW_GROUP_ROWS)
    info = target.stat()
    metadata = written[0]
    return {"relative": relative, "size": info.st_size, "modified_ms": int(info.st_mtime * 1000),
            "rows": table.num_rows, "partition": json.dumps(values),
            "stats": json.dumps(footer_stats(metadata), separators=(",", ":"))}


def partition_text(value: Any) -> str | None:
    """A partition value as Delta writes it in add actions. Here rather than imported from `predicates`: this
    module runs in Spark's Python workers by value, where the package may not be installed."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def folder_value(text: str | None) -> str:
    """A partition value in a folder name, escaped as Hive and Delta escape it."""
    return HIVE_NULL if text is None else quote(text, safe=" .-_+,;@$&~")


def new_staging_dir(table_root: Path) -> Path:
    """A fresh staging folder for one write, after tidying any a crashed run left a day or more ago."""
    parent = table_root / STAGING_DIR
    if parent.is_dir():
        cutoff = time.time() - STALE_STAGING_S
        for old in parent.iterdir():
            with contextlib.suppress(OSError):
                if old.stat().st_mtime < cutoff:
                    shutil.rmtree(old, ignore_errors=True)
    return parent / f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}"


def count_files_under(folder: Path) -> int:
    """Data files under a folder, not in its "_" folders (the log, staging): a write's progress."""
    count = 0
    for _, subdirs, names in os.walk(folder):
        subdirs[:] = [d for d in subdirs if not d.startswith("_")]
        count += sum(1 for n in names if n.endswith(".parquet"))
    return count


def move_into_table(staging: Path, table_root: Path, files: Sequence[StagedFile]) -> None:
    for item in files:
        target = table_root / item.relative
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / item.relative, target)


def remove_moved(table_root: Path, files: Sequence[StagedFile]) -> None:
    """Files moved in for a commit that did not happen: nothing references them."""
    for item in files:
        with contextlib.suppress(FileNotFoundError):
            (table_root / item.relative).unlink()


def footer_stats(metadata: pq.FileMetaData) -> dict[str, Any]:
    """Delta's statistics for one file, from its footer's row-group statistics: rows, and per column the minimum,
    maximum and null count. A column whose statistics are missing (or NaN) gets none, which a reader treats as
    "may match": skipping is lost for it, never correctness."""
    low: dict[str, Any] = {}
    high: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    schema = metadata.schema.to_arrow_schema()
    for index, field in enumerate(schema):
        lows, highs, null_count, complete = [], [], 0, True
        for group in range(metadata.num_row_groups):
            column = metadata.row_group(group).column(index)
            stats = column.statistics
            if stats is None:
                complete = False
                break
            null_count += stats.null_count if stats.has_null_count else 0
            if stats.has_min_max:
                lows.append(stats.min)
                highs.append(stats.max)
            elif stats.null_count != column.num_values:
                complete = False
        if not complete:
            continue
        nulls[field.name] = null_count
        if lows and all(_plain(v) for v in lows + highs):
            low[field.name], high[field.name] = _json_value(min(lows)), _json_value(max(highs))
    return {"numRecords": metadata.num_rows, "minValues": low, "maxValues": high, "nullCount": nulls}


def _plain(value: Any) -> bool:
    return not (isinstance(value, float) and math.isnan(value)) and not isinstance(value, bytes)


def _json_value(value: Any) -> Any:
    # Delta keeps timestamps in statistics at millisecond precision, in UTC.
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    return value

"""The pipeline's tables read without Spark, for the dashboard and the evidence charts: delta-rs lists the
snapshot's live files, pruned by partition values, and pyarrow.parquet reads exactly those files. Never through
`to_pyarrow_dataset()`/`to_pyarrow_table()`: with deltalake >= 1.2 a process that scanned that way can abort at
interpreter exit. Local tables only (what a laptop's dashboard opens)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable


def open_table(path: str | Path) -> DeltaTable | None:
    """The table at `path`, or None when there is none (yet)."""
    return DeltaTable(str(path)) if DeltaTable.is_deltatable(str(path)) else None


def read(path: str | Path, *, columns: Sequence[str] | None = None,
         where: Mapping[str, str] | None = None, keep: Callable[[dict[str, Any]], bool] | None = None) -> pa.Table:
    """The table's rows (or the `columns` asked) that equal `where`'s values: a partition column's skips whole files
    (a `(ticker, trade_date)` view of the minute table reads one file), any other column's skips the row groups
    whose statistics cannot match (a by-date table's day file, sorted by ticker, read for one ticker). An absent
    table raises FileNotFoundError. `keep`: whether a file (its add action, flattened) may hold wanted rows."""
    table = open_table(path)
    if table is None:
        raise FileNotFoundError(f"no Delta table at {path}")
    schema = pa.schema(table.schema().to_arrow())
    partitions = list(table.metadata().partition_columns)
    wanted = list(columns) if columns is not None else schema.names
    data_columns = [c for c in wanted if c not in partitions]
    pieces = []
    by_file = {k: v for k, v in (where or {}).items() if k in partitions}
    by_row = {k: v for k, v in (where or {}).items() if k not in partitions}
    for action in pa.table(table.get_add_actions(flatten=True)).to_pylist():
        values = {c: action.get(f"partition.{c}") for c in partitions}
        if any(str(values.get(k)) != str(v) for k, v in by_file.items()) or (keep is not None and not keep(action)):
            continue
        # A file read for no column has no rows in Arrow: with only partition columns asked, one is read and dropped.
        reading = list(dict.fromkeys([*(data_columns or [next(n for n in schema.names if n not in partitions)]),
                                      *by_row]))
        piece = _read_file(Path(path) / unquote(action["path"]), [schema.field(c) for c in reading], by_row)
        piece = piece.select(data_columns)
        for column in partitions:
            if column in wanted:
                # delta-rs hands partition values as text or, for some tables, typed already: either casts.
                value = pa.array([values[column]] * piece.num_rows).cast(schema.field(column).type)
                piece = piece.append_column(schema.field(column), value)
        pieces.append(piece.select(wanted))
    if not pieces:
        return schema.empty_table().select(wanted)
    return pa.concat_tables(pieces, promote_options="permissive")


def _read_file(file: Path, fields: Sequence[pa.Field], equal: Mapping[str, str] | None = None) -> pa.Table:
    """These columns of one data file, in the table's types: a column the table gained after the file was written
    (the run log's lifecycle columns in an older run's file) reads as nulls, as Delta readers read it, and Spark's
    timestamps (written without a zone) read as the UTC instants they are. `equal`: only the rows whose columns
    hold these values, the row groups that cannot hold them skipped."""
    source = pq.ParquetFile(file)
    present = set(source.schema_arrow.names)
    if equal:
        piece = pq.read_table(file, columns=[f.name for f in fields if f.name in present],
                              filters=[(name, "=", value) for name, value in equal.items()])
    else:
        piece = source.read(columns=[f.name for f in fields if f.name in present])
    for index, spec in enumerate(fields):
        if spec.name not in present:
            piece = piece.add_column(index, spec, pa.nulls(piece.num_rows, spec.type))
    return piece.select([f.name for f in fields]).cast(pa.schema(fields))


def partitions(path: str | Path, columns: Sequence[str]) -> list[tuple[str, ...]]:
    """The distinct combinations of these partition columns' values, from the log alone (no data file is opened),
    in one pass over the snapshot's files."""
    table = open_table(path)
    if table is None:
        return []
    names = [f"partition.{c}" for c in columns]
    rows = pa.table(table.get_add_actions(flatten=True)).select(names).to_pylist()
    return sorted({tuple(str(row[name]) for name in names) for row in rows})


@dataclass(frozen=True)
class Health:
    """A table's state as maintenance.py reports it."""

    version: int
    live_files: int
    total_bytes: int
    last_optimize: dt.datetime | None
    last_vacuum: dt.datetime | None


def health(path: str | Path) -> Health | None:
    table = open_table(path)
    if table is None:
        return None
    sizes = pa.table(table.get_add_actions(flatten=True)).column("size_bytes").to_pylist()

    def last(prefix: str) -> dt.datetime | None:
        times = [h["timestamp"] for h in table.history() if str(h.get("operation", "")).startswith(prefix)]
        return dt.datetime.fromtimestamp(max(times) / 1000, dt.UTC) if times else None

    return Health(table.version(), len(sizes), int(sum(sizes)), last("OPTIMIZE"), last("VACUUM"))

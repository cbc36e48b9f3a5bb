"""Small tables a run writes a few rows to in Arrow, without waiting for Spark: the run log (`pipeline_runs`). One
writer, chosen once per table: delta-rs where it is installed and the path is local (a blind append never conflicts,
takes milliseconds, and needs no Spark, which a run may not have started yet and a run that stops early never
needs); otherwise the run's engine through the storage port (Databricks, which has no `deltalake`, and paths only
Spark reaches). Either way a table written before a column existed gains it, and its older rows read it as null."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa
from pyspark.sql import DataFrame

from stockpipe.paths import local_path
from stockpipe.storage.port import DeltaStorage

LOG_ATTEMPTS = 8  # commit races on a log (concurrent runs) are retried, bounded


class LogTable(Protocol):
    path: str

    def append(self, rows: pa.Table) -> None:
        """New rows (their key not in the table yet), in one commit; a missing table is created."""

    def merge(self, rows: pa.Table, keys: Sequence[str], *, update_if: str | None = None,
              insert: bool = True) -> None:
        """Rows matching on `keys` take these rows' columns (only where `update_if` holds, an SQL condition over
        `t.<column>` and `s.<column>`); the others are inserted, unless `insert` is False. A missing table is
        created."""

    def read(self, columns: Sequence[str]) -> pa.Table | None:
        """These columns of every row (null where an older row lacks one); None when there is no table yet."""


@dataclass
class ArrowLogTable:
    """delta-rs: no Spark, no JVM; commit races retried on the new snapshot (bounded, jittered). Appends carry the
    run's commit metadata when given (`DeltaStorage.user_metadata`), as the engine's own writes do."""

    path: str
    user_metadata: str | None = None

    def append(self, rows: pa.Table) -> None:
        from deltalake import CommitProperties, write_deltalake

        commit = CommitProperties(custom_metadata={"userMetadata": self.user_metadata}) if self.user_metadata else None
        _retried(lambda: write_deltalake(self.path, rows, mode="append", schema_mode="merge",
                                         commit_properties=commit))

    def merge(self, rows: pa.Table, keys: Sequence[str], *, update_if: str | None = None,
              insert: bool = True) -> None:
        from deltalake import DeltaTable, write_deltalake

        from stockpipe.storage.delta_rs import merge_arrow

        def attempt() -> None:
            if DeltaTable.is_deltatable(self.path):
                merge_arrow(self.path, rows, keys, update_if=update_if, insert=insert)
            elif insert:
                write_deltalake(self.path, rows, mode="append", schema_mode="merge")

        _retried(attempt)

    def read(self, columns: Sequence[str]) -> pa.Table | None:
        from stockpipe import readers

        table = readers.open_table(self.path)
        if table is None:
            return None
        names = set(pa.schema(table.schema().to_arrow()).names)
        return _with_nulls(readers.read(self.path, columns=[c for c in columns if c in names]), columns)


@dataclass
class EngineLogTable:
    """Through the storage port, on the run's engine (its session is asked for when first needed). New rows go in
    as an upsert on the table's key, which adds the columns an older table lacks (a plain append would refuse)."""

    path: str
    engine: Callable[[], DeltaStorage]
    key: tuple[str, ...]

    def append(self, rows: pa.Table) -> None:
        storage = self.engine()
        storage.upsert(_frame(storage, rows), self.path, self.key)

    def merge(self, rows: pa.Table, keys: Sequence[str], *, update_if: str | None = None,
              insert: bool = True) -> None:
        storage = self.engine()
        storage.upsert(_frame(storage, rows), self.path, keys, update_if=update_if, insert=insert)

    def read(self, columns: Sequence[str]) -> pa.Table | None:
        from stockpipe.compat import to_arrow

        storage = self.engine()
        if not storage.is_delta(self.path):
            return None
        frame = storage.read(self.path)
        return _with_nulls(to_arrow(frame.select(*[c for c in columns if c in frame.columns])), columns)


def log_table(path: str, engine: Callable[[], DeltaStorage], key: Sequence[str], *,
              user_metadata: str | None = None) -> LogTable:
    """The writer for this table (whose rows are unique on `key`), chosen once (see the module's docstring);
    `user_metadata` tags the delta-rs appends' commits (the engine's writes carry the engine's own)."""
    if local_path(path) is not None and _has_deltalake():
        return ArrowLogTable(path, user_metadata)
    return EngineLogTable(path, engine, tuple(key))


def _frame(storage: DeltaStorage, rows: pa.Table) -> DataFrame:
    from pyspark.sql.pandas.types import from_arrow_schema

    return storage.spark.createDataFrame(rows.to_pylist(), from_arrow_schema(rows.schema))


def _with_nulls(found: pa.Table, columns: Sequence[str]) -> pa.Table:
    for name in columns:
        if name not in found.column_names:
            found = found.append_column(name, pa.nulls(found.num_rows))
    return found.select(list(columns))


def _retried(write: Callable[[], object]) -> None:
    from deltalake.exceptions import CommitFailedError

    for attempt in range(1, LOG_ATTEMPTS + 1):
        try:
            write()
            return
        except CommitFailedError:
            if attempt == LOG_ATTEMPTS:
                raise
            time.sleep(min(1.0, 0.02 * 2**attempt) * (0.5 + random.random()))


def _has_deltalake() -> bool:
    try:
        import deltalake  # noqa: F401
    except ImportError:
        return False
    return True

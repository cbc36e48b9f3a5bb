"""One storage port, two engines: delta-spark (Databricks, or local with its jars) and delta-rs (PyPI only).

- `predicates`: which rows a read keeps and a replacing write replaces.
- `port`: the port (`DeltaStorage`) and what it answers in (`FileChanges`, `Maintained`, `TableDetail`,
  `HistoryEntry`), whatever engine answered.
- `delta_spark`, `delta_rs`: one engine each. Import them by module: `deltalake` is absent on Databricks.
- `engines`: which engine a session gets.

Both write the same Delta table format and answer one contract (tests/test_storage_contract.py). Spark stays the
compute engine in both.
"""

from stockpipe.storage.engines import EngineName, choose_engine, open_storage
from stockpipe.storage.port import (
    COMMIT_ATTEMPTS,
    RETENTION_HOURS,
    DeltaStorage,
    FileChanges,
    FileInfo,
    HistoryEntry,
    Maintained,
    TableDetail,
)
from stockpipe.storage.predicates import AnyOf, Replacement, ReplacePredicate, RowFilter

__all__ = [
    "COMMIT_ATTEMPTS", "RETENTION_HOURS", "AnyOf", "DeltaStorage", "EngineName", "FileChanges", "FileInfo",
    "HistoryEntry", "Maintained", "ReplacePredicate", "Replacement", "RowFilter", "TableDetail", "choose_engine",
    "open_storage",
]

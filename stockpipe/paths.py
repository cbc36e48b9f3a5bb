"""Where a table lives, as this process's file system sees it: one rule for every look at a table folder.

A path is *local* when Python can list it: a plain path, a `file:` URI, and a Unity Catalog volume (`/Volumes/...`,
or `dbfs:/Volumes/...`) on a Databricks driver, where volumes are mounted. Anything else (cloud URIs, other DBFS
paths, a volume path typed on a laptop) only Spark can reach: the checks here pass it through, and Spark or the
engine answers for it later.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from stockpipe.errors import NotDeltaTableError, PipelineError

VOLUMES = "/Volumes/"


def local_path(path: str) -> Path | None:
    """The path on this machine's file system, or None when only Spark can reach it."""
    if "://" in path or path.startswith(("dbfs:", "file:")):
        parts = urlsplit(path)
        if parts.scheme == "file" or (parts.scheme == "dbfs" and parts.path.startswith(VOLUMES)):
            text = unquote(parts.path)
        else:
            return None
    else:
        text = path
    if text.startswith(VOLUMES) and not Path(VOLUMES).is_dir():
        return None  # a volume path typed off Databricks: nothing is mounted here
    return Path(text)


def require_delta_log(path: str) -> None:
    """Fail before starting Spark when a local path plainly holds no Delta table (the engine checks the others)."""
    folder = local_path(path)
    if folder is not None and not (folder / "_delta_log").is_dir():
        raise NotDeltaTableError(path)


def refuse_foreign_folder(path: str) -> None:
    """Never write into, or (like the starter) delete, a non-empty folder that is not a Delta table. Runs before any
    call or Spark start, so a mistyped --table-path costs nothing."""
    folder = local_path(path)
    if folder is None or not folder.is_dir() or (folder / "_delta_log").is_dir():
        return
    if any(folder.iterdir()):
        raise PipelineError(f"{path} exists, is not empty and is not a Delta table: refusing to touch it")


def parquet_files_on_disk(path: str) -> list[Path]:
    """Every data file under a local table path, live or tombstoned (what VACUUM can delete); none elsewhere. Not
    what a write is still staging, nor the log: folders whose names start with "_" are Delta's or a writer's."""
    root = local_path(path)
    if root is None or not root.is_dir():
        return []
    return [p for p in root.rglob("*.parquet") if not any(part.startswith("_") for part in p.relative_to(root).parts)]


def count_partition_dirs(path: str) -> int:
    """Leaf partition folders on disk (live or not): what a file listing of the table has to walk."""
    return len({p.parent for p in parquet_files_on_disk(path)})


def file_size(uri: str) -> int | None:
    """A data file's size where the file system can see it, else None."""
    local = local_path(uri)
    if local is None:
        return None
    try:
        return local.stat().st_size
    except OSError:
        return None


def beside(table_path: str, name: str) -> str:
    """The table `name` in the folder that holds `table_path` (a local path or a URI alike): `stocks_splits`,
    `stocks_daily` and `pipeline_runs` live beside the minute table."""
    parent = table_path.rstrip("/").rpartition("/")[0]
    return f"{parent}/{name}" if parent else name

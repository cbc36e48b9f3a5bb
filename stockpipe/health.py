"""Table health: a snapshot computed from the table's detail, a score and recommendations in the spirit of the
course's DeltaTableHealthCheck, and the maintenance run (OPTIMIZE, VACUUM) with before/after snapshots, of one table
or of every table the pipeline writes (`maintain_all`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import logging
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stockpipe.errors import DataLossError, UsageError
from stockpipe.layout import BY_DATE, ZORDER_BY
from stockpipe.paths import beside, local_path
from stockpipe.storage import DeltaStorage, FileChanges, HistoryEntry, Maintained, ReplacePredicate
from stockpipe.storage.port import FileInfo, TableDetail

log = logging.getLogger(__name__)

# Every table the pipeline writes, side by side in one folder: each run appends a small file to most of them, so
# each needs OPTIMIZE and VACUUM like the minute table.
PIPELINE_TABLES = ("stocks_fixed", "stocks_splits", "stocks_dividends", "stocks_official_daily", "stocks_daily",
                   "pipeline_runs", "quality_checks", "stocks_quarantine")
NOT_CREATED = "not created yet"
SMALL_FILE_BYTES = 16 * 1024 * 1024  # well under Delta's 128 MiB-1 GiB compaction targets
MANY_PARTITIONS = 1_000


@dataclass
class HealthSnapshot:
    version: int
    live_files: int
    files_on_disk: int
    total_bytes: int
    avg_file_bytes: float
    min_file_bytes: int
    max_file_bytes: int
    median_file_bytes: float
    partitions: int
    max_files_per_partition: int
    rows: int
    partition_columns: list[str]
    clustering_columns: list[str]
    file_sizes: list[int] = field(repr=False)
    score: int = 100
    recommendations: list[str] = field(default_factory=list)


def snapshot(storage: DeltaStorage, path: str) -> HealthSnapshot:
    detail = storage.detail(path)
    sizes = sorted(f.size_bytes for f in detail.files)
    per_partition = Counter(tuple(sorted(f.partition.items())) for f in detail.files)
    snap = HealthSnapshot(
        version=detail.version,
        live_files=detail.num_files,
        files_on_disk=storage.files_on_disk(path),
        total_bytes=detail.size_bytes,
        avg_file_bytes=statistics.fmean(sizes) if sizes else 0.0,
        min_file_bytes=sizes[0] if sizes else 0,
        max_file_bytes=sizes[-1] if sizes else 0,
        median_file_bytes=statistics.median(sizes) if sizes else 0.0,
        partitions=detail.num_partitions,
        max_files_per_partition=max(per_partition.values()) if per_partition else 0,
        rows=storage.count(path),
        partition_columns=detail.partition_columns,
        clustering_columns=detail.clustering_columns,
        file_sizes=sizes,
    )
    snap.score, snap.recommendations = assess(snap, storage.history(path))
    return snap


def assess(snap: HealthSnapshot, history: Sequence[HistoryEntry]) -> tuple[int, list[str]]:
    """A 0-100 score and what to do, from measured facts only. Each rule names the number that triggered it."""
    score = 100.0
    advice: list[str] = []
    groups = snap.partitions if snap.partition_columns else 1
    compactable = snap.live_files - groups
    if snap.live_files and compactable > 0:
        share = compactable / snap.live_files
        score -= 40 * share
        advice.append(
            f"OPTIMIZE: {snap.live_files:,} live files in {groups:,} partition(s); compaction can remove "
            f"{compactable:,} of them"
        )
    if snap.partition_columns and snap.partitions > MANY_PARTITIONS:
        score -= 25
        advice.append(
            f"Partitioning too fine: {snap.partitions:,} partitions averaging {snap.rows / snap.partitions:,.0f} "
            f"rows; partition by a coarser key (e.g. trade_date) or use liquid clustering"
        )
    if snap.live_files and snap.avg_file_bytes < SMALL_FILE_BYTES:
        score -= 10
        advice.append(
            f"Small files: average {snap.avg_file_bytes / 1024:,.0f} KiB (target is 128 MiB+); this is the data "
            f"volume per partition ({snap.rows / max(groups, 1):,.0f} rows), not fragmentation, when each "
            "partition already holds one file"
        )
    if snap.median_file_bytes and snap.max_file_bytes / snap.median_file_bytes > 10:
        score -= 10
        advice.append(
            f"Skewed file sizes: largest {snap.max_file_bytes:,} B is "
            f"{snap.max_file_bytes / snap.median_file_bytes:,.0f}x the median; compaction or re-partitioning evens it"
        )
    stale = snap.files_on_disk - snap.live_files
    if stale > 0:
        score -= 10 * stale / max(snap.files_on_disk, 1)
        advice.append(f"VACUUM: {stale:,} data files on disk are no longer referenced by the current version")
    since_optimize = 0
    for entry in reversed(history):
        if entry.operation == "OPTIMIZE":
            break
        since_optimize += 1
    if since_optimize > 50:
        score -= 5
        advice.append(f"{since_optimize} commits since the last OPTIMIZE: schedule maintenance")
    return max(0, round(score)), advice


@dataclass
class MaintenanceReport:
    path: str
    engine: str
    before: HealthSnapshot
    after: HealthSnapshot
    optimized: FileChanges
    optimize_seconds: float
    vacuumed: FileChanges  # files_removed: the files VACUUM deleted (None where the engine cannot count them)
    vacuum_seconds: float
    retain_hours: float  # what VACUUM kept, which a session may raise from what was asked
    zorder_by: list[str]
    history: list[HistoryEntry]
    calls: list[str] = field(default_factory=list)  # what the engine ran, verbatim

    def to_json(self) -> str:
        def default(value: Any) -> Any:
            if isinstance(value, dt.datetime | dt.date):
                return value.isoformat()
            return str(value)

        return json.dumps(dataclasses.asdict(self), indent=2, default=default)


def check_zorder_columns(columns: Sequence[str], partition_columns: Sequence[str], schema_names: Sequence[str]) -> None:
    for column in columns:
        if column in partition_columns:
            raise UsageError(
                f"--zorder-by {column}: it is a partition column, so every file already holds one value of it and "
                "Z-ORDER on it does nothing; Z-ORDER by a column inside the partitions (e.g. timestamp_ms)"
            )
        if column not in schema_names:
            raise UsageError(f"--zorder-by {column}: no such column (table has {', '.join(schema_names)})")


def crowded_days(path: str, detail: TableDetail) -> list[str]:
    """The days of a by-date table whose files' ticker ranges overlap, so a one-ticker query opens more than one of
    them: a rerun's appended file, a day written in pieces. A day written as one file, or as several runs of tickers
    one after another (Spark's tasks sharing a day's file), is in order already. Each file's range is read from its
    Parquet footer where the file is on a local or mounted disk; elsewhere a day of several files counts as
    crowded."""
    by_day: dict[str, list[FileInfo]] = {}
    for info in detail.files:
        by_day.setdefault(info.partition["trade_date"], []).append(info)
    return sorted(day for day, files in by_day.items() if len(files) > 1 and _overlapping(path, files))


def _overlapping(table: str, files: list[FileInfo]) -> bool:
    ranges = []
    for info in files:
        found = _ticker_range(table, info.path)
        if found is None:
            return True
        ranges.append(found)
    ranges.sort()
    return any(later[0] <= earlier[1] for earlier, later in itertools.pairwise(ranges))


def _ticker_range(table: str, file: str) -> tuple[str, str] | None:
    import pyarrow.parquet as pq

    found = local_path(file)
    root = local_path(table)
    if found is None or root is None:
        return None
    where = found if found.is_absolute() else root / found
    try:
        metadata = pq.ParquetFile(where).metadata
        column = metadata.schema.to_arrow_schema().get_field_index("ticker")
        stats = [metadata.row_group(i).column(column).statistics for i in range(metadata.num_row_groups)]
    except (OSError, ValueError):
        return None
    if column < 0 or not stats or any(s is None or not s.has_min_max for s in stats):
        return None
    return min(str(s.min) for s in stats), max(str(s.max) for s in stats)


def run_maintenance(
    storage: DeltaStorage, path: str, *, retain_hours: float = 0, zorder_by: Sequence[str] = ()
) -> MaintenanceReport:
    storage.require_delta(path)
    detail = storage.detail(path)
    check_zorder_columns(zorder_by, detail.partition_columns, storage.read(path).columns)
    before = snapshot(storage, path)
    started = time.monotonic()
    where = None
    if not zorder_by and detail.partition_columns == list(BY_DATE.partition_by):
        # A by-date table (the market): its days with several files are Z-ordered by ticker, so a one-ticker query
        # skips again; a day already one file, written sorted by ticker, is left as it is (a Z-ORDER rewrites every
        # file it is given).
        crowded = crowded_days(path, detail)
        if crowded:
            zorder_by, where = ZORDER_BY[BY_DATE.name], ReplacePredicate.of(
                trade_date=[dt.date.fromisoformat(day) for day in crowded])
    optimized = (storage.optimize(path, zorder_by, where=where) if where is not None or
                 detail.partition_columns != list(BY_DATE.partition_by) or zorder_by
                 else Maintained(FileChanges(files_added=0, files_removed=0), ()))
    optimized_at = time.monotonic()
    log.debug("%s: %s in %.1f s", path, "; ".join(optimized.calls) or "OPTIMIZE", optimized_at - started)
    vacuumed = storage.vacuum(path, retain_hours)
    vacuumed_at = time.monotonic()
    log.debug("%s: %s in %.1f s", path, "; ".join(vacuumed.calls) or "VACUUM", vacuumed_at - optimized_at)
    after = snapshot(storage, path)
    if after.rows != before.rows:
        raise DataLossError(f"row count changed during maintenance: {before.rows:,} before, {after.rows:,} after")
    return MaintenanceReport(
        path=path, engine=storage.name, before=before, after=after, optimized=optimized.changes,
        optimize_seconds=optimized_at - started, vacuumed=vacuumed.changes, vacuum_seconds=vacuumed_at - optimized_at,
        retain_hours=retain_hours if vacuumed.retain_hours is None else vacuumed.retain_hours,
        zorder_by=list(zorder_by), history=storage.history(path), calls=[*optimized.calls, *vacuumed.calls],
    )


@dataclass
class TableMaintenance:
    """One table of `maintain_all`: its report, or why it was skipped or failed."""

    name: str
    path: str
    report: MaintenanceReport | None = None
    skipped: str | None = None
    error: str | None = None

    @property
    def optimize_kind(self) -> str:
        """What its OPTIMIZE did: Z-ORDER, liquid clustering (a clustered table's OPTIMIZE clusters) or compaction."""
        if self.report is None:
            return ""
        if self.report.zorder_by:
            return f"Z-ORDER BY ({', '.join(self.report.zorder_by)})"
        if self.report.before.clustering_columns:
            return f"clustering ({', '.join(self.report.before.clustering_columns)})"
        return "compaction"


def pipeline_tables(table_path: str) -> list[tuple[str, str]]:
    """The given table first, then every other pipeline table beside it: (name, path)."""
    found = [(table_path.rstrip("/").rpartition("/")[2], table_path)]
    found += [(name, beside(table_path, name)) for name in PIPELINE_TABLES if beside(table_path, name) != table_path]
    return found


def maintain_all(storage: DeltaStorage, table_path: str, *, retain_hours: float = 0,
                 zorder_by: Sequence[str] = ()) -> list[TableMaintenance]:
    """`run_maintenance` on every pipeline table beside `table_path`, which comes first and alone takes `zorder_by`
    (the others are small unpartitioned tables: compaction, or clustering where a table is clustered). A table not
    created yet is skipped; one that fails is reported and the others are still maintained. Bad input (--zorder-by
    on a partition column) stops at the first table, before anything ran."""
    results = []
    for name, path in pipeline_tables(table_path):
        if not storage.is_delta(path):
            results.append(TableMaintenance(name, path, skipped=NOT_CREATED))
            continue
        try:
            report = run_maintenance(storage, path, retain_hours=retain_hours,
                                     zorder_by=zorder_by if path == table_path else ())
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - one table's failure is its line in the report, not the others' end
            log.debug("maintenance of %s failed", path, exc_info=True)
            results.append(TableMaintenance(name, path, error=str(exc).strip().splitlines()[0][:300] if str(exc)
                                            else type(exc).__name__))
            continue
        results.append(TableMaintenance(name, path, report=report))
    return results


def write_chart(report: MaintenanceReport, path: str | Path) -> None:
    """File-size distribution before and after, one panel each, on the same axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=False)
    largest = max([1, *report.before.file_sizes, *report.after.file_sizes]) / 1024
    for axis, snap, label in ((axes[0], report.before, "before"), (axes[1], report.after, "after")):
        sizes = [s / 1024 for s in snap.file_sizes]
        axis.hist(sizes, bins=30, range=(0, largest * 1.05), color="#4c72b0" if label == "before" else "#55a868")
        axis.set_title(f"{label}: {snap.live_files:,} live files, {snap.files_on_disk:,} on disk")
        axis.set_xlabel("file size (KiB)")
        axis.set_ylabel("files")
    fig.suptitle(f"{Path(report.path).name}: OPTIMIZE + VACUUM {report.retain_hours:g} h ({report.engine})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

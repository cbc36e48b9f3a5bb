"""What the doors print: the starter's analysis for the broken table, an end summary for the fixed one, the
maintenance report and the external table's queries, in tables people can read."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from stockpipe.breadth import MarketReport
from stockpipe.daily import DailyReport
from stockpipe.external import ExternalReport
from stockpipe.fetching import TickerFetch
from stockpipe.harvest import BrokenReport, FixedReport
from stockpipe.harvest.report import REFERENCE_NAMES, deferral_line
from stockpipe.health import MaintenanceReport, TableMaintenance
from stockpipe.marketdaily import MarketDailyReport
from stockpipe.outcome import Outcome
from stockpipe.paths import local_path
from stockpipe.runlog import RunRecord
from stockpipe.storage import RETENTION_HOURS, FileChanges


def fetch_table(fetched: dict[str, TickerFetch]) -> str:
    rows = [
        (t, f.stats.pages, f.stats.pages_from_landing, f.stats.bars, f.stats.calls, f.stats.retries,
         f.stats.http_429, f"{f.stats.waited_s:.1f}", f.stats.error or "")
        for t, f in fetched.items()
    ]
    return format_table(
        ["ticker", "pages fetched", "pages reused", "bars fetched", "calls", "retries", "429s", "waited s", "error"],
        rows, title="Fetch",
    )


def render_broken(report: BrokenReport) -> str:
    expected = len(report.fetched)
    present = len(report.rows_per_ticker)
    lines = [
        fetch_table(report.fetched),
        "",
        f"Table {shown(report.table_path)} (engine {report.engine})",
        f"Total rows: {report.total_rows:,}",
        "Schema:",
        report.schema_tree.rstrip(),
        format_table(["ticker", "rows"], sorted(report.rows_per_ticker.items()), title="Rows per ticker:"),
        "Sample rows:",
        report.sample_rows.rstrip(),
        "",
        f"Tickers expected: {expected}, present: {present} "
        f"({', '.join(sorted(report.rows_per_ticker)) or 'none'})",
        f"Partition directories created on disk: {report.partition_dirs_on_disk:,} "
        f"({report.files_on_disk:,} parquet files); live in the current version: {report.live_partitions:,}",
        f"Wall time: {report.seconds:.1f} s",
    ]
    return "\n".join(lines)


# Above this many tickers the end summary counts tickers by status and names those that are not `success`; the
# full list stays in pipeline_runs (each run's ticker_outcomes).
SUMMARY_TICKERS = 50
NAMED_SHOWN = 40


def ticker_summary(report: FixedReport) -> str:
    """The market's end summary: counts by status, then the tickers that are not `success`, a few dozen by name."""
    counts: dict[str, int] = {}
    for t in report.tickers:
        counts[t.status] = counts.get(t.status, 0) + 1
    lines = [f"Summary: {len(report.tickers):,} tickers: "
             + ", ".join(f"{counts[s]:,} {s}" for s in Outcome if s in counts),
             f"  rows {report.rows_written:,}, bars quarantined {sum(t.counts.quarantined for t in report.tickers):,}"]
    others = [t for t in report.tickers if t.status is not Outcome.SUCCESS]
    for status in (s for s in Outcome if s is not Outcome.SUCCESS):
        named = [t.ticker for t in others if t.status is status]
        if named:
            shown_names = ", ".join(named[:NAMED_SHOWN]) + (f" ... and {len(named) - NAMED_SHOWN:,} more"
                                                            if len(named) > NAMED_SHOWN else "")
            lines.append(f"  {status}: {shown_names}")
    if others:
        lines.append("  every ticker's outcome: pipeline_runs, column ticker_outcomes, of this run")
    return "\n".join(lines)


def files_table(report: FixedReport) -> str:
    rows = [(f.day.isoformat(), f.status, f"{f.bytes / 1e6:.1f}" if f.bytes else "", f"{f.seconds:.1f}"
             if f.seconds else "", f.reason) for f in report.files]
    return format_table(["day", "file", "MB downloaded", "seconds", "why"], rows, title="Flat files")


def render_fixed(report: FixedReport) -> str:
    if report.files and not report.tickers:
        return "\n".join([files_table(report), f"Nothing to write to {shown(report.table_path)}: no file landed"])
    rows = []
    for t in report.tickers:
        c = t.counts
        rows.append((t.ticker, t.status, c.partitions, len(t.not_in_plan), t.stats.calls, t.stats.http_429,
                     t.stats.retries, t.stats.pages, t.stats.pages_from_landing, f"{t.stats.waited_s:.1f}",
                     c.bars_landed, c.outside_range, c.duplicates, c.quarantined, c.rows_written))
    table = format_table(
        ["ticker", "status", "days stored", "days refused", "calls", "429s", "retries", "pages", "reused",
         "waited s", "bars", "outside range", "duplicates", "quarantined", "rows"],
        rows, title="Summary",
    ) if len(report.tickers) <= SUMMARY_TICKERS else ticker_summary(report)
    lines = [files_table(report), ""] if report.files else []
    lines += [table, ""]
    skipped = [t.ticker for t in report.tickers if t.skipped]
    for t in report.tickers:
        if t.skipped:
            continue
        if t.status is Outcome.FAILED:
            lines.append(f"FAILED {t.ticker}: {t.stats.error} (its partitions were left untouched)")
        elif t.status is Outcome.PARTIAL:
            lines.append(f"not in your plan: {t.ticker} {', '.join(map(str, t.not_in_plan))} ({t.plan_message}); "
                         "the earlier days are stored")
    silent = [t.ticker for t in report.tickers if t.status is Outcome.NO_BARS and not t.skipped]
    if silent and report.days and len(silent) <= SUMMARY_TICKERS:
        between = (f"on {report.days[0]}" if len(report.days) == 1 else
                   f"from {report.days[0]} to {report.days[-1]}")
        lines.append(f"warning: no bar at all {between} for {', '.join(silent)}: is the symbol right? Nothing was "
                     f"written for {'it' if len(silent) == 1 else 'them'}")
    if skipped:
        lines.append(f"FAILED, not fetched because the run stopped: {', '.join(skipped)} (their partitions were left "
                     "untouched)")
    if not report.started:
        lines.append(f"Nothing to write to {shown(report.table_path)}: Spark was not started")
        lines.append("Seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in report.seconds.items()))
        return "\n".join(lines)
    for fetched in report.fetched_references:
        if fetched.error is None and fetched.stats.calls:
            calls = fetched.stats.calls
            lines.append(f"{REFERENCE_NAMES[fetched.kind].capitalize()}: {fetched.date_from}..{fetched.date_to} "
                         f"fetched in {calls} call{'s' if calls != 1 else ''}")
        elif fetched.refused:
            lines.append(f"warning: {REFERENCE_NAMES[fetched.kind]} not in your plan ({fetched.error})")
        if (deferred := deferral_line(fetched)) is not None:
            lines.append(deferred)
    for shrink in report.shrinks:
        lines.append(("warning: " if report.shrink_allowed else "KEPT ") + shrink.line(replaced=report.shrink_allowed))
    lines += checks_lines(report)
    lines += [
        f"Table {shown(report.table_path)}: version {report.written.version}, layout {report.layout}, "
        f"engine {report.engine}, source {report.source}",
        f"Partitions written: {report.partitions_written}, files written: {report.written.files}, "
        f"trading days: {len(report.days)}",
        *reference_lines(report),
        "Prices and volumes are stored as traded (adjusted=false); split adjustment is derived on read.",
        "Seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in report.seconds.items())
        + f", total {sum(report.seconds.values()):.1f}",
    ]
    if report.transformed_early:
        lines.append(f"Transformed while the fetch went on: {report.transformed_early} of {len(report.tickers)} "
                     "tickers (the transform above is the rest's)")
    return "\n".join(lines)


def changes_text(changes: FileChanges) -> str:
    """The same words for every engine: files added/removed, rows added, partitions, files skipped."""
    shown = [(f"files added {changes.files_added:,}" if changes.files_added is not None else ""),
             (f"files removed {changes.files_removed:,}" if changes.files_removed is not None else ""),
             (f"rows added {changes.rows_added:,}" if changes.rows_added is not None else ""),
             (f"partitions {changes.partitions:,}" if changes.partitions is not None else ""),
             (f"files skipped {changes.files_skipped:,}" if changes.files_skipped is not None else "")]
    return ", ".join(part for part in shown if part)


def render_maintenance(report: MaintenanceReport) -> str:
    b, a = report.before, report.after
    rows = [
        ("table version", b.version, a.version),
        ("live files", b.live_files, a.live_files),
        ("parquet files on disk (live + tombstoned)", b.files_on_disk, a.files_on_disk),
        ("total size (live)", human_bytes(b.total_bytes), human_bytes(a.total_bytes)),
        ("average file size", human_bytes(b.avg_file_bytes), human_bytes(a.avg_file_bytes)),
        ("min / max file size", f"{human_bytes(b.min_file_bytes)} / {human_bytes(b.max_file_bytes)}",
         f"{human_bytes(a.min_file_bytes)} / {human_bytes(a.max_file_bytes)}"),
        ("partitions", b.partitions, a.partitions),
        ("max files in one partition", b.max_files_per_partition, a.max_files_per_partition),
        ("row count", b.rows, a.rows),
        ("health score (0-100)", b.score, a.score),
    ]
    what = f"Z-ORDER BY ({', '.join(report.zorder_by)})" if report.zorder_by else "compaction"
    lines = [
        f"Table {shown(report.path)} (engine {report.engine}, "
        f"{_layout_text(b.partition_columns, b.clustering_columns)})",
        format_table(["metric", "before", "after"], rows, title="Health check: before and after maintenance"),
        "",
        f"OPTIMIZE ({what}): {optimize_text(report)} in {report.optimize_seconds:.1f} s"
        + (f" ({changes_text(report.optimized)})" if report.optimized.files_removed else ""),
        f"VACUUM RETAIN {report.retain_hours:g} HOURS: {_deleted(report.vacuumed.files_removed)} in "
        f"{report.vacuum_seconds:.1f} s",
        f"Row count check: {b.rows:,} before = {a.rows:,} after: no row lost.",
    ]
    if report.calls:
        lines += ["", f"Calls run ({report.engine}):", *[f"  {shown_in(call, report.path)}" for call in report.calls]]
    if report.retain_hours < RETENTION_HOURS:
        lines.append(
            f"Note: {report.retain_hours:g} h retention is for this homework. Production keeps at least "
            f"{RETENTION_HOURS} h (7 days): VACUUM deletes the files older versions need, so time travel "
            "to them breaks, and a reader or writer still working from an older snapshot can fail mid-query."
        )
    lines += ["", format_table(
        ["version", "timestamp (UTC)", "operation", "run", "key metrics"],
        [(h.version, h.timestamp.strftime("%Y-%m-%d %H:%M:%S"), h.operation, (h.run_id or "-")[:8],
          changes_text(h.changes)) for h in report.history],
        title="Table history",
    )]
    for title, snap in (("Recommendations before", b), ("Recommendations after", a)):
        lines.append("")
        lines.append(f"{title} (score {snap.score}):")
        lines += [f"  - {r}" for r in snap.recommendations] or ["  - none: the table is healthy"]
    return "\n".join(lines)


def optimize_text(report: MaintenanceReport) -> str:
    """What OPTIMIZE did, in words: the files it compacted, or why it found nothing to do (no commit then, so the
    table's history cannot say it ran: the run log does)."""
    removed, added = report.optimized.files_removed or 0, report.optimized.files_added or 0
    if removed or added:
        return f"compacted {removed:,} file(s) into {added:,}"
    before = report.before
    if before.live_files <= 1:
        return "nothing to compact (one file)"
    if before.partition_columns and before.max_files_per_partition <= 1:
        return f"nothing to compact (each of the {before.partitions:,} partitions holds one file)"
    return "nothing to compact (every file is already at its target)"


def vacuum_text(report: MaintenanceReport) -> str:
    deleted = report.vacuumed.files_removed
    if deleted is None:
        return "VACUUM ran (the files it deleted cannot be counted from here)"
    return f"VACUUM deleted {deleted:,} file(s)" if deleted else "VACUUM: nothing to delete"


def maintenance_line(name: str, report: MaintenanceReport) -> str:
    """One table's maintenance in one line, as the run log keeps it."""
    return f"{name}: OPTIMIZE {optimize_text(report)}; {vacuum_text(report)}"


def render_maintenance_all(results: list[TableMaintenance], retain_hours: float) -> str:
    """`maintenance.py --all`: one before/after health table for every pipeline table, then the calls that ran."""

    def change(before: object, after: object) -> str:
        return f"{before} -> {after}"

    rows: list[tuple[object, ...]] = []
    for item in results:
        if item.report is None:
            rows.append((item.name, f"skipped: {item.skipped}" if item.skipped else "FAILED", "", "", "", "", "", "",
                         "", ""))
            continue
        b, a = item.report.before, item.report.after
        rows.append((
            item.name, "maintained", item.optimize_kind, change(b.live_files, a.live_files),
            change(b.files_on_disk, a.files_on_disk), change(human_bytes(b.total_bytes), human_bytes(a.total_bytes)),
            f"{a.rows:,}", change(b.score, a.score),
            "" if item.report.vacuumed.files_removed is None else item.report.vacuumed.files_removed,
            f"{item.report.optimize_seconds + item.report.vacuum_seconds:.1f}",
        ))
    kept = {r.report.retain_hours for r in results if r.report is not None} or {retain_hours}
    lines = [format_table(
        ["table", "status", "OPTIMIZE", "live files", "files on disk", "size (live)", "rows", "health score",
         "VACUUM deleted", "seconds"], rows,
        title=f"Health check of every pipeline table: before -> after OPTIMIZE and VACUUM RETAIN "
              f"{', '.join(f'{h:g}' for h in sorted(kept))} HOURS (rows checked equal before and after)",
    )]
    done = [item for item in results if item.report is not None]
    if done:
        lines += ["", "What maintenance did:", *[f"  {maintenance_line(item.name, item.report)}" for item in done
                                                  if item.report is not None]]
    lines += [f"FAILED {item.name} ({shown(item.path)}): {item.error}" for item in results if item.error]
    if retain_hours < RETENTION_HOURS:
        lines.append(f"Note: {retain_hours:g} h retention is for this homework; production keeps at least "
                     f"{RETENTION_HOURS} h (7 days) of time travel.")
    calls = [(item, call) for item in results if item.report is not None for call in item.report.calls]
    if calls:
        lines += ["", "Calls run:", *[f"  {shown_in(call, item.path)}" for item, call in calls]]
    return "\n".join(lines)


def render_daily(report: DailyReport) -> str:
    def pct(value: float | None) -> str:
        return "" if value is None else f"{100 * value:+.2f}%"

    def price(value: float | None) -> str:
        return "" if value is None else f"{value:,.2f}"

    rows = [(r["ticker"], r["trade_date"].isoformat(), price(r["open"]), price(r["high"]), price(r["low"]),
             price(r["close"]), "" if r["volume"] is None else f"{r['volume']:,.0f}", price(r["official_close"]),
             price(r["adj_close"]), pct(r["daily_return"]), pct(r["total_return"]), price(r["sma_20"]),
             pct(r["volatility_20"])) for r in report.latest]
    days = f"{report.first_day} to {report.last_day}" if report.first_day else "no day"
    built = ("every row rebuilt" if report.full else f"{report.rewritten:,} row(s) rewritten"
             + (f", {report.removed:,} removed" if report.removed else "")) if report.version is not None else \
        "already up to date: nothing written"
    lines = [
        format_table(["ticker", "day", "open", "high", "low", "close", "volume", "official close", "adj close",
                      "return", "total return", "sma 20", "volatility 20"],
                     rows, title="Each ticker's last day (regular session through the closing print, as traded; "
                                 "adjusted by stocks_splits)"),
        "",
        f"Table {shown(report.path)}: {built}; version {report.version if report.version is not None else '-'}, "
        f"engine {report.engine}; {report.rows:,} rows, {report.tickers} tickers, {days}; "
        f"{report.splits_known} split(s) and {report.dividends_known} dividend(s) known; {report.seconds:.1f} s",
    ]
    counts = report.checks.counts
    if sum(counts.values()):
        lines.append(f"Checks against the official daily bars: {counts['pass']:,} pass, {counts['warn']:,} warn, "
                     f"{counts['fail']:,} fail")
        lines += [f"  {c.status:<4} {c.ticker} {c.trade_date} {c.check}: {c.message}"
                  for c in report.checks.problems[:PROBLEMS_SHOWN]]
    return "\n".join(lines)


def render_runs(runs: list[RunRecord], path: str) -> str:
    """The last runs, newest first, as `pipeline_runs` has them (this run's own row still says `running`: it is
    replaced as the run ends)."""
    if not runs:
        return f"Last runs ({shown(path)}): none logged yet"
    rows = [(r.started_at.strftime("%Y-%m-%d %H:%M:%S"), r.script, r.status, "" if r.exit_code is None else r.exit_code,
             "" if r.duration_s is None else f"{r.duration_s:.1f}", r.engine or "-", r.calls, r.rate_limited,
             f"{r.waited_s:.1f}", "" if r.rows_written is None else r.rows_written,
             "" if r.table_version is None else r.table_version, r.run_id[:8], (r.message or "")[:60])
            for r in runs]
    return format_table(["started (UTC)", "script", "status", "exit", "seconds", "engine", "calls", "429s", "waited s",
                         "rows", "version", "run", "message"], rows, title=f"Last runs ({shown(path)}, newest first)")


def render_external(report: ExternalReport) -> str:
    registration, pruning = report.registration, report.pruning
    lines = [f"Registered {registration.kind} {registration.name} -> {shown(report.path)}"]
    lines += [f"  {shown_in(statement, report.path)}" for statement in registration.statements]
    if registration.table_type:
        lines.append(f"  catalog says Type: {registration.table_type}")
    if registration.drop_demo:
        demo = registration.drop_demo
        lines += [
            "",
            "What EXTERNAL means (DROP TABLE, then look at the files):",
            f"  before DROP: {demo['rows_before_drop']:,} rows through the name, {demo['files_before_drop']} files",
            f"  after DROP:  name exists = {bool(demo['name_exists_after_drop'])}; the path still holds "
            f"{demo['rows_at_path_after_drop']:,} rows in {demo['files_at_path_after_drop']} files",
            f"  registered again: {demo['rows_after_reregister']:,} rows through the name",
        ]
    lines += ["", f"Daily bars through the name ({registration.name}):", report.daily_table.rstrip(), ""]
    files = "n/a" if pruning.files_read is None else f"{pruning.files_read}"
    lines.append(
        f"Partition pruning: {pruning.ticker} on {pruning.trade_date}: {pruning.rows:,} bars; files read {files} of "
        f"{pruning.files_in_table} in the table"
        + (f"; PartitionFilters {pruning.partition_filters}" if pruning.partition_filters else "")
    )
    return "\n".join(lines)


def _layout_text(partition_columns: list[str], clustering_columns: list[str]) -> str:
    if clustering_columns:
        return f"liquid clustering by ({', '.join(clustering_columns)})"
    return f"partitioned by {', '.join(partition_columns) or 'nothing'}"


def _deleted(files: int | None) -> str:
    # Spark's VACUUM does not say what it deleted: it is counted on disk, which needs a path this process can list.
    return "done (the files it deleted cannot be counted from here)" if files is None else f"deleted {files:,} file(s)"


def reference_lines(report: FixedReport) -> list[str]:
    """One line per reference table: what of the run's tickers it knows, and whether this run changed it."""
    lines = []
    for kind, path in report.references.paths.items():
        if kind not in report.references.known:
            continue
        version = report.references.versions.get(kind)
        lines.append(f"{REFERENCE_NAMES[kind].capitalize()} table {shown(path)}: {report.references.known[kind]:,} "
                     "row(s) of these tickers; "
                     + (f"version {version} written" if version is not None else "unchanged"))
    return lines


# Problems listed one per line at the end of a harvest; beyond this many, a count and the query that lists them.
PROBLEMS_SHOWN = 12


def checks_lines(report: FixedReport) -> list[str]:
    """The quality checks' end summary: counts by status, then the checks that did not pass, one line each."""
    counts = report.checks.counts
    if not sum(counts.values()):
        return []
    lines = [f"Quality checks ({shown(report.checks_path)}): {counts['pass']:,} pass, {counts['warn']:,} warn, "
             f"{counts['fail']:,} fail"]
    for item in report.checks.problems[:PROBLEMS_SHOWN]:
        lines.append(f"  {item.status:<4} {item.ticker} {item.trade_date or '-'} {item.check}: {item.message}")
    hidden = len(report.checks.problems) - PROBLEMS_SHOWN
    if hidden > 0:
        lines.append(f"  ... and {hidden:,} more: SELECT * FROM delta.`{shown(report.checks_path)}` WHERE status != "
                     "'pass'")
    quarantined = sum(t.counts.quarantined for t in report.tickers)
    if quarantined:
        lines.append(f"Quarantined: {quarantined:,} bar(s) broke a bar rule and are in "
                     f"{shown(report.quarantine_path)}, not in the table")
    return lines


# -------------------------------------------------------------------------------------------------------------------
def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> str:
    text_rows = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    numeric = [bool(text_rows) and all(_is_number(r[i]) for r in text_rows)
               for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        padded = (c.rjust(w) if numeric[i] else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  ".join(padded)

    out = [title] if title else []
    out += [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in text_rows]
    return "\n".join(s.rstrip() for s in out)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1e15 else f"{value:.3g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "" if value is None else str(value)


def _is_number(text: str) -> bool:
    return bool(re.fullmatch(r"-?[\d,]+(\.\d+)?[%x s]*", text.strip())) or text.strip() in ("", "-")


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size} B"


def shown(path: str) -> str:
    """A path as a reader can use it: relative to where the command ran when it lies below it (the evidence then
    reads `delta_tables/stocks_fixed`, not one machine's absolute path); anything else as given."""
    local = local_path(path)
    if local is None:
        return path
    try:
        return str(local.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return path


def shown_in(text: str, path: str) -> str:
    """`text` (a call or a statement that ran) with `path` shown as `shown` shows it: the same call, run from here."""
    return text.replace(path, shown(path))


def render_market_daily(report: MarketDailyReport) -> str:
    """The run's end summary: a few lines whatever the number of days (the market is too many tickers to list)."""
    days = report.days
    served = [f"{report.count(how):,} {label}" for how, label in (
        ("fetched", "fetched"), ("landed", "stored from answers an earlier run landed"),
        ("stored", "already stored (no call)"), ("empty", "answered with no bar"), ("refused", "refused by the plan"),
        ("failed", "failed")) if report.count(how)]
    span = f"{days[0].day} to {days[-1].day}" if days else "no day"
    lines = [
        f"Market daily bars, {span}: {len(days):,} trading day(s): {', '.join(served)}",
        f"Table {shown(report.official_path)}: {report.rows:,} row(s) written, {report.tickers:,} tickers over the "
        f"run's days; version {report.version if report.version is not None else '- (nothing written)'}, "
        f"engine {report.engine}",
        f"{report.calls:,} call(s), {report.waited_s:.0f} s waiting on the rate limit; "
        f"{report.quarantined:,} bar(s) quarantined; {report.seconds:.1f} s in all",
    ]
    for reference in report.references:
        state = f"not refreshed ({reference.error})" if reference.error else "refreshed"
        lines.append(f"{reference.kind}: {state}, {reference.date_from} to {reference.date_to}")
    if isinstance(report.derived, MarketReport):
        lines.append(market_derived_line(report.derived))
        if report.derived_early:
            lines.append(f"Derived {report.derived_early} time(s) while the calls waited on the key's window; the "
                         "line above is the last build")
    for day in report.failed[:PROBLEMS_SHOWN]:
        lines.append(f"  failed {day.day}: {day.error}")
    return "\n".join(lines)


def market_derived_line(report: MarketReport) -> str:
    """The derived tables' build in two lines: what it rewrote, and the latest day's breadth."""
    if report.market_version is None and report.breadth_version is None:
        built = "already up to date: nothing written"
    elif report.full:
        built = f"every day derived again ({report.why_full})"
    else:
        built = f"{report.rewritten_days:,} day(s) derived again" + (
            f", {report.removed_days:,} removed" if report.removed_days else "")
    span = f"{report.first_day} to {report.last_day}" if report.first_day else "no day"
    line = (f"Derived {shown(report.market_path)} and {Path(report.breadth_path).name}: {built}; {report.rows:,} "
            f"rows, {report.days:,} days ({span}); {report.seconds:.1f} s")
    latest = report.latest
    if latest:
        highs_lows = (f", new 52-week highs {latest['new_highs']:,} / lows {latest['new_lows']:,}"
                      if latest.get("with_52w_history") else " (no ticker has 52 weeks of history yet)")
        line += (f"\nBreadth {latest['trade_date']}: {latest['advancers']:,} up, {latest['decliners']:,} down, "
                 f"{latest['unchanged']:,} unchanged of {latest['tickers']:,}{highs_lows}")
    return line

"""What the harvesters print: the starter's analysis for the broken table, an end summary for the fixed one."""

from __future__ import annotations

from stockpipe.cli import format_table
from stockpipe.harvest import BrokenReport, FixedReport, TickerFetch


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
        f"Table {report.table_path} (engine {report.engine})",
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


def render_fixed(report: FixedReport) -> str:
    rows = []
    for t in report.tickers:
        rows.append((t.ticker, t.status, t.stats.pages, t.stats.pages_from_landing, t.stats.calls, t.stats.retries,
                     t.stats.http_429, f"{t.stats.waited_s:.1f}", t.bars_landed, t.outside_range, t.duplicates,
                     t.sanity_failures, t.rows_written, t.partitions))
    table = format_table(
        ["ticker", "status", "pages", "reused", "calls", "retries", "429s", "waited s", "bars", "outside range",
         "duplicates", "OHLC fails", "rows", "partitions"],
        rows, title="Summary",
    )
    lines = [table, ""]
    for t in report.tickers:
        if t.status == "FAILED":
            lines.append(f"FAILED {t.ticker}: {t.stats.error} (its partitions were left untouched)")
        elif t.status == "no bars":
            lines.append(f"warning: {t.ticker} has no bars between {report.days[0] if report.days else '-'} and "
                         f"{report.days[-1] if report.days else '-'}")
    if not report.days:
        lines.append("warning: no NYSE trading day in the requested range; nothing to write")
    lines += [
        f"Table {report.table_path}: version {report.table_version}, layout {report.layout}, engine {report.engine}",
        f"Partitions written: {report.partitions_written}, files written: {report.files_written}, "
        f"trading days: {len(report.days)}",
        "Seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in report.seconds.items())
        + f", total {sum(report.seconds.values()):.1f}",
    ]
    return "\n".join(lines)

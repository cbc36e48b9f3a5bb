#!/usr/bin/env python
"""Table maintenance (Part 3): health check, OPTIMIZE, VACUUM, health check again, side by side.

OPTIMIZE compacts by default (--zorder-by for Z-ORDER on columns inside the partitions); VACUUM keeps
--retain-hours of history (0 for this homework; production keeps at least 168). --all maintains every pipeline table
beside --table-path (stocks_fixed, stocks_splits, stocks_dividends, stocks_official_daily, stocks_daily,
pipeline_runs, quality_checks, stocks_quarantine; one not created yet is skipped) and prints one before/after health
table for all of them.

Exit codes: 0 maintained; 1 the row count changed, the path is not a Delta table, or (with --all) a table failed
(the others are still maintained); 2 bad input.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import databricks_utils as du
from stockpipe import cli
from stockpipe.health import maintain_all, run_maintenance, write_chart
from stockpipe.reports import maintenance_line, render_maintenance, render_maintenance_all, render_runs, shown_in
from stockpipe.runlog import Run, last_runs
from stockpipe.storage import open_storage


def build_parser() -> argparse.ArgumentParser:
    """The command line, also what the Databricks bundle's task parameters are checked against."""
    parser = cli.new_parser(__doc__, "each OPTIMIZE and VACUUM as it ends, with its seconds")
    parser.add_argument("--table-path", help=f"Delta table [{cli.default_table('stocks_fixed')}]")
    parser.add_argument("--zorder-by", help="comma-separated columns for Z-ORDER instead of plain compaction (with "
                        "--all: of --table-path only)")
    parser.add_argument("--all", dest="all_tables", action="store_true",
                        help="maintain every pipeline table beside --table-path, not only that one")
    parser.add_argument(
        "--retain-hours", type=float, default=0.0,
        help="VACUUM retention in hours [0]; delta-rs keeps whole hours (1.5 -> 2), and a session that refuses to lift "
        "the safety check keeps 168: the report prints the call that ran",
    )
    parser.add_argument("--json", dest="json_path", help="write the whole report as JSON here (with --all: every "
                        "table's)")
    parser.add_argument("--chart", dest="chart_path", help="write a PNG of file sizes before/after here (of "
                        "--table-path)")
    cli.add_engine_arg(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()

    def body(args: argparse.Namespace, run: Run) -> int:
        path = cli.existing_table_path(args.table_path, du.get_base_path)
        zorder = [c.strip() for c in args.zorder_by.split(",") if c.strip()] if args.zorder_by is not None else []
        if args.retain_hours < 0:
            raise cli.UsageError("--retain-hours must be 0 or more")
        for output in (args.json_path, args.chart_path):
            if output and not Path(output).resolve().parent.is_dir():
                raise cli.UsageError(f"{output}: its folder does not exist")
        run.beside(path)
        _, storage = run.using(open_storage(du.get_spark, args.engine, "maintenance"))
        if args.all_tables:
            results = maintain_all(storage, path, retain_hours=args.retain_hours, zorder_by=zorder)
            report = results[0].report
            run.wrote(files=sum(r.report.optimized.files_added or 0 for r in results if r.report is not None),
                      version=report.after.version if report is not None else None)
            print(render_maintenance_all(results, args.retain_hours))
            json_text = json.dumps({"tables": [{"table": r.name, "path": r.path, "skipped": r.skipped,
                                                "error": r.error, "report": json.loads(r.report.to_json())
                                                if r.report is not None else None} for r in results]}, indent=2)
            errors = [f"{r.name}: {r.error}" for r in results if r.error]
            run.notes = [maintenance_line(r.name, r.report) for r in results if r.report is not None]
        else:
            report = run_maintenance(storage, path, retain_hours=args.retain_hours, zorder_by=zorder)
            run.wrote(files=report.optimized.files_added, version=report.after.version)
            print(render_maintenance(report))
            json_text, errors = report.to_json(), []
            run.notes = [maintenance_line(path.rstrip("/").rpartition("/")[2], report)]
        print("\n" + render_runs(last_runs(storage, run.log_path or ""), run.log_path or ""))
        if args.json_path:
            Path(args.json_path).write_text(shown_in(json_text, path))
            print(f"\nReport written to {args.json_path}")
        if args.chart_path and report is not None:
            write_chart(report, args.chart_path)
            print(f"Chart written to {args.chart_path}")
        return cli.report_errors(errors, run)

    return cli.door(parser, argv, body, "maintenance")


if __name__ == "__main__":
    du.run_as_script(main)

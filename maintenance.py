#!/usr/bin/env python
"""Table maintenance (Part 3): health check, OPTIMIZE, VACUUM, health check again, side by side.

OPTIMIZE compacts by default (--zorder-by for Z-ORDER on columns inside the partitions); VACUUM keeps
--retain-hours of history (0 for this homework; production keeps at least 168). Fails (exit 1) if the row count
changes or the path is not a Delta table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import databricks_utils as du
from stockpipe import cli
from stockpipe.health import run_maintenance, write_chart
from stockpipe.reports import render_maintenance, render_runs, shown_in
from stockpipe.runlog import Run, last_runs
from stockpipe.storage import open_storage


def build_parser() -> argparse.ArgumentParser:
    """The command line, also what the Databricks bundle's task parameters are checked against."""
    parser = cli.new_parser(__doc__)
    parser.add_argument("--table-path", help="Delta table [get_base_path('stocks_fixed')]")
    parser.add_argument("--zorder-by", help="comma-separated columns for Z-ORDER instead of plain compaction")
    parser.add_argument(
        "--retain-hours", type=float, default=0.0,
        help="VACUUM retention in hours [0]; delta-rs keeps whole hours (1.5 -> 2), and a session that refuses to lift "
        "the safety check keeps 168: the report prints the call that ran",
    )
    parser.add_argument("--json", dest="json_path", help="write the whole report as JSON here")
    parser.add_argument("--chart", dest="chart_path", help="write a PNG of file sizes before/after here")
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
        report = run_maintenance(storage, path, retain_hours=args.retain_hours, zorder_by=zorder)
        run.wrote(files=report.optimized.files_added, version=report.after.version)
        print(render_maintenance(report))
        print("\n" + render_runs(last_runs(storage, run.log_path or ""), run.log_path or ""))
        if args.json_path:
            Path(args.json_path).write_text(shown_in(report.to_json(), path))
            print(f"\nReport written to {args.json_path}")
        if args.chart_path:
            write_chart(report, args.chart_path)
            print(f"Chart written to {args.chart_path}")
        return 0

    return cli.door(parser, argv, body, "maintenance")


if __name__ == "__main__":
    du.run_as_script(main)

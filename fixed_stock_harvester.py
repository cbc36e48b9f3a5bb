#!/usr/bin/env python
"""Fixed harvester: all tickers in one idempotent write, partitioned by (ticker, trade_date), with real time columns.

Fetches minute bars from the Massive aggregates API (or the offline sample source), lands every raw page, then
writes one Delta commit that replaces exactly the (ticker, trade_date) partitions it fetched. Every bar is judged by
the bar rules first: one that breaks a rule goes to stocks_quarantine instead; the quality checks of every stored
day go to quality_checks (both beside the table).

Exit codes: 0 everything requested was stored; 1 a ticker failed or a day was refused by the key's plan (all else
is stored), the refetch guard kept stored days back, or a runtime failure (key rejected, API unreachable, no key on
Databricks); 2 bad input (including --layout clustered on an engine that cannot create it, and a sample run into a
table the API filled).
"""

from __future__ import annotations

import argparse

import databricks_utils as du
from stockpipe import cli
from stockpipe.errors import ClusteringUnsupportedError
from stockpipe.harvest import run_fixed
from stockpipe.reports import fixed_errors, render_fixed
from stockpipe.runlog import Run
from stockpipe.storage import open_storage


def build_parser() -> argparse.ArgumentParser:
    """The command line, also what the Databricks bundle's task parameters are checked against."""
    parser = cli.new_parser(__doc__)
    cli.add_harvest_args(parser, "stocks_fixed")
    parser.add_argument(
        "--layout", choices=("partitioned", "clustered"), default="partitioned",
        help="partitioned by (ticker, trade_date), or liquid clustering on them (delta-spark/Databricks only)",
    )
    parser.add_argument("--splits-path", help="the splits table [stocks_splits beside --table-path]")
    parser.add_argument(
        "--allow-shrink", action="store_true",
        help="let an answer replace stored days it has no bars for, or fewer than half their rows (a real "
        "correction); without it such days are kept, recorded as a failed check, and the run exits 1",
    )
    parser.add_argument(
        "--allow-mixed-source", action="store_true",
        help="let a sample run write into a table that holds bars from the API (refused by default: exit 2)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()

    def body(args: argparse.Namespace, run: Run) -> int:
        if args.layout == "clustered" and args.engine == "delta-rs":
            raise ClusteringUnsupportedError("delta-rs")  # known before any call: refused before any call
        cfg = cli.build_config(args, default_table_path=lambda: du.get_base_path("stocks_fixed"),
                               secret=du.get_secret, layout=args.layout)
        run.beside(cfg.table_path)
        run.asked(cfg.tickers, cfg.date_from, cfg.date_to)
        report = run_fixed(cfg, lambda: run.using(open_storage(du.get_spark, args.engine, "fixed_stock_harvester")))
        run.fetched([t.stats for t in report.tickers] + [fetched.stats for fetched in report.references])
        run.wrote(rows=sum(t.rows_written for t in report.tickers), partitions=report.partitions_written,
                  files=report.files_written, version=report.table_version)
        print(render_fixed(report))
        return cli.report_errors(fixed_errors(report), run)

    return cli.door(parser, argv, body, "fixed_stock_harvester")


if __name__ == "__main__":
    du.run_as_script(main)

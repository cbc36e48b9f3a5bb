#!/usr/bin/env python
"""The daily table: one row per (ticker, trade_date) in `stocks_daily`, rebuilt from the minute table and the
splits table beside it in one commit, with no API call.

As traded: the regular session's open, high, low, close, volume and VWAP (09:30 to the exchange's close, 13:00 on
early-close days), pre- and post-market volume, and every bar counted. Split-adjusted: adj_open ... adj_volume, by
every split in stocks_splits executed after the day, and daily_return from consecutive adjusted closes. A rerun
changes no row; a split learned since re-adjusts every day before it.

Exit codes: 0 built; 1 the minute table is not a Delta table, or a runtime failure; 2 bad input.
"""

from __future__ import annotations

import argparse

import databricks_utils as du
from stockpipe import cli
from stockpipe.config import SPLITS_TABLE
from stockpipe.daily import DAILY_TABLE, build_daily
from stockpipe.paths import beside
from stockpipe.reports import render_daily
from stockpipe.runlog import Run
from stockpipe.storage import open_storage


def build_parser() -> argparse.ArgumentParser:
    """The command line, also what the Databricks bundle's task parameters are checked against."""
    parser = cli.new_parser(__doc__)
    parser.add_argument("--table-path", help="the minute table [get_base_path('stocks_fixed')]")
    parser.add_argument("--splits-path", help="the splits table [stocks_splits beside --table-path]")
    parser.add_argument("--daily-path", help="the daily table to build [stocks_daily beside --table-path]")
    cli.add_engine_arg(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()

    def body(args: argparse.Namespace, run: Run) -> int:
        minute_path = cli.existing_table_path(args.table_path, du.get_base_path)
        splits_path = cli.table_path_or_default(args.splits_path, lambda: beside(minute_path, SPLITS_TABLE),
                                                "--splits-path")
        daily_path = cli.table_path_or_default(args.daily_path, lambda: beside(minute_path, DAILY_TABLE),
                                               "--daily-path")
        run.beside(minute_path)
        _, storage = run.using(open_storage(du.get_spark, args.engine, "daily_bars"))
        report = build_daily(storage, minute_path, splits_path, daily_path)
        run.wrote(rows=report.rows, version=report.version)
        print(render_daily(report))
        return 0

    return cli.door(parser, argv, body, "daily_bars")


if __name__ == "__main__":
    du.run_as_script(main)

#!/usr/bin/env python
"""The daily table: one row per (ticker, trade_date) in `stocks_daily`, derived from the tables beside the minute
table (stocks_splits, stocks_dividends, stocks_official_daily), with no API call.

As traded: the regular session's open, high, low, close (the closing print: the bar stamped at the close, 16:00 or
13:00 on early-close days, included), volume and VWAP, pre- and post-market volume, every bar counted. Split-adjusted:
adj_open ... adj_volume. daily_return and total_return (with the day's dividend) are null after a trading day that is
not stored; sma_20, sma_50 and volatility_20 over trading days, null unless the whole window is stored; official_*,
the provider's daily bar, checked against the minutes into quality_checks.

Incremental: only the rows whose inputs changed since the last build (and the 50 trading days their windows reach)
are rewritten; with nothing new, no commit. A split or dividend learned since re-derives that ticker's rows. --full
rebuilds every row.

Exit codes: 0 built (or already up to date); 1 the minute table is not a Delta table, or a runtime failure; 2 bad
input.
"""

from __future__ import annotations

import argparse

import databricks_utils as du
from stockpipe import cli
from stockpipe.config import CHECKS_TABLE, DIVIDENDS_TABLE, OFFICIAL_TABLE, SPLITS_TABLE
from stockpipe.daily import DAILY_TABLE, build_daily
from stockpipe.paths import beside
from stockpipe.reports import render_daily
from stockpipe.runlog import Run
from stockpipe.storage import open_storage


def build_parser() -> argparse.ArgumentParser:
    """The command line, also what the Databricks bundle's task parameters are checked against."""
    parser = cli.new_parser(__doc__, "how many days of which tickers the build rewrites")
    parser.add_argument("--table-path", help=f"the minute table [{cli.default_table('stocks_fixed')}]")
    parser.add_argument("--splits-path", help="the splits table [stocks_splits beside --table-path]")
    parser.add_argument("--daily-path", help="the daily table to build [stocks_daily beside --table-path]")
    parser.add_argument("--full", action="store_true", help="rebuild every row, not only those whose inputs changed")
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
        cli.require_writable(daily_path, "--daily-path")
        run.beside(minute_path)
        _, storage = run.using(open_storage(du.get_spark, args.engine, "daily_bars"))
        report = build_daily(storage, minute_path, splits_path, daily_path,
                             dividends_path=beside(minute_path, DIVIDENDS_TABLE),
                             official_path=beside(minute_path, OFFICIAL_TABLE),
                             checks_path=beside(minute_path, CHECKS_TABLE), full=args.full)
        run.wrote(rows=report.rewritten, version=report.version)
        print(render_daily(report))
        return 0

    return cli.door(parser, argv, body, "daily_bars")


if __name__ == "__main__":
    du.run_as_script(main)

#!/usr/bin/env python
"""The starter harvester, its three bugs kept on purpose (Part 1 of the assignment):

  1. it writes each ticker with mode("overwrite") inside the loop, so only the last ticker survives;
  2. it partitions by (ticker, minute): one directory and one tiny file per bar;
  3. its schema has no date or timestamp column, only epoch milliseconds (timestamp_ms).

Its other faults are fixed because they are not the lesson: the key travels in a header (never the URL), 429s are
waited out, pages are followed, volume is a double. It deletes its own table folder first, like the starter.

Exit codes: 0 written (bugs and all: the table holds the last ticker only); 1 a real failure (the key rejected, the
API unreachable, no ticker fetched); 2 bad input, nothing written.
"""

from __future__ import annotations

import argparse

import databricks_utils as du
from stockpipe import cli
from stockpipe.harvest import run_broken
from stockpipe.reports import render_broken
from stockpipe.runlog import Run
from stockpipe.storage import open_storage


def build_parser() -> argparse.ArgumentParser:
    """The command line, also what the Databricks bundle's task parameters are checked against."""
    parser = cli.new_parser(__doc__, "every API call and its answer (never the key), each ticker's overwrite")
    cli.add_harvest_args(parser, "stocks_raw")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()

    def body(args: argparse.Namespace, run: Run) -> int:
        cfg = cli.build_config(args, default_table_path=lambda: du.get_base_path("stocks_raw"), secret=du.get_secret)
        run.beside(cfg.table_path)
        run.asked(cfg.tickers, cfg.date_from, cfg.date_to)
        report = run_broken(cfg, lambda: run.using(open_storage(du.get_spark, args.engine, "broken_stock_harvester")),
                            du.cleanup_path)
        run.fetched(item.stats for item in report.fetched.values())
        run.wrote(rows=report.total_rows, partitions=report.live_partitions, files=report.files_on_disk)
        print(render_broken(report))
        return 0

    return cli.door(parser, argv, body, "broken_stock_harvester")


if __name__ == "__main__":
    du.run_as_script(main)

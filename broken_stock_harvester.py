#!/usr/bin/env python
"""The starter harvester, its three bugs kept on purpose (Part 1 of the assignment):

  1. it writes each ticker with mode("overwrite") inside the loop, so only the last ticker survives;
  2. it partitions by (ticker, minute): one directory and one tiny file per bar;
  3. its schema has no date or timestamp column, only epoch milliseconds (timestamp_ms).

Its other faults are fixed because they are not the lesson: the key travels in a header (never the URL), 429s are
waited out, pages are followed, volume is a double. It deletes its own table folder first, like the starter.
"""

from __future__ import annotations

import argparse

import databricks_utils as du
from stockpipe import cli
from stockpipe.harvest import run_broken
from stockpipe.reports import render_broken
from stockpipe.storage import open_storage


def main(argv: list[str] | None = None) -> int:
    parser = cli.new_parser(__doc__)
    cli.add_harvest_args(parser, "stocks_raw")

    def body(args: argparse.Namespace) -> int:
        cfg = cli.build_config(args, default_table_path=lambda: du.get_base_path("stocks_raw"), secret=du.get_secret)
        report = run_broken(cfg, lambda: open_storage(du.get_spark, args.engine, "broken_stock_harvester"),
                            du.cleanup_path)
        print(render_broken(report))
        return 0

    return cli.door(parser, argv, body)


if __name__ == "__main__":
    du.run_as_script(main)

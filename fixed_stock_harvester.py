#!/usr/bin/env python
"""Fixed harvester: all tickers in one idempotent write, partitioned by (ticker, trade_date), with real time columns.

Fetches minute bars from the Massive aggregates API (or the offline sample source), lands every raw page, then
writes one Delta commit that replaces exactly the (ticker, trade_date) partitions it fetched. With --source
flatfiles it lands the provider's daily files instead (a day of every ticker a file: --universe market stores them
all) and replaces the days it stored. Every bar is judged by the bar rules first: one that breaks a rule goes to
stocks_quarantine instead; the quality checks of every stored day go to quality_checks, and the splits, dividends
and official daily bars to their tables (all beside the table). The run's row in pipeline_runs is written as it
starts (status running) and replaced as it ends, with one outcome per ticker.

Exit codes:
  0  everything asked was stored, or what is missing was refused by the key's plan (the free tier refuses the
     current day) or is the latest day's flat file, not published yet: status partial, one warning line naming the
     days; --strict makes that exit 1
  1  a real failure: key rejected, API unreachable, a ticker's retries exhausted, an older day's flat file missing,
     no key on Databricks, the refetch guard kept stored days back (what could be stored is stored)
  2  bad input (including --layout clustered on an engine that cannot create it, and a sample run into a table the
     API filled)
"""

from __future__ import annotations

import argparse

import databricks_utils as du
from stockpipe import cli
from stockpipe.errors import ClusteringUnsupportedError
from stockpipe.harvest import run_fixed, run_flatfiles
from stockpipe.layout import LAYOUTS
from stockpipe.reports import render_fixed
from stockpipe.runlog import Run
from stockpipe.storage import open_storage


def build_parser() -> argparse.ArgumentParser:
    """The command line, also what the Databricks bundle's task parameters are checked against."""
    parser = cli.new_parser(__doc__, "every API call and its answer (never the key)")
    cli.add_harvest_args(parser, "stocks_fixed", flatfiles=True)
    parser.add_argument(
        "--layout", choices=tuple(LAYOUTS), default="partitioned",
        help="partitioned by (ticker, trade_date); clustered: liquid clustering on them (delta-spark/Databricks "
        "only); by-date: partitioned by trade_date, each file sorted by ticker, for the whole market [partitioned]",
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
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when the key's plan refused a day (default: exit 0 with a warning)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()

    def body(args: argparse.Namespace, run: Run) -> int:
        if args.layout == "clustered" and args.engine == "delta-rs":
            raise ClusteringUnsupportedError("delta-rs")  # known before any call: refused before any call
        cfg = cli.build_config(args, default_table_path=lambda: du.get_base_path("stocks_fixed"),
                               secret=du.get_secret, layout=LAYOUTS[args.layout])
        run.asked(cfg.tickers or ("market",), cfg.date_from, cfg.date_to)
        cli.mask_secrets(run, cfg)
        run.beside(cfg.table_path)
        harvest = run_flatfiles if cfg.source == "flatfiles" else run_fixed
        report = harvest(cfg, lambda: run.using(open_storage(du.get_spark, args.engine, "fixed_stock_harvester")))
        run.fetched([t.stats for t in report.tickers] + [fetched.stats for fetched in report.fetched_references])
        run.wrote(rows=report.rows_written, partitions=report.partitions_written, files=report.written.files,
                  version=report.written.version)
        run.outcomes(report.outcomes())
        run.notes = report.notes()  # what it left to a later run: the run's message when it has no error or warning
        print(render_fixed(report))
        return cli.report_errors(report.errors(), run, warnings=report.warnings(), strict=args.strict)

    return cli.door(parser, argv, body, "fixed_stock_harvester")


if __name__ == "__main__":
    du.run_as_script(main)

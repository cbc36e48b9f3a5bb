#!/usr/bin/env python
"""Fixed harvester: all tickers in one idempotent write, partitioned by (ticker, trade_date), with real time columns.

Fetches minute bars from the Massive aggregates API (or the offline sample source), lands every raw page, then
writes one Delta commit that replaces exactly the (ticker, trade_date) partitions it fetched.

Exit codes: 0 everything requested was stored; 1 a ticker failed or a day was refused by the key's plan (all else
is stored), or a runtime failure (key rejected, API unreachable); 2 bad input.
"""

from __future__ import annotations

import sys

import databricks_utils as du
from stockpipe import cli
from stockpipe.errors import ApiUnreachableError, KeyRejectedError
from stockpipe.harvest import build_config, run_fixed
from stockpipe.reports import render_fixed
from stockpipe.storage import open_storage


def main(argv: list[str] | None = None) -> int:
    parser = cli.new_parser(__doc__)
    cli.add_harvest_args(parser, "stocks_fixed")
    parser.add_argument(
        "--layout", choices=("partitioned", "clustered"), default="partitioned",
        help="partitioned by (ticker, trade_date), or liquid clustering on them (delta-spark/Databricks only)",
    )

    def body() -> int:
        args = parser.parse_args(argv)
        cli.setup_logging(args.verbose)
        if args.layout == "clustered" and args.engine == "delta-rs":
            raise cli.UsageError("--layout clustered needs liquid clustering, which delta-rs cannot create: use "
                                 "--engine spark (delta-spark 3.2+ or Databricks) or --layout partitioned")
        cfg = build_config(args, default_table_path=lambda: du.get_base_path("stocks_fixed"),
                           secret=du.get_secret, layout=args.layout)
        def spark_factory():
            return open_storage(du.get_spark, args.engine, "fixed_stock_harvester")

        try:
            report = run_fixed(cfg, spark_factory)
        except (KeyRejectedError, ApiUnreachableError) as exc:
            stopped = getattr(exc, "report", None)
            if stopped is not None:  # the per-ticker summary still says what each ticker cost
                print(render_fixed(stopped))
            raise
        print(render_fixed(report))
        if report.failed:
            names = ", ".join(t.ticker for t in report.failed)
            print(f"error: {len(report.failed)} ticker(s) failed: {names}", file=sys.stderr)
            return 1
        if report.partial:
            refused = sorted({day for t in report.partial for day in t.not_in_plan})
            print(f"error: not everything requested was stored: your plan refused {', '.join(map(str, refused))} "
                  f"for {len(report.partial)} ticker(s); the earlier days are stored", file=sys.stderr)
            return 1
        return 0

    return cli.run(body)


if __name__ == "__main__":
    du.run_as_script(main)

#!/usr/bin/env python
"""External table (Part 4): make the fixed table queryable by name, then query it through that name only.

On Databricks: CREATE SCHEMA / CREATE TABLE ... USING DELTA LOCATION in Unity Catalog. Locally with delta-spark: a
real external table in Spark's persistent catalog, with the DROP TABLE demonstration (the name goes, the files
stay). Locally with delta-rs: the assignment's temporary view.

Exit codes: 0 registered and queried through the name (Unity Catalog refusing the location included: a warning,
then the temporary view); 1 the table path is not a Delta table, or a runtime failure; 2 bad input (a name that is
not an identifier).
"""

from __future__ import annotations

import argparse

import databricks_utils as du
from stockpipe import cli
from stockpipe.external import ExternalOptions, identifier, register_and_query
from stockpipe.reports import render_external
from stockpipe.runlog import Run
from stockpipe.storage import open_storage


def build_parser() -> argparse.ArgumentParser:
    """The command line, also what the Databricks bundle's task parameters are checked against."""
    parser = cli.new_parser(__doc__, "each SQL statement as it runs")
    parser.add_argument("--table-path", help=f"the fixed Delta table [{cli.default_table('stocks_fixed')}]")
    parser.add_argument("--catalog", default="main", help="Unity Catalog catalog (Databricks) [main]")
    parser.add_argument("--schema", default="dataexpert", help="schema (database) for the table [dataexpert]")
    parser.add_argument("--name", default="stocks_external", help="table or view name [stocks_external]")
    parser.add_argument("--location", help="external location of the table on Databricks [the table path]")
    parser.add_argument("--ticker", help="ticker for the partition-pruning query [the first in the table]")
    parser.add_argument("--day", help="YYYY-MM-DD for the partition-pruning query [the first in the table]")
    parser.add_argument("--no-drop-demo", action="store_true", help="skip the DROP TABLE demonstration (local)")
    cli.add_engine_arg(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()

    def body(args: argparse.Namespace, run: Run) -> int:
        path = cli.existing_table_path(args.table_path, du.get_base_path)
        for flag, value in (("--catalog", args.catalog), ("--schema", args.schema), ("--name", args.name)):
            identifier(value, flag)
        ticker = cli.parse_tickers(args.ticker)[0] if args.ticker is not None else None
        day = cli.parse_date(args.day, "--day").isoformat() if args.day is not None else None
        # Locally, the persistent catalog (Derby) lives beside the tables, so the name survives between runs.
        warehouse = None if du.is_databricks() else du.get_base_path("catalog")
        run.beside(path)
        spark, storage = run.using(open_storage(
            lambda name, **kw: du.get_spark(name, warehouse=warehouse, **kw), args.engine, "external_table"
        ))
        options = ExternalOptions(path, du.is_databricks(), catalog=args.catalog, schema=args.schema, name=args.name,
                                  location=args.location, ticker=ticker, day=day,
                                  demonstrate_drop=not args.no_drop_demo)
        report = register_and_query(spark, storage, options)
        print(render_external(report))
        return 0

    return cli.door(parser, argv, body, "external_table")


if __name__ == "__main__":
    du.run_as_script(main)

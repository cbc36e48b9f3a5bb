#!/usr/bin/env python
"""External table (Part 4): make the fixed table queryable by name, then query it through that name only.

On Databricks: CREATE SCHEMA / CREATE TABLE ... USING DELTA LOCATION in Unity Catalog. Locally with delta-spark: a
real external table in Spark's persistent catalog, with the DROP TABLE demonstration (the name goes, the files
stay). Locally with delta-rs: the assignment's temporary view.
"""

from __future__ import annotations

import databricks_utils as du
from stockpipe import cli
from stockpipe.compat import show_string
from stockpipe.external import (
    DAILY_QUERY,
    pruning_demo,
    register_local_catalog,
    register_temp_view,
    register_unity_catalog,
)
from stockpipe.reports import render_external
from stockpipe.storage import open_storage


def main(argv: list[str] | None = None) -> int:
    parser = cli.new_parser(__doc__)
    parser.add_argument("--table-path", help="the fixed Delta table [get_base_path('stocks_fixed')]")
    parser.add_argument("--catalog", default="main", help="Unity Catalog catalog (Databricks) [main]")
    parser.add_argument("--schema", default="dataexpert", help="schema (database) for the table [dataexpert]")
    parser.add_argument("--name", default="stocks_external", help="table or view name [stocks_external]")
    parser.add_argument("--location", help="external location of the table on Databricks [the table path]")
    parser.add_argument("--ticker", help="ticker for the partition-pruning query [the first in the table]")
    parser.add_argument("--day", help="YYYY-MM-DD for the partition-pruning query [the first in the table]")
    parser.add_argument("--no-drop-demo", action="store_true", help="skip the DROP TABLE demonstration (local)")
    cli.add_engine_arg(parser)

    def body() -> int:
        args = parser.parse_args(argv)
        cli.setup_logging(args.verbose)
        path = cli.existing_table_path(args.table_path, du.get_base_path)
        location = args.location or path
        for flag, value in (("--catalog", args.catalog), ("--schema", args.schema), ("--name", args.name)):
            from stockpipe.external import identifier

            identifier(value, flag)
        if args.ticker is not None:
            args.ticker = cli.parse_tickers(args.ticker)[0]
        if args.day is not None:
            cli.parse_date(args.day, "--day")
        warehouse = None if du.is_databricks() else du.get_base_path("catalog")
        spark, storage = open_storage(
            lambda name, **kw: du.get_spark(name, warehouse=warehouse, **kw), args.engine, "external_table"
        )
        storage.require_delta(path)
        if du.is_databricks():
            registration = register_unity_catalog(spark, storage, args.catalog, args.schema, args.name, location)
        elif storage.supports_catalog_tables:
            registration = register_local_catalog(spark, storage, args.schema, args.name, path,
                                                  demonstrate_drop=not args.no_drop_demo)
        else:
            registration = register_temp_view(storage, args.name, path)
        daily = spark.sql(DAILY_QUERY.format(name=registration.name))
        first = daily.first()
        if first is None:
            raise cli.PipelineError(f"{registration.name} is empty: run the fixed harvester first")
        ticker = args.ticker or first["ticker"]
        day = args.day or first["trade_date"].isoformat()
        pruning = pruning_demo(spark, registration.name, ticker, day, storage.detail(path).num_files)
        print(render_external(registration, show_string(daily, 10_000, truncate=False), pruning, path))
        return 0

    return cli.run(body)


if __name__ == "__main__":
    du.run_as_script(main)

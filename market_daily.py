#!/usr/bin/env python
"""The whole market's official daily bars: every ticker of every trading day into stocks_official_daily (beside
--table-path), one grouped call a day (GET /v2/aggs/grouped/locale/us/market/stocks/{date}, as traded), paced at the
key's rate like the harvester: on the free key (5 calls a minute), a year is 252 calls, about 50 minutes.

A day already stored, or landed by an earlier run (this one's or the harvester's), makes no call; weekends and
holidays make none. Answers land raw first and are stored a batch of days a commit (20, or what landed before a
wait for the key's next window), so a killed run resumes where it stopped. A bar that breaks a rule goes to
stocks_quarantine. Splits and dividends are refreshed for every ticker, then the derived tables are brought up to
date with no call (also during those waits): stocks_market_daily (split-adjusted close, gap-aware daily return,
52-week high and low, per ticker and day) and stocks_market_breadth (advancers, decliners, unchanged, new 52-week
highs and lows, per day). The run is recorded in pipeline_runs.

Exit codes:
  0  every day stored, or what is missing was refused by the key's plan (the free tier refuses the current day):
     status partial, one warning line; --strict makes that exit 1
  1  a real failure: key rejected, API unreachable, a day's retries exhausted (what landed is stored)
  2  bad input
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from collections.abc import Callable

import databricks_utils as du
from stockpipe import cli
from stockpipe.config import OFFICIAL_TABLE, SPLITS_TABLE, HarvestConfig, Source
from stockpipe.errors import MissingKeyError, UsageError
from stockpipe.landing import default_landing_path
from stockpipe.market_calendar import new_york_today
from stockpipe.marketdaily import MarketDailyConfig, default_market_paths, run_market_daily
from stockpipe.massive import DEFAULT_BASE_URL, FREE_TIER_CALLS_PER_MINUTE
from stockpipe.paths import beside
from stockpipe.reports import render_market_daily
from stockpipe.runlog import Run
from stockpipe.sample.source import SampleSource
from stockpipe.storage import DeltaStorage, open_storage


def build_parser() -> argparse.ArgumentParser:
    """The command line, also what the Databricks bundle's task parameters are checked against."""
    parser = cli.new_parser(__doc__, "every API call and its answer (never the key)")
    parser.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD", help="first day [to minus 4 days]")
    parser.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD",
                        help="last day, inclusive [the session before New York today: the free tier refuses today's]")
    parser.add_argument("--source", choices=("api", "sample"),
                        help="api (needs MASSIVE_API_KEY or POLYGON_API_KEY) or sample (offline loopback fake of a "
                             "whole synthetic market) [api when a key is set, else sample]")
    parser.add_argument("--include-otc", action="store_true",
                        help="add over-the-counter names (the endpoint's include_otc=true)")
    parser.add_argument("--base-url", help="API origin [MASSIVE_BASE_URL or https://api.massive.com]")
    parser.add_argument("--calls-per-minute", type=cli.positive_int,
                        help=f"pacing: calls allowed per rolling minute [{FREE_TIER_CALLS_PER_MINUTE} for the API; "
                             "unpaced for sample]")
    parser.add_argument("--table-path",
                        help=f"the minute table; stocks_official_daily and the rest live beside it "
                             f"[{cli.default_table('stocks_fixed')}]")
    parser.add_argument("--landing-path", help="raw answers' landing zone [<table-path>_landing]")
    parser.add_argument("--no-derive", action="store_true",
                        help="store the official bars only; leave stocks_market_daily and stocks_market_breadth")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the key's plan refused a day")
    parser.add_argument("--sample-faults", action="store_true",
                        help="with --source sample: two bars a day break a rule, so the quarantine has some to show")
    parser.add_argument("--secret-scope", help="Databricks secret scope holding the API key")
    parser.add_argument("--secret-key", default="massive_api_key", help="key name in --secret-scope")
    cli.add_engine_arg(parser)
    return parser


def build_config(args: argparse.Namespace, today: dt.date | None = None) -> MarketDailyConfig:
    """Argparse in, config out: everything typed is checked before any network or Spark work."""
    to_text = args.date_to or cli.previous_session(today or new_york_today()).isoformat()
    date_from, date_to = cli.resolve_dates(args.date_from, to_text, today)
    table_path = cli.table_path_or_default(args.table_path, lambda: du.get_base_path("stocks_fixed"))
    landing_path = cli.table_path_or_default(args.landing_path, lambda: default_landing_path(table_path),
                                             "--landing-path")
    for path, flag in ((table_path, "--table-path"), (landing_path, "--landing-path")):
        cli.require_writable(path, flag)
    api_key = cli.api_key_from_env() or ""
    if not api_key and args.secret_scope:
        api_key = du.get_secret(args.secret_scope, args.secret_key) or ""
    if args.sample_faults and args.source == "api":
        raise UsageError("--sample-faults needs --source sample")
    source: Source = "api" if args.source == "api" or (args.source is None and api_key) else "sample"
    if source == "api" and not api_key:
        raise MissingKeyError()
    if source == "sample" and args.source is None and du.is_databricks():
        raise UsageError("no API key found on Databricks: pass --secret-scope, or --source sample to try the sample")
    base_url = args.base_url or os.environ.get("MASSIVE_BASE_URL") or DEFAULT_BASE_URL
    if not base_url.startswith(("http://", "https://")):
        raise UsageError(f"--base-url: {base_url!r} is not an http(s) URL")
    harvest = HarvestConfig(
        tickers=(), date_from=date_from, date_to=date_to, table_path=table_path, landing_path=landing_path,
        source=source, base_url=base_url, api_key=api_key, calls_per_minute=args.calls_per_minute,
        sample_faults=args.sample_faults, today=today,
        endpoint=SampleSource((), args.sample_faults) if source == "sample" else None,
    )
    return MarketDailyConfig(harvest, include_otc=args.include_otc, derive=not args.no_derive)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()

    def body(args: argparse.Namespace, run: Run) -> int:
        cfg = build_config(args, new_york_today())
        hc = cfg.harvest
        run.calls_api(hc.source, hc.base_url, hc.api_key)
        run.asked(("market",), hc.date_from, hc.date_to)
        run.beside(hc.table_path)
        _, storage = run.using(open_storage(du.get_spark, args.engine, "market_daily"))
        with storage.tagged(run.run_id, hc.source):
            report = run_market_daily(cfg, storage, derive=_derive(hc.table_path))
        run.fetched(report.stats)
        run.wrote(rows=report.rows, version=report.version)
        print(render_market_daily(report))
        errors = [f"{d.day}: {d.error}" for d in report.failed]
        if report.stopped is not None:
            errors.insert(0, str(report.stopped))
        warnings = []
        if report.refused:
            warnings.append(f"the key's plan refused {', '.join(map(str, report.refused))} (the free tier refuses "
                            "the current day): a later run fetches it")
        return cli.report_errors(errors[:5], run, warnings=warnings, strict=args.strict)

    return cli.door(parser, argv, body, "market_daily")


def _derive(table_path: str) -> Callable[[DeltaStorage, list[dt.date]], object]:
    """The derived tables' build beside the minute table (stockpipe.breadth): what the run's new days change."""

    def derive(storage: DeltaStorage, changed: list[dt.date]) -> object:
        from stockpipe.breadth import build_market

        market_path, breadth_path = default_market_paths(table_path)
        return build_market(storage, beside(table_path, OFFICIAL_TABLE), beside(table_path, SPLITS_TABLE),
                            market_path, breadth_path, changed_days=changed)

    return derive


if __name__ == "__main__":
    du.run_as_script(main)

"""The starter, its three bugs intact and nothing else wrong: it fetches through the same polite client and landing
zone as the fixed run (gentle with a shared key, offline on the sample) and refuses a foreign folder before any call
or Spark start."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pyspark.sql import SparkSession

from stockpipe.compat import schema_tree, show_string
from stockpipe.config import HarvestConfig
from stockpipe.errors import NoTradingDayError, PipelineError
from stockpipe.fetching import Fetcher, TickerFetch
from stockpipe.harvest.background import SparkFactory
from stockpipe.harvest.bars import landed_bars
from stockpipe.harvest.report import BrokenReport
from stockpipe.landing import LandingZone
from stockpipe.layout import BROKEN
from stockpipe.market_calendar import trading_days
from stockpipe.paths import count_partition_dirs, refuse_foreign_folder
from stockpipe.transforms import to_broken

log = logging.getLogger(__name__)


def run_broken(
    cfg: HarvestConfig, spark_factory: SparkFactory, cleanup: Callable[[SparkSession, str], None]
) -> BrokenReport:
    """The starter: (1) every ticker overwrites the table, (2) partitioned by (ticker, minute), (3) no date or
    timestamp column."""
    refuse_foreign_folder(cfg.table_path)
    started = time.monotonic()
    days = trading_days(cfg.date_from, cfg.date_to)
    if not days:
        raise NoTradingDayError(cfg.date_from, cfg.date_to)
    landing = LandingZone(cfg.landing_path)
    spark, storage = spark_factory()
    cleanup(spark, cfg.table_path)
    fetched: dict[str, TickerFetch] = {}
    with Fetcher(cfg, landing, days) as fetcher:
        for ticker in cfg.tickers:
            fetched[ticker] = one = fetcher.fetch(ticker)
            if one.failed:
                continue
            bars = landed_bars(spark, {ticker: one}).filter("assigned").drop("assigned")
            # BUG 1: mode("overwrite") inside the loop: each ticker replaces the whole table.
            # BUG 2: partitioned by (ticker, minute): one folder and one tiny file per bar.
            # BUG 3: to_broken keeps only timestamp_ms: no date or timestamp column to filter on.
            storage.write(bars.transform(to_broken), cfg.table_path, mode="overwrite",
                          partition_by=BROKEN.partition_by)
            log.info("%s: written with mode=overwrite (replacing every earlier ticker)", ticker)
    if fetcher.stop_error is not None and not storage.is_delta(cfg.table_path):
        raise fetcher.stop_error
    if not storage.is_delta(cfg.table_path):
        raise PipelineError("no ticker could be fetched: nothing was written")
    table = storage.read(cfg.table_path)
    per_ticker = {r["ticker"]: r["count"] for r in table.groupBy("ticker").count().collect()}
    detail = storage.detail(cfg.table_path)
    return BrokenReport(
        table_path=cfg.table_path,
        engine=storage.name,
        fetched=fetched,
        total_rows=sum(per_ticker.values()),
        rows_per_ticker=per_ticker,
        schema_tree=schema_tree(table),
        sample_rows=show_string(table, 5),
        partition_dirs_on_disk=count_partition_dirs(cfg.table_path),
        live_partitions=detail.num_partitions,
        files_on_disk=storage.files_on_disk(cfg.table_path),
        seconds=time.monotonic() - started,
    )

"""The homework's answer: fetch and land every ticker's days, transform, write one commit that replaces exactly the
fetched (ticker, trade_date) days, check, report. Correct, idempotent and polite: a rerun makes no call for finished
days, a rejected key or an unreachable API stops the fetch with what landed before still stored, and Spark starts
while the rate limit holds the calls still to make."""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid

from pyspark.sql import SparkSession

from stockpipe.config import HarvestConfig, transforms_early
from stockpipe.errors import NoTradingDayError
from stockpipe.fetching import FetchResult, fetch_all
from stockpipe.harvest.background import EarlyTransform, SparkFactory, SparkInBackground
from stockpipe.harvest.bars import silver_bars
from stockpipe.harvest.report import FixedReport, Laps, TickerReport
from stockpipe.harvest.steps import (
    check_layout,
    check_source,
    count_tickers,
    guard_refetch,
    transform,
    without_silent_symbols,
    write_days,
    write_references,
)
from stockpipe.landing import LandingZone
from stockpipe.market_calendar import trading_days
from stockpipe.paths import refuse_foreign_folder
from stockpipe.quality.checks import CheckSummary, evaluate, write_checks
from stockpipe.quality.quarantine import quarantined_bars, record_quarantine
from stockpipe.storage import DeltaStorage
from stockpipe.transforms import session_bounds


def run_fixed(cfg: HarvestConfig, spark_factory: SparkFactory) -> FixedReport:
    """Fetch, then store what landed. Nothing is fetched for a folder that is not a Delta table, nor for a range
    without a trading day; Spark is never started when nothing landed."""
    for path in cfg.tables.all():
        refuse_foreign_folder(path)
    days = trading_days(cfg.date_from, cfg.date_to)
    if not days:  # a weekend or a holiday: one line, and no server or Spark to start
        raise NoTradingDayError(cfg.date_from, cfg.date_to)
    lap = Laps()
    landing = LandingZone(cfg.landing_path)
    with contextlib.ExitStack() as run, SparkInBackground(spark_factory) as spark_early:
        # The JVM boots while calls wait on the rate limit; a long run also transforms each ticker as it lands.
        early = EarlyTransform(spark_early, days) if transforms_early(len(cfg.tickers), len(days)) else None
        if early is not None:
            run.callback(early.close)
            if cfg.source == "sample":
                # No key to be refused: the JVM boots beside the first calls, so the first ticker to land is
                # transformed at once. From the API, Spark waits for a first landed ticker (the key works).
                spark_early.start()
        # The reference calls go on while Spark transforms and writes the bars (they wait on the window last).
        result = fetch_all(cfg, landing, days,
                           on_landed=early.on_landed if early is not None else spark_early.on_landed(days, cfg.layout),
                           references_in_background=True, server_process=early is not None)
        spark_early.fetch_done()
        seconds = {"fetch": lap()}
        try:
            to_store = any(t.assignment for t in result.tickers.values() if not t.failed)
            session = spark_early.result() if to_store else None
        except BaseException:
            result.abandon_references()  # Spark could not start: nothing will use them
            raise
        if session is None:  # nothing to write (every ticker failed): Spark was never started
            return FixedReport([TickerReport.of(t) for t in result.tickers.values()], cfg.table_path,
                               "not started", cfg.layout, days, seconds, source=cfg.source, stopped=result.stopped,
                               fetched_references=result.references, refetched_adjusted=result.refetched_adjusted)
        spark, storage = session
        seconds["spark start"] = lap()  # only what the fetch did not hide
        try:
            # Every commit of the run carries its id (the door's, or a fresh one) and where its data came from.
            with storage.tagged(storage.run_id or uuid.uuid4().hex, cfg.source):
                return store(cfg, spark, storage, landing, result, days, early, lap, seconds)
        except BaseException:
            result.abandon_references()
            raise


def store(cfg: HarvestConfig, spark: SparkSession, storage: DeltaStorage, landing: LandingZone, result: FetchResult,
          days: list[dt.date], early: EarlyTransform | None, lap: Laps, seconds: dict[str, float]) -> FixedReport:
    """What landed, stored: refused before any write when the table's layout or source disagree; transformed,
    guarded, written in one commit, its bad bars quarantined, its checks recorded, its reference tables refreshed."""
    tables, fetched = cfg.tables, result.tickers
    check_layout(storage, tables.minutes, cfg.layout)
    check_source(storage, tables.minutes, cfg.source, cfg.allow_mixed_source)
    work = storage.progress
    work.phase("transform", f"reading, checking, de-duplicating and counting the landed bars of {len(fetched)} "
                            "ticker(s)")
    asked = {t: sorted(f.assignment) for t, f in fetched.items() if not f.failed}
    with work.ticking(), contextlib.ExitStack() as kept:
        bars = transform(spark, fetched, days, early, kept)
        guarded = guard_refetch(storage, tables.minutes, bars.stats, asked, cfg.allow_shrink)
        stored_days = without_silent_symbols(guarded.stored_days, bars.stats)
        counts = count_tickers(list(cfg.tickers), bars.stats, stored_days, days, guarded)
        seconds["transform"] = lap()
        work.expected_files = sum(c.partitions for c in counts.values())
        rows = silver_bars(bars.ranked, session_bounds(spark, days))
        written = write_days(storage, rows, stored_days, tables.minutes, cfg.layout,
                             some_kept_back=any(c.kept_back for c in counts.values()))
        seconds["write"] = lap()
        if any(c.quarantined for c in counts.values()):
            record_quarantine(storage, tables.quarantine, quarantined_bars(bars.ranked, storage.run_id, cfg.source))
    results = evaluate(bars.stats, stored_days) + guarded.results
    write_checks(storage, tables.checks, storage.run_id or "", results)
    seconds["checks"] = lap()
    fetched_references = result.wait_for_references()
    references = write_references(spark, storage, landing, tables, cfg.tickers, stored_days)
    seconds["reference data"] = lap()
    return FixedReport(
        [TickerReport.of(fetched[t], counts[t]) for t in cfg.tickers], tables.minutes, storage.name, cfg.layout,
        days, seconds, source=cfg.source, written=written, stopped=result.stopped,
        fetched_references=fetched_references, references=references, refetched_adjusted=result.refetched_adjusted,
        checks_path=tables.checks, quarantine_path=tables.quarantine, checks=CheckSummary.of(results),
        shrinks=guarded.shrinks, shrink_allowed=cfg.allow_shrink, transformed_early=bars.early,
    )

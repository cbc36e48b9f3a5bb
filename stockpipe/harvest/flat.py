"""The whole market from the provider's daily flat files: a day is the unit of work (one file, every ticker), not a
ticker. Land each requested day's file (listed, never guessed; reused when whole with the same ETag; landed again
when republished), read every landed file into bars judged by the same rules as the REST path, keep one bar a minute,
write the days in one commit, quarantine the bad bars, record the checks, and refresh the reference data through the
REST API as the REST path does.

The engine does the work it exists for: on delta-spark, Spark reads the landed files (one task a file, so a cluster
reads a year at once); on delta-rs, Arrow reads them a day at a time and delta-rs writes the table, with no Spark
job at all. Both store the same rows (tests/test_flatfiles.py holds them to it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import shutil
import time
import uuid
from collections.abc import Iterator

import pyarrow as pa
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from stockpipe.compat import conf_for_call, default_parallelism
from stockpipe.config import HarvestConfig, Tables
from stockpipe.errors import NoTradingDayError, PipelineError
from stockpipe.fetching import Fetcher, ReferenceFetch, fetch_references
from stockpipe.flatfiles.arrow import QUARANTINE, SILVER, ingested_us, prepare_day
from stockpipe.flatfiles.land import DayFetch, DayStatus, LandedDays, land_days
from stockpipe.flatfiles.rows import check_header, numpy_rows
from stockpipe.flatfiles.store import FlatFileStore
from stockpipe.flatfiles.tasks import parts_a_file, prepared_frame, side_outputs
from stockpipe.flatfiles.zone import FlatFileZone, LandedFile
from stockpipe.harvest.background import SparkFactory
from stockpipe.harvest.report import FixedReport, Laps, References, TickerCounts, TickerReport, Written
from stockpipe.harvest.steps import check_layout, check_source, write_references
from stockpipe.landing import LandingZone
from stockpipe.market_calendar import new_york_today, trading_days
from stockpipe.massive import FetchStats
from stockpipe.paths import refuse_foreign_folder
from stockpipe.quality.checks import (
    CheckResult,
    CheckSummary,
    DayStats,
    evaluate,
    write_checks,
)
from stockpipe.quality.guard import Shrink, by_day, shrink_results, shrinking_days, stored_rows, stored_rows_of_days
from stockpipe.quality.quarantine import KEY
from stockpipe.reference.corporate_actions import ACTION_KINDS, landed_actions
from stockpipe.storage import DeltaStorage, ReplacePredicate, RowFilter
from stockpipe.transforms import SILVER_SCHEMA

log = logging.getLogger(__name__)

# Above this many tickers a run is the market: its checks keep a row for each ticker-day check that warns or fails
# and one day-level row per check for the rest, and its end summary counts tickers by status.
MANY_TICKERS = 50
# Across the market, completeness is judged for names trading at least this share of the regular session's minutes.
LIQUID_SHARE = 0.9


def run_flatfiles(cfg: HarvestConfig, spark_factory: SparkFactory) -> FixedReport:
    """Land the days' files, then store them (see the module's docstring)."""
    assert cfg.flatfiles is not None, "a flat-file run is configured with its endpoint (cli.build_config)"
    for path in cfg.tables.all():
        refuse_foreign_folder(path)
    days = trading_days(cfg.date_from, cfg.date_to)
    if not days:
        raise NoTradingDayError(cfg.date_from, cfg.date_to)
    lap = Laps()
    zone = FlatFileZone(cfg.landing_path)
    today = cfg.today or new_york_today()
    with cfg.flatfiles.serve() as (url, credentials):
        store = FlatFileStore(url, credentials)
        landed = land_days(store, zone, days, today, refetch=cfg.refetch, on_day=_said)
    seconds = {"fetch": lap()}
    files = landed.files()
    if not files:
        return _unstored(cfg, days, landed, seconds)
    spark, storage = spark_factory()
    seconds["spark start"] = lap()
    with storage.tagged(storage.run_id or uuid.uuid4().hex, cfg.flatfiles.name):
        return _store(cfg, spark, storage, files, landed, days, lap, seconds)


def _said(fetched: DayFetch) -> None:
    if fetched.status in (DayStatus.LANDED, DayStatus.RELANDED):
        log.info("%s: %s (%.1f MB in %.1f s)", fetched.day, fetched.status, fetched.bytes / 1e6, fetched.seconds)


def _store(cfg: HarvestConfig, spark: SparkSession, storage: DeltaStorage, files: list[LandedFile],
           landed: LandedDays, days: list[dt.date], lap: Laps, seconds: dict[str, float]) -> FixedReport:
    tables = cfg.tables
    check_layout(storage, tables.minutes, cfg.layout)
    check_source(storage, tables.minutes, cfg.flatfiles.name if cfg.flatfiles else cfg.source, cfg.allow_mixed_source)
    for file in files:
        check_header(file)
    wanted = None if cfg.universe_market else frozenset(cfg.tickers)
    if not cfg.refetch:
        done = _stored_from_these_files(storage, tables.minutes, files, wanted)
        for day in sorted(done):
            log.info("%s: stored from this very file already: not written again", day)
        files = [f for f in files if f.day not in done]
        if not files:
            return FixedReport([], tables.minutes, storage.name, cfg.layout, days, seconds, source=cfg.flatfiles.name
                               if cfg.flatfiles else cfg.source, stopped=landed.stopped, files=landed.days)
    files, shrinks, shrink_checks = _guard_refetch(storage, tables.minutes, files, wanted, cfg)
    if not files:  # every landed day would have shrunk a stored one: nothing is written
        write_checks(storage, tables.checks, storage.run_id or "", shrink_checks)
        return FixedReport([], tables.minutes, storage.name, cfg.layout, days, seconds, source=cfg.flatfiles.name
                           if cfg.flatfiles else cfg.source, stopped=landed.stopped, checks_path=tables.checks,
                           checks=CheckSummary.of(shrink_checks), shrinks=shrinks, shrink_allowed=cfg.allow_shrink,
                           files=landed.days)
    stored_days = [f.day for f in files]
    # The whole of each landed day is replaced (every ticker of it, or every listed ticker of it).
    replace = (ReplacePredicate.of(trade_date=stored_days) if wanted is None
               else ReplacePredicate.of(ticker=sorted(wanted), trade_date=stored_days))
    storage.create_if_missing(tables.minutes, SILVER_SCHEMA, partition_by=cfg.layout.partition_by,
                              cluster_by=cfg.layout.cluster_by)
    if storage.name == "delta-rs":
        stats, written, quarantined = _store_with_arrow(storage, files, wanted, replace, cfg, tables)
    else:
        stats, written, quarantined = _store_with_spark(spark, storage, files, wanted, replace, cfg, tables, days)
    seconds["transform and write"] = lap()
    tickers = sorted({s.ticker for s in stats if s.ticker} | (set(wanted) if wanted else set()))
    by_ticker = {t: [d for d in stored_days] for t in tickers}
    results = _checks(evaluate(stats, by_ticker), len(tickers)) + shrink_checks
    write_checks(storage, tables.checks, storage.run_id or "", results)
    seconds["checks"] = lap()
    fetched_references, references = _references(cfg, spark, storage, tables, tickers, by_ticker, days)
    seconds["reference data"] = lap()
    counts = _counts(tickers, stats, set(stored_days))
    reports = [TickerReport(t, FetchStats(t), counts=counts[t]) for t in tickers]
    return FixedReport(reports, tables.minutes, storage.name, cfg.layout, days, seconds,
                       source=cfg.flatfiles.name if cfg.flatfiles else cfg.source, written=written,
                       stopped=landed.stopped, fetched_references=fetched_references, references=references,
                       checks_path=tables.checks, quarantine_path=tables.quarantine,
                       checks=CheckSummary.of(results), shrinks=shrinks, shrink_allowed=cfg.allow_shrink,
                       files=landed.days)


def _stored_from_these_files(storage: DeltaStorage, path: str, files: list[LandedFile],
                             wanted: frozenset[str] | None) -> set[dt.date]:
    """The days whose stored rows all came from the landed file of that day (their ingested_at is its landing
    time): a nightly run's window reaches back a few days to heal a missed night, and rewriting a market day it
    already holds would cost as much as the new one. A listed run's day counts only when every listed ticker is
    there from that file (a ticker the file lacks keeps its day in the run: a few rows, cheap to write again)."""
    if not storage.is_delta(path):
        return set()
    where = (RowFilter.of(trade_date=[f.day for f in files]) if wanted is None
             else RowFilter.of(ticker=sorted(wanted), trade_date=[f.day for f in files]))
    found = storage.count_by(path, ("ticker", "trade_date", "ingested_at") if wanted else ("trade_date", "ingested_at"),
                             where).to_pylist()
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    sources: dict[dt.date, set[int]] = {}
    tickers: dict[dt.date, set[str]] = {}
    for row in found:
        stamp = row["ingested_at"]
        stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)
        sources.setdefault(row["trade_date"], set()).add((stamp - epoch) // dt.timedelta(microseconds=1))
        if wanted:
            tickers.setdefault(row["trade_date"], set()).add(row["ticker"])
    return {f.day for f in files if sources.get(f.day) == {ingested_us(f)}
            and (wanted is None or tickers.get(f.day, set()) >= wanted)}


def _guard_refetch(storage: DeltaStorage, path: str, files: list[LandedFile], wanted: frozenset[str] | None,
                   cfg: HarvestConfig) -> tuple[list[LandedFile], list[Shrink], list[CheckResult]]:
    """The refetch guard of the REST path, a day being the unit here: a landed day that would replace stored rows
    with fewer than half of them (a file cut short, a republication gone wrong) is kept as stored, unless
    --allow-shrink. Listed tickers are judged a (ticker, day) each, and one shrinking keeps its whole day; the market
    is judged a day at a time, since tickers come and go from it. Only a day already stored is prepared twice."""
    days = [f.day for f in files]
    stored = (stored_rows(storage, path, {t: days for t in wanted}) if wanted is not None
              else stored_rows_of_days(storage, path, days))
    if not stored:
        return files, [], []
    stored_on = {day for _, day in stored}
    answered: dict[tuple[str, dt.date], int] = {}
    for file in files:
        if file.day in stored_on:
            prepared = prepare_day(numpy_rows(file, wanted), None, file.key)
            answered.update({(s.ticker, s.trade_date): s.rows for s in prepared.stats if s.trade_date == file.day})
    if wanted is None:
        stored, answered = by_day(stored), by_day(answered)
    shrinks = shrinking_days(stored, answered)
    for shrink in shrinks:
        log.warning("%s", shrink.line(replaced=cfg.allow_shrink))
    kept_back = set() if cfg.allow_shrink else {s.trade_date for s in shrinks}
    return ([f for f in files if f.day not in kept_back], shrinks,
            shrink_results(stored, answered, shrinks, cfg.allow_shrink))


def _unstored(cfg: HarvestConfig, days: list[dt.date], landed: LandedDays, seconds: dict[str, float]) -> FixedReport:
    return FixedReport([], cfg.table_path, "not started", cfg.layout, days, seconds,
                       source=cfg.flatfiles.name if cfg.flatfiles else cfg.source, stopped=landed.stopped,
                       files=landed.days)


# -- delta-rs: Arrow reads the files, delta-rs writes ----------------------------------------------------------------
def _store_with_arrow(storage: DeltaStorage, files: list[LandedFile], wanted: frozenset[str] | None,
                      replace: ReplacePredicate, cfg: HarvestConfig, tables: Tables
                      ) -> tuple[list[DayStats], Written, int]:
    """A day at a time: read, judged, ranked and counted in NumPy, its rows handed to delta-rs as it goes, so the
    whole range is one commit and memory holds one day."""
    stats: list[DayStats] = []
    bad: list[pa.Table] = []

    def batches() -> Iterator[pa.RecordBatch]:
        for file in sorted(files, key=lambda f: f.day):
            started = time.monotonic()
            day = prepare_day(numpy_rows(file, wanted), storage.run_id, cfg.flatfiles.name if cfg.flatfiles
                              else cfg.source)
            stats.extend(day.stats)
            if day.quarantine.num_rows:
                bad.append(day.quarantine)
            log.info("%s: %s bars judged, %s kept (%.1f s)", file.day, f"{sum(s.landed for s in day.stats):,}",
                     f"{day.rows.num_rows:,}", time.monotonic() - started)
            # By ticker then time within the day: each partition of either layout is one run of rows, in file order.
            yield from day.rows.to_batches(max_chunksize=1 << 20)

    version = storage.write_batches(batches(), SILVER, tables.minutes, mode="overwrite",
                                    partition_by=cfg.layout.partition_by, replace=replace)
    files_added = storage.history(tables.minutes, limit=1)[-1].changes.files_added or 0
    quarantined = _record_arrow_quarantine(storage, tables.quarantine, bad)
    return stats, Written(version, files_added), quarantined


def _record_arrow_quarantine(storage: DeltaStorage, path: str, bad: list[pa.Table]) -> int:
    """The bad bars not recorded before (by where they landed and their place there), in one commit."""
    if not bad:
        return 0
    found = pa.concat_tables(bad)
    if storage.is_delta(path):
        known = storage.read_arrow(path, columns=KEY)
        seen = set(zip(known.column("landed_page").to_pylist(), known.column("position").to_pylist(), strict=True))
        keep = [(page, position) not in seen for page, position in
                zip(found.column("landed_page").to_pylist(), found.column("position").to_pylist(), strict=True)]
        found = found.filter(pa.array(keep))
    if found.num_rows:
        storage.write_batches(found.to_batches(), QUARANTINE, path, mode="append")
    return found.num_rows


# -- delta-spark: Spark's tasks read the files -------------------------------------------------------------------
def _store_with_spark(spark: SparkSession, storage: DeltaStorage, files: list[LandedFile],
                      wanted: frozenset[str] | None, replace: ReplacePredicate, cfg: HarvestConfig, tables: Tables,
                      days: list[dt.date]) -> tuple[list[DayStats], Written, int]:
    """A Spark task a landed file prepares it (the same preparation as the delta-rs path's) and hands its rows to
    the write, in one commit; its figures and bad bars wait beside the landed files until the write is done. Each
    task holds one day, its rows by ticker then time: either layout's partitions are already one a task."""


    source = cfg.flatfiles.name if cfg.flatfiles else cfg.source
    side_folder = FlatFileZone(cfg.landing_path).root / "_prepared" / (storage.run_id or uuid.uuid4().hex)
    try:
        rows = prepared_frame(spark, files, wanted, storage.run_id, source, side_folder).select(
            *[F.col(f.name).cast(f.dataType) for f in SILVER_SCHEMA.fields])
        storage.progress.expected_files = len(files) * parts_a_file(len(files), default_parallelism(spark))
        # Each task holds one day: a writer a partition, kept open, instead of Spark sorting a day's rows by the
        # day they all share before writing them (where the session lets the conf be set).
        with conf_for_call(spark, "spark.sql.maxConcurrentOutputFileWriters", "4"):
            version = storage.write(rows, tables.minutes, mode="overwrite", replace=replace, shaped=True,
                                    partition_by=cfg.layout.partition_by, cluster_by=cfg.layout.cluster_by)
        stats, bad = side_outputs(side_folder, files)
    finally:
        shutil.rmtree(side_folder, ignore_errors=True)
    files_added = storage.history(tables.minutes, limit=1)[-1].changes.files_added or 0
    quarantined = _record_arrow_quarantine(storage, tables.quarantine, [bad] if bad.num_rows else [])
    return stats, Written(version, files_added), quarantined


# -- what both engines share after the write ------------------------------------------------------------------------
def _checks(results: list[CheckResult], tickers: int) -> list[CheckResult]:
    """Every check row for a few tickers; for the market, a row for each ticker-day check that warns or fails and,
    for the rest, one row a day and check (ticker empty) that counts the tickers that passed. Across the market,
    most names trade a few dozen minutes a day and many most of the day, not all: completeness judges the names
    that traded at least LIQUID_SHARE of the session (a liquid name's gap is what it looks for) and counts the
    others as passed, not judged."""
    if tickers <= MANY_TICKERS:
        return results
    results = [dataclasses.replace(r, status="pass", message=f"not a liquid name's day: {r.message}; not judged")
               if r.check == "completeness" and r.observed is not None and r.observed < LIQUID_SHARE else r
               for r in results]
    kept = [r for r in results if r.status != "pass"]
    passed: dict[tuple[dt.date | None, str], int] = {}
    for r in results:
        if r.status == "pass":
            passed[(r.trade_date, r.check)] = passed.get((r.trade_date, r.check), 0) + 1
    kept += [CheckResult("", day, check, "pass", float(count), None, f"{count:,} ticker(s) passed")
             for (day, check), count in sorted(passed.items(), key=lambda kv: (str(kv[0][0]), kv[0][1]))]
    return kept


def _counts(tickers: list[str], stats: list[DayStats], stored: set[dt.date]) -> dict[str, TickerCounts]:
    by_ticker: dict[str, list[DayStats]] = {t: [] for t in tickers}
    for figures in stats:
        by_ticker.setdefault(figures.ticker, []).append(figures)
    return {t: TickerCounts.of(mine, stored, stored) for t, mine in by_ticker.items()}


def _references(cfg: HarvestConfig, spark: SparkSession, storage: DeltaStorage, tables: Tables, tickers: list[str],
                stored: dict[str, list[dt.date]], days: list[dt.date]) -> tuple[list[ReferenceFetch], References]:
    """Splits and dividends (two lists for the whole market) and, for a few tickers, their official daily bars,
    through the REST API as the REST path fetches them; nothing without an API to call (flat-file credentials alone),
    and said so. The whole market's official bars are market_daily.py's: one call a day."""
    if cfg.endpoint is None and not cfg.api_key:
        log.warning("reference data not refreshed: no API key (MASSIVE_API_KEY) for the splits, dividends and "
                    "official daily bars")
        return [], References()
    landing = LandingZone(cfg.landing_path)
    few = len(tickers) <= MANY_TICKERS
    with Fetcher(cfg, landing, days) as fetcher:
        fetched = fetch_references(fetcher, cfg, stored if few else {})
    try:
        # Across the market, the tickers the lists name: the others have no action to store, and a predicate naming
        # 11,000 tickers would cost more than the rows it replaces.
        chosen = tuple(tickers) if few else tuple(sorted(
            {action.ticker for kind in ACTION_KINDS for action in landed_actions(landing, kind, tickers)}))
        references = write_references(spark, storage, landing, tables, chosen, stored if few else {})
    except PipelineError as exc:
        log.warning("reference data not stored: %s", exc)
        references = References()
    return fetched, references



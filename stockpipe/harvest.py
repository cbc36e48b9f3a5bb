"""The two harvesters: fetch -> land -> transform -> write.

`run_broken` keeps the starter's three bugs and nothing else wrong; `run_fixed` is correct, idempotent and polite.
Both fetch through the same client and landing zone (`fetching`), so both are gentle with a shared key and run
offline; both refuse a foreign folder before any call or Spark start. Spark starts on a worker thread while the
rate limit holds the remaining calls (`SparkInBackground`), and a long run transforms each ticker there as it lands
(`EarlyTransform`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import logging
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import reduce
from typing import TypeVar

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from stockpipe.compat import persisted, schema_tree, show_string
from stockpipe.config import HarvestConfig, Layout, transforms_early
from stockpipe.errors import (
    ClusteringUnsupportedError,
    MixedSourceError,
    NoTradingDayError,
    PipelineError,
    StopError,
)
from stockpipe.fetching import Fetcher, FetchResult, LandedCallback, ReferenceFetch, TickerFetch, fetch_all
from stockpipe.landing import LandingZone, raw_bars_from_pages
from stockpipe.market_calendar import trading_days
from stockpipe.massive import FetchStats
from stockpipe.paths import count_partition_dirs, refuse_foreign_folder
from stockpipe.quality.checks import CheckResult, CheckSummary, DayStats, day_stats, evaluate, write_checks
from stockpipe.quality.guard import Shrink, shrink_results, shrinking_days, stored_rows
from stockpipe.quality.quarantine import quarantined_bars, record_quarantine
from stockpipe.quality.rules import compact, valid, with_reason
from stockpipe.reference.corporate_actions import ACTION_KINDS, landed_actions, store_actions
from stockpipe.reference.official_bars import landed_official, store_official
from stockpipe.session import is_databricks
from stockpipe.storage import AnyOf, DeltaStorage, Replacement, ReplacePredicate
from stockpipe.transforms import (
    BROKEN_PARTITION_COLUMNS,
    PARTITION_COLUMNS,
    session_bounds,
    to_broken,
    to_silver,
    with_market_session,
    with_trade_date,
    with_trade_ts,
)

log = logging.getLogger(__name__)

SparkFactory = Callable[[], tuple[SparkSession, DeltaStorage]]
T = TypeVar("T")
# Runs storing at least this many (ticker, day) partitions (about 285,000 bars) keep their parsed bars on disk between
# the counts and the write; below it, parsing twice is cheaper.
PERSIST_FROM_PARTITIONS = 500
# Worth warming Spark up in the background only when the remaining calls will wait at least this long.
WARM_UP_MIN_WAIT_S = 15.0


class SparkInBackground:
    """The Spark session, started on a worker thread when asked (at most once) so the JVM boots while calls are in
    flight; `result()` waits for it, or starts it then if nobody asked earlier."""

    def __init__(self, factory: SparkFactory) -> None:
        self._factory = factory
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="spark-start")
        self._future: concurrent.futures.Future[tuple[SparkSession, DeltaStorage]] | None = None
        self._lock = threading.Lock()
        self._fetch_done = threading.Event()

    def __enter__(self) -> SparkInBackground:
        return self

    def __exit__(self, *exc: object) -> None:
        self._executor.shutdown(wait=True)  # a start under way finishes, so the session is stopped cleanly at exit

    def start(self, warm_up: Callable[[SparkSession, DeltaStorage], None] | None = None) -> None:
        with self._lock:  # concurrent fetches may land their first tickers at the same moment
            if self._future is None:
                self._future = self._executor.submit(self._start, warm_up)

    def _start(self, warm_up: Callable[[SparkSession, DeltaStorage], None] | None) -> tuple[SparkSession,
                                                                                              DeltaStorage]:
        spark, storage = self._factory()
        if warm_up is not None:
            try:
                warm_up(spark, storage)
            except Exception as exc:  # noqa: BLE001 - a warm-up is an optimisation; the real run reports errors
                log.debug("warm-up skipped: %s", exc)
        return spark, storage

    def result(self) -> tuple[SparkSession, DeltaStorage]:
        self.start()
        assert self._future is not None
        return self._future.result()

    def submit(self, work: Callable[[SparkSession, DeltaStorage], T]) -> concurrent.futures.Future[T]:
        """Run `work` on the session, on the same worker thread, after the start (and after work submitted before)."""
        self.start()
        return self._executor.submit(lambda: work(*self.result()))

    def on_landed(self, days: list[dt.date]) -> LandedCallback:
        """The fetch's callback: Spark starts as soon as a first ticker has landed (the key works and the API
        answers), so a run that can store nothing never starts it. While the remaining calls wait on the window,
        the transform and a write also run once on that ticker (results thrown away), so the real ones after the
        last call run on a warm JVM; only when the ticker itself needed calls, since a rerun served from the
        landing zone has no wait to hide anything in."""

        def landed(item: TickerFetch, wait_ahead_s: float) -> None:
            worth_it = item.stats.calls > 0 and wait_ahead_s >= WARM_UP_MIN_WAIT_S
            self.start((lambda spark, storage: warm_up(spark, storage, item, days, self._fetch_done.is_set))
                       if worth_it else None)

        return landed

    def fetch_done(self) -> None:
        """A warm-up still under way stops at its next step: the real work can start."""
        self._fetch_done.set()


def warm_up(spark: SparkSession, storage: DeltaStorage, item: TickerFetch, days: list[dt.date],
            fetch_done: Callable[[], bool] = lambda: False) -> None:
    """The run's own plan once on one landed ticker: the counting job, and a write of its rows to a scratch table
    that is deleted at once. A fresh JVM runs its first jobs several times slower (class loading, code generation,
    JIT); paid here, while the rate limit holds the remaining calls, it is not paid after the last one. Local only:
    on a cluster the scratch folder would not be the driver's."""
    if is_databricks() or fetch_done():
        return
    ranked = ranked_bars(landed_bars(spark, {item.ticker: item}))
    bounds = session_bounds(spark, days)
    day_stats(ranked, bounds)
    if fetch_done():
        return
    scratch = tempfile.mkdtemp(prefix="stocks-warm-up-")
    try:
        storage.write(silver_bars(ranked, bounds), f"{scratch}/t", mode="overwrite",
                      partition_by=PARTITION_COLUMNS)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def landed_bars(spark: SparkSession, fetched: dict[str, TickerFetch]) -> DataFrame:
    """Every landed bar of the fetched tickers, with trade_ts, trade_date, `assigned` (true when the bar's fetch is
    the one assigned to its day, i.e. the bar is on a requested day and comes from the fetch that holds it) and the
    bar rules' verdict: `reason` (the first rule broken, null for a good bar) and `valid`. Replayed pages pass the
    same rules as fresh ones: a landed page with bad values never crashes a later run."""
    files: list[str] = []
    assignment_rows: list[tuple[str, str, dt.date, bool]] = []
    for ticker, item in fetched.items():
        if item.failed:
            continue
        for fetch in {f.path: f for f in item.assignment.values()}.values():
            files.extend(str(p) for p in fetch.pages())
        assignment_rows.extend((ticker, f.fetch_id, day, True) for day, f in item.assignment.items())
    bars = raw_bars_from_pages(spark, files).transform(with_trade_ts).transform(with_trade_date)
    assignment = spark.createDataFrame(
        assignment_rows, "ticker string, fetch_id string, trade_date date, assigned boolean"
    )
    judged = with_reason(bars.join(F.broadcast(assignment), ["ticker", "fetch_id", "trade_date"], "left")
                         .withColumn("assigned", F.coalesce("assigned", F.lit(False))))
    return compact(judged)


def ranked_bars(marked: DataFrame) -> DataFrame:
    """Landed bars with `_kept`: the one row per (ticker, minute) the table stores, among the valid assigned bars (the
    latest ingest wins; within one answer, the later page, then the later position on it). Both the counts and the
    stored rows come from this one frame.

    Its one shuffle is by (ticker, trade_date), the table's partition key: a minute's duplicates share its day, so
    the de-duplication needs no other, and the partitioned write that follows finds each partition's rows in one
    task, sorted, and needs no shuffle or sort of its own (`shaped=True`)."""
    # The fetch id has done its work once `assigned` is known: every assigned bar of a (ticker, day) comes from the
    # one fetch assigned to that day (the newest landed one covering it), so the fetch id and the ingest time break
    # no tie among them, and the id's ~60 bytes a row stay out of the shuffle. trade_date leads the window's key
    # (the minute fixes the day, so the groups are the same), so its sort also orders rows as the write wants them.
    by_partition = marked.drop("fetch_id").repartition(*PARTITION_COLUMNS)
    one_per_minute = Window.partitionBy(*PARTITION_COLUMNS, "timestamp_ms", "assigned", valid()).orderBy(
        F.col("ingested_at").desc(), F.col("_order").desc())
    return by_partition.withColumn("_kept", F.col("assigned") & valid()
                                   & (F.row_number().over(one_per_minute) == 1))


def silver_bars(ranked: DataFrame, bounds: DataFrame) -> DataFrame:
    """The rows to store: kept bars, with their market session, in the table's schema."""
    return (
        ranked.filter("_kept")
        .transform(lambda df: with_market_session(df, bounds))
        .transform(to_silver)
    )


@dataclass(frozen=True)
class PreparedBars:
    """Some tickers' ranked bars (kept on disk when the session allows) and their per-day figures: what the write,
    the counts, the guard and the checks read."""

    tickers: frozenset[str]
    ranked: DataFrame
    stats: list[DayStats]


def prepare_bars(spark: SparkSession, fetched: dict[str, TickerFetch], days: list[dt.date], keep: bool,
                 kept: contextlib.ExitStack) -> PreparedBars:
    """The transform of the fetched tickers: landed bars judged and ranked, kept on disk (`keep`, until `kept`
    closes), counted per day. Per (ticker, day) throughout, so tickers prepared apart add up to tickers prepared
    together."""
    ranked = ranked_bars(landed_bars(spark, fetched))
    if keep:
        ranked = kept.enter_context(persisted(ranked))
    return PreparedBars(frozenset(fetched), ranked, day_stats(ranked, session_bounds(spark, days)))


class EarlyTransform:
    """A long run's tickers transformed as they land, on Spark's worker thread, while the fetch goes on: the calls
    wait on the rate limit (the API) or on the sample server's own process, so a core is idle during the fetch, and
    after the last call only the tickers landed last are left to transform. Real work, not a warm-up: its results
    are the run's. The tickers landed while a batch runs make the next batch (a batch's plan costs seconds of its
    own). A batch that failed is transformed again after the fetch with the rest; the kept copies live until
    `close`."""

    def __init__(self, spark_early: SparkInBackground, days: list[dt.date]) -> None:
        self._spark = spark_early
        self._days = days
        self._futures: list[concurrent.futures.Future[PreparedBars]] = []
        self._waiting: dict[str, TickerFetch] = {}
        self._lock = threading.Lock()
        self.kept = contextlib.ExitStack()  # entered on the worker thread, closed by the run once it has written

    def on_landed(self, item: TickerFetch, wait_ahead_s: float) -> None:
        if item.failed or not item.assignment:
            return
        with self._lock:
            queued = bool(self._waiting)  # a batch is queued that has not taken its tickers yet: join it
            self._waiting[item.ticker] = item
            if not queued:
                self._futures.append(self._spark.submit(self._next_batch))

    def _next_batch(self, spark: SparkSession, _storage: DeltaStorage) -> PreparedBars:
        with self._lock:
            batch, self._waiting = self._waiting, {}
        return prepare_bars(spark, batch, self._days, True, self.kept)

    def prepared(self) -> list[PreparedBars]:
        """What the early transforms made, once they are all done; a failed one is logged and left out."""
        done = []
        for future in self._futures:
            try:
                done.append(future.result())
            except Exception as exc:  # noqa: BLE001 - the transform after the fetch runs it again and reports
                log.debug("an early transform failed; its tickers are done after the fetch: %s", exc)
        return done

    def close(self) -> None:
        self.kept.close()


# -------------------------------------------------------------------------------------------------------------------
@dataclass
class TickerReport:
    ticker: str
    stats: FetchStats
    not_in_plan: list[dt.date] = field(default_factory=list)
    plan_message: str = ""
    bars_landed: int = 0
    outside_range: int = 0
    duplicates: int = 0
    quarantined: int = 0  # bars that broke a bar rule: in stocks_quarantine, not in the table
    rows_written: int = 0
    partitions: int = 0
    kept_back: list[dt.date] = field(default_factory=list)  # stored days a shrinking answer did not replace

    @property
    def status(self) -> str:
        if self.stats.error:
            return "FAILED"
        if self.not_in_plan:
            return "partial"
        return "ok" if self.rows_written else "no bars"


@dataclass
class FixedReport:
    tickers: list[TickerReport]
    table_path: str
    engine: str
    layout: Layout
    days: list[dt.date]
    seconds: dict[str, float]
    table_version: int | None = None
    files_written: int = 0
    partitions_written: int = 0
    # Why the fetch stopped early (a rejected key, an unreachable API); the tickers fetched before are stored.
    stopped: StopError | None = None
    references: list[ReferenceFetch] = field(default_factory=list)  # splits, dividends, official bars fetched
    reference_paths: dict[str, str] = field(default_factory=dict)  # stocks_splits, stocks_dividends, ... by kind
    reference_known: dict[str, int] = field(default_factory=dict)  # rows of the run's tickers landed, by kind
    reference_versions: dict[str, int | None] = field(default_factory=dict)  # None: the table already matched
    refetched_adjusted: dict[str, int] = field(default_factory=dict)
    source: str = "sample"
    checks_path: str = ""
    quarantine_path: str = ""
    checks: CheckSummary = field(default_factory=CheckSummary)
    shrinks: list[Shrink] = field(default_factory=list)  # stored days a refetch would have shrunk
    transformed_early: int = 0  # tickers transformed while the fetch went on (EarlyTransform)
    shrink_allowed: bool = False

    @property
    def guard_errors(self) -> list[str]:
        """Why the run must exit 1 although it stored what it could: stored days kept back from a shrinking answer."""
        if self.shrink_allowed or not self.shrinks:
            return []
        days = ", ".join(f"{s.ticker} {s.trade_date}" for s in self.shrinks)
        return [f"refetch would shrink {len(self.shrinks)} stored day(s), kept as stored: {days} (check the API's "
                "answer; --allow-shrink replaces them)"]

    @classmethod
    def of_fetch(cls, cfg: HarvestConfig, result: FetchResult, days: list[dt.date], fetch_s: float) -> FixedReport:
        fetched = result.tickers
        tickers = [TickerReport(t, fetched[t].stats, not_in_plan=fetched[t].not_in_plan,
                                plan_message=fetched[t].plan_message) for t in cfg.tickers]
        return cls(tickers, cfg.table_path, "not started", cfg.layout, days, {"fetch": fetch_s},
                   stopped=result.stopped, references=result.references,
                   reference_paths={"splits": cfg.splits_path, "dividends": cfg.dividends_path,
                                    "official_daily": cfg.official_path},
                   refetched_adjusted=result.refetched_adjusted, source=cfg.source, checks_path=cfg.checks_path,
                   quarantine_path=cfg.quarantine_path, shrink_allowed=cfg.allow_shrink)

    @property
    def failed(self) -> list[TickerReport]:
        return [t for t in self.tickers if t.status == "FAILED"]

    @property
    def partial(self) -> list[TickerReport]:
        """Tickers stored without some requested days, because the key's plan refused them."""
        return [t for t in self.tickers if t.status == "partial"]


def run_fixed(cfg: HarvestConfig, spark_factory: SparkFactory) -> FixedReport:
    """The homework's answer: fetch and land every ticker's days, transform, write one commit that replaces exactly
    the fetched (ticker, trade_date) partitions, report. A rejected key or an unreachable API stops the fetch; what
    landed before is still stored and the report says why it stopped."""
    refuse_foreign_folder(cfg.table_path)
    for path in (cfg.splits_path, cfg.dividends_path, cfg.official_path):
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
                           on_landed=early.on_landed if early is not None else spark_early.on_landed(days),
                           references_in_background=True, server_process=early is not None)
        spark_early.fetch_done()
        fetched, report = result.tickers, FixedReport.of_fetch(cfg, result, days, fetch_s=lap())
        try:
            session = spark_early.result() if any(t.assignment for t in fetched.values() if not t.failed) else None
        except BaseException:
            result.abandon_references()  # Spark could not start: nothing will use them
            raise
        if session is None:
            return report  # nothing to write (every ticker failed, or no trading day): Spark was never started
        spark, storage = session
        report.engine = storage.name
        report.seconds["spark start"] = lap()  # only what the fetch did not hide
        # Every commit of the run carries its id (the door's, or a fresh one) and where its data came from.
        try:
            with storage.tagged(storage.run_id or uuid.uuid4().hex, cfg.source):
                store_fetched(report, spark, storage, landing, cfg, result, days, lap, early)
        except BaseException:
            result.abandon_references()
            raise
    return report


def store_fetched(report: FixedReport, spark: SparkSession, storage: DeltaStorage, landing: LandingZone,
                  cfg: HarvestConfig, result: FetchResult, days: list[dt.date], lap: Laps,
                  early: EarlyTransform | None = None) -> None:
    """Transform what landed (the tickers `early` transformed while the fetch went on are taken as they are), check
    it, write it, record the checks and the quarantine, then the reference data."""
    fetched = result.tickers
    check_layout(storage, cfg)
    check_source(storage, cfg)
    work = storage.progress
    work.phase("transform", f"reading, checking, de-duplicating and counting the landed bars of {len(fetched)} "
                            "ticker(s)")
    expected = sum(len(t.assignment) for t in fetched.values() if not t.failed)
    with work.ticking(), contextlib.ExitStack() as kept:
        batches = early.prepared() if early is not None else []
        rest = {t: f for t, f in fetched.items() if not any(t in batch.tickers for batch in batches)}
        report.transformed_early = len(fetched) - len(rest)
        if not batches or any(f.assignment for f in rest.values() if not f.failed):
            # A long run parses its landed pages once for both the counts and the write, kept on disk where the
            # session allows; a short one parses them twice, which costs less than writing them to disk and back.
            batches.append(prepare_bars(spark, rest, days, expected >= PERSIST_FROM_PARTITIONS, kept))
        ranked = reduce(DataFrame.unionByName, [batch.ranked for batch in batches])
        stats = [figures for batch in batches for figures in batch.stats]
        bounds = session_bounds(spark, days)
        stored_days = {t: sorted(f.assignment) for t, f in fetched.items() if not f.failed}
        shrink_checks = guard_refetch(report, storage, cfg, stats, stored_days)
        # A symbol with no bar anywhere in the range is most likely mistyped (the API answers an unknown one with
        # nothing): nothing is written for it, no partition and no check row; the end summary names it once.
        with_bars = {s.ticker for s in stats if s.landed}
        for ticker in stored_days:
            if ticker not in with_bars:
                stored_days[ticker] = []
        record_counts(report, stats, stored_days)
        report.seconds["transform"] = lap()
        work.expected_files = sum(t.partitions for t in report.tickers)
        write_fetched(report, storage, silver_bars(ranked, bounds), stored_days, cfg)
        report.seconds["write"] = lap()
        if any(t.quarantined for t in report.tickers):
            record_quarantine(storage, cfg.quarantine_path, quarantined_bars(ranked, storage.run_id, cfg.source))
    results = evaluate(stats, stored_days) + shrink_checks
    write_checks(storage, cfg.checks_path, storage.run_id or "", results)
    report.checks = CheckSummary.of(results)
    report.seconds["checks"] = lap()
    report.references = result.wait_for_references()
    write_references(report, spark, storage, landing, cfg, stored_days)
    report.seconds["reference data"] = lap()


def check_source(storage: DeltaStorage, cfg: HarvestConfig) -> None:
    """A table filled from the API takes no sample bars unless asked (--allow-mixed-source): sample prices beside
    real ones would look real in every chart and query. The source of each commit is in its user metadata."""
    if cfg.source != "sample" or cfg.allow_mixed_source or not storage.is_delta(cfg.table_path):
        return
    if any(entry.source == "api" for entry in storage.history(cfg.table_path)):
        raise MixedSourceError(cfg.table_path)


def guard_refetch(report: FixedReport, storage: DeltaStorage, cfg: HarvestConfig, stats: list[DayStats],
                  stored_days: dict[str, list[dt.date]]) -> list[CheckResult]:
    """Compare each stored day the run would replace with its new rows (see stockpipe.quality.guard). A shrinking day
    is taken out of `stored_days` (so neither replaced nor written) unless --allow-shrink; its check rows say so."""
    stored = stored_rows(storage, cfg.table_path, stored_days)
    if not stored:
        return []
    answered = {(s.ticker, s.trade_date): s.rows for s in stats if s.trade_date is not None}
    report.shrinks = shrinking_days(stored, answered)
    by_ticker = {t.ticker: t for t in report.tickers}
    for shrink in report.shrinks:
        log.warning("%s", shrink.line(replaced=cfg.allow_shrink))
        if not cfg.allow_shrink:
            stored_days[shrink.ticker].remove(shrink.trade_date)
            by_ticker[shrink.ticker].kept_back.append(shrink.trade_date)
    return shrink_results(stored, answered, report.shrinks, cfg.allow_shrink)


class Laps:
    """Seconds since the previous call (or since creation): one phase of a run per call."""

    def __init__(self) -> None:
        self._last = time.monotonic()

    def __call__(self) -> float:
        now = time.monotonic()
        elapsed, self._last = now - self._last, now
        return elapsed


def record_counts(report: FixedReport, stats: list[DayStats], stored_days: dict[str, list[dt.date]]) -> None:
    """Each ticker's landed, out-of-range, duplicate, quarantined and stored counts, from the per-day figures one
    Spark job made (only the days the run stores count as stored)."""
    requested = set(report.days)
    for item in report.tickers:
        mine = [s for s in stats if s.ticker == item.ticker]
        storing = set(stored_days.get(item.ticker, ()))
        item.bars_landed = sum(s.landed for s in mine)
        item.outside_range = sum(s.landed for s in mine if s.trade_date is not None and s.trade_date not in requested)
        item.quarantined = sum(s.quarantined for s in mine)
        item.duplicates = sum(s.duplicates for s in mine if s.trade_date in storing)
        item.rows_written = sum(s.rows for s in mine if s.trade_date in storing)
        item.partitions = sum(1 for s in mine if s.trade_date in storing and s.rows)
        if item.quarantined:
            log.warning("%s: %d bar(s) broke a bar rule: kept out of the table, recorded in stocks_quarantine",
                        item.ticker, item.quarantined)


def write_references(report: FixedReport, spark: SparkSession, storage: DeltaStorage, landing: LandingZone,
                     cfg: HarvestConfig, stored_days: dict[str, list[dt.date]]) -> None:
    """The run's tickers' splits and dividends (from every window landed so far) and the official daily bars of
    the days it stored (those that have one landed), each into its table beside the bars."""
    for kind in ACTION_KINDS:
        actions = landed_actions(landing, kind, cfg.tickers)
        report.reference_versions[kind.name] = store_actions(spark, storage, report.reference_paths[kind.name], kind,
                                                             cfg.tickers, actions)
        report.reference_known[kind.name] = len(actions)
    official = landed_official(landing.official(), stored_days)
    report.reference_versions["official_daily"] = store_official(spark, storage, cfg.official_path, official,
                                                                 stored_days)
    report.reference_known["official_daily"] = len(official)


def write_fetched(report: FixedReport, storage: DeltaStorage, rows: DataFrame, stored_days: dict[str, list[dt.date]],
                  cfg: HarvestConfig) -> None:
    """One commit replacing exactly the days the run stores (the fetched tickers' requested days, less any the
    refetch guard kept back); the engine refuses any row outside them."""
    replace = replace_predicate(stored_days)
    if replace is None:
        return
    if any(t.kept_back for t in report.tickers):
        rows = rows.filter(replace.column())  # the kept-back days' new rows are not written
    partition_by = PARTITION_COLUMNS if cfg.layout == "partitioned" else ()
    cluster_by = PARTITION_COLUMNS if cfg.layout == "clustered" else ()
    # The rows match the predicate by construction (both come from the assignment); into an existing table the
    # engine still checks each row as it writes, where creating the table would cost a pass over them first.
    storage.create_if_missing(cfg.table_path, rows.schema, partition_by=partition_by, cluster_by=cluster_by)
    report.table_version = storage.write(rows, cfg.table_path, mode="overwrite", replace=replace,
                                         shaped=cfg.layout == "partitioned", partition_by=partition_by,
                                         cluster_by=cluster_by)
    report.files_written = storage.history(cfg.table_path, limit=1)[-1].changes.files_added or 0
    report.partitions_written = sum(t.partitions for t in report.tickers)


def replace_predicate(stored_days: dict[str, list[dt.date]]) -> Replacement | None:
    """Exactly the (ticker, trade_date) partitions this run stored: tickers grouped by the days they hold (they
    differ when the plan refused today for some), so no partition outside them is ever replaced or emptied."""
    groups: dict[tuple[dt.date, ...], list[str]] = {}
    for ticker, ticker_days in stored_days.items():
        if ticker_days:
            groups.setdefault(tuple(sorted(ticker_days)), []).append(ticker)
    predicates = tuple(ReplacePredicate.of(ticker=tickers, trade_date=key) for key, tickers in groups.items())
    if not predicates:
        return None
    return predicates[0] if len(predicates) == 1 else AnyOf(predicates)


def check_layout(storage: DeltaStorage, cfg: HarvestConfig) -> None:
    if cfg.layout == "clustered" and not storage.supports_clustering:
        raise ClusteringUnsupportedError(storage.name)
    if not storage.is_delta(cfg.table_path):
        return
    detail = storage.detail(cfg.table_path)
    wanted = list(PARTITION_COLUMNS) if cfg.layout == "partitioned" else []
    if detail.partition_columns != wanted:
        raise PipelineError(
            f"the table at {cfg.table_path} is partitioned by {detail.partition_columns or 'nothing'}, "
            f"but --layout {cfg.layout} needs {wanted or 'no partitions'}: use another --table-path"
        )


# -------------------------------------------------------------------------------------------------------------------
@dataclass
class BrokenReport:
    table_path: str
    engine: str
    fetched: dict[str, TickerFetch]
    total_rows: int
    rows_per_ticker: dict[str, int]
    schema_tree: str
    sample_rows: str
    partition_dirs_on_disk: int
    live_partitions: int
    files_on_disk: int
    seconds: float


def run_broken(
    cfg: HarvestConfig, spark_factory: SparkFactory, cleanup: Callable[[SparkSession, str], None]
) -> BrokenReport:
    """The starter, its three bugs intact: (1) every ticker overwrites the table, (2) partitioned by
    (ticker, minute), (3) no date or timestamp column."""
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
                          partition_by=BROKEN_PARTITION_COLUMNS)
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

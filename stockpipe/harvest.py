"""The two harvesters: fetch -> land -> transform -> write.

`run_broken` keeps the starter's three bugs and nothing else wrong; `run_fixed` is correct, idempotent and polite.
Both fetch through the same client and landing zone, so both are gentle with a shared key and run offline.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from stockpipe.cli import Progress
from stockpipe.compat import schema_tree, show_string
from stockpipe.errors import (
    ApiUnreachableError,
    EngineUnsupportedError,
    FetchFailedError,
    KeyRejectedError,
    PipelineError,
    PlanRefusedError,
    UsageError,
)
from stockpipe.landing import LandedFetch, LandingZone
from stockpipe.market_calendar import new_york_today, trading_days
from stockpipe.massive import DEFAULT_BASE_URL, ClientConfig, FetchStats, MassiveClient
from stockpipe.sample import FakeMassiveServer
from stockpipe.session import is_databricks
from stockpipe.storage import AnyOf, DeltaStorage, ReplacePredicate
from stockpipe.transforms import (
    BROKEN_PARTITION_COLUMNS,
    PARTITION_COLUMNS,
    drop_duplicate_bars,
    latest_first,
    ohlc_violation,
    raw_bars_from_pages,
    session_bounds,
    to_broken,
    to_silver,
    with_market_session,
    with_trade_date,
    with_trade_ts,
)

log = logging.getLogger(__name__)

Layout = Literal["partitioned", "clustered"]
SparkFactory = Callable[[], tuple[SparkSession, DeltaStorage]]
StopError = KeyRejectedError | ApiUnreachableError
# Worth warming Spark up in the background only when the remaining calls will wait at least this long.
WARM_UP_MIN_WAIT_S = 15.0


@dataclass(frozen=True)
class HarvestConfig:
    tickers: tuple[str, ...]
    date_from: dt.date
    date_to: dt.date
    table_path: str
    landing_path: str
    source: Literal["api", "sample"] = "sample"
    base_url: str = DEFAULT_BASE_URL
    api_key: str = field(default="", repr=False)
    calls_per_minute: int | None = None
    layout: Layout = "partitioned"
    refetch: bool = False
    concurrency: int = 1  # calls in flight at once; every call still goes through the one limiter
    window_seconds: float = 60.0  # the rate limit's rolling window (a minute for Massive; shorter in tests)
    show_progress: bool = True
    today: dt.date | None = None  # New York today; injectable so tests can pin "the current day"
    read_timeout: float = 30.0
    max_attempts: int = 8
    # Injected time for tests (pacing and backoff without real waiting); None means the real clock.
    clock: Callable[[], float] | None = field(default=None, repr=False, compare=False)
    sleep: Callable[[float], None] | None = field(default=None, repr=False, compare=False)


@dataclass
class TickerFetch:
    ticker: str
    stats: FetchStats
    assignment: dict[dt.date, LandedFetch] = field(default_factory=dict)
    # Requested days the key's plan refused (the free tier refuses the current day); the other days were fetched.
    not_in_plan: list[dt.date] = field(default_factory=list)
    plan_message: str = ""

    @property
    def failed(self) -> bool:
        return self.stats.error is not None


LandedCallback = Callable[[TickerFetch, float], None]


@contextlib.contextmanager
def open_client(cfg: HarvestConfig, progress: Progress | None = None) -> Iterator[MassiveClient]:
    """The same client for both sources; the sample source is a loopback server started for this run."""
    on_wait = progress.waiting if progress else None
    sleep = cfg.sleep or (progress.sleep if progress else time.sleep)
    with contextlib.ExitStack() as stack:
        if cfg.source == "sample":
            server = stack.enter_context(FakeMassiveServer())
            base_url, api_key, calls_per_minute = server.base_url, "", cfg.calls_per_minute
        elif not cfg.api_key:
            raise UsageError("--source api needs MASSIVE_API_KEY or POLYGON_API_KEY (or --secret-scope on Databricks)")
        else:
            base_url, api_key, calls_per_minute = cfg.base_url, cfg.api_key, cfg.calls_per_minute or 5
        client = MassiveClient(
            ClientConfig(base_url=base_url, api_key=api_key, calls_per_minute=calls_per_minute,
                         window_seconds=cfg.window_seconds, read_timeout=cfg.read_timeout,
                         max_attempts=cfg.max_attempts),
            clock=cfg.clock or time.monotonic, sleep=sleep, on_wait=on_wait, connections=cfg.concurrency,
        )
        stack.callback(client.close)
        yield client


def fetch_ticker(
    client: MassiveClient, landing: LandingZone, ticker: str, days: list[dt.date], today: dt.date, refetch: bool,
    stats: FetchStats | None = None,
) -> TickerFetch:
    """Land what the ticker still needs and say, for each requested trading day, which landed fetch holds it.

    Finished past days already landed are reused without a call; the current day is always fetched again. When the
    plan refuses a range that includes New York today (the free tier does), the earlier days are fetched once more
    without today, and today is reported as not in the plan.
    """
    result = TickerFetch(ticker, stats or FetchStats(ticker))
    if not days:
        return result
    if refetch:
        assigned, missing = {}, list(days)
    else:
        assigned, missing = landing.assign_days(ticker, days)
    if missing:
        try:
            complete = _land_range(client, landing, ticker, min(missing), max(missing), today, refetch, result.stats)
        except PlanRefusedError as refusal:
            earlier = [day for day in missing if day < today]
            if max(missing) < today or not earlier:
                raise  # the refusal is not about today, or today was all that was asked
            result.not_in_plan = [day for day in missing if day >= today]
            result.plan_message = refusal.reason
            log.warning("%s: %s; fetching %s..%s without today", ticker, refusal.reason, earlier[0], earlier[-1])
            missing = earlier
            complete = _land_range(client, landing, ticker, min(missing), max(missing), today, refetch, result.stats)
        for day in missing:
            assigned[day] = complete
    reused = {f.path: f for day, f in assigned.items() if day not in missing}
    result.stats.pages_from_landing += sum(len(f.pages()) for f in reused.values())
    result.assignment = assigned
    return result


def _land_range(
    client: MassiveClient, landing: LandingZone, ticker: str, lo: dt.date, hi: dt.date, today: dt.date,
    refetch: bool, stats: FetchStats,
) -> LandedFetch:
    """Every page of lo..hi landed (resuming an interrupted fetch of the same range), marked complete."""
    resumed = None if refetch else landing.resumable(ticker, lo, hi)
    if resumed is not None:
        writer, start_url = resumed, resumed.fetch.last_next_url()
        stats.pages_from_landing += len(resumed.fetch.pages())
        log.info("%s: resuming an interrupted fetch after %d landed page(s)", ticker, len(resumed.fetch.pages()))
    else:
        writer, start_url = landing.new_fetch(ticker, lo, hi), None
    try:
        for page in client.iter_pages(ticker, lo, hi, stats, start_url=start_url):
            writer.add(page)
        return writer.finish(final_through=today - dt.timedelta(days=1))
    except BaseException:
        writer.abandon_if_empty()  # a refused or unreachable first call leaves no empty folder behind
        raise
    finally:
        writer.close()  # releases the fetch's lock, so a later run can resume what landed


class Fetcher:
    """One client (so one rate-limit window) and one progress display for a whole run."""

    def __init__(self, cfg: HarvestConfig, landing: LandingZone, days: list[dt.date],
                 on_landed: LandedCallback | None = None) -> None:
        self.cfg = cfg
        # Called after each ticker whose requested days are all landed, with the seconds the calls still to make
        # will spend waiting on the rate limit (time the caller can use).
        self.on_landed = on_landed
        self.landing = landing
        self.days = days
        self.today = cfg.today or new_york_today()
        # A rejected key or an unreachable API: no further call can succeed, so no further ticker is fetched.
        self.stop_error: StopError | None = None
        self._stack = contextlib.ExitStack()
        self.progress = Progress(len(cfg.tickers), enabled=cfg.show_progress)
        self.client = self._stack.enter_context(open_client(cfg, self.progress))
        self.progress.eta = self.client.limiter.eta

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.close()
        self._stack.close()

    def fetch(self, ticker: str) -> TickerFetch:
        """Fetch one ticker; a failure is recorded (with the calls, retries and waits it cost), not raised. After a
        rejected key or an unreachable API no further call is made."""
        stats = FetchStats(ticker)
        try:
            if self.stop_error is not None:
                stats.error = f"not fetched: {self.stop_error}"
                return TickerFetch(ticker, stats)
            result = fetch_ticker(self.client, self.landing, ticker, self.days, self.today, self.cfg.refetch, stats)
            if result.assignment and self.on_landed is not None:
                self.on_landed(result, self.client.limiter.eta(self.progress.remaining()))
            return result
        except FetchFailedError as exc:
            log.warning("%s", exc)
            stats.error = exc.reason
            return TickerFetch(ticker, stats)
        except (KeyRejectedError, ApiUnreachableError) as exc:
            self.stop_error = exc
            stats.error = str(exc)
            return TickerFetch(ticker, stats)
        finally:
            self.progress.advance(ticker)


class SparkInBackground:
    """The Spark session, started on a worker thread when asked (at most once) so the JVM boots while calls are in
    flight; `result()` waits for it, or starts it then if nobody asked earlier."""

    def __init__(self, factory: SparkFactory) -> None:
        self._factory = factory
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="spark-start")
        self._future: concurrent.futures.Future[tuple[SparkSession, DeltaStorage]] | None = None
        self._lock = threading.Lock()

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


def warm_up(spark: SparkSession, storage: DeltaStorage, item: TickerFetch, days: list[dt.date],
            fetch_done: Callable[[], bool] = lambda: False) -> None:
    """The run's own plan once on one landed ticker: the counting job, and a write of its rows to a scratch table
    that is deleted at once. A fresh JVM runs its first jobs several times slower (class loading, code generation,
    JIT); paid here, while the rate limit holds the remaining calls, it is not paid after the last one. Local only:
    on a cluster the scratch folder would not be the driver's."""
    if is_databricks() or fetch_done():
        return
    marked = landed_bars(spark, {item.ticker: item})
    ticker_counts(marked, days)
    if fetch_done():
        return
    scratch = tempfile.mkdtemp(prefix="stocks-warm-up-")
    try:
        storage.write(silver_bars(marked, session_bounds(spark, days)), f"{scratch}/t", mode="overwrite",
                      partition_by=PARTITION_COLUMNS)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def fetch_all(cfg: HarvestConfig, landing: LandingZone, days: list[dt.date],
              on_landed: LandedCallback | None = None) -> tuple[dict[str, TickerFetch], StopError | None]:
    """Every ticker, `cfg.concurrency` at a time, through one client: one rolling window, one 429 back-off, one
    landing zone (each ticker lands in its own folders). Results come back in the order the tickers were given."""
    with Fetcher(cfg, landing, days, on_landed) as fetcher:
        if cfg.concurrency <= 1 or len(cfg.tickers) <= 1:
            results = {ticker: fetcher.fetch(ticker) for ticker in cfg.tickers}
        else:
            workers = min(cfg.concurrency, len(cfg.tickers))
            with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="fetch") as pool:
                results = dict(zip(cfg.tickers, pool.map(fetcher.fetch, cfg.tickers), strict=True))
        return results, fetcher.stop_error


def landed_bars(spark: SparkSession, fetched: dict[str, TickerFetch]) -> DataFrame:
    """Every landed bar of the fetched tickers, with trade_ts, trade_date and `assigned`: true when the bar's fetch
    is the one assigned to its day, i.e. the bar is on a requested day and comes from the fetch that holds it."""
    files: list[str] = []
    assignment_rows = []
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
    return bars.join(F.broadcast(assignment), ["ticker", "fetch_id", "trade_date"], "left").withColumn(
        "assigned", F.coalesce("assigned", F.lit(False))
    )


def silver_bars(marked: DataFrame, bounds: DataFrame) -> DataFrame:
    """The rows to store: assigned bars, one per minute, with their market session, in the table's schema."""
    return (
        marked.filter("assigned").drop("assigned")
        .transform(drop_duplicate_bars)
        .transform(lambda df: with_market_session(df, bounds))
        .transform(to_silver)
    )


def ticker_counts(marked: DataFrame, days: list[dt.date]) -> dict[str, dict[str, int]]:
    """Per ticker, in one Spark job: bars landed, outside the requested days, kept before de-duplication, rows
    stored, days stored and OHLC failures. The same de-duplication as silver_bars, ranked among assigned bars only,
    so nothing is cached and nothing but these counts reaches the driver."""
    ranked = marked.withColumn("_kept", F.col("assigned") & (latest_first("assigned") == 1))
    in_range = F.col("trade_date").isin(*days) if days else F.lit(False)
    rows = (
        ranked.groupBy("ticker")
        .agg(
            F.sum((~in_range).cast("int")).alias("outside"),
            F.sum(F.col("assigned").cast("int")).alias("assigned"),
            F.sum(F.col("_kept").cast("int")).alias("rows"),
            F.countDistinct(F.when(F.col("_kept"), F.col("trade_date"))).alias("days"),
            F.sum((F.col("_kept") & ohlc_violation()).cast("int")).alias("violations"),
        )
        .collect()
    )
    return {row["ticker"]: {key: int(row[key] or 0) for key in row.asDict() if key != "ticker"} for row in rows}


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
    sanity_failures: int = 0
    rows_written: int = 0
    partitions: int = 0

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

    @property
    def failed(self) -> list[TickerReport]:
        return [t for t in self.tickers if t.status == "FAILED"]

    @property
    def partial(self) -> list[TickerReport]:
        """Tickers stored without some requested days, because the key's plan refused them."""
        return [t for t in self.tickers if t.status == "partial"]


def run_fixed(cfg: HarvestConfig, spark_factory: SparkFactory) -> FixedReport:
    days = trading_days(cfg.date_from, cfg.date_to)
    landing = LandingZone(cfg.landing_path)
    started = time.monotonic()
    with SparkInBackground(spark_factory) as early_spark:
        # Spark starts while the remaining calls wait on the rate limit, as soon as a first ticker has landed (the
        # key works and the API answers): a run that can store nothing never starts it.
        def landed(item: TickerFetch, wait_ahead_s: float) -> None:
            # While the remaining calls wait on the window, also run the transform and a write once on this ticker
            # (results thrown away), so the real ones after the last call run on a warm JVM. Only when this ticker
            # itself needed calls: a rerun served from the landing zone has no wait to hide anything in.
            worth_it = item.stats.calls > 0 and wait_ahead_s >= WARM_UP_MIN_WAIT_S
            early_spark.start((lambda spark, storage: warm_up(spark, storage, item, days, fetch_done.is_set))
                              if worth_it else None)

        fetch_done = threading.Event()
        fetched, stop_error = fetch_all(cfg, landing, days, on_landed=landed)
        fetch_done.set()  # a warm-up still under way stops at its next step: the real work can start
        fetched_at = time.monotonic()
        to_store = any(item.assignment for item in fetched.values() if not item.failed)
        session = early_spark.result() if to_store else None
    report = FixedReport(
        [TickerReport(t, fetched[t].stats, not_in_plan=fetched[t].not_in_plan, plan_message=fetched[t].plan_message)
         for t in cfg.tickers],
        cfg.table_path, "not started", cfg.layout, days, {"fetch": fetched_at - started},
    )
    if session is None:
        # Nothing to write (every ticker failed, or no trading day): Spark was not even started.
        if stop_error is not None:
            stop_error.report = report  # type: ignore[union-attr]
            raise stop_error
        return report
    spark, storage = session
    spark_at = time.monotonic()
    report.engine = storage.name
    report.seconds["spark start"] = spark_at - fetched_at  # only what the fetch did not hide
    by_ticker = {t.ticker: t for t in report.tickers}
    _check_layout(storage, cfg)

    marked = landed_bars(spark, fetched)
    for ticker, counts in ticker_counts(marked, days).items():
        item = by_ticker[ticker]
        item.outside_range = counts["outside"]
        item.bars_landed = counts["assigned"] + counts["outside"]
        item.rows_written, item.partitions = counts["rows"], counts["days"]
        item.duplicates = counts["assigned"] - counts["rows"]
        item.sanity_failures = counts["violations"]
        if item.sanity_failures:
            log.warning("%s: %d bar(s) break OHLC sanity (kept, flagged in the summary)", ticker,
                        item.sanity_failures)
    transformed_at = time.monotonic()
    report.seconds["transform"] = transformed_at - spark_at

    succeeded = [t for t in cfg.tickers if not fetched[t].failed]
    replace = replace_predicate({t: list(fetched[t].assignment) for t in succeeded})
    if replace is not None:
        report.table_version = storage.write(
            silver_bars(marked, session_bounds(spark, days)),  # only the fetched tickers' requested days; the
            # engine refuses anything else
            cfg.table_path,
            mode="overwrite",
            partition_by=PARTITION_COLUMNS if cfg.layout == "partitioned" else (),
            cluster_by=PARTITION_COLUMNS if cfg.layout == "clustered" else (),
            replace=replace,
        )
        last = storage.history(cfg.table_path, limit=1)[-1]
        report.files_written = added_files(last.metrics)
        report.partitions_written = sum(t.partitions for t in report.tickers)
    report.seconds["write"] = time.monotonic() - transformed_at
    if stop_error is not None:
        # The tickers fetched before the run had to stop are stored; the run still fails loudly.
        error = type(stop_error)(f"{stop_error} (stored {len(succeeded)} ticker(s) fetched before that)")
        error.report = report  # type: ignore[attr-defined]
        raise error
    return report


def replace_predicate(stored_days: dict[str, list[dt.date]]) -> ReplacePredicate | AnyOf | None:
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


def build_config(
    args,
    *,
    default_table_path: Callable[[], str],
    secret: Callable[[str, str], str | None],
    layout: Layout = "partitioned",
) -> HarvestConfig:
    """Validate everything the user typed before any network or Spark work."""
    import os

    from stockpipe.cli import api_key_from_env, default_concurrency, parse_tickers, resolve_dates, table_path_or_default
    from stockpipe.landing import default_landing_path

    tickers = parse_tickers(args.tickers)
    date_from, date_to = resolve_dates(args.date_from, args.date_to)
    table_path = table_path_or_default(args.table_path, default_table_path)
    landing_path = table_path_or_default(args.landing_path, lambda: default_landing_path(table_path), "--landing-path")
    api_key = api_key_from_env() or ""
    if not api_key and args.secret_scope:
        api_key = secret(args.secret_scope, args.secret_key) or ""
    source = args.source or ("api" if api_key else "sample")
    if source == "api" and not api_key:
        raise UsageError("--source api needs MASSIVE_API_KEY or POLYGON_API_KEY (or --secret-scope on Databricks)")
    if args.source is None:
        log.info(
            "source: %s", "the Massive API (key from the environment)" if source == "api"
            else "offline sample data from a loopback fake of the Massive API (set MASSIVE_API_KEY for real data)"
        )
    base_url = args.base_url or os.environ.get("MASSIVE_BASE_URL") or DEFAULT_BASE_URL
    if not base_url.startswith(("http://", "https://")):
        raise UsageError(f"--base-url: {base_url!r} is not an http(s) URL")
    return HarvestConfig(
        tickers=tickers, date_from=date_from, date_to=date_to, table_path=table_path, landing_path=landing_path,
        source=source, base_url=base_url, api_key=api_key, calls_per_minute=args.calls_per_minute,
        layout=layout, refetch=args.refetch,
        concurrency=args.concurrency or default_concurrency(
            args.calls_per_minute if source == "sample" else (args.calls_per_minute or 5)),
    )


def _check_layout(storage: DeltaStorage, cfg: HarvestConfig) -> None:
    if cfg.layout == "clustered" and not storage.supports_clustering:
        raise EngineUnsupportedError(
            f"--layout clustered needs liquid clustering (delta-spark 3.2+ or Databricks); the {storage.name} engine "
            "cannot create it. Landed pages are kept, so a rerun with --layout partitioned makes no new call"
        )
    _refuse_foreign_folder(storage, cfg.table_path)
    if not storage.is_delta(cfg.table_path):
        return
    detail = storage.detail(cfg.table_path)
    wanted = list(PARTITION_COLUMNS) if cfg.layout == "partitioned" else []
    if detail.partition_columns != wanted:
        raise PipelineError(
            f"the table at {cfg.table_path} is partitioned by {detail.partition_columns or 'nothing'}, "
            f"but --layout {cfg.layout} needs {wanted or 'no partitions'}: use another --table-path"
        )


def added_files(metrics: dict) -> int:
    """Files a commit added, whichever engine wrote it."""
    for key in ("num_added_files", "numAddedFiles", "numFiles", "numFilesAdded"):
        if key in metrics and metrics[key] is not None:
            return int(metrics[key])
    return 0


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
    started = time.monotonic()
    days = trading_days(cfg.date_from, cfg.date_to)
    landing = LandingZone(cfg.landing_path)
    spark, storage = spark_factory()
    _refuse_foreign_folder(storage, cfg.table_path)
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


def _refuse_foreign_folder(storage: DeltaStorage, path: str) -> None:
    """Never write into, or (like the starter) delete, a non-empty folder that is not a Delta table."""
    folder = Path(path)
    if "://" in path or not folder.exists():
        return
    if folder.is_dir() and any(folder.iterdir()) and not storage.is_delta(path):
        raise PipelineError(f"{path} exists, is not empty and is not a Delta table: refusing to touch it")


def count_partition_dirs(path: str) -> int:
    """Leaf partition folders on disk (live or not): what a file listing of the table has to walk."""
    root = Path(path)
    if not root.is_dir():
        return 0
    leaves = {p.parent for p in root.rglob("*.parquet") if "_delta_log" not in p.parts}
    return len(leaves)

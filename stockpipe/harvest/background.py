"""What a harvest overlaps with its fetch: Spark starting on a worker thread while the rate limit holds the calls
still to make (`SparkInBackground`, with a warm-up of the run's own plan), and a long run's tickers transformed as
they land (`EarlyTransform`)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from pyspark.sql import SparkSession

from stockpipe.fetching import LandedCallback, TickerFetch
from stockpipe.harvest.bars import PreparedBars, landed_bars, prepare_bars, ranked_bars, silver_bars
from stockpipe.layout import Layout
from stockpipe.quality.checks import day_stats
from stockpipe.session import is_databricks
from stockpipe.storage import DeltaStorage, ReplacePredicate
from stockpipe.transforms import session_bounds

log = logging.getLogger(__name__)

SparkFactory = Callable[[], tuple[SparkSession, DeltaStorage]]
T = TypeVar("T")
# Worth warming Spark up in the background only when the remaining calls will wait at least this long.
WARM_UP_MIN_WAIT_S = 15.0
# A fresh JVM keeps getting faster at the run's plan over its first few runs of it (code generation, then the JIT's
# second tier): 8 tickers' day, counted and written, took 4.8 s after one warm-up pass, 3.2 s after three, no less
# after six (docs/speed.md). Passes go on while the wait lasts, up to this many.
WARM_UP_PASSES = 4


class SparkInBackground:
    """The Spark session, started on a worker thread when asked (at most once) so the JVM boots while calls are in
    flight; `result()` waits for it, or starts it then if nobody asked earlier."""

    def __init__(self, factory: SparkFactory) -> None:
        self._factory = factory
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="spark-start")
        self._future: concurrent.futures.Future[tuple[SparkSession, DeltaStorage]] | None = None
        self._lock = threading.Lock()
        self._fetch_done = threading.Event()
        # What the warm-up passes read: the tickers landed so far, and when the calls still to make should be sent.
        self._landed: dict[str, TickerFetch] = {}
        self._calls_done_by = 0.0

    def __enter__(self) -> SparkInBackground:
        return self

    def __exit__(self, *exc: object) -> None:
        self._executor.shutdown(wait=True)  # a start under way finishes, so the session is stopped cleanly at exit

    def start(self, warm_up: Callable[[SparkSession, DeltaStorage], object] | None = None) -> None:
        with self._lock:  # concurrent fetches may land their first tickers at the same moment
            if self._future is None:
                self._future = self._executor.submit(self._start, warm_up)

    def _start(self, warm_up: Callable[[SparkSession, DeltaStorage], object] | None) -> tuple[SparkSession,
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

    def on_landed(self, days: list[dt.date], layout: Layout) -> LandedCallback:
        """The fetch's callback: Spark starts as soon as a first ticker has landed (the key works and the API
        answers), so a run that can store nothing never starts it. While the remaining calls wait on the window,
        the transform and a write also run on the tickers landed so far (results thrown away), pass after pass
        while the wait lasts (`warm_up_passes`), so the real ones after the last call run on a warm JVM; only when
        the first ticker itself needed calls, since a rerun served from the landing zone has no wait to hide
        anything in."""

        def landed(item: TickerFetch, wait_ahead_s: float) -> None:
            with self._lock:
                if item.stats.calls > 0:
                    self._landed.setdefault(item.ticker, item)
                self._calls_done_by = time.monotonic() + wait_ahead_s
            worth_it = item.stats.calls > 0 and wait_ahead_s >= WARM_UP_MIN_WAIT_S
            self.start((lambda spark, storage: self.warm_up_passes(spark, storage, days, layout)) if worth_it
                       else None)

        return landed

    def warm_up_passes(self, spark: SparkSession, storage: DeltaStorage, days: list[dt.date],
                       layout: Layout) -> int:
        """Warm-up passes over the tickers landed so far: the first always (it stops early itself once the fetch
        is done), each next one while the fetch goes on and the calls still to make will not be sent before it
        would end (as long as the last pass took), up to WARM_UP_PASSES; a pass must never hold up the real work.
        Returns the passes made."""
        took = 0.0
        for made in range(WARM_UP_PASSES):
            with self._lock:
                landed, done_by = dict(self._landed), self._calls_done_by
            if made and (self._fetch_done.is_set() or time.monotonic() + took > done_by):
                return made
            began = time.monotonic()
            warm_up(spark, storage, landed, days, layout, self._fetch_done.is_set)
            took = time.monotonic() - began
        return WARM_UP_PASSES

    def fetch_done(self) -> None:
        """A warm-up still under way stops at its next step: the real work can start."""
        self._fetch_done.set()


def warm_up(spark: SparkSession, storage: DeltaStorage, landed: dict[str, TickerFetch], days: list[dt.date],
            layout: Layout, fetch_done: Callable[[], bool] = lambda: False) -> None:
    """The run's own plan once on landed tickers: the counting job, and their rows written as the run writes them
    (the table created, then one commit replacing their days, then its history read) to a scratch table deleted at
    once. A fresh JVM runs its first jobs several times slower (class loading, code generation, JIT); paid here,
    while the rate limit holds the remaining calls, it is not paid after the last one. Local only: on a cluster the
    scratch folder would not be the driver's."""
    if is_databricks() or fetch_done() or not landed:
        return
    ranked = ranked_bars(landed_bars(spark, landed))
    bounds = session_bounds(spark, days)
    day_stats(ranked, bounds)
    if fetch_done():
        return
    scratch = tempfile.mkdtemp(prefix="stocks-warm-up-")
    try:
        rows, table = silver_bars(ranked, bounds), f"{scratch}/t"
        cluster_by = list(layout.cluster_by) if storage.supports_clustering else []
        storage.create_if_missing(table, rows.schema, partition_by=layout.partition_by, cluster_by=cluster_by)
        storage.write(rows, table, mode="overwrite", replace=ReplacePredicate.of(ticker=sorted(landed),
                                                                                 trade_date=days),
                      shaped=layout.by_day_key, partition_by=layout.partition_by, cluster_by=cluster_by)
        storage.history(table, limit=1)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


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

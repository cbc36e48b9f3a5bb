"""The steps of a harvest after its fetch, each returning what it did: the guards that refuse a table before any
write, the transform, the refetch guard, the counts, the one data commit, and the reference tables. `fixed.run_fixed`
tells the story with them and builds the report once."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import DataFrame, SparkSession

from stockpipe.config import Tables
from stockpipe.errors import ClusteringUnsupportedError, MixedSourceError, PipelineError
from stockpipe.fetching import TickerFetch
from stockpipe.harvest.background import EarlyTransform
from stockpipe.harvest.bars import PERSIST_FROM_PARTITIONS, PreparedBars, prepare_bars
from stockpipe.harvest.report import References, TickerCounts, Written
from stockpipe.landing import LandingZone
from stockpipe.layout import Layout
from stockpipe.quality.checks import CheckResult, DayStats
from stockpipe.quality.guard import Shrink, shrink_results, shrinking_days, stored_rows
from stockpipe.reference.corporate_actions import ACTION_KINDS, landed_actions, store_actions
from stockpipe.reference.official_bars import landed_official, official_known, store_official
from stockpipe.storage import AnyOf, DeltaStorage, Replacement, ReplacePredicate

log = logging.getLogger(__name__)

StoredDays = dict[str, list[dt.date]]
# Where real market data comes from: the REST API, or the provider's flat files.
REAL_SOURCES = ("api", "flatfiles")


# -- before anything is written --------------------------------------------------------------------------------------
def check_layout(storage: DeltaStorage, path: str, layout: Layout) -> None:
    """The table, if there is one, has the layout the run asks for; a layout the engine cannot create is refused."""
    if layout.cluster_by and not storage.supports_clustering:
        raise ClusteringUnsupportedError(storage.name)
    if not storage.is_delta(path):
        return
    found = storage.detail(path).partition_columns
    if found != list(layout.partition_by):
        raise PipelineError(
            f"the table at {path} is partitioned by {found or 'nothing'}, but --layout {layout} needs "
            f"{list(layout.partition_by) or 'no partitions'}: use another --table-path"
        )


def check_source(storage: DeltaStorage, path: str, source: str, allow_mixed_source: bool) -> None:
    """A table filled from the API takes no sample bars unless asked (--allow-mixed-source): sample prices beside
    real ones would look real in every chart and query. The source of each commit is in its user metadata."""
    if source != "sample" or allow_mixed_source or not storage.is_delta(path):
        return
    if any(entry.source in REAL_SOURCES for entry in storage.history(path)):
        raise MixedSourceError(path)


# -- the transform ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Transformed:
    """Every fetched ticker's ranked bars (one frame, however many batches made it) and its per-day figures."""

    ranked: DataFrame
    stats: list[DayStats]
    early: int  # tickers transformed while the fetch went on


def transform(spark: SparkSession, fetched: dict[str, TickerFetch], days: list[dt.date],
              early: EarlyTransform | None, kept: contextlib.ExitStack) -> Transformed:
    """The landed bars judged, ranked and counted. The tickers `early` transformed while the fetch went on are taken
    as they are; the rest are transformed now. A long run parses its landed pages once for the counts and the
    write, kept on disk where the session allows; a short one parses them twice, which costs less than writing them
    to disk and back."""
    batches: list[PreparedBars] = early.prepared() if early is not None else []
    rest = {t: f for t, f in fetched.items() if not any(t in batch.tickers for batch in batches)}
    if not batches or any(f.assignment for f in rest.values() if not f.failed):
        partitions = sum(len(t.assignment) for t in fetched.values() if not t.failed)
        batches.append(prepare_bars(spark, rest, days, partitions >= PERSIST_FROM_PARTITIONS, kept))
    ranked = reduce(DataFrame.unionByName, [batch.ranked for batch in batches])
    return Transformed(ranked, [figures for batch in batches for figures in batch.stats], len(fetched) - len(rest))


# -- what the run stores ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Guarded:
    """The days the run may replace once the refetch guard has looked, and what it found."""

    stored_days: StoredDays
    shrinks: list[Shrink]
    results: list[CheckResult]  # one refetch_shrink row per stored day the run would replace

    def kept_back(self, ticker: str) -> tuple[dt.date, ...]:
        return tuple(s.trade_date for s in self.shrinks if s.ticker == ticker and s.trade_date not in
                     self.stored_days.get(ticker, ()))


def guard_refetch(storage: DeltaStorage, path: str, stats: list[DayStats], stored_days: StoredDays,
                  allow_shrink: bool) -> Guarded:
    """Compare each stored day the run would replace with its new rows (see stockpipe.quality.guard). A shrinking
    day is left out of the days to store (so neither replaced nor written) unless --allow-shrink."""
    stored = stored_rows(storage, path, stored_days)
    if not stored:
        return Guarded(stored_days, [], [])
    answered = {(s.ticker, s.trade_date): s.rows for s in stats if s.trade_date is not None}
    shrinks = shrinking_days(stored, answered)
    for shrink in shrinks:
        log.warning("%s", shrink.line(replaced=allow_shrink))
    kept = set() if allow_shrink else {(s.ticker, s.trade_date) for s in shrinks}
    left = {t: [d for d in wanted if (t, d) not in kept] for t, wanted in stored_days.items()}
    return Guarded(left, shrinks, shrink_results(stored, answered, shrinks, allow_shrink))


def without_silent_symbols(stored_days: StoredDays, stats: list[DayStats]) -> StoredDays:
    """A symbol with no bar anywhere in the range is most likely mistyped (the API answers an unknown one with
    nothing): nothing is written for it, no partition and no check row; the end summary names it once."""
    with_bars = {s.ticker for s in stats if s.landed}
    return {t: (wanted if t in with_bars else []) for t, wanted in stored_days.items()}


def count_tickers(tickers: list[str], stats: list[DayStats], stored_days: StoredDays, requested: list[dt.date],
                  guarded: Guarded) -> dict[str, TickerCounts]:
    """Each ticker's landed, out-of-range, duplicate, quarantined and stored counts, from the per-day figures one
    Spark job made (only the days the run stores count as stored)."""
    wanted = set(requested)
    by_ticker: dict[str, list[DayStats]] = {t: [] for t in tickers}
    for figures in stats:
        by_ticker.setdefault(figures.ticker, []).append(figures)
    counts = {}
    for ticker in tickers:
        mine, storing = by_ticker[ticker], set(stored_days.get(ticker, ()))
        counts[ticker] = TickerCounts.of(mine, storing, wanted, kept_back=guarded.kept_back(ticker))
        if counts[ticker].quarantined:
            log.warning("%s: %d bar(s) broke a bar rule: kept out of the table, recorded in stocks_quarantine",
                        ticker, counts[ticker].quarantined)
    return counts


def replace_predicate(stored_days: StoredDays) -> Replacement | None:
    """Exactly the (ticker, trade_date) days this run stores: tickers grouped by the days they hold (they differ
    when the plan refused today for some), so no day outside them is ever replaced or emptied."""
    groups: dict[tuple[dt.date, ...], list[str]] = {}
    for ticker, ticker_days in stored_days.items():
        if ticker_days:
            groups.setdefault(tuple(sorted(ticker_days)), []).append(ticker)
    predicates = tuple(ReplacePredicate.of(ticker=tickers, trade_date=key) for key, tickers in groups.items())
    if not predicates:
        return None
    return predicates[0] if len(predicates) == 1 else AnyOf(predicates)


def write_days(storage: DeltaStorage, rows: DataFrame, stored_days: StoredDays, path: str, layout: Layout,
               *, some_kept_back: bool) -> Written:
    """One commit replacing exactly the days the run stores (the fetched tickers' requested days, less any the
    refetch guard kept back); the engine refuses any row outside them."""
    replace = replace_predicate(stored_days)
    if replace is None:
        return Written()
    if some_kept_back:
        rows = rows.filter(replace.column())  # the kept-back days' new rows are not written
    # The rows match the predicate by construction (both come from the assignment); into an existing table the
    # engine still checks each row as it writes, where creating the table would cost a pass over them first.
    storage.create_if_missing(path, rows.schema, partition_by=layout.partition_by, cluster_by=layout.cluster_by)
    version = storage.write(rows, path, mode="overwrite", replace=replace, shaped=layout.by_day_key,
                            partition_by=layout.partition_by, cluster_by=layout.cluster_by)
    files = storage.history(path, limit=1)[-1].changes.files_added or 0
    return Written(version, files)


def write_references(spark: SparkSession, storage: DeltaStorage, landing: LandingZone, tables: Tables,
                     tickers: tuple[str, ...], stored_days: StoredDays) -> References:
    """The run's tickers' splits and dividends (from every window landed so far) and the official daily bars of
    the days it stored (those that have one landed), each into its table beside the bars. The official bars known
    count those the table already held for the days none landed for (market_daily.py's)."""
    paths = {"splits": tables.splits, "dividends": tables.dividends, "official_daily": tables.official}
    known, versions = {}, {}
    for kind in ACTION_KINDS:
        actions = landed_actions(landing, kind, tickers)
        versions[kind.name] = store_actions(storage, paths[kind.name], kind, tickers, actions)
        known[kind.name] = len(actions)
    official = landed_official(landing.official(), stored_days)
    versions["official_daily"] = store_official(spark, storage, tables.official, official, stored_days)
    known["official_daily"] = official_known(storage, tables.official, official, stored_days)
    return References(paths, known, versions)


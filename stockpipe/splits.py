"""Splits: the list landed raw from `/v3/reference/splits`, stored in `stocks_splits` beside the minute table.

The minute table keeps prices as traded; what a later split means for them is derived on read (the daily table's
adjusted columns) from this table, never written back into the bars. Every landed window is kept, so the table for a
run's tickers is rebuilt from all of them: a run that stored nothing (a crash, a failed write) is healed by the next,
and a run whose rows already match writes no commit at all.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession

from stockpipe.landing import LandingZone
from stockpipe.storage import DeltaStorage, ReplacePredicate

log = logging.getLogger(__name__)

SPLITS_SCHEMA = "ticker string, execution_date date, split_from double, split_to double, id string"


@dataclass(frozen=True, order=True)
class StoredSplit:
    ticker: str
    execution_date: dt.date
    split_from: float
    split_to: float
    id: str


def landed_splits(landing: LandingZone, tickers: Iterable[str]) -> list[StoredSplit]:
    """Every split of these tickers in every complete landed window; a split listed again (same id) is taken from
    the newest window, so a correction by the provider replaces what an older window said."""
    wanted = set(tickers)
    by_id: dict[str, StoredSplit] = {}
    for fetch in landing.splits_fetches():  # oldest first: newer windows overwrite
        if not fetch.complete:
            continue
        for page in fetch.pages():
            for item in json.loads(page.read_bytes()).get("results") or []:
                split = _split_of(item)
                if split is None:
                    log.warning("a split in %s is malformed and was skipped: %s", page, json.dumps(item)[:200])
                elif split.ticker in wanted:
                    by_id[split.id] = split
    return sorted(by_id.values())


def _split_of(item: Any) -> StoredSplit | None:
    """One listed split, or None when a field is missing or not what the contract says (data, not a reason to
    refetch the list)."""
    try:
        split = StoredSplit(str(item["ticker"]), dt.date.fromisoformat(item["execution_date"]),
                            float(item["split_from"]), float(item["split_to"]), str(item["id"]))
    except (KeyError, TypeError, ValueError):
        return None
    return split if split.split_from > 0 and split.split_to > 0 else None


def store_splits(spark: SparkSession, storage: DeltaStorage, path: str, tickers: Iterable[str],
                 splits: list[StoredSplit]) -> int | None:
    """Make the table's rows for these tickers exactly `splits`, in one commit; None when they already are (no
    commit, so reruns add no version). The table is created even when no split is known yet, so readers always
    find it."""
    chosen = sorted(set(tickers))
    if storage.is_delta(path):
        stored = storage.read(path).filter(ReplacePredicate.of(ticker=chosen).column()).collect()
        if sorted(StoredSplit(**row.asDict()) for row in stored) == splits:
            return None
    # Splits are a handful of rows: a Python list is the bulk here.
    frame = spark.createDataFrame([(s.ticker, s.execution_date, s.split_from, s.split_to, s.id) for s in splits],
                                  SPLITS_SCHEMA)
    return storage.write(frame, path, mode="overwrite", replace=ReplacePredicate.of(ticker=chosen))

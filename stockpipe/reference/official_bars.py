"""The provider's official daily bars of the days a run stores, in `stocks_official_daily`, so the daily table derived
from the minutes can be checked against them (the closing print, the volume the minutes miss).

Fetched with the fewest calls: the grouped endpoint (every stock of one date, one call a date) when the run needs
fewer dates than tickers, else one ranged call per ticker (`/range/1/day/`); both as traded (`adjusted=false`).
They land raw in their own landing zone (one folder per ticker, and one for the grouped answers), so a day whose
official bar already landed after it was over is never fetched again, and the table is filled from what landed.

The table is shared: market_daily.py stores every ticker of the grouped answers in it. The harvester replaces only
the (ticker, trade_date) rows it has a landed bar for, so a row it did not fetch (another ticker's, or one of its own
days whose call a free key deferred) stays, and the daily build reads it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import astuple, dataclass
from typing import Any

from pyspark.sql import SparkSession

from stockpipe.landing import GROUPED, LandedFetch, LandingZone
from stockpipe.market_calendar import NEW_YORK
from stockpipe.storage import AnyOf, DeltaStorage, Replacement, ReplacePredicate, RowFilter

log = logging.getLogger(__name__)

OFFICIAL_SCHEMA = ("ticker string, trade_date date, open double, high double, low double, close double, volume double, "
                   "vwap double, num_transactions long")


@dataclass(frozen=True, order=True)
class OfficialBar:
    ticker: str
    trade_date: dt.date
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float | None
    num_transactions: int | None


@dataclass(frozen=True)
class OfficialPlan:
    """The calls a run makes for official bars: grouped dates, or (ticker, first, last) ranges; never both."""

    grouped: tuple[dt.date, ...] = ()
    ranges: tuple[tuple[str, dt.date, dt.date], ...] = ()

    @property
    def calls(self) -> int:
        return len(self.grouped) + len(self.ranges)


def assigned_official(zone: LandingZone, ticker: str, days: Iterable[dt.date]) -> dict[dt.date, LandedFetch]:
    """For each day, the newest complete landed fetch holding its official bar as a finished day: the ticker's own
    range, or a grouped date."""
    own, _ = zone.assign_days(ticker, days)
    grouped, _ = zone.assign_days(GROUPED, days)
    chosen = dict(own)
    for day, fetch in grouped.items():
        if day not in chosen or fetch.fetched_at > chosen[day].fetched_at:
            chosen[day] = fetch
    return chosen


def plan_official(zone: LandingZone, stored: Mapping[str, Iterable[dt.date]], today: dt.date) -> OfficialPlan:
    """The days that still need an official bar (stored days before New York today with none landed), fetched by
    whichever endpoint takes fewer calls: one grouped call a date, or one ranged call a ticker."""
    needed: dict[str, list[dt.date]] = {}
    for ticker, days in stored.items():
        past = [d for d in days if d < today]
        landed = assigned_official(zone, ticker, past)
        missing = sorted(d for d in past if d not in landed)
        if missing:
            needed[ticker] = missing
    dates = sorted({d for days in needed.values() for d in days})
    if not needed:
        return OfficialPlan()
    if len(dates) < len(needed):
        return OfficialPlan(grouped=tuple(dates))
    return OfficialPlan(ranges=tuple((t, days[0], days[-1]) for t, days in sorted(needed.items())))


def _bar(ticker: str, day: dt.date, item: dict[str, Any]) -> OfficialBar | None:
    """One official bar, or None when a price or the volume is missing or not a finite positive number."""
    try:
        prices = [float(item[k]) for k in ("o", "h", "l", "c")]
        volume = float(item["v"])
    except (KeyError, TypeError, ValueError):
        return None
    if not all(math.isfinite(p) and p > 0 for p in prices) or not math.isfinite(volume) or volume < 0:
        return None
    vwap, count = item.get("vw"), item.get("n")
    return OfficialBar(ticker, day, prices[0], prices[1], prices[2], prices[3], volume,
                       float(vwap) if isinstance(vwap, int | float) and math.isfinite(vwap) else None,
                       int(count) if isinstance(count, int | float) and math.isfinite(count) else None)


def _bars_of(fetch: LandedFetch, wanted: set[str]) -> dict[tuple[str, dt.date], OfficialBar]:
    """The official bars a landed fetch holds for the wanted tickers, by (ticker, trade_date)."""
    found: dict[tuple[str, dt.date], OfficialBar] = {}
    for page in fetch.pages():
        payload = json.loads(page.read_bytes())
        for item in payload.get("results") or []:
            if not isinstance(item, dict):
                continue
            ticker = str(item.get("T") or payload.get("ticker") or fetch.ticker)
            if ticker not in wanted or not isinstance(item.get("t"), int | float):
                continue
            # A grouped answer is one date's; a ranged one stamps each bar with its day (midnight New York).
            day = fetch.date_from if fetch.ticker == GROUPED else dt.datetime.fromtimestamp(
                item["t"] / 1000, NEW_YORK).date()
            bar = _bar(ticker, day, item)
            if bar is not None:
                found[(ticker, day)] = bar
    return found


def landed_official(zone: LandingZone, stored: Mapping[str, Iterable[dt.date]]) -> list[OfficialBar]:
    """The official bar of every stored (ticker, day) that has one landed, each from the fetch assigned to it."""
    cache: dict[str, dict[tuple[str, dt.date], OfficialBar]] = {}
    wanted = set(stored)
    bars = []
    for ticker, days in stored.items():
        for day, fetch in assigned_official(zone, ticker, days).items():
            if fetch.fetch_id not in cache:
                cache[fetch.fetch_id] = _bars_of(fetch, wanted)
            bar = cache[fetch.fetch_id].get((ticker, day))
            if bar is not None:
                bars.append(bar)
    return sorted(bars)


def official_replacement(stored: Mapping[str, Iterable[dt.date]]) -> Replacement | None:
    """The (ticker, trade_date) rows the official table's write replaces: tickers grouped by their days."""
    groups: dict[tuple[dt.date, ...], list[str]] = {}
    for ticker, days in stored.items():
        key = tuple(sorted(days))
        if key:
            groups.setdefault(key, []).append(ticker)
    predicates = tuple(ReplacePredicate.of(ticker=tickers, trade_date=days) for days, tickers in groups.items())
    if not predicates:
        return None
    return predicates[0] if len(predicates) == 1 else AnyOf(predicates)


def store_official(spark: SparkSession, storage: DeltaStorage, path: str, bars: list[OfficialBar],
                   stored: Mapping[str, Iterable[dt.date]]) -> int | None:
    """Replace the official rows of the days that have a landed bar, in one commit; None when they already match
    (reruns add no version). Days without one keep whatever the table holds."""
    days = {ticker: sorted({b.trade_date for b in bars if b.ticker == ticker}) for ticker in stored}
    replace = official_replacement(days)
    if replace is None:
        return None
    if storage.is_delta(path):
        current = storage.read(path).filter(replace.column()).collect()
        if sorted(OfficialBar(**row.asDict()) for row in current) == bars:
            return None
    frame = spark.createDataFrame([astuple(bar) for bar in bars], OFFICIAL_SCHEMA)
    storage.create_if_missing(path, frame.schema)
    return storage.write(frame, path, mode="overwrite", replace=replace)


def official_known(storage: DeltaStorage, path: str, bars: list[OfficialBar],
                   stored: Mapping[str, Iterable[dt.date]]) -> int:
    """How many stored (ticker, day)s have an official bar: those landed, and those the table holds without one
    landed (market_daily.py stored them). The table is read only when some stored day has none landed."""
    landed = {(bar.ticker, bar.trade_date) for bar in bars}
    lacking = {(ticker, day) for ticker, days in stored.items() for day in days} - landed
    if not lacking or not storage.is_delta(path):
        return len(landed)
    where = RowFilter.of(ticker={t for t, _ in lacking}, trade_date={d for _, d in lacking})
    held = storage.read_arrow(path, where=where, columns=["ticker", "trade_date"]).to_pylist()
    return len(landed) + len({(row["ticker"], row["trade_date"]) for row in held} & lacking)

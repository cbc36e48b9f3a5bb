"""A refetch may correct what is stored, never shrink it silently.

Before a run replaces stored (ticker, trade_date) partitions, each day's new row count is compared with the stored
one. An answer with no bars for a stored day, or fewer than half its stored rows, is the API stopping short or a
plan clipping history far more often than a real correction: the stored day is kept, the run records a `fail` check
and exits 1 naming the day. `--allow-shrink` replaces anyway (for real corrections) and records a `warn`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from stockpipe.quality.checks import SHRINK_BELOW, CheckResult, Status
from stockpipe.storage import DeltaStorage, RowFilter


@dataclass(frozen=True)
class Shrink:
    ticker: str
    trade_date: dt.date
    stored: int
    answered: int

    @property
    def where(self) -> str:
        return f"{self.ticker} {self.trade_date}" if self.ticker else str(self.trade_date)

    def line(self, replaced: bool) -> str:
        what = "replaced anyway (--allow-shrink)" if replaced else "kept the stored day"
        who = self.ticker or "every ticker of"  # a market day is judged whole (ticker empty)
        return (f"{who} {self.trade_date}: the answer has {self.answered:,} bar(s) where {self.stored:,} are "
                f"stored; {what}")


def stored_rows(storage: DeltaStorage, path: str, days: Mapping[str, list[dt.date]]) -> dict[tuple[str, dt.date], int]:
    """Rows stored per (ticker, trade_date) among these days (one small Spark job; nothing when the table is new)."""
    tickers = [t for t, wanted in days.items() if wanted]
    every_day = sorted({d for wanted in days.values() for d in wanted})
    if not tickers or not storage.is_delta(path):
        return {}
    found = storage.count_by(path, ("ticker", "trade_date"), RowFilter.of(ticker=tickers, trade_date=every_day))
    return {(row["ticker"], row["trade_date"]): int(row["rows"]) for row in found.to_pylist()
            if row["trade_date"] in set(days.get(row["ticker"], ()))}


def stored_rows_of_days(storage: DeltaStorage, path: str, days: list[dt.date]) -> dict[tuple[str, dt.date], int]:
    """Rows stored per (ticker, trade_date) on these days, whatever the tickers (a market day replaced whole)."""
    if not days or not storage.is_delta(path):
        return {}
    found = storage.count_by(path, ("ticker", "trade_date"), RowFilter.of(trade_date=sorted(days)))
    return {(row["ticker"], row["trade_date"]): int(row["rows"]) for row in found.to_pylist()}


def by_day(rows: Mapping[tuple[str, dt.date], int]) -> dict[tuple[str, dt.date], int]:
    """Per-(ticker, day) rows summed to one figure a day (ticker empty): how a market day is judged, since tickers
    come and go from the market while a file stopping short empties most of them at once."""
    totals: dict[tuple[str, dt.date], int] = {}
    for (_, day), rows_of_day in rows.items():
        totals[("", day)] = totals.get(("", day), 0) + rows_of_day
    return totals


def shrinking_days(stored: Mapping[tuple[str, dt.date], int], answered: Mapping[tuple[str, dt.date], int]
                   ) -> list[Shrink]:
    """Stored days the new answer would empty, or cut below SHRINK_BELOW of their rows."""
    found = []
    for (ticker, day), rows in sorted(stored.items()):
        new = answered.get((ticker, day), 0)
        if rows and (new == 0 or new < rows * SHRINK_BELOW):
            found.append(Shrink(ticker, day, rows, new))
    return found


def shrink_results(stored: Mapping[tuple[str, dt.date], int], answered: Mapping[tuple[str, dt.date], int],
                   shrinks: list[Shrink], allowed: bool) -> list[CheckResult]:
    """One `refetch_shrink` row per stored day the run replaces: pass, fail (kept back) or warn (--allow-shrink)."""
    shrunk = {(s.ticker, s.trade_date): s for s in shrinks}
    results = []
    for (ticker, day), rows in sorted(stored.items()):
        new = answered.get((ticker, day), 0)
        item = shrunk.get((ticker, day))
        status: Status = "pass" if item is None else "warn" if allowed else "fail"
        message = (f"{new:,} bar(s) replace {rows:,} stored" if item is None else item.line(replaced=allowed))
        results.append(CheckResult(ticker, day, "refetch_shrink", status, float(new), rows * SHRINK_BELOW, message))
    return results

"""Corporate actions: splits and dividends, listed by `/v3/reference/splits` and `/v3/reference/dividends`, landed
raw, stored in `stocks_splits` and `stocks_dividends` beside the minute table.

Both go one way: each run lands the list of a date window (execution date, ex-dividend date) for every ticker, and
the tables for the run's tickers are rebuilt from every window landed so far, so a run that stored nothing (a crash,
a failed write) is healed by the next, a correction in a newer window replaces what an older one said, and a run
whose rows already match writes no commit at all. The minute table keeps prices as traded; what a split or a dividend
means for them is derived on read (the daily table's adjusted columns and total return), never written back.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa

from stockpipe.landing import LandingZone
from stockpipe.storage import DeltaStorage, ReplacePredicate, RowFilter

log = logging.getLogger(__name__)

SPLITS_SCHEMA = pa.schema([("ticker", pa.string()), ("execution_date", pa.date32()), ("split_from", pa.float64()),
                           ("split_to", pa.float64()), ("id", pa.string())])
DIVIDENDS_SCHEMA = pa.schema([
    ("ticker", pa.string()), ("ex_dividend_date", pa.date32()), ("cash_amount", pa.float64()),
    ("currency", pa.string()), ("declaration_date", pa.date32()), ("record_date", pa.date32()),
    ("pay_date", pa.date32()), ("frequency", pa.int32()), ("dividend_type", pa.string()), ("id", pa.string()),
])


@dataclass(frozen=True, order=True)
class StoredSplit:
    ticker: str
    execution_date: dt.date
    split_from: float
    split_to: float
    id: str


@dataclass(frozen=True, order=True)
class StoredDividend:
    ticker: str
    ex_dividend_date: dt.date
    cash_amount: float
    currency: str | None
    declaration_date: dt.date | None
    record_date: dt.date | None
    pay_date: dt.date | None
    frequency: int | None
    dividend_type: str | None
    id: str


Action = StoredSplit | StoredDividend


def _date(value: Any) -> dt.date | None:
    return dt.date.fromisoformat(value) if isinstance(value, str) and value else None


def parse_split(item: Any) -> StoredSplit | None:
    """One listed split, or None when a field is missing or not what the contract says (data, not a reason to
    refetch the list)."""
    try:
        split = StoredSplit(str(item["ticker"]), dt.date.fromisoformat(item["execution_date"]),
                            float(item["split_from"]), float(item["split_to"]), str(item["id"]))
    except (KeyError, TypeError, ValueError):
        return None
    return split if split.split_from > 0 and split.split_to > 0 else None


def parse_dividend(item: Any) -> StoredDividend | None:
    """One listed cash dividend, or None when its ticker, ex-date, amount or id is missing or malformed."""
    try:
        frequency = item.get("frequency")
        dividend = StoredDividend(
            str(item["ticker"]), dt.date.fromisoformat(item["ex_dividend_date"]), float(item["cash_amount"]),
            item.get("currency"), _date(item.get("declaration_date")), _date(item.get("record_date")),
            _date(item.get("pay_date")), int(frequency) if isinstance(frequency, int | float) else None,
            item.get("dividend_type"), str(item["id"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return dividend if dividend.cash_amount >= 0 and dividend.cash_amount == dividend.cash_amount else None


def _dividend_key(dividend: Action) -> tuple[Any, ...]:
    """The provider lists some dividends twice under two ids: one cash payment per ticker, ex-date and amount."""
    assert isinstance(dividend, StoredDividend)
    return dividend.ticker, dividend.ex_dividend_date, dividend.cash_amount


@dataclass(frozen=True)
class ActionKind:
    """One corporate-action list: its name in the API and the landing zone, its table, how to read one item, and
    what makes two items the same action."""

    name: str
    table: str
    schema: pa.Schema
    parse: Callable[[Any], Action | None]
    same: Callable[[Action], tuple[Any, ...]] | None = None  # beyond the provider's id


SPLITS = ActionKind("splits", "stocks_splits", SPLITS_SCHEMA, parse_split)
DIVIDENDS = ActionKind("dividends", "stocks_dividends", DIVIDENDS_SCHEMA, parse_dividend, _dividend_key)
ACTION_KINDS = (SPLITS, DIVIDENDS)


def landed_actions(landing: LandingZone, kind: ActionKind, tickers: Iterable[str] | None) -> list[Action]:
    """Every action of these tickers (None: of every ticker, the market's) in every complete landed window of the
    list; an action listed again (same id, or the same payment under another id) is taken from the newest window, so
    a correction by the provider replaces what an older window said."""
    wanted = None if tickers is None else set(tickers)
    by_id: dict[str, Action] = {}
    for fetch in landing.reference_fetches(kind.name):  # oldest first: newer windows overwrite
        if not fetch.complete:
            continue
        for page in fetch.pages():
            for item in json.loads(page.read_bytes()).get("results") or []:
                action = kind.parse(item)
                if action is None:
                    log.warning("an item of %s in %s is malformed and was skipped: %s", kind.name, page,
                                json.dumps(item)[:200])
                elif wanted is None or action.ticker in wanted:
                    by_id.pop(action.id, None)
                    by_id[action.id] = action  # re-inserted: dict order is now newest last
    if kind.same is not None:
        newest: dict[tuple[Any, ...], Action] = {}
        for action in by_id.values():
            newest[kind.same(action)] = action
        return sorted(newest.values())
    return sorted(by_id.values())


def store_actions(storage: DeltaStorage, path: str, kind: ActionKind, tickers: Iterable[str],
                  actions: list[Action]) -> int | None:
    """Make the table's rows for these tickers exactly `actions`, in one commit; None when they already are (no
    commit, so reruns add no version). The table is created even when none is known yet, so readers always find
    it. A handful of rows a ticker, read and written in Arrow (no Spark job on delta-rs)."""
    chosen = sorted(set(tickers))
    if storage.is_delta(path):
        stored = storage.read_arrow(path, where=RowFilter.of(ticker=chosen)).select(kind.schema.names)
        current = StoredSplit if kind is SPLITS else StoredDividend
        if sorted(current(**row) for row in stored.to_pylist()) == actions:
            return None
    rows = pa.Table.from_pylist([asdict(action) for action in actions], schema=kind.schema)
    return storage.write_batches(rows.to_batches(), kind.schema, path, mode="overwrite",
                                 replace=ReplacePredicate.of(ticker=chosen))

"""A day's flat file made into the table's rows without Spark: the delta-rs engine's way, in NumPy over Arrow's
columns, a day at a time (memory bounded by a day's file, whatever the range).

It does what the Spark path does (`harvest.bars` over `flatfiles.rows.spark_rows`), with the same rules, so both
engines store the same rows and count the same figures: each bar judged by the bar rules (`quality.rules`, their
vectorised form), the day's bars kept one a minute (the later line wins a repeated minute), the per-day figures the
checks read (`quality.checks.DayStats`), the rows in the table's schema sorted by ticker then time, and the bad bars
in the quarantine's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stockpipe.flatfiles.rows import NumpyRows
from stockpipe.flatfiles.zone import LandedFile
from stockpipe.market_calendar import session_hours
from stockpipe.quality.checks import SPIKE_MADS, SPIKE_MIN_JUMP, DayStats
from stockpipe.quality.rules import first_broken_vectorised

NEW_YORK = "America/New_York"
UTC_US = pa.timestamp("us", tz="UTC")
# The table's columns and types, as `transforms.SILVER_SCHEMA` declares them for Spark.
SILVER = pa.schema([
    pa.field("ticker", pa.string(), False), pa.field("timestamp_ms", pa.int64(), False),
    pa.field("trade_ts", UTC_US, False), pa.field("trade_date", pa.date32(), False),
    pa.field("market_session", pa.string(), False), pa.field("open", pa.float64(), False),
    pa.field("high", pa.float64(), False), pa.field("low", pa.float64(), False),
    pa.field("close", pa.float64(), False), pa.field("volume", pa.float64(), False),
    pa.field("vwap", pa.float64(), True), pa.field("num_transactions", pa.int64(), True),
    pa.field("ingested_at", UTC_US, False),
])
QUARANTINE = pa.schema([
    pa.field("ticker", pa.string(), False), pa.field("trade_date", pa.date32()),
    pa.field("timestamp_ms", pa.int64()), pa.field("reason", pa.string(), False), pa.field("raw", pa.string()),
    pa.field("landed_page", pa.string(), False), pa.field("position", pa.int32(), False),
    pa.field("run_id", pa.string()), pa.field("source", pa.string()), pa.field("fetched_at", UTC_US),
])


@dataclass(frozen=True)
class PreparedDay:
    """One file's outcome: the rows to store, the bad bars, and the per-(ticker, day) figures."""

    day: dt.date
    rows: pa.Table  # SILVER, sorted by ticker then time
    quarantine: pa.Table  # QUARANTINE, the bars of the file's day (or of no readable day) that broke a rule
    stats: list[DayStats]
    outside_day: int  # valid bars stamped on another day than the file's (counted, not stored)


def prepare_day(rows: NumpyRows, run_id: str | None, source: str) -> PreparedDay:
    c = rows.columns
    day = rows.file.day
    reasons = first_broken_vectorised(c)
    valid = reasons == None  # noqa: E711 - elementwise over an object array, in C
    ms = c["timestamp_ms"]
    dated = c["timestamp_present"]
    trade_date = _new_york_days(ms, dated)
    day_number = (day - dt.date(1970, 1, 1)).days
    assigned = dated & (trade_date == day_number)
    codes = c["ticker_code"]
    kept = _one_a_minute(codes, ms, c["position"], valid & assigned)
    hours = session_hours(day)
    open_ms, close_ms = (int(hours.open.timestamp() * 1000), int(hours.close.timestamp() * 1000))
    regular = kept & (ms >= open_ms) & (ms <= close_ms)
    landed_us = ingested_us(rows.file)
    table = _silver(rows, kept, ms, day_number, open_ms, close_ms, landed_us)
    bad = ~valid & (assigned | ~dated)
    quarantine = _quarantine(rows, reasons, bad, trade_date, dated, run_id, source, landed_us)
    stats = _stats(rows, dated, trade_date, assigned, valid, kept, regular)
    return PreparedDay(day, table, quarantine, stats, int((valid & dated & ~assigned).sum()))


def ingested_us(file: LandedFile) -> int:
    """The rows' ingested_at (microseconds since the epoch): when their file was landed, so a stored day names the
    file it came from."""
    return int(file.landed_at.timestamp() * 1_000_000)


def _new_york_days(ms: np.ndarray, dated: np.ndarray) -> np.ndarray:
    """Each bar's New York calendar day (days since 1970), from its instant: DST included, no session zone."""
    stamps = pa.array(np.where(dated, ms, 0), pa.timestamp("ms", tz="UTC")).cast(pa.timestamp("ms", tz=NEW_YORK))
    local = pc.local_timestamp(stamps).cast(pa.int64()).to_numpy()
    return np.where(dated, np.floor_divide(local, 86_400_000), -(10**9))


def _one_a_minute(codes: np.ndarray, ms: np.ndarray, position: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """The one bar a (ticker, minute) the table keeps among the candidates: the later line of a repeated minute."""
    kept = np.zeros(len(ms), dtype=bool)
    chosen = np.nonzero(candidates)[0]
    if not chosen.size:
        return kept
    tickers = codes
    # The provider's files come sorted by ticker then time (and positions rise through a file): no sort then.
    order = chosen if _in_order(codes[chosen], ms[chosen]) else \
        chosen[np.lexsort((position[chosen], ms[chosen], tickers[chosen]))]
    same_next = np.zeros(order.size, dtype=bool)
    same_next[:-1] = (tickers[order][1:] == tickers[order][:-1]) & (ms[order][1:] == ms[order][:-1])
    kept[order[~same_next]] = True
    return kept


def _in_order(codes: np.ndarray, ms: np.ndarray) -> bool:
    """Whether the rows are by ticker then time already (equal minutes allowed: a repeat keeps its file order)."""
    if codes.size < 2:
        return True
    step = np.diff(codes)
    return bool(np.all((step > 0) | ((step == 0) & (np.diff(ms) >= 0))))


def _by_ticker_then_time(index: np.ndarray, codes: np.ndarray, ms: np.ndarray) -> np.ndarray:
    """These rows by ticker then time: as they are when the file is (a sort only when it is not)."""
    if _in_order(codes[index], ms[index]):
        return index
    return index[np.lexsort((ms[index], codes[index]))]


def _silver(rows: NumpyRows, kept: np.ndarray, ms: np.ndarray, day_number: int, open_ms: int,
            close_ms: int, landed_us: int) -> pa.Table:
    c = rows.columns
    index = _by_ticker_then_time(np.nonzero(kept)[0], c["ticker_code"], ms)
    chosen_ms = ms[index]
    session = np.where(chosen_ms < open_ms, "pre", np.where(chosen_ms <= close_ms, "regular", "post"))
    n_present = c["n_present"][index]
    return pa.table([
        pa.DictionaryArray.from_arrays(pa.array(c["ticker_code"][index], pa.int32()),
                                       pa.array(rows.names, pa.string())).cast(pa.string()),
        pa.array(chosen_ms, pa.int64()),
        pa.array(chosen_ms * 1000, pa.int64()).cast(UTC_US),
        pa.array(np.full(index.size, day_number, dtype=np.int32), pa.int32()).cast(pa.date32()),
        pa.array(session, pa.string()),
        *[pa.array(c[name][index], pa.float64()) for name in ("open", "high", "low", "close", "volume")],
        pa.nulls(index.size, pa.float64()),
        pa.array(c["num_transactions"][index], pa.int64(), mask=~n_present),
        pa.array(np.full(index.size, landed_us, dtype=np.int64), pa.int64()).cast(UTC_US),
    ], schema=SILVER)


def _quarantine(rows: NumpyRows, reasons: np.ndarray, bad: np.ndarray, trade_date: np.ndarray, dated: np.ndarray,
                run_id: str | None, source: str, landed_us: int) -> pa.Table:
    c = rows.columns
    index = np.nonzero(bad)[0]
    malformed = rows.malformed
    count = index.size + len(malformed)
    if not count:
        return QUARANTINE.empty_table()
    tickers = [*rows.tickers(index).tolist(), *(line.split(",", 1)[0] for _, line in malformed)]
    dates = [*(int(d) if ok else None for d, ok in zip(trade_date[index], dated[index], strict=True)),
             *([None] * len(malformed))]
    stamps = [*(int(t) if ok else None for t, ok in zip(c["timestamp_ms"][index], dated[index], strict=True)),
              *([None] * len(malformed))]
    return pa.table([
        pa.array(tickers, pa.string()),
        pa.array(dates, pa.int32()).cast(pa.date32()),
        pa.array(stamps, pa.int64()),
        pa.array([*reasons[index], *(["readable"] * len(malformed))], pa.string()),
        pa.array([*rows.lines(index), *(line for _, line in malformed)], pa.string()),
        pa.array([rows.file.relative] * count, pa.string()),
        pa.array([*c["position"][index].tolist(), *(p for p, _ in malformed)], pa.int32()),
        pa.array([run_id] * count, pa.string()),
        pa.array([source] * count, pa.string()),
        pa.array([landed_us] * count, pa.int64()).cast(UTC_US),
    ], schema=QUARANTINE)


def _stats(rows: NumpyRows, dated: np.ndarray, trade_date: np.ndarray, assigned: np.ndarray, valid: np.ndarray,
           kept: np.ndarray, regular: np.ndarray) -> list[DayStats]:
    """The per-(ticker, day) figures `quality.checks.day_stats` makes in Spark, made here the same way: counts over
    every bar, and the moves over each day's regular kept bars in time order."""
    c = rows.columns
    malformed_tickers = [line.split(",", 1)[0] for _, line in rows.malformed]
    # Each bar's ticker as a code into `names`: the file's, then any only a malformed line names.
    extra_names = sorted(set(malformed_tickers) - set(rows.names.tolist()))
    names = np.concatenate([rows.names, np.array(extra_names, dtype=str)]) if extra_names else rows.names
    where = {name: code for code, name in enumerate(names.tolist())}
    ticker_code = np.concatenate([c["ticker_code"], np.array([where[t] for t in malformed_tickers], dtype=np.int32)])
    extra = len(malformed_tickers)

    def padded(mask: np.ndarray, value: bool) -> np.ndarray:
        return np.concatenate([mask, np.full(extra, value)]) if extra else mask

    # Each bar's (ticker, day) as one group number; days counted from the earliest (0: no readable day, the
    # malformed lines among them).
    dates = padded(np.where(dated, trade_date, 0), False)
    has_day = padded(dated, False)
    first_day = int(dates[has_day].min()) if has_day.any() else 0
    day_code = np.where(has_day, dates - first_day + 1, 0)
    width = int(day_code.max()) + 1 if day_code.size else 1
    group = ticker_code.astype(np.int64) * width + day_code
    counted = {
        "landed": np.ones(group.size, dtype=bool),
        "assigned": padded(assigned & valid, False),
        "rows": padded(kept, False),
        "quarantined": padded(~valid & (assigned | ~dated), True),
        "regular_rows": padded(regular, False),
        "zero_volume": padded(regular & (np.nan_to_num(c["volume"], nan=1.0) == 0), False),
    }
    size = len(names) * width
    totals = {name: np.bincount(group, weights=mask, minlength=size).astype(np.int64)
              for name, mask in counted.items()}
    moves = _moves(rows, regular)
    file_day = rows.file.day
    result = []
    for code in np.nonzero(totals["landed"])[0]:
        ticker, offset = str(names[code // width]), int(code % width)
        day = None if offset == 0 else dt.date(1970, 1, 1) + dt.timedelta(days=first_day + offset - 1)
        move = moves.get(ticker) if day == file_day else None
        result.append(DayStats(ticker, day, **{name: int(values[code]) for name, values in totals.items()},
                               **(move or {"longest_flat": 0})))  # type: ignore[arg-type]
    return result


def _moves(rows: NumpyRows, regular: np.ndarray) -> dict[str, dict[str, object]]:
    """Each ticker's spike and flat-run figures over its regular kept bars of the file's day (see day_stats), for
    every ticker at once: a group a ticker, its figures by NumPy's reductions over the groups."""
    c = rows.columns
    index = np.nonzero(regular)[0]
    if not index.size:
        return {}
    index = _by_ticker_then_time(index, c["ticker_code"], c["timestamp_ms"])
    who = c["ticker_code"][index]
    ms = c["timestamp_ms"][index]
    close, high, low = c["close"][index], c["high"][index], c["low"][index]
    first = np.ones(index.size, dtype=bool)
    first[1:] = who[1:] != who[:-1]
    previous = np.concatenate([[np.nan], close[:-1]])
    previous[first] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        move = np.abs(close / previous - 1)
        jump = np.maximum(np.abs(high / previous - 1), np.abs(low / previous - 1))
    changed = first | (close != previous)
    position = np.arange(index.size)
    run_start = np.maximum.accumulate(np.where(changed, position, -1))
    flat = position - run_start + 1
    starts = np.nonzero(first)[0]
    group = np.cumsum(first) - 1
    # The typical move: each group's lower median of its moves (NaN, a group's first bar, left out).
    has_move = ~np.isnan(move)
    moves_of = np.bincount(group[has_move], minlength=starts.size)
    # By group, then move within it (NaN last): a stable sort by the group of the moves in order, which beats a
    # two-key lexsort (a stable sort of small integers is a radix sort).
    by_value = np.argsort(move)  # ties are equal values: any order of them picks the same median
    small = group.astype(np.uint16) if starts.size <= np.iinfo(np.uint16).max else group  # radix-sortable
    by_move = by_value[np.argsort(small[by_value], kind="stable")]
    pick = starts + np.maximum(0, np.ceil(0.5 * moves_of).astype(np.int64) - 1)
    typical = np.where(moves_of > 0, move[by_move[np.minimum(pick, index.size - 1)]], np.nan)
    largest = np.fmax.reduceat(jump, starts)  # NaN left out, as nanmax does
    has_largest = np.add.reduceat(np.isfinite(jump).astype(np.int64), starts) > 0
    threshold = np.where(moves_of > 0, np.maximum(SPIKE_MIN_JUMP, typical * SPIKE_MADS), SPIKE_MIN_JUMP)
    spiky = has_largest & (moves_of > 0) & (largest > threshold)
    with np.errstate(invalid="ignore"):
        big = jump > SPIKE_MIN_JUMP
    spikes = np.add.reduceat(big.astype(np.int64), starts)
    first_big = np.minimum.reduceat(np.where(big, position, index.size), starts)
    longest = np.maximum.reduceat(flat, starts)
    first_longest = np.minimum.reduceat(np.where(flat == longest[group], position, index.size), starts)
    run_from = ms[run_start]
    found: dict[str, dict[str, object]] = {}
    for g, start in enumerate(starts.tolist()):
        is_spiky = bool(spiky[g])
        found[str(rows.names[who[start]])] = {
            "spikes": int(spikes[g]) if is_spiky else 0,
            "max_jump": float(largest[g]) if is_spiky else None,
            "first_spike_ms": int(ms[first_big[g]]) if is_spiky else None,
            "spike_threshold": float(typical[g] * SPIKE_MADS) if moves_of[g] > 0 else None,
            "longest_flat": int(longest[g]),
            "flat_from_ms": int(run_from[first_longest[g]]),
        }
    return found

"""The sample market's daily flat files, as the provider publishes them: one gzip CSV a trading day, every ticker of
the day in it, sorted by ticker then time, prices and volumes as traded, `window_start` in Unix nanoseconds.

    ticker,volume,open,close,high,low,window_start,transactions

The eight tickers' bars are those the sample's REST answers serve (`market.range_bars`, as traded, without `vw`,
which the files do not carry); every other ticker's come from `marketday`. A file is a pure function of the day and
the tickers it holds, so a test can publish a small market and a demo the whole one, and both agree on every ticker
they share. Generated files are kept in a cache folder (a day of the whole market takes a few seconds to make).
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from stockpipe import DEFAULT_TICKERS
from stockpipe.market_calendar import NEW_YORK, trading_days
from stockpipe.sample.market import range_bars
from stockpipe.sample.marketday import market_day
from stockpipe.sample.universe import market_symbols

BUCKET = "flatfiles"
MINUTE_PREFIX = "us_stocks_sip/minute_aggs_v1"
HEADER = ("ticker", "volume", "open", "close", "high", "low", "window_start", "transactions")
# Bumped whenever the generator's output changes, so a cache from an older version is never served.
VERSION = "1"
# The provider documents a day's files as complete by about 11:00 New York the next day.
PUBLISHED_AT = dt.time(11, 0)


def day_key(day: dt.date) -> str:
    return f"{MINUTE_PREFIX}/{day:%Y}/{day:%m}/{day.isoformat()}.csv.gz"


def published(day: dt.date, now: dt.datetime) -> bool:
    """Whether the day's file is out by `now`: from 11:00 New York on the next calendar day."""
    return now >= dt.datetime.combine(day + dt.timedelta(days=1), PUBLISHED_AT, NEW_YORK)


def day_table(day: dt.date, symbols: Sequence[str] | None = None) -> pa.Table:
    """Every bar of `day` for `symbols` (the whole sample market by default), in the file's columns and order."""
    wanted = tuple(market_symbols() if symbols is None else symbols)
    eight = [s for s in wanted if s in DEFAULT_TICKERS]
    others = tuple(s for s in wanted if s not in DEFAULT_TICKERS)
    parts: list[dict[str, np.ndarray]] = []
    for ticker in eight:
        bars = range_bars(ticker, day, day)
        parts.append({"ticker": np.array([ticker] * bars["t"].size, dtype=object), "t": bars["t"],
                      "o": bars["o"], "h": bars["h"], "l": bars["l"], "c": bars["c"], "v": bars["v"],
                      "n": bars["n"]})
    if others:
        parts.append(market_day(day, others).minutes)
    columns = {key: np.concatenate([p[key] for p in parts]) if parts else np.array([]) for key in
               ("ticker", "t", "o", "h", "l", "c", "v", "n")}
    order = np.lexsort((columns["t"], columns["ticker"].astype(str))) if columns["t"].size else np.array([], int)
    return pa.table({
        "ticker": pa.array(columns["ticker"][order].astype(str)),
        "volume": pa.array(columns["v"][order], pa.float64()),
        "open": pa.array(columns["o"][order], pa.float64()),
        "close": pa.array(columns["c"][order], pa.float64()),
        "high": pa.array(columns["h"][order], pa.float64()),
        "low": pa.array(columns["l"][order], pa.float64()),
        "window_start": pa.array(columns["t"][order].astype(np.int64) * 1_000_000, pa.int64()),
        "transactions": pa.array(columns["n"][order].astype(np.int64), pa.int64()),
    })


def csv_bytes(table: pa.Table) -> bytes:
    """The table as the provider's gzip CSV: a header line, then one bar a line; whole volumes without a fraction."""
    volume = table.column("volume").to_numpy()
    text = np.where(volume == np.floor(volume), volume.astype(np.int64).astype(str), volume.astype(str))
    shown = table.set_column(1, "volume", pa.array(text))
    buffer = io.BytesIO()
    buffer.write((",".join(HEADER) + "\n").encode())  # the provider's header is not quoted (Arrow quotes its own)
    pacsv.write_csv(shown, buffer, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return gzip.compress(buffer.getvalue(), compresslevel=6, mtime=0)


def day_file(day: dt.date, symbols: Sequence[str] | None = None, cache: Path | None = None) -> Path:
    """The day's file, made once and kept in the cache folder (~/.cache/stockpipe/sample-flatfiles by default)."""
    if not trading_days(day, day):
        raise ValueError(f"{day} is not an NYSE session: no file")
    wanted = tuple(market_symbols() if symbols is None else symbols)
    universe = hashlib.blake2b(",".join(wanted).encode(), digest_size=6).hexdigest()
    folder = (cache or default_cache()) / f"v{VERSION}-{universe}"
    path = folder / f"{day.isoformat()}.csv.gz"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.part")
        partial.write_bytes(csv_bytes(day_table(day, wanted)))
        partial.replace(path)  # whole or absent: another process may be making the same file
    return path


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stockpipe" / "sample-flatfiles"

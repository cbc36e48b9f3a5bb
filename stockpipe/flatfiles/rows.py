"""A landed flat file's lines as bars, with the columns the bar rules read: NumPy columns from Arrow's CSV reader
(`numpy_rows`), whichever engine stores them (delta-rs in its own process, delta-spark in a Spark task a file: see
`flatfiles.tasks`), so a line is the same bar, the same verdict and the same row either way.

    ticker,volume,open,close,high,low,window_start,transactions

A line that does not hold the header's eight fields, or has no ticker, is not a bar (`readable`); a field that is
there but not a number breaks `fields_are_numbers`; `window_start` must be whole nanoseconds on a whole millisecond
(`t_integer_ms`); the rest are the rules every bar keeps. `position` is the line's place among the file's rows
(0 for the first after the header): with the file, what names a bad row in the quarantine.
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from stockpipe.errors import PipelineError
from stockpipe.flatfiles.zone import LandedFile

HEADER = ("ticker", "volume", "open", "close", "high", "low", "window_start", "transactions")
FIELDS = len(HEADER)
# A number as the bar rules take it (after the field's surrounding spaces): decimal or scientific, or NaN and
# Infinity in any case, as Spark's cast and Arrow's both read them; anything else in a field is text.
NUMBER = r"^[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|(?i:nan|inf|infinity))$"
INTEGER = r"^[+-]?\d{1,19}$"
NANOS_PER_MS = 1_000_000
LONG_LIMIT = 2.0**63
# The prices and volume as (the file's column, the bar's name).
NUMBERS = (("volume", "volume"), ("open", "open"), ("close", "close"), ("high", "high"), ("low", "low"))


def check_header(file: LandedFile) -> None:
    """The file's first line is the contract's header: a file in another shape is refused as a whole, not read as
    bars (its day fails, and says why)."""
    with gzip.open(file.path, "rt", newline="") as text:
        first = text.readline().strip()
    if tuple(first.split(",")) != HEADER:
        raise PipelineError(f"{file.day}: {file.relative} does not start with the provider's header "
                            f"({','.join(HEADER)}); found {first[:120]!r}")


# -- NumPy / Arrow ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NumpyRows:
    """One file's bars as NumPy columns: what the vectorised bar rules read (`quality.rules.Columns`) and the values
    the table stores. A ticker is a code into `names` (sorted, so codes sort as the tickers do): two million Python
    strings would double a market day's memory. A line's text is made only for the bars the quarantine keeps."""

    file: LandedFile
    columns: dict[str, np.ndarray]
    names: np.ndarray  # the file's tickers, sorted (str)
    text: pa.Table | None  # the fields as text, for `lines` (None when read typed: the file is read again if asked)
    malformed: list[tuple[int, str]]  # (position, line) of lines Arrow could not split into the header's fields

    @property
    def size(self) -> int:
        return len(self.columns["ticker_code"])

    def tickers(self, index: np.ndarray) -> np.ndarray:
        return self.names[self.columns["ticker_code"][index]]

    def lines(self, index: np.ndarray) -> list[str]:
        """These rows as their lines of the file (a typed read kept no text: the file's lines are read again, as text,
        which only a day with bad bars needs)."""
        if self.text is None:
            every_line = _read(self.file, threads=True)[0]  # typed: no line was malformed, so row = position
            chosen = every_line.take(pa.array(self.columns["position"][index], pa.int64()))
        else:
            chosen = self.text.take(pa.array(index, pa.int64()))
        return pc.binary_join_element_wise(*[chosen.column(n) for n in HEADER], ",").to_pylist()


# A clean file's fields as typed: what a day holds when nothing in it is malformed, read in one pass. The whole
# numbers are read as text and taken only when every one is plain digits: Arrow's own integer parse takes "0x10"
# as 16, which the rules call text.
TYPED = {"ticker": pa.string(), "volume": pa.float64(), "open": pa.float64(), "close": pa.float64(),
         "high": pa.float64(), "low": pa.float64(), "window_start": pa.string(), "transactions": pa.string()}
WHOLE = ("window_start", "transactions")


def numpy_rows(file: LandedFile, tickers: frozenset[str] | None, typed: bool = True,
               part: tuple[int, int] = (0, 1)) -> NumpyRows:
    """The file read by Arrow's CSV reader (no quoting, as the provider quotes nothing and Spark's split of a line
    does not either). A clean file is read typed, in one pass; when any field is not what the contract says (text
    where a number goes, a blank, a line of the wrong width), the file is read again with every field as text, so a
    bad field is found, not fatal, and a line with too many or too few fields comes back as a `readable` bar. Either
    read makes the same columns of a clean file (tests/flatfile_rows.py holds them to it).

    `part` (k, n): only the k-th of n runs of the file's tickers in order (a malformed line whose ticker the file
    holds nowhere else goes with the first), so n tasks can share a day's file, each a run of tickers of its own."""
    read: tuple[pa.Table, list[tuple[int, str]]] | None = None
    if typed:
        try:
            read = _whole_numbers(_read(file, threads=True, types=TYPED, strict=True))
        except (pa.ArrowInvalid, _MalformedError):
            read = None
    if read is None:
        read = _read(file, threads=True)
        if read[1]:  # rare: read again on one thread, where the reader numbers the lines it sets aside
            read = _read(file, threads=False)
    table, malformed = read
    if part[1] > 1:
        tickers = _tickers_of_part(table, malformed, tickers, part)
    return _columns(file, tickers, table, malformed)


def _tickers_of_part(table: pa.Table, malformed: list[tuple[int, str]], tickers: frozenset[str] | None,
                     part: tuple[int, int]) -> frozenset[str]:
    number, parts = part
    names = sorted(pc.unique(table.column("ticker")).to_pylist())
    mine = set(names[len(names) * number // parts: len(names) * (number + 1) // parts])
    if number == 0:
        mine |= {line.split(",", 1)[0] for _, line in malformed} - set(names)
    return frozenset(mine if tickers is None else mine & tickers)


def _columns(file: LandedFile, tickers: frozenset[str] | None, table: pa.Table,
             malformed: list[tuple[int, str]]) -> NumpyRows:
    position = _renumber(table.num_rows, np.array(sorted(p for p, _ in malformed), dtype=np.int64))
    if tickers is not None:
        keep = pc.is_in(table.column("ticker"), pa.array(sorted(tickers))).to_numpy(zero_copy_only=False)
        table, position = table.filter(pa.array(keep)), position[keep]
        malformed = [(p, line) for p, line in malformed if line.split(",", 1)[0] in tickers]
    fetched_ms = os.stat(file.path).st_mtime_ns // NANOS_PER_MS
    encoded = pc.dictionary_encode(table.column("ticker")).combine_chunks()
    appearing = encoded.dictionary.to_numpy(zero_copy_only=False).astype(str)
    order = np.argsort(appearing, kind="stable")
    rank = np.empty(order.size, dtype=np.int32)
    rank[order] = np.arange(order.size, dtype=np.int32)
    codes = rank[encoded.indices.to_numpy(zero_copy_only=False)] if order.size else np.zeros(0, dtype=np.int32)
    names = appearing[order]
    columns: dict[str, np.ndarray] = {"ticker_code": codes.astype(np.int32), "position": position}
    not_numbers = np.zeros(table.num_rows, dtype=bool)
    for source, name in (*NUMBERS, ("transactions", "n")):
        values, present, text_not_number = _numbers(table.column(source))
        columns[name if name != "n" else "n_value"] = values
        columns[f"{name}_present"] = present
        not_numbers |= text_not_number
    nanos, nanos_text_bad, window_value = _nanos(table.column("window_start"))
    not_numbers |= nanos_text_bad
    typed = pa.types.is_integer(table.schema.field("window_start").type)
    on_ms = (nanos.mask == 0) & (nanos.values % NANOS_PER_MS == 0)
    columns["timestamp_ms"] = np.where(on_ms, nanos.values // NANOS_PER_MS, 0)
    columns["timestamp_present"] = on_ms
    columns["t_value"] = window_value / NANOS_PER_MS
    n = columns["n_value"]
    with np.errstate(invalid="ignore"):
        whole_n = columns["n_present"] & np.isfinite(n) & (np.abs(n) < LONG_LIMIT) & (n == np.floor(n))
    columns["n_whole"] = whole_n
    columns["num_transactions"] = np.where(whole_n, np.nan_to_num(n), 0).astype(np.int64)
    columns["vwap"] = np.full(table.num_rows, np.nan)
    columns["vwap_present"] = np.zeros(table.num_rows, dtype=bool)
    columns["not_numbers"] = not_numbers
    columns["not_object"] = (names[codes] == "") if codes.size else np.zeros(0, dtype=bool)
    columns["fetched_ms"] = np.full(table.num_rows, fetched_ms, dtype=np.int64)
    return NumpyRows(file, columns, names, None if typed else table, malformed)


def _whole_numbers(read: tuple[pa.Table, list[tuple[int, str]]]) -> tuple[pa.Table, list[tuple[int, str]]]:
    table, malformed = read
    for name in WHOLE:
        digits = pc.utf8_is_digit(table.column(name))  # ASCII and Unicode digits; the cast refuses the latter
        if not pc.all(digits).as_py():
            raise _MalformedError
        table = table.set_column(table.schema.get_field_index(name), name, pc.cast(table.column(name), pa.int64()))
    return table, malformed


class _MalformedError(Exception):
    """A line the typed read cannot take: the file is read again as text."""


def _read(file: LandedFile, threads: bool, types: dict[str, pa.DataType] | None = None,
          strict: bool = False) -> tuple[pa.Table, list[tuple[int, str]]]:
    malformed: list[tuple[int, str]] = []

    def aside(row: pacsv.InvalidRow) -> str:
        if strict:
            return "error"  # the read stops with ArrowInvalid: the file is read again as text
        # The reader numbers lines from 1, the header first: a row's place among the rows is that less two.
        malformed.append((row.number - 2 if row.number is not None else -1, row.text))
        return "skip"

    table = pacsv.read_csv(
        file.path,
        read_options=pacsv.ReadOptions(use_threads=threads, block_size=16 << 20),
        parse_options=pacsv.ParseOptions(quote_char=False, ignore_empty_lines=False, invalid_row_handler=aside),
        convert_options=pacsv.ConvertOptions(column_types=types or dict.fromkeys(HEADER, pa.string()),
                                              include_columns=list(HEADER), strings_can_be_null=False,
                                              # typed: a blank or null-looking field is not a number, so not clean
                                              null_values=[], quoted_strings_can_be_null=False),
    )
    return table, malformed


def _renumber(rows: int, skipped: np.ndarray) -> np.ndarray:
    """The file positions of the rows kept when the lines at `skipped` positions were set aside."""
    if not skipped.size:
        return np.arange(rows, dtype=np.int64)
    taken = np.ones(rows + skipped.size, dtype=bool)
    taken[skipped[skipped < taken.size]] = False
    return np.nonzero(taken)[0][:rows].astype(np.int64)


@dataclass(frozen=True)
class _Masked:
    values: np.ndarray
    mask: np.ndarray  # 1 where there is no value


def _numbers(texts: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values with NaN where none, present: the field holds a number, text_not_number: it holds something else)."""
    if not pa.types.is_string(texts.type):  # read typed: every field is a number
        values = texts.cast(pa.float64()).to_numpy()
        return values, np.ones(values.size, dtype=bool), np.zeros(values.size, dtype=bool)
    trimmed = pc.utf8_trim_whitespace(texts)
    valid = pc.match_substring_regex(trimmed, NUMBER)
    values = pc.cast(pc.if_else(valid, trimmed, pa.scalar(None, pa.string())), pa.float64())
    present = valid.to_numpy(zero_copy_only=False).astype(bool)
    filled = pc.fill_null(values, np.nan).to_numpy(zero_copy_only=False)
    empty = pc.equal(trimmed, "").to_numpy(zero_copy_only=False).astype(bool)
    return filled, present, ~present & ~empty


def _nanos(texts: pa.ChunkedArray) -> tuple[_Masked, np.ndarray, np.ndarray]:
    """window_start: whole nanoseconds that fit a long, what in it is text, and its value as a number (t as sent)."""
    if pa.types.is_integer(texts.type):  # read typed: every field a long
        longs = texts.to_numpy()
        return _Masked(longs, np.zeros(longs.size, dtype=np.int8)), np.zeros(longs.size, dtype=bool), \
            longs.astype(np.float64)
    trimmed = pc.utf8_trim_whitespace(texts)
    integer = pc.match_substring_regex(trimmed, INTEGER)
    exact = pc.cast(pc.if_else(integer, trimmed, pa.scalar(None, pa.string())), pa.decimal128(20, 0))
    limit = pa.scalar(2**63 - 1, pa.decimal128(20, 0))
    fits = pc.and_kleene(pc.less_equal(exact, limit), pc.greater_equal(exact, pc.negate(limit)))
    kept = pc.if_else(pc.fill_null(fits, False), exact, pa.scalar(None, pa.decimal128(20, 0)))
    longs = pc.cast(kept, pa.int64())
    values = pc.fill_null(longs, 0).to_numpy(zero_copy_only=False)
    mask = pc.is_null(longs).to_numpy(zero_copy_only=False).astype(np.int8)
    number, _, not_number = _numbers(texts)
    return _Masked(values, mask), not_number, number


def landed_ms(file: LandedFile) -> int:
    return int(file.landed_at.timestamp() * 1000)


def as_date(day: dt.date) -> np.datetime64:
    return np.datetime64(day, "D")

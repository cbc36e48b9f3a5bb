"""A landed flat file's lines as bars, with the columns the bar rules read, in the engine's own terms: a Spark
frame (`spark_rows`: one task a file) or NumPy columns (`numpy_rows`: Arrow's CSV reader). Both parse a field the
same way, by the same patterns, so a line is the same bar, the same verdict and the same row whichever engine reads
it.

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
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

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


# -- Spark ---------------------------------------------------------------------------------------------------------
def spark_rows(spark: SparkSession, files: Iterable[LandedFile], tickers: frozenset[str] | None) -> DataFrame:
    """Every line of these files as a bar in the landed-bars shape (`landing.RAW_BARS_SCHEMA`, plus `landed`, the
    file it came from, and `file_day`). One scan a file, unioned: a gzip file is one task, and each keeps its own
    partition, so the row id Spark gives is the line's place in its file."""
    frames = [_file_rows(spark, f, tickers) for f in files]
    if not frames:
        raise ValueError("no landed file to read")
    found = frames[0]
    for frame in frames[1:]:
        found = found.unionByName(frame)
    return found


def _file_rows(spark: SparkSession, file: LandedFile, tickers: frozenset[str] | None) -> DataFrame:
    lines = spark.read.text(str(file.path)).select(
        F.col("value").alias("line"),
        (F.monotonically_increasing_id().bitwiseAND(F.lit((1 << 33) - 1)) - 1).cast("int").alias("position"),
        F.col("_metadata.file_modification_time").alias("fetched_at"),
    ).filter(F.col("position") >= 0)  # the header
    fields = F.split(F.col("line"), ",", -1)
    parts = lines.select("line", "position", "fetched_at", fields.alias("fields"))
    if tickers is not None:
        parts = parts.filter(F.col("fields")[0].isin(sorted(tickers)))
    whole_line = (F.size("fields") == FIELDS) & (F.col("fields")[0] != "")

    def field(name: str) -> Column:
        return F.when(whole_line, F.trim(F.col("fields")[HEADER.index(name)]))

    def number(name: str) -> Column:
        text = field(name)
        return F.when(text.rlike(NUMBER), text.cast("double"))

    def text_not_number(name: str) -> Column:
        text = field(name)
        return F.coalesce((text != "") & ~text.rlike(NUMBER), F.lit(False))

    nanos = F.when(field("window_start").rlike(INTEGER), F.expr(
        f"try_cast(trim(fields[{HEADER.index('window_start')}]) as bigint)"))
    window_text = field("window_start")
    n = number("transactions")
    whole_n = n.isNotNull() & ~F.isnan(n) & (F.abs(n) < F.lit(LONG_LIMIT)) & (n == F.floor(n))
    not_numbers = text_not_number("volume")
    for name in ("open", "close", "high", "low", "transactions"):
        not_numbers = not_numbers | text_not_number(name)
    # window_start is a count of nanoseconds: text that is not a number at all is not a number; a number that is not
    # a whole count (or beyond a long) leaves no timestamp (t_integer_ms).
    not_numbers = not_numbers | text_not_number("window_start")
    return parts.select(
        F.when(whole_line, F.col("fields")[0]).otherwise(F.lit("")).alias("ticker"),
        F.lit(file.fetch_id).alias("fetch_id"),
        F.lit(0).alias("page"),
        F.col("position"),
        F.when(nanos % NANOS_PER_MS == 0, (nanos / NANOS_PER_MS).cast("long")).alias("timestamp_ms"),
        number("open").alias("open"), number("high").alias("high"), number("low").alias("low"),
        number("close").alias("close"), number("volume").alias("volume"),
        F.lit(None).cast("double").alias("vwap"),
        F.when(whole_n, n.cast("long")).alias("num_transactions"),
        F.lit(file.landed_at.replace(tzinfo=None)).cast("timestamp").alias("_landed_utc"),
        F.col("fetched_at"),
        F.when(window_text.rlike(NUMBER), window_text.cast("double") / NANOS_PER_MS).alias("t_value"),
        n.alias("n_value"),
        F.col("line").alias("raw"),
        not_numbers.alias("not_numbers"),
        (~whole_line).alias("not_object"),
        F.lit(file.relative).alias("landed"),
        F.lit(file.day).alias("file_day"),
    ).withColumn("ingested_at", F.to_utc_timestamp("_landed_utc", "UTC")).drop("_landed_utc")


# -- NumPy / Arrow ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NumpyRows:
    """One file's bars as NumPy columns: what the vectorised bar rules read (`quality.rules.Columns`), the values
    the table stores, and each line's text for the quarantine."""

    file: LandedFile
    columns: dict[str, np.ndarray]
    malformed: list[tuple[int, str]]  # (position, line) of lines Arrow could not split into the header's fields

    @property
    def size(self) -> int:
        return len(self.columns["ticker"])


def numpy_rows(file: LandedFile, tickers: frozenset[str] | None) -> NumpyRows:
    """The file read by Arrow's CSV reader (every field as text, so a bad field is found, not fatal; no quoting, as
    the provider quotes nothing and Spark's split of a line does not either); a line with too many or too few
    fields is set aside by the reader and comes back as a `readable` bar."""
    table, malformed = _read(file, threads=True)
    if malformed:  # rare: read again on one thread, where the reader numbers the lines it sets aside
        table, malformed = _read(file, threads=False)
    position = _renumber(table.num_rows, np.array(sorted(p for p, _ in malformed), dtype=np.int64))
    if tickers is not None:
        keep = pc.is_in(table.column("ticker"), pa.array(sorted(tickers))).to_numpy(zero_copy_only=False)
        table, position = table.filter(pa.array(keep)), position[keep]
        malformed = [(p, line) for p, line in malformed if line.split(",", 1)[0] in tickers]
    fetched_ms = os.stat(file.path).st_mtime_ns // NANOS_PER_MS
    columns: dict[str, np.ndarray] = {
        "ticker": table.column("ticker").to_numpy(zero_copy_only=False).astype(object),
        "position": position,
    }
    not_numbers = np.zeros(table.num_rows, dtype=bool)
    for source, name in (*NUMBERS, ("transactions", "n")):
        values, present, text_not_number = _numbers(table.column(source))
        columns[name if name != "n" else "n_value"] = values
        columns[f"{name}_present"] = present
        not_numbers |= text_not_number
    nanos, nanos_text_bad, window_value = _nanos(table.column("window_start"))
    not_numbers |= nanos_text_bad
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
    columns["not_object"] = columns["ticker"] == ""
    columns["fetched_ms"] = np.full(table.num_rows, fetched_ms, dtype=np.int64)
    columns["line"] = _lines(table)
    return NumpyRows(file, columns, malformed)


def _read(file: LandedFile, threads: bool) -> tuple[pa.Table, list[tuple[int, str]]]:
    malformed: list[tuple[int, str]] = []

    def aside(row: pacsv.InvalidRow) -> str:
        # The reader numbers lines from 1, the header first: a row's place among the rows is that less two.
        malformed.append((row.number - 2 if row.number is not None else -1, row.text))
        return "skip"

    table = pacsv.read_csv(
        file.path,
        read_options=pacsv.ReadOptions(use_threads=threads, block_size=16 << 20),
        parse_options=pacsv.ParseOptions(quote_char=False, ignore_empty_lines=False, invalid_row_handler=aside),
        convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(HEADER, pa.string()),
                                              include_columns=list(HEADER), strings_can_be_null=False),
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
    trimmed = pc.utf8_trim_whitespace(texts)
    valid = pc.match_substring_regex(trimmed, NUMBER)
    values = pc.cast(pc.if_else(valid, trimmed, pa.scalar(None, pa.string())), pa.float64())
    present = valid.to_numpy(zero_copy_only=False).astype(bool)
    filled = pc.fill_null(values, np.nan).to_numpy(zero_copy_only=False)
    empty = pc.equal(trimmed, "").to_numpy(zero_copy_only=False).astype(bool)
    return filled, present, ~present & ~empty


def _nanos(texts: pa.ChunkedArray) -> tuple[_Masked, np.ndarray, np.ndarray]:
    """window_start: whole nanoseconds that fit a long, what in it is text, and its value as a number (t as sent)."""
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


def _lines(table: pa.Table) -> np.ndarray:
    """Each row as its line of the file (the quarantine keeps a bad row's text as it was)."""
    joined = pc.binary_join_element_wise(*[table.column(name) for name in HEADER], ",")
    return joined.to_numpy(zero_copy_only=False).astype(object)


def landed_ms(file: LandedFile) -> int:
    return int(file.landed_at.timestamp() * 1000)


def as_date(day: dt.date) -> np.datetime64:
    return np.datetime64(day, "D")

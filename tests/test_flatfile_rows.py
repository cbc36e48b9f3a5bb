"""A flat file's lines as bars, without Spark: the typed read of a clean file and the text read of any file make the
same columns, a field only the text read takes as text sends the file to it, and the per-ticker figures the checks
read (spikes, flat runs) come out of the vectorised reductions as out of a plain loop over each ticker."""

from __future__ import annotations

import datetime as dt
import gzip
import math
from pathlib import Path

import numpy as np
import pytest

from stockpipe.flatfiles.arrow import _moves, prepare_day
from stockpipe.flatfiles.rows import HEADER, NumpyRows, numpy_rows
from stockpipe.flatfiles.zone import LandedFile
from stockpipe.quality.checks import SPIKE_MADS, SPIKE_MIN_JUMP
from stockpipe.sample.flatfiles import csv_bytes, day_table
from stockpipe.sample.universe import market_symbols

DAY = dt.date(2024, 1, 10)
SYMBOLS = tuple(sorted(market_symbols()[:30]))


def landed(tmp_path: Path, lines: list[str]) -> LandedFile:
    path = tmp_path / f"{DAY}.csv.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0))
    return LandedFile(DAY, path, f"us_stocks_sip/minute_aggs_v1/2024/01/{DAY}.csv.gz", "etag", path.stat().st_size,
                      dt.datetime(2024, 1, 11, 16, 0, tzinfo=dt.UTC))


def day_lines() -> list[str]:
    return gzip.decompress(csv_bytes(day_table(DAY, SYMBOLS))).decode().splitlines()


def with_field(lines: list[str], row: int, field: str, value: str) -> list[str]:
    out = list(lines)
    fields = out[row].split(",")
    fields[HEADER.index(field)] = value
    out[row] = ",".join(fields)
    return out


def test_a_clean_file_read_typed_makes_the_columns_the_text_read_makes(tmp_path):
    lines = with_field(with_field(day_lines(), 5, "volume", "1e3"), 6, "high", "0.5e3")
    lines = with_field(lines, 7, "low", "-1")  # a number that breaks a rule: quarantined with its line, as sent
    file = landed(tmp_path, lines)
    typed, text = numpy_rows(file, None), numpy_rows(file, None, typed=False)
    assert typed.text is None and text.text is not None  # the typed read was the one taken
    assert set(typed.columns) == set(text.columns)
    for name in typed.columns:
        assert np.array_equal(typed.columns[name], text.columns[name], equal_nan=True), name
    assert typed.names.tolist() == text.names.tolist()
    assert typed.lines(np.array([0, 6])) == [lines[1], lines[7]]
    by_typed, by_text = prepare_day(typed, "run", "test"), prepare_day(text, "run", "test")
    assert by_typed.rows.equals(by_text.rows) and by_typed.stats == by_text.stats
    assert by_typed.quarantine.column("raw").to_pylist() == [lines[7]]


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("window_start", "0x10", "fields_are_numbers"),  # Arrow's integer parse takes it as 16
    ("transactions", "", None),  # blank: a missing count, not a bad bar
    ("close", "12.x", "fields_are_numbers"),
    ("window_start", " 1704897000000000000", None),  # spaces around a number are trimmed
])
def test_a_field_the_typed_read_would_misread_sends_the_file_to_the_text_read(tmp_path, field, value, reason):
    lines = with_field(day_lines(), 3, field, value)
    rows = numpy_rows(landed(tmp_path, lines), None)
    assert rows.text is not None
    day = prepare_day(rows, "run", "test")
    found = dict(zip(day.quarantine.column("position").to_pylist(), day.quarantine.column("reason").to_pylist(),
                     strict=True))
    assert found.get(2) == reason


def _moves_one_ticker_at_a_time(rows: NumpyRows, regular: np.ndarray) -> dict[str, dict[str, object]]:
    """The figures as the Spark job defines them, a ticker at a time in plain NumPy: the oracle."""
    c = rows.columns
    found: dict[str, dict[str, object]] = {}
    for code in np.unique(c["ticker_code"][regular]):
        index = np.nonzero(regular & (c["ticker_code"] == code))[0]
        index = index[np.argsort(c["timestamp_ms"][index], kind="stable")]
        ms, close = c["timestamp_ms"][index], c["close"][index]
        high, low = c["high"][index], c["low"][index]
        previous = np.concatenate([[np.nan], close[:-1]])
        with np.errstate(invalid="ignore", divide="ignore"):
            move = np.abs(close / previous - 1)
            jump = np.maximum(np.abs(high / previous - 1), np.abs(low / previous - 1))
        moves = np.sort(move[~np.isnan(move)])
        typical = float(moves[max(0, math.ceil(0.5 * moves.size) - 1)]) if moves.size else None
        largest = float(np.nanmax(jump)) if np.isfinite(jump).any() else None
        threshold = max(SPIKE_MIN_JUMP, typical * SPIKE_MADS) if typical is not None else SPIKE_MIN_JUMP
        spiky = largest is not None and typical is not None and largest > threshold
        big = jump > SPIKE_MIN_JUMP
        flat, run, run_from, best, best_from = 0, 0, 0, 0, 0
        for i in range(index.size):
            if i == 0 or close[i] != close[i - 1]:
                run, run_from = 0, int(ms[i])
            run += 1
            if run > best:
                best, best_from = run, run_from
            flat = best
        found[str(rows.names[code])] = {
            "spikes": int(big.sum()) if spiky else 0, "max_jump": largest if spiky else None,
            "first_spike_ms": int(ms[big][0]) if spiky else None,
            "spike_threshold": typical * SPIKE_MADS if typical is not None else None,
            "longest_flat": flat, "flat_from_ms": best_from,
        }
    return found


def test_the_spike_and_flat_figures_are_a_plain_loops_over_each_ticker(tmp_path):
    """Random closes with flat runs, spikes in the high or the low, and rows out of order: every figure equal."""
    generator = np.random.default_rng(7)
    lines = day_lines()
    body = lines[1:]
    for row in generator.choice(len(body), size=len(body) // 3, replace=False):
        fields = body[row].split(",")
        step = generator.choice([0.0, 0.0, 0.001, -0.002, 0.09, -0.2])
        close = max(0.5, float(fields[3]) * (1 + step))
        fields[3] = f"{close:.4f}"
        fields[4] = f"{max(float(fields[4]), close) * (1.3 if step > 0.05 else 1):.4f}"
        fields[5] = f"{min(float(fields[5]), close):.4f}"
        body[row] = ",".join(fields)
    for run_start in generator.choice(len(body) - 20, size=40, replace=False):  # flat runs: one close repeated
        fields = body[run_start].split(",")
        for row in range(run_start + 1, run_start + 12):
            later = body[row].split(",")
            if later[0] == fields[0]:
                later[3] = later[4] = later[5] = fields[3]
                body[row] = ",".join(later)
    generator.shuffle(body)
    rows = numpy_rows(landed(tmp_path, [lines[0], *body]), None)
    regular = np.ones(rows.size, dtype=bool)
    assert _moves(rows, regular) == _moves_one_ticker_at_a_time(rows, regular)
    assert any(figures["spikes"] for figures in _moves(rows, regular).values())

"""The bar rules' gate, on pages as they land: one bar for each rule, the shapes real feeds send, a page that is not
JSON, and a property test that any bar is judged exactly as the rules are written (an oracle in plain Python), so it
either lands valid or lands in quarantine, never both, never a crash."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stockpipe.compat import conf_for_call
from stockpipe.landing import raw_bars_from_pages
from stockpipe.market_calendar import NEW_YORK
from stockpipe.quality.checks import CHECK_NAMES
from stockpipe.quality.rules import BAR_RULES, RULE_NAMES, first_broken_vectorised, with_reason

# Spark code whose behaviour Spark Connect (and Spark 4) may change: run in both lanes.
pytestmark = pytest.mark.connect

MINUTE = 60_000
FETCH = "fetch=2024-01-08_2024-01-12_20240113T000000000000Z_1-abcdef12"


def ny_ms(day: dt.date, hour: int, minute: int) -> int:
    return int(dt.datetime.combine(day, dt.time(hour, minute), NEW_YORK).timestamp() * 1000)


def land_pages(root: Path, pages: list[list[Any]], ticker: str = "AAPL") -> list[str]:
    """Pages written as the landing zone holds them (page-00001.json ...), bars as given (Python's json writes NaN
    and Infinity bare, as a careless feed would)."""
    folder = root / f"ticker={ticker}" / FETCH
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for number, bars in enumerate(pages, start=1):
        path = folder / f"page-{number:05d}.json"
        path.write_text(json.dumps({"status": "OK", "ticker": ticker, "results": bars}))
        files.append(str(path))
    return files


def judged(spark, files: list[str]) -> dict[tuple[int, int], str | None]:
    """Each bar's reason by the Spark rules, checked against the vectorised rules on the same landed columns (the
    flat files' Arrow path judges with those: both forms must give every bar the same verdict)."""
    rows = with_reason(raw_bars_from_pages(spark, files)).collect()
    spark_reasons = {(r.page, r.position): r.reason for r in rows}
    vectorised = first_broken_vectorised(as_columns(rows))
    assert dict(zip(((r.page, r.position) for r in rows), vectorised, strict=True)) == spark_reasons
    return spark_reasons


def as_columns(rows) -> dict[str, np.ndarray]:
    """Landed bars (Spark rows) as the NumPy columns the vectorised rules read."""
    def floats(name: str) -> tuple[np.ndarray, np.ndarray]:
        values = [getattr(r, name) for r in rows]
        return (np.array([np.nan if v is None else v for v in values], dtype=float),
                np.array([v is not None for v in values], dtype=bool))

    columns: dict[str, np.ndarray] = {}
    for name in ("open", "high", "low", "close", "volume", "vwap"):
        columns[name], columns[f"{name}_present"] = floats(name)
    columns["n_value"], columns["n_present"] = floats("n_value")
    columns["n_whole"] = np.array([r.num_transactions is not None for r in rows], dtype=bool)
    columns["timestamp_present"] = np.array([r.timestamp_ms is not None for r in rows], dtype=bool)
    columns["timestamp_ms"] = np.array([r.timestamp_ms or 0 for r in rows], dtype=np.int64)
    columns["fetched_ms"] = np.array([int(r.fetched_at.timestamp() * 1000) for r in rows], dtype=np.int64)
    columns["not_numbers"] = np.array([bool(r.not_numbers) for r in rows], dtype=bool)
    columns["not_object"] = np.array([bool(r.not_object) for r in rows], dtype=bool)
    return columns


GOOD = {"t": ny_ms(dt.date(2024, 1, 9), 10, 0), "o": 10.0, "h": 10.5, "l": 9.5, "c": 10.2, "v": 1200, "vw": 10.1,
        "n": 12}


def bar(**changes: Any) -> dict[str, Any]:
    found = {**GOOD, **changes}
    return {k: v for k, v in found.items() if v is not ...}


# One bar breaking each rule (and only it), in the rules' order.
BREAKS = {
    "readable": 5,
    "fields_are_numbers": bar(c="10.2"),
    "t_integer_ms": bar(t=GOOD["t"] + 0.5),
    "t_on_minute": bar(t=GOOD["t"] + 30_000),
    # Landed now, stamped in an hour: its minute had not ended when it was fetched.
    "ended_before_fetch": bar(t=(int(time.time() * 1000) // MINUTE + 60) * MINUTE),
    "prices_present": bar(c=...),
    "prices_finite": bar(o=math.nan),
    "prices_positive": bar(o=-1.0, l=-2.0),
    "ohlc_order": bar(h=9.0, l=9.5),
    "volume_valid": bar(v=-5),
    "optional_finite": bar(vw=math.inf),
}


def test_every_rule_has_a_bar_that_breaks_it_alone(spark, tmp_path):
    assert list(BREAKS) == list(RULE_NAMES)  # a new rule needs its case here
    files = land_pages(tmp_path, [[GOOD, *BREAKS.values()]])
    found = judged(spark, files)
    assert found == {(1, 0): None, **{(1, i): name for i, name in enumerate(BREAKS, start=1)}}


SHAPES = [
    (bar(h="10.5"), "fields_are_numbers"), (bar(t=str(GOOD["t"])), "fields_are_numbers"),
    (bar(v=True), "fields_are_numbers"), (bar(o=[10.0]), "fields_are_numbers"), (bar(n="12"), "fields_are_numbers"),
    (None, "readable"), ([GOOD], "readable"), ("a bar", "readable"),
    (bar(t=...), "t_integer_ms"), (bar(t=2**63 + 10), "t_integer_ms"),
    (bar(l=math.inf), "prices_finite"), (bar(h=-math.inf), "prices_finite"), (bar(c=0.0, l=0.0), "prices_positive"),
    (bar(c=11.0), "ohlc_order"), (bar(o=9.0), "ohlc_order"), (bar(v=...), "volume_valid"), (bar(v=math.nan),
                                                                                           "volume_valid"),
    (bar(n=2.5), "optional_finite"), (bar(vw=math.nan), "optional_finite"),
    (bar(vw=..., n=...), None), (bar(t=float(GOOD["t"]), n=12.0, v=303067.656), None), (bar(otc=True), None),
]


@pytest.fixture(scope="module")
def shapes_judged(spark, tmp_path_factory) -> dict[str, dict[tuple[int, int], str | None]]:
    """Every shape of SHAPES landed at once, each under a ticker of its own (alone on a page, then beside a good bar),
    and judged in one read: each case's verdicts by its ticker."""
    root = tmp_path_factory.mktemp("shapes")
    files = [f for number, (case, _) in enumerate(SHAPES) for f in land_pages(root, [[case], [GOOD, case]],
                                                                               ticker=f"S{number:02d}")]
    rows = with_reason(raw_bars_from_pages(spark, files)).collect()
    vectorised = first_broken_vectorised(as_columns(rows))
    assert [r.reason for r in rows] == list(vectorised)
    found: dict[str, dict[tuple[int, int], str | None]] = {}
    for r in rows:
        found.setdefault(r.ticker, {})[(r.page, r.position)] = r.reason
    return found


@pytest.mark.parametrize("number", range(len(SHAPES)), ids=lambda n: f"{n}-{SHAPES[n][1]}")
def test_each_shape_a_feed_sends_gets_its_rule(shapes_judged, number):
    """Alone on a page and beside a good bar: a page read from its own text judges each bar the same way."""
    reason = SHAPES[number][1]
    assert shapes_judged[f"S{number:02d}"] == {(1, 0): reason, (2, 0): None, (2, 1): reason}


def test_a_count_no_long_holds_is_quarantined_not_a_crash_with_ansi_sql_on(spark, tmp_path):
    """Spark 4 and Databricks serverless run ANSI SQL, where casting NaN, Infinity or 1e300 to a long raises, and
    every landed bar's columns are computed, the quarantined ones' too."""
    files = land_pages(tmp_path, [[GOOD, bar(n=math.nan), bar(n=math.inf), bar(n=1e300), bar(n=2.0**63),
                                   bar(n=2.0**62)]])
    with conf_for_call(spark, "spark.sql.ansi.enabled", "true") as ansi:
        if not ansi:
            pytest.skip("this session does not let ANSI SQL be set")
        rows = with_reason(raw_bars_from_pages(spark, files)).select("position", "reason", "num_transactions")
        found = sorted((r.position, r.reason, r.num_transactions) for r in rows.collect())
    assert found == [(0, None, 12), (1, "optional_finite", None), (2, "optional_finite", None),
                     (3, "optional_finite", None), (4, "optional_finite", None), (5, None, 2**62)]


def test_a_page_that_is_not_json_is_one_unreadable_bar_not_a_crash(spark, tmp_path):
    files = land_pages(tmp_path, [[GOOD]])
    Path(files[0]).with_name("page-00002.json").write_text('{"status":"OK","results":[{"t":17')
    files.append(str(Path(files[0]).with_name("page-00002.json")))
    rows = with_reason(raw_bars_from_pages(spark, files)).collect()
    assert sorted((r.page, r.reason) for r in rows) == [(1, None), (2, "readable")]
    assert next(r.raw for r in rows if r.page == 2).startswith('{"status":"OK"')


# -- the property ----------------------------------------------------------------------------------------------------
SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "+Infinity": math.inf, "-Infinity": -math.inf, "+INF": math.inf,
           "-INF": -math.inf, "INF": math.inf}


def oracle(item: Any, fetched_ms: float) -> str | None:
    """The rules as the issue states them, written again here in plain Python: the first rule a bar breaks.

    Spark's JSON reader takes the quoted spellings of NaN and Infinity as those numbers (the bar still fails
    `*_finite`); a bar sent as a JSON string holding an object would be read as that object, so the strings drawn
    below never start with '{'."""
    if not isinstance(item, dict):
        return "readable"
    fields = {}
    for name in ("t", "o", "h", "l", "c", "v", "vw", "n"):
        value = item.get(name)
        if isinstance(value, str) and value in SPECIAL:
            value = SPECIAL[value]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return "fields_are_numbers"
        fields[name] = None if value is None else float(value)
    t = fields["t"]
    if t is None or not math.isfinite(t) or t != math.floor(t) or abs(t) >= 2.0**62:
        return "t_integer_ms"
    if int(t) % MINUTE:
        return "t_on_minute"
    if int(t) + MINUTE > fetched_ms:
        return "ended_before_fetch"
    prices = [fields[k] for k in ("o", "h", "l", "c")]
    if any(p is None for p in prices):
        return "prices_present"
    o, h, low, c = (float(p) for p in prices)  # type: ignore[arg-type]
    if not all(math.isfinite(p) for p in (o, h, low, c)):
        return "prices_finite"
    if min(o, h, low, c) <= 0:
        return "prices_positive"
    if low > min(o, c) or max(o, c) > h:
        return "ohlc_order"
    v = fields["v"]
    if v is None or not math.isfinite(v) or v < 0:
        return "volume_valid"
    vw, n = fields["vw"], fields["n"]
    if (vw is not None and not math.isfinite(vw)) or (
            n is not None and (not math.isfinite(n) or abs(n) >= 2.0**63 or n != math.floor(n))):
        return "optional_finite"
    return None


numbers = st.one_of(
    st.floats(min_value=0.01, max_value=5000, allow_nan=False), st.integers(-5, 10_000),
    st.sampled_from([0.0, -1.5, math.nan, math.inf, -math.inf, 1e300, 2.5]),
    st.sampled_from(["12.5", "NaN", "Infinity", "", "abc", "-INF"]), st.booleans(), st.none(), st.just([1.0]),
)
minute_times = st.integers(0, 2_000).map(lambda i: ny_ms(dt.date(2024, 1, 9), 4, 0) + i * MINUTE)
times = st.one_of(minute_times, minute_times.map(lambda t: t + 1), minute_times.map(lambda t: t + 0.5),
                  minute_times.map(float), minute_times.map(str), st.sampled_from([None, math.nan, 2**64, -MINUTE]))
sane = st.builds(lambda t, low, up, v: {"t": t, "o": low + up / 3, "h": low + up, "l": low, "c": low + up / 2,
                                        "v": v, "vw": low + up / 4, "n": 3},
                 minute_times, st.floats(1, 500), st.floats(0, 5), st.integers(0, 10**6))
anything = st.dictionaries(st.sampled_from(["t", "o", "h", "l", "c", "v", "vw", "n", "otc"]), numbers, max_size=9)
one_field_off = st.builds(lambda b, key, value: {**b, key: value}, sane,
                          st.sampled_from(["o", "h", "l", "c", "v", "vw", "n"]), numbers)
bars = st.one_of(sane, one_field_off, st.builds(lambda b, t: {**b, "t": t}, sane, times),
                 anything, st.builds(lambda b, t: {**b, "t": t}, anything, times),
                 st.one_of(st.none(), st.integers(), st.text(max_size=5).filter(lambda s: not s.startswith("{"))))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pages=st.lists(st.lists(bars, max_size=25), min_size=1, max_size=6))
@example(pages=[[{**GOOD, "n": 1e300}]])  # found by a CI run: a count no long holds
@pytest.mark.slow
def test_any_bar_lands_valid_or_in_quarantine_never_both_never_a_crash(spark, tmp_path_factory, pages):
    files = land_pages(tmp_path_factory.mktemp("p"), pages)
    found = judged(spark, files)
    landed_ms = [os.stat(file).st_mtime_ns // 1_000_000 for file in files]  # when each page was fetched
    expected = {(p, i): oracle(item, landed_ms[p - 1]) for p, page in enumerate(pages, start=1)
                for i, item in enumerate(page)}
    assert found == expected




def test_the_rules_and_checks_are_declared_once_each():
    assert len(RULE_NAMES) == len(set(RULE_NAMES)) == len(BAR_RULES)
    assert len(CHECK_NAMES) == len(set(CHECK_NAMES))

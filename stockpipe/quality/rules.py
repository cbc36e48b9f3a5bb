"""The rules one bar must keep to enter `stocks_fixed`, declared as data: a name, what it asks, and the test that is
true when a bar breaks it, written twice side by side: a Spark expression (the REST pages, and the flat files on
delta-spark) and a vectorised one over NumPy columns (the flat files read with Arrow on delta-rs). The list is
evaluated in order and a bar's `reason` is the first rule it breaks, so each rule may assume the ones before it hold
(prices are compared only once they are known to be numbers); tests/test_quality_rules.py holds the two forms to
the same verdict on every bar.

The columns they read are what `landing.raw_bars_from_pages` (and `flatfiles.bars`) produce: the API's fields
renamed (`open`, ..., `t_value` for `t` as sent), `fetched_at` (when the bar's page or file landed), and
`not_numbers` / `not_object` for a bar read from its own text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

MILLIS_PER_MINUTE = 60_000
PRICES = ("open", "high", "low", "close")


# NumPy columns as the vectorised rules read them: floats with NaN for a missing value (and `*_present` masks where
# NaN is itself a value a feed can send), int64 milliseconds with a mask, booleans.
Columns = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class BarRule:
    name: str
    asks: str  # what a bar must be, in one line (the README's table and the quarantine's readers use it)
    broken: Callable[[], Column]  # true when a bar breaks the rule; null counts as kept (earlier rules cover nulls)
    vectorised: Callable[[Columns], np.ndarray]  # the same test over NumPy columns


def _v_finite(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    return present & np.isfinite(values)


def _v_prices(columns: Columns, test: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    found = np.zeros(len(columns["open"]), dtype=bool)
    for name in PRICES:
        found |= test(columns[name], columns[f"{name}_present"])
    return found


def _v_order(c: Columns) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return (c["low"] > np.minimum(c["open"], c["close"])) | (np.maximum(c["open"], c["close"]) > c["high"])


def _finite(column: Column) -> Column:
    return column.isNotNull() & ~F.isnan(column) & (F.abs(column) != F.lit(float("inf")))


def _any(columns: Sequence[str], test: Callable[[Column], Column]) -> Column:
    found = test(F.col(columns[0]))
    for name in columns[1:]:
        found = found | test(F.col(name))
    return found


BAR_RULES: tuple[BarRule, ...] = (
    BarRule("readable", "the page is JSON and the bar an object (a flat file's row: a line of the header's fields)",
            lambda: F.col("not_object"),
            lambda c: c["not_object"]),
    BarRule("fields_are_numbers", "every field the contract types as a number is a JSON number, not text",
            lambda: F.col("not_numbers"),
            lambda c: c["not_numbers"]),
    BarRule("t_integer_ms", "t is a whole number of milliseconds",
            lambda: F.col("timestamp_ms").isNull(),
            lambda c: ~c["timestamp_present"]),
    BarRule("t_on_minute", "t falls on a minute",
            lambda: F.col("timestamp_ms") % MILLIS_PER_MINUTE != 0,
            lambda c: c["timestamp_present"] & (c["timestamp_ms"] % MILLIS_PER_MINUTE != 0)),
    BarRule("ended_before_fetch", "the bar's minute had ended when its page was fetched (no bar from the future)",
            lambda: F.col("timestamp_ms") + MILLIS_PER_MINUTE > F.unix_millis(F.col("fetched_at")),
            lambda c: c["timestamp_present"] & (c["timestamp_ms"] + MILLIS_PER_MINUTE > c["fetched_ms"])),
    BarRule("prices_present", "o, h, l and c are all present",
            lambda: _any(PRICES, lambda c: c.isNull()),
            lambda c: _v_prices(c, lambda values, present: ~present)),
    BarRule("prices_finite", "o, h, l and c are finite (not NaN or Infinity)",
            lambda: _any(PRICES, lambda c: ~_finite(c)),
            lambda c: _v_prices(c, lambda values, present: ~_v_finite(values, present))),
    BarRule("prices_positive", "o, h, l and c are above 0",
            lambda: _any(PRICES, lambda c: c <= 0),
            lambda c: _v_prices(c, lambda values, present: present & (np.nan_to_num(values, nan=1.0) <= 0))),
    BarRule("ohlc_order", "l <= min(o, c) <= max(o, c) <= h",
            lambda: (F.col("low") > F.least("open", "close")) | (F.greatest("open", "close") > F.col("high")),
            _v_order),
    BarRule("volume_valid", "v is present, finite and >= 0",
            lambda: ~_finite(F.col("volume")) | (F.col("volume") < 0),
            lambda c: ~_v_finite(c["volume"], c["volume_present"]) | (np.nan_to_num(c["volume"]) < 0)),
    BarRule("optional_finite", "vw, when present, is finite; n, when present, a whole number a 64-bit count holds",
            # landing casts n only when it is such a number (as it does t): sent but not cast is broken
            lambda: (F.col("vwap").isNotNull() & ~_finite(F.col("vwap")))
            | (F.col("n_value").isNotNull() & F.col("num_transactions").isNull()),
            lambda c: (c["vwap_present"] & ~np.isfinite(c["vwap"])) | (c["n_present"] & ~c["n_whole"])),
)
RULE_NAMES = tuple(rule.name for rule in BAR_RULES)


def first_broken_rule(rules: Sequence[BarRule] = BAR_RULES) -> Column:
    """The name of the first rule a bar breaks, null for a bar that keeps them all. `coalesce` stops at the first
    rule that answers, so later rules are never evaluated on a bar an earlier one rejected."""
    return F.coalesce(*[F.when(rule.broken(), F.lit(rule.name)) for rule in rules])


def first_broken_vectorised(columns: Columns, rules: Sequence[BarRule] = BAR_RULES) -> np.ndarray:
    """`first_broken_rule` over NumPy columns: each bar's first broken rule's name, None for a bar that keeps them
    all. Each rule is tested only on the bars no earlier rule took, as Spark's coalesce does."""
    reasons = np.full(len(columns["not_object"]), None, dtype=object)
    open_ = np.ones(len(reasons), dtype=bool)
    for rule in rules:
        if not open_.any():
            break
        with np.errstate(invalid="ignore", over="ignore"):
            hit = open_ & np.asarray(rule.vectorised(columns), dtype=bool)
        reasons[hit] = rule.name
        open_ &= ~hit
    return reasons


def with_reason(bars: DataFrame, rules: Sequence[BarRule] = BAR_RULES) -> DataFrame:
    """Every bar, with `reason` (the first rule broken, or null) and `valid`."""
    return bars.withColumn("reason", first_broken_rule(rules)).withColumn("valid", F.col("reason").isNull())


def raw_text() -> Column:
    """The bar as JSON text: as read for a bar of a page that was read from its text, else rebuilt from its fields
    (which then hold exactly what the typed read found: a missing field is absent, NaN stays NaN)."""
    fields = F.struct(F.col("t_value").alias("t"), F.col("open").alias("o"), F.col("high").alias("h"),
                      F.col("low").alias("l"), F.col("close").alias("c"), F.col("volume").alias("v"),
                      F.col("vwap").alias("vw"), F.col("n_value").alias("n"))
    return F.coalesce(F.col("raw"), F.to_json(fields))


# A page holds at most 50,000 bars: a page number and a position on it fit one long, the order within an answer.
POSITIONS_PER_PAGE = 1_000_000


def compact(judged: DataFrame) -> DataFrame:
    """The judged bars as they cross the shuffle: what only a quarantined bar needs (its rule, its text, its fetch)
    in one `_bad` struct that is null for a good bar, and its place in the answer (page, position) in one `_order`,
    so every good bar is only two small columns wider than before validation: the shuffle and the kept copy of the
    bars are most of a long run's time after its last call (docs/measurements.md)."""
    bad = F.struct(F.col("reason").alias("reason"), raw_text().alias("raw"), F.col("fetch_id").alias("fetch_id"))
    return (judged.withColumn("_bad", F.when(~F.col("valid"), bad))
            .withColumn("_order", F.col("page").cast("long") * POSITIONS_PER_PAGE + F.col("position"))
            .drop("reason", "valid", "page", "position", "raw", "t_value", "n_value", "not_numbers", "not_object",
                  "fetched_at"))


def valid() -> Column:
    """A compacted bar that kept every bar rule."""
    return F.col("_bad").isNull()

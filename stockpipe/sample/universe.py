"""The sample market's universe: the eight tickers the assignment names and a synthetic market around them, of the
size and shape of the real one (about 11,000 US stocks trade on a day), so the whole-market paths run offline.

The symbols take the provider's shapes: one to five capital letters, class shares with a dot (`BRK.B`-like) and
preferred shares with a lowercase suffix (`MRTpA`-like). None of them is within one typing slip of the eight (`APPL`
is not a sample ticker: a run asking for it is told so), nor a placeholder such as `FOO`. Liquidity is heavy-tailed,
as in the provider's files: the most active names trade almost every minute from 04:00 to 20:00 New York, most trade a
few dozen minutes a day. `rank` orders the market by it (the eight first); what a rank trades is `minutes_share`.
Everything here is a pure function of the symbol, so every process and run agrees.
"""

from __future__ import annotations

import functools
import string

import numpy as np

from stockpipe import DEFAULT_TICKERS

MARKET_SIZE = 11_000  # the eight included
# The liquid head: this many names trade (nearly) every minute of the regular session and much of the extended hours.
ACTIVE_HEAD = 300
# Beyond the head, the share of minutes traded falls as (ACTIVE_HEAD / rank) ** TAIL_EXPONENT: the last names trade
# about 5% of the day's 960 minutes (a few dozen), and a market day sums to about 2 M bars, as the provider's do.
TAIL_EXPONENT = 0.8
# Symbols a user types when trying things out, kept out of the synthetic market so they stay unknown, as they would be
# to the real API.
PLACEHOLDERS = frozenset({"FOO", "BAR", "BAZ", "QUX", "TEST", "XYZ", "ABC", "TICK", "STOCK", "NONE", "NULL"})
_SEED = 20_241_108
# Shares of the synthetic symbols by shape: a length of plain capitals (1..5), a class share, a preferred share.
_LENGTHS = (1, 2, 3, 4, 5)
_LENGTH_WEIGHTS = (0.01, 0.07, 0.33, 0.52, 0.07)
_CLASS_SHARE = 0.006
_PREFERRED = 0.012


def one_slip(name: str) -> set[str]:
    """`name` and every symbol one slip away from it: a capital replaced, added or dropped, two neighbours swapped."""
    letters = string.ascii_uppercase
    found = {name}
    for i in range(len(name) + 1):
        found.update(name[:i] + c + name[i:] for c in letters)  # added
        if i < len(name):
            found.update(name[:i] + c + name[i + 1:] for c in letters)  # replaced
            found.add(name[:i] + name[i + 1:])  # dropped
        if i < len(name) - 1:
            found.add(name[:i] + name[i + 1] + name[i] + name[i + 2:])  # swapped
    return found


@functools.cache
def _kept_out() -> frozenset[str]:
    return frozenset(PLACEHOLDERS).union(*(one_slip(name) for name in DEFAULT_TICKERS))


def _avoided(symbol: str) -> bool:
    root = symbol[:len(symbol) - len(symbol.lstrip(string.ascii_uppercase))]  # the leading capitals
    return symbol in _kept_out() or root in _kept_out()


@functools.cache
def market_symbols() -> tuple[str, ...]:
    """Every ticker of the sample market, most active first: the eight, then the synthetic names by rank."""
    rng = np.random.default_rng(_SEED)
    wanted = MARKET_SIZE - len(DEFAULT_TICKERS)
    found: dict[str, None] = {}
    while len(found) < wanted:  # one batch is enough; bounded by the draws' uniqueness in any case
        draws = 2 * wanted
        lengths = rng.choice(_LENGTHS, size=draws, p=_LENGTH_WEIGHTS)
        codes = rng.integers(0, 26, size=(draws, max(_LENGTHS)))
        shapes = rng.random(draws)
        suffixes = rng.integers(0, 6, size=draws)
        for length, code, shape, suffix in zip(lengths.tolist(), codes.tolist(), shapes.tolist(),
                                               suffixes.tolist(), strict=True):
            root = "".join(string.ascii_uppercase[c] for c in code[:length])
            if shape < _CLASS_SHARE and 2 <= length <= 4:
                symbol = f"{root}.{'AB'[suffix % 2]}"
            elif shape < _CLASS_SHARE + _PREFERRED and 2 <= length <= 4:
                symbol = f"{root}p{string.ascii_uppercase[suffix]}"
            else:
                symbol = root
            if symbol not in found and not _avoided(symbol):
                found[symbol] = None
                if len(found) == wanted:
                    break
    # The draw order is a random order: it is the synthetic names' liquidity rank.
    return (*DEFAULT_TICKERS, *found)


@functools.cache
def _ranks() -> dict[str, int]:
    return {symbol: number for number, symbol in enumerate(market_symbols(), start=1)}


def is_sample_symbol(symbol: str) -> bool:
    """Whether the sample market lists this ticker (the API answers any other with no bars)."""
    return symbol in _ranks()


def rank(symbol: str) -> int:
    """1 for the most active name; a KeyError for a symbol the sample does not list."""
    return _ranks()[symbol]


def minutes_share(ranks: np.ndarray | int) -> np.ndarray:
    """The share of a day's minutes (04:00 to 20:00) that a name of this liquidity rank trades."""
    ranks = np.asarray(ranks, dtype=float)
    return np.minimum(1.0, (ACTIVE_HEAD / np.maximum(ranks, 1.0)) ** TAIL_EXPONENT)


OTC_SIZE = 700  # names the grouped daily endpoint adds with include_otc=true (the real one adds thousands)


@functools.cache
def otc_symbols() -> tuple[str, ...]:
    """The sample's over-the-counter names: five letters ending in F or Y, as foreign ordinaries and unsponsored ADRs
    are quoted, none of them a listed sample ticker. Only the grouped daily answers with `include_otc=true` hold them
    (the provider's flat files and a listed universe do not)."""
    rng = np.random.default_rng(_SEED + 1)
    listed = set(market_symbols())
    found: dict[str, None] = {}
    codes = rng.integers(0, 26, size=(4 * OTC_SIZE, 4))
    endings = rng.integers(0, 2, size=4 * OTC_SIZE)
    for code, ending in zip(codes.tolist(), endings.tolist(), strict=True):
        symbol = "".join(string.ascii_uppercase[c] for c in code) + "FY"[ending]
        if symbol not in listed and not _avoided(symbol):
            found[symbol] = None
            if len(found) == OTC_SIZE:
                break
    return tuple(found)

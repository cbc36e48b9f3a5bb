"""A day of the whole sample market: every ticker's minute bars as the provider's flat file holds them, and every
ticker's official daily bar as the grouped daily endpoint answers it, for the synthetic market of
`stockpipe.sample.universe` (the eight keep their own, richer generator: `stockpipe.sample.market`).

Every number is a pure function of (ticker, day, minute): counter-based draws (a 64-bit hash of the ticker, the day
and the minute, turned into uniforms and normals), so any subset of the market (a test's few hundred names) gets the
same bars as the whole, in any process, without generating the rest. A ticker's close follows a Brownian path over
the sessions, evaluated at one day without walking the days before it (Lévy's construction: one term per level of
a dyadic grid), so a year of days costs a year of days, not a history each.

Liquidity is heavy-tailed as in the provider's files (`universe.minutes_share`): the most active names trade every
regular minute and a third of the extended hours; most trade a few dozen minutes a day. Prices span pennies to a
thousand dollars, and the cheapest names move most (the movers a dashboard must not headline on volume alone).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from dataclasses import dataclass

import numpy as np

from stockpipe.sample.days import day_layout
from stockpipe.sample.market import FIRST_SESSION, MINUTE_MS, MINUTES_PER_DAY_MAX, UNREPORTED_VOLUME, _sessions
from stockpipe.sample.universe import MARKET_SIZE, is_sample_symbol, minutes_share, rank

LEVELS = 14  # the dyadic grid's levels: 2**14 sessions from 2000, past 2060
YEAR_SESSIONS = 256
# A minute's chance to trade, over the name's share of the day (`universe.minutes_share`): a market day then holds
# about 2 M bars, as the provider's files do.
REGULAR_FILL = 2.3
EXTENDED_FILL = 0.5
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a well-spread 64-bit hash of each value (wrapping arithmetic on uint64)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _key(*parts: np.ndarray | int) -> np.ndarray:
    """One 64-bit key from several integer arrays (broadcast), each folded in by the hash."""
    with np.errstate(over="ignore"):
        key: np.ndarray = np.zeros((), dtype=np.uint64)
        for part in parts:
            key = _mix(key * _GOLDEN + np.asarray(part).astype(np.uint64))
        return key


def _uniform(key: np.ndarray) -> np.ndarray:
    """A uniform in (0, 1) from each key."""
    return ((_mix(key) >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)


def _normal(key: np.ndarray) -> np.ndarray:
    """A standard normal from each key (Box-Muller on two uniforms drawn from it)."""
    u1, u2 = _uniform(key), _uniform(key ^ _GOLDEN)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


@functools.cache
def _ticker_ids(symbols: tuple[str, ...]) -> np.ndarray:
    ids = [int.from_bytes(s.encode()[:8].ljust(8, b"\0"), "little") ^ (len(s) << 56) for s in symbols]
    return _key(np.array(ids, dtype=np.uint64), 7)


def brownian(ids: np.ndarray, index: int) -> np.ndarray:
    """Each ticker's path at session `index`, by Lévy's construction of Brownian motion: on each level of a dyadic
    grid, the one tent function that covers `index`. Tents narrower than a year carry full weight, so a day's move
    has the variance of a Brownian step; wider ones a fifth of it, so over decades a price wanders a few times its
    level, not a hundred (a stock's long-run level is not a random walk of its daily moves)."""
    span = 1 << LEVELS
    value = np.zeros(ids.shape)
    for level in range(LEVELS):
        width = span >> level
        k = index // width
        offset = index - k * width
        tent = (offset if offset <= width // 2 else width - offset) / math.sqrt(width)
        if tent:
            weight = 1.0 if width <= YEAR_SESSIONS else 0.2
            value = value + _normal(_key(ids, 2, level, k)) * tent * weight
    return value


@dataclass(frozen=True)
class Profile:
    """What makes each synthetic ticker look like itself: its price level, how much it moves, how much it trades."""

    log_level: np.ndarray  # log price on the first session
    volatility: np.ndarray  # sd of a day's log return
    shares_per_day: np.ndarray
    share: np.ndarray  # of the day's minutes it trades


@functools.cache
def profiles(symbols: tuple[str, ...]) -> Profile:
    ids = _ticker_ids(symbols)
    # Names outside the listed market (the over-the-counter ones) trade like its tail.
    ranks = np.array([rank(s) if is_sample_symbol(s) else 2 * MARKET_SIZE for s in symbols], dtype=float)
    # Prices log-uniform from 5 cents to a thousand dollars; cheaper names move more (up to ~6% a day under $1).
    log_level = math.log(0.05) + _uniform(_key(ids, 3)) * (math.log(1000.0) - math.log(0.05))
    cheapness = np.clip((math.log(20.0) - log_level) / math.log(400.0), 0.0, 1.0)
    volatility = (0.012 + 0.05 * cheapness) * (0.7 + 0.7 * _uniform(_key(ids, 4)))
    shares = 3e7 * (300.0 / np.maximum(ranks, 1.0)) ** 1.1 * np.exp(0.5 * _normal(_key(ids, 5)))
    return Profile(log_level, volatility, shares, minutes_share(ranks))


@dataclass(frozen=True)
class MarketDay:
    """One day of the synthetic market: minute columns (sorted by ticker, then time) and one daily bar a ticker."""

    day: dt.date
    minutes: dict[str, np.ndarray]  # ticker, t (ms), o, h, l, c, v, n
    daily: dict[str, np.ndarray]  # ticker, t (ms, midnight New York), o, h, l, c, v, vw, n


def _session_index(day: dt.date) -> int:
    sessions = _sessions()
    index = int(np.searchsorted(sessions, np.datetime64(day, "D")))
    if index >= sessions.size or sessions[index] != np.datetime64(day, "D"):
        raise ValueError(f"{day} is not an NYSE session")
    return index


def market_day(day: dt.date, symbols: tuple[str, ...]) -> MarketDay:
    """The synthetic tickers' bars of `day` (an NYSE session), sorted by ticker then time. Only what depends on
    (ticker, day, minute), so a subset of `symbols` gets the same bars."""
    order = tuple(sorted(symbols))
    ids = _ticker_ids(order)
    profile = profiles(order)
    index = _session_index(day)
    log_close = profile.log_level + profile.volatility * brownian(ids, index + 1)
    log_prev = profile.log_level + profile.volatility * brownian(ids, index)
    day_key = (day - FIRST_SESSION).days
    gap = 0.3 * profile.volatility * _normal(_key(ids, 6, day_key))
    log_open = log_prev + gap

    base_ms, open_m, close_m, end_m = day_layout(day)
    minute = np.arange(MINUTES_PER_DAY_MAX)
    regular = (minute >= open_m) & (minute <= close_m)
    grid = _key(ids[:, None], 8, day_key, minute[None, :])
    # Which minutes trade: the regular session at the name's share (the busiest, all of it), a third of that in
    # extended hours; the opening and closing prints trade whenever the name trades at all that day.
    share = profile.share[:, None]
    chance = np.where(regular, np.minimum(1.0, REGULAR_FILL * share), EXTENDED_FILL * share)
    chance = np.where(minute >= end_m, 0.0, chance)
    traded = _uniform(grid) < chance
    prints = (minute == open_m) | (minute == close_m)
    traded |= prints & (profile.share[:, None] > 0.25)

    # The price path: a bridge from the previous close to the open through the pre-market, from the open to the close
    # through the regular session, a walk after the close.
    bars = close_m - open_m + 1
    sigma_minute = (profile.volatility / math.sqrt(bars))[:, None]
    steps = np.clip(_normal(grid ^ np.uint64(1)), -3.5, 3.5) * sigma_minute
    walk = np.cumsum(steps, axis=1)
    before_open, at_close = walk[:, open_m - 1:open_m], walk[:, close_m:close_m + 1]
    pre = walk + log_prev[:, None] + (minute[None, :] + 1) / (open_m + 1) * ((log_open - log_prev)[:, None]
                                                                            - before_open)
    reg = (walk - before_open + log_open[:, None]
           + (minute[None, :] - open_m + 1) / bars * ((log_close - log_open)[:, None] - (at_close - before_open)))
    post = walk - at_close + log_close[:, None]
    log_c = np.where(minute < open_m, pre, np.where(minute <= close_m, reg, post))
    log_before = np.concatenate([log_prev[:, None], log_c[:, :-1]], axis=1)

    rows, cols = np.nonzero(traded)  # row-major: by ticker, then minute
    noise = _normal(grid[rows, cols] ^ np.uint64(2))
    wick = np.abs(_normal(grid[rows, cols] ^ np.uint64(3)))
    sigma_t = sigma_minute[rows, 0]
    price = lambda log: np.maximum(0.0001, np.round(np.exp(log), 4))  # noqa: E731 - sub-penny names print 4 decimals
    close = price(log_c[rows, cols])
    open_ = np.where(cols == open_m, price(log_open[rows]), price(log_before[rows, cols] + 0.2 * sigma_t * noise))
    high = np.round(np.maximum(open_, close) * (1 + 0.5 * sigma_t * wick), 4)
    low = np.maximum(0.0001, np.round(np.minimum(open_, close) * (1 - 0.5 * sigma_t * np.abs(noise)), 4))
    per_minute = profile.shares_per_day / np.maximum(traded.sum(axis=1), 1)
    volume = np.maximum(1.0, np.round(per_minute[rows] * np.exp(0.6 * _normal(grid[rows, cols] ^ np.uint64(4)))
                                      * np.where(prints[cols], 6.0, 1.0)))
    trades = np.maximum(1, (volume / 80.0).astype(np.int64))
    t = base_ms + MINUTE_MS * cols.astype(np.int64)
    tickers = np.array(order, dtype=object)[rows]
    minutes = {"ticker": tickers, "t": t, "o": open_, "h": high, "l": low, "c": close, "v": volume, "n": trades}
    return MarketDay(day, minutes, _daily(day, order, rows, cols, regular, minutes, _uniform(_key(ids, 9, day_key))))


def _daily(day: dt.date, order: tuple[str, ...], rows: np.ndarray, cols: np.ndarray, regular: np.ndarray,
           minutes: dict[str, np.ndarray], unreported: np.ndarray) -> dict[str, np.ndarray]:
    """Each ticker's official daily bar from its regular-session minutes (a ticker with none that day has none): the
    first bar's open, the last one's close, the session's range, every minute's volume and trades plus those no
    minute aggregate saw."""
    on = regular[cols]
    tick = rows[on]
    if not tick.size:
        return {name: np.array([]) for name in ("ticker", "t", "o", "h", "l", "c", "v", "vw", "n")}
    starts = np.concatenate([[0], np.nonzero(np.diff(tick))[0] + 1])
    ends = np.concatenate([starts[1:], [tick.size]]) - 1
    o, h, low, c = (minutes[k][on] for k in ("o", "h", "l", "c"))
    v = minutes["v"][on]
    all_volume = np.bincount(rows, weights=minutes["v"], minlength=len(order))[tick[starts]]
    extra = 1 + UNREPORTED_VOLUME[0] + (UNREPORTED_VOLUME[1] - UNREPORTED_VOLUME[0]) * unreported[tick[starts]]
    vw = np.add.reduceat(((h + low + c) / 3) * v, starts) / np.add.reduceat(v, starts)
    midnight = day_layout(day)[0] - 4 * 3_600_000
    return {
        "ticker": np.array(order, dtype=object)[tick[starts]],
        "t": np.full(starts.size, midnight, dtype=np.int64),
        "o": o[starts], "h": np.maximum.reduceat(h, starts), "l": np.minimum.reduceat(low, starts), "c": c[ends],
        "v": np.round(all_volume * extra), "vw": np.round(vw, 4),
        "n": np.round(np.bincount(rows, weights=minutes["n"], minlength=len(order))[tick[starts]] * extra)
        .astype(np.int64),
    }


# A day's total volume over the name's shares a day: the minutes' lognormal draws average exp(0.6**2 / 2) of their
# mean share, and the opening and closing prints trade six times a minute's share.
_DAY_VOLUME = math.exp(0.18)


def grouped_day(day: dt.date, symbols: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The synthetic tickers' official daily bars of `day` without their minutes: what the grouped daily endpoint
    answers for a whole market in milliseconds instead of `market_day`'s seconds (a year of the market is 252 calls).
    Open and close are the same prints as `market_day`'s (the Brownian path at the session's open and close, so the
    flat files' opening and closing minutes agree with them); the range, volume, VWAP and trades are drawn from the
    name's profile, not summed from minutes. Sorted by ticker; keys ticker, o, h, l, c, v, vw, n."""
    order = tuple(sorted(symbols))
    ids = _ticker_ids(order)
    profile = profiles(order)
    index = _session_index(day)
    day_key = (day - FIRST_SESSION).days
    log_close = profile.log_level + profile.volatility * brownian(ids, index + 1)
    log_prev = profile.log_level + profile.volatility * brownian(ids, index)
    log_open = log_prev + 0.3 * profile.volatility * _normal(_key(ids, 6, day_key))
    price = lambda log: np.maximum(0.0001, np.round(np.exp(log), 4))  # noqa: E731 - as market_day prices them
    open_, close = price(log_open), price(log_close)
    # The session's range reaches past both prints by about half a day's move on each side.
    up = np.abs(_normal(_key(ids, 10, day_key))) * 0.5 * profile.volatility
    down = np.abs(_normal(_key(ids, 11, day_key))) * 0.5 * profile.volatility
    high = np.round(np.maximum(open_, close) * (1 + up), 4)
    low = np.maximum(0.0001, np.round(np.minimum(open_, close) * (1 - down), 4))
    unreported = _uniform(_key(ids, 9, day_key))
    extra = 1 + UNREPORTED_VOLUME[0] + (UNREPORTED_VOLUME[1] - UNREPORTED_VOLUME[0]) * unreported
    volume = np.maximum(1.0, np.round(profile.shares_per_day * _DAY_VOLUME
                                      * np.exp(0.25 * _normal(_key(ids, 12, day_key))) * extra))
    typical = (high + low + close) / 3
    vwap = np.round(np.clip(typical * (1 + 0.1 * profile.volatility * _normal(_key(ids, 13, day_key))), low, high), 4)
    return {"ticker": np.array(order, dtype=object), "o": open_, "h": high, "l": low, "c": close, "v": volume,
            "vw": vwap, "n": np.maximum(1, (volume / 80.0).astype(np.int64))}

"""The sample market: one continuous price path per ticker, cut into the minute bars and official daily bars the
real API serves, deterministic and offline.

Two levels, both seeded:
- The daily path (`_ticker_path`, computed once per ticker over every NYSE session 2000 onwards): each day's
  open, close and share volume. A random walk in log price on today's split-adjusted basis, bridged through the
  ticker's real level on the first session of each year 2019-2025 (so a chart of the sample looks like the
  stock), with overnight gaps a fraction of the day's move, a drop of about the dividend on each ex-date, and split
  factors multiplied back in to give prices as traded.
- The minutes of a day (`_generate`, vectorised over a block of days): a Brownian bridge from the day's open (the
  09:30 bar's open) to its close (the close of the bar stamped at the calendar's close, which carries the closing
  print), thin extended hours around it, and U-shaped volume. Each day's draws come from a seed of (ticker, day),
  so a day is identical whatever range was asked.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from stockpipe.market_calendar import NEW_YORK, trading_days
from stockpipe.sample.actions import SAMPLE_DIVIDENDS, SAMPLE_SPLITS, Split
from stockpipe.sample.days import Block, day_layout, seed

MINUTES_PER_DAY_MAX = 16 * 60  # 04:00-20:00 New York: no day has more bars than this
PRE_MARKET_FILL = 0.30  # share of extended-hours minutes that trade, roughly what liquid large caps show
AFTER_HOURS_FILL = 0.35
COLUMNS = ("t", "o", "h", "l", "c", "v", "vw", "n", "optional_missing")
DAILY_COLUMNS = ("t", "o", "h", "l", "c", "v", "vw", "n")

MINUTE_MS = 60_000
FIRST_SESSION = dt.date(2000, 1, 3)
ANCHOR_YEARS = tuple(range(2019, 2026))
# Before the first anchor the walk is pinned each year near a trend of a large cap's growth (LEVEL_IN_2000 of the
# 2019 level in 2000, TREND_JITTER off it), so 19 unanchored years cannot wander a price to pennies or thousands
# and the last of them leads into 2019 as a stock would (the early sample has no real levels to follow).
TREND_YEARS = tuple(range(2000, ANCHOR_YEARS[0]))
LEVEL_IN_2000 = 0.3
TREND_JITTER = 0.15  # sd of a year's log level around the trend
GROWTH_AFTER_ANCHORS = 0.08 / 252  # log drift a session after the last anchor
SHARE_OF_DAY_REGULAR = 0.9  # of a day's minute volume; extended hours trade the rest
CLOSING_PRINT = 8.0  # volume multiple of the close-stamped bar over its U-shape neighbours: the closing auction
OPENING_PRINT = 2.7  # the same for the 09:30 bar: the opening auction
MIN_TICK_MOVE = 0.01  # a minute's price move (dollars, one sd) never smaller: cents rounding cannot freeze a price
MIN_PIN_PRICE = 10.0  # no pin of the walk below this as traded: a large cap, not a penny stock cents would freeze
UNREPORTED_VOLUME = (0.01, 0.06)  # the daily bar's volume above the minutes' sum: trades no aggregate saw


@dataclasses.dataclass(frozen=True)
class TickerProfile:
    """What makes a ticker look like itself: how much it moves, how much it trades, where it was."""

    daily_volatility: float  # sd of close-to-close log returns
    shares_per_day: float  # on today's basis (after its splits)
    anchors: tuple[float, ...]  # levels as traded on the first session of each of ANCHOR_YEARS


# Levels as traded, so they jump at the real splits; volatilities of a large cap, TSLA and NVDA higher.
PROFILES: dict[str, TickerProfile] = {
    "AAPL": TickerProfile(0.0155, 60e6, (157, 297, 133, 178, 130, 187, 244)),
    "MSFT": TickerProfile(0.0145, 22e6, (101, 158, 222, 335, 240, 371, 421)),
    "GOOGL": TickerProfile(0.0160, 30e6, (1050, 1368, 1757, 2900, 89, 139, 190)),
    "AMZN": TickerProfile(0.0170, 45e6, (1540, 1875, 3186, 3400, 85, 150, 220)),
    "TSLA": TickerProfile(0.0330, 90e6, (310, 430, 720, 1150, 110, 250, 400)),
    "META": TickerProfile(0.0180, 15e6, (130, 208, 272, 338, 125, 345, 590)),
    "NVDA": TickerProfile(0.0290, 250e6, (136, 238, 524, 300, 146, 481, 138)),
    "JPM": TickerProfile(0.0135, 9e6, (98, 140, 127, 159, 134, 170, 240)),
}


def _base_price(ticker: str) -> float:
    """A ticker's price level on today's basis (after all its splits)."""
    return 20.0 + (zlib.crc32(ticker.encode()) % 48000) / 100.0


def _profile(ticker: str) -> TickerProfile:
    """The real tickers' profiles; any other ticker gets a large cap's volatility and a volume from a checksum, and
    yearly levels from a seeded walk ending at its `_base_price` (it has no splits, so as traded is today's basis)."""
    if ticker in PROFILES:
        return PROFILES[ticker]
    rng = np.random.default_rng(seed("profile", ticker))
    steps = rng.normal(0.08, 0.25, len(ANCHOR_YEARS) - 1)
    levels = math.log(_base_price(ticker)) - np.concatenate([np.cumsum(steps[::-1])[::-1], [0.0]])
    return TickerProfile(0.015, 2e6 + (zlib.crc32(ticker.encode()) % 18_000) * 1_000.0,
                         tuple(float(x) for x in np.round(np.exp(levels), 2)))


# ---------------------------------------------------------------------------------------------------------------
# The daily path


@functools.lru_cache(maxsize=1)
def _sessions() -> np.ndarray:
    """Every NYSE session the calendar knows, 2000 onwards, as datetime64[D]."""
    return np.array(trading_days(FIRST_SESSION, dt.date(2100, 1, 1)), dtype="datetime64[D]")


# The walk draws this many numbers per stream whatever the calendar's extent, so a calendar that reaches further
# next year (it ends about a year after today) leaves every earlier day's draws, and so its prices, unchanged.
_PATH_DRAWS = 12_000


def _path_draws(ticker: str, stream: str, count: int) -> np.ndarray:
    assert count <= _PATH_DRAWS, "the calendar outgrew the sample's path draws"
    draws = np.random.default_rng(seed("path", stream, ticker)).standard_normal(_PATH_DRAWS)[:count]
    return np.clip(draws, -4.0, 4.0)  # no 10-sigma day from a thin tail of the generator


@dataclasses.dataclass(frozen=True)
class DailyPath:
    """One ticker's day-level path over `days`: logs of prices on today's split-adjusted basis, `factor` to turn
    them into prices as traded, and the day's share volume on today's basis."""

    days: np.ndarray  # datetime64[D]
    log_prev_close: np.ndarray  # the previous session's close (the first day's: a day before it)
    log_open: np.ndarray
    log_close: np.ndarray
    factor: np.ndarray  # split_factor of each day: price as traded = exp(log) * factor
    shares: np.ndarray
    intraday_volatility: float  # sd of a day's open-to-close log move before the bridge's drift

    def rows(self, days: Sequence[dt.date]) -> np.ndarray:
        wanted = np.array(days, dtype="datetime64[D]")
        rows = np.searchsorted(self.days, wanted)
        if rows.size and (rows.max() >= self.days.size or (self.days[rows] != wanted).any()):
            raise ValueError(f"not an NYSE session the sample knows: {days}")
        return rows


def _anchors(ticker: str, profile: TickerProfile, days: np.ndarray, factor: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """(session index, log level on today's basis) of every point the walk is pinned to: the real levels of
    ANCHOR_YEARS and, before them, one a year near a trend from LEVEL_IN_2000 of the first; none below
    MIN_PIN_PRICE as traded (a checksum-priced ticker's early years could otherwise trade at a dollar)."""
    def first_session(year: int) -> int:
        return int(np.searchsorted(days, np.datetime64(f"{year}-01-01", "D")))

    index = [first_session(year) for year in ANCHOR_YEARS]
    level = [math.log(price / factor[i]) for price, i in zip(profile.anchors, index, strict=True)]
    trend_index = [first_session(year) for year in TREND_YEARS]
    start = level[0] + math.log(LEVEL_IN_2000)
    jitter = np.random.default_rng(seed("trend", ticker)).normal(0, TREND_JITTER, len(TREND_YEARS))
    jitter[0] = 0.0
    trend = [start + (level[0] - start) * i / index[0] + float(j) for i, j in zip(trend_index, jitter, strict=True)]
    floor = np.log(MIN_PIN_PRICE / factor[trend_index + index])
    return np.array(trend_index + index), np.maximum(np.array(trend + level), floor)


def _bridge(increments: np.ndarray, anchor_index: np.ndarray, anchor_level: np.ndarray) -> np.ndarray:
    """A walk through every anchor: between two, the walk's own steps plus the constant drift that lands it on the
    next (a discrete Brownian bridge); after the last, its steps plus a large cap's growth."""
    walk = np.cumsum(increments)
    offset = anchor_level - walk[anchor_index]
    sessions = np.arange(walk.size)
    correction = np.interp(sessions, anchor_index, offset)
    correction += np.maximum(sessions - anchor_index[-1], 0) * GROWTH_AFTER_ANCHORS
    return walk + correction


@functools.lru_cache(maxsize=64)  # 0.3 MB and a few ms each: more tickers than a run fetches at once
def _ticker_path(ticker: str) -> DailyPath:
    days = _sessions()
    count = days.size
    profile = _profile(ticker)
    # Overnight gaps carry an sd of 0.4 of the day's (a sixth of its variance; median gap about 0.4 % for a large
    # cap), the session the rest. TSLA-like names gap more, but not without limit.
    gap_volatility = min(0.4 * profile.daily_volatility, 0.011)
    intraday_volatility = math.sqrt(profile.daily_volatility ** 2 - gap_volatility ** 2)
    gaps = _path_draws(ticker, "gap", count) * gap_volatility
    session_moves = _path_draws(ticker, "session", count) * intraday_volatility

    factor = np.ones(count)
    for split in SAMPLE_SPLITS:
        if split.ticker == ticker:
            factor[days < np.datetime64(split.execution_date, "D")] *= split.ratio
    anchor_index, anchor_level = _anchors(ticker, profile, days, factor)

    # The price falls by about the dividend at the open of its ex-date. The drop's size depends on the price, which
    # depends on the drops through the bridge: one pass without them gives the prices, a second puts them in (the
    # bridge keeps the anchors; the drops shift the prices around them by well under the dividend yield).
    ex_index, cash = [], []
    for dividend in SAMPLE_DIVIDENDS:
        if dividend.ticker == ticker:
            i = int(np.searchsorted(days, np.datetime64(dividend.ex_dividend_date, "D")))
            if i < count:
                ex_index.append(i)
                cash.append(dividend.cash_amount / factor[i])  # on today's basis, like the path
    drops = np.zeros(count)
    if ex_index:
        first_pass = _bridge(gaps + session_moves, anchor_index, anchor_level)
        previous = np.exp(first_pass[np.array(ex_index) - 1])
        drops[ex_index] = np.log1p(-np.array(cash) / previous)

    log_close = _bridge(gaps + drops + session_moves, anchor_index, anchor_level)
    log_prev_close = np.concatenate([[log_close[0] - gaps[0] - session_moves[0]], log_close[:-1]])
    log_open = log_prev_close + gaps + drops
    # Busier on days that move: volume rises with the size of the day's return.
    activity = np.exp(0.3 * _path_draws(ticker, "volume", count))
    shares = profile.shares_per_day * activity * (1 + 10 * np.abs(log_close - log_prev_close))
    return DailyPath(days, log_prev_close, log_open, log_close, factor, shares, intraday_volatility)


# ---------------------------------------------------------------------------------------------------------------
# The minutes


@dataclasses.dataclass(frozen=True)
class _DayShape:
    """What a day's minutes look like whatever the ticker, for one layout of the session (a normal day, an early
    close): computed once per layout, so a block of days only gathers rows of it."""

    segment: np.ndarray  # per minute of the 04:00 grid: 0 pre-market, 1 regular (09:30..close stamp), 2 after hours
    fill: np.ndarray  # chance that an extended-hours minute trades (a regular one always does)
    open_minute: int
    close_minute: int
    volatility: np.ndarray  # a minute's share of the session's sd (regular), 0.4 of a quiet minute's (extended)
    volume_share: np.ndarray  # of the day's regular volume per regular minute: U-shaped, with both prints
    print_bar: np.ndarray  # the opening and closing prints: auction bars, less noisy than the rest


@functools.cache
def _day_shape(open_minute: int, close_minute: int, end_minute: int) -> _DayShape:
    minute = np.arange(MINUTES_PER_DAY_MAX)
    segment = (minute >= open_minute).astype(np.int64) + (minute > close_minute)
    segment[minute >= end_minute] = 3  # no trading at all
    regular = segment == 1
    position, to_close = minute - open_minute, close_minute - minute
    bars = close_minute - open_minute + 1
    # A little more movement after the open and before the close, normalised so the session's variance is kept.
    shape = np.where(regular, 1 + 0.3 * np.exp(-position / 15) + 0.15 * np.exp(-to_close / 20), 0.0)
    shape /= np.sqrt((shape ** 2).sum() / bars)
    volatility = np.where(regular, shape, 0.4)
    # Busy first and last half hours; the 09:30 bar holds the opening auction, the close-stamped bar the closing one.
    u_shape = 1 + 2.0 * np.exp(-position / 20) + 1.5 * np.exp(-to_close / 25)
    u_shape *= np.where(position == 0, OPENING_PRINT, 1.0) * np.where(to_close == 0, CLOSING_PRINT, 1.0)
    u_shape = np.where(regular, u_shape, 0.0)
    print_bar = regular & ((position == 0) | (to_close == 0))
    fill = np.where(segment == 0, PRE_MARKET_FILL, np.where(segment == 2, AFTER_HOURS_FILL, 0.0))
    return _DayShape(segment, fill, open_minute, close_minute, volatility, u_shape / u_shape.sum(), print_bar)


def _generate(ticker: str, days: Sequence[dt.date]) -> Block:
    """Minute bars and official daily bars of `days` (NYSE sessions): the price path on a (day, minute) grid from
    04:00, then everything else on the traded minutes only (the extended hours' untraded two thirds cost nothing)."""
    path = _ticker_path(ticker)
    rows = path.rows(days)
    layouts = [day_layout(day) for day in days]
    shapes = [_day_shape(*layout[1:]) for layout in layouts]
    base_ms = np.array([layout[0] for layout in layouts], dtype=np.int64)[:, None]
    open_m = np.array([shape.open_minute for shape in shapes])[:, None]
    close_m = np.array([shape.close_minute for shape in shapes])[:, None]
    segment = np.stack([shape.segment for shape in shapes])
    minute = np.arange(MINUTES_PER_DAY_MAX)

    # Each day's draws from its own seed: the path's steps and which extended minutes trade for every minute, the
    # rest only for the minutes that trade (two thirds of the extended hours do not: no draws spent on them).
    regular = segment == 1
    fill = np.stack([shape.fill for shape in shapes])
    steps = np.empty((len(days), MINUTES_PER_DAY_MAX))
    chance = np.empty((len(days), MINUTES_PER_DAY_MAX))
    traded = np.empty((len(days), MINUTES_PER_DAY_MAX), dtype=bool)
    bar_normal, bar_uniform = [], []
    unreported = np.empty(len(days))
    for i, day in enumerate(days):
        rng = np.random.default_rng(seed("minutes", ticker, day.isoformat()))
        steps[i] = rng.standard_normal(MINUTES_PER_DAY_MAX)
        chance[i] = rng.random(MINUTES_PER_DAY_MAX)
        traded[i] = regular[i] | (chance[i] < fill[i])
        count = int(traded[i].sum())
        bar_normal.append(rng.standard_normal((4, count)))  # open noise, high wick, low wick, volume noise
        bar_uniform.append(rng.random((2, count)))  # fractional volume, where vw falls in the range
        unreported[i] = rng.random()
    normal = np.concatenate(bar_normal, axis=1)
    uniform = np.concatenate(bar_uniform, axis=1)

    log_prev, log_open, log_close = (a[rows][:, None] for a in (path.log_prev_close, path.log_open, path.log_close))
    factor = path.factor[rows][:, None]
    bars = close_m - open_m + 1
    # A quiet minute's sd of log price: the day's session variance spread over its bars, and never below
    # MIN_TICK_MOVE in dollars, so rounding to cents cannot hold a low-priced stock still for half an hour.
    quiet = np.maximum(path.intraday_volatility / np.sqrt(bars), MIN_TICK_MOVE / (np.exp(log_open) * factor))
    sigma = quiet * np.stack([shape.volatility for shape in shapes])
    # Clipped shocks: no clean minute moves more than 3.5 of its sd, so the day's spike rule (10 MADs) never fires.
    walk = np.cumsum(np.clip(steps, -3.5, 3.5) * sigma, axis=1)

    # Each segment is the walk plus a straight line: pre-market a bridge from the previous close to the open,
    # the regular session one from the open (the 09:30 bar's open) to the close (the close-stamped bar's close),
    # after hours a free walk from the close.
    before_open = np.take_along_axis(walk, open_m - 1, axis=1)
    at_close = np.take_along_axis(walk, close_m, axis=1)
    pre_slope = (before_open - (log_open - log_prev)) / (open_m + 1)
    regular_slope = ((at_close - before_open) - (log_close - log_open)) / bars
    intercept = np.concatenate([log_prev - pre_slope, log_open - before_open + regular_slope * (open_m - 1),
                                log_close - at_close, log_close - at_close], axis=1)
    slope = np.concatenate([-pre_slope, -regular_slope, 0 * bars, 0 * bars], axis=1)
    log_c = walk + np.take_along_axis(intercept, segment, axis=1) + np.take_along_axis(slope, segment, axis=1) * minute
    log_before = np.concatenate([log_prev, log_c[:, :-1]], axis=1)

    counts = traded.sum(axis=1)

    # From here on, only traded minutes (flattened, ascending by t).
    on_open = (minute == open_m)[traded]
    regular_t = regular[traded]
    sigma_t = sigma[traded]
    # A bar opens at about the last price of the minute before; the 09:30 bar at the day's official open.
    log_o = np.where(on_open, np.broadcast_to(log_open, traded.shape)[traded],
                     log_before[traded] + 0.2 * sigma_t * normal[0])
    factor_t = np.broadcast_to(factor, traded.shape)[traded]
    close = np.round(np.exp(log_c[traded]) * factor_t, 2)
    open_ = np.round(np.exp(log_o) * factor_t, 2)
    top, bottom = np.maximum(open_, close), np.minimum(open_, close)
    high = np.round(top * (1 + 0.5 * sigma_t * np.abs(normal[1])), 2)
    low = np.round(bottom * (1 - 0.5 * sigma_t * np.abs(normal[2])), 2)

    # Volume as traded (a day before a split traded fewer, dearer shares): the regular share of the day spread by
    # the U shape, the rest over the day's few extended-hours bars.
    shares = path.shares[rows] / path.factor[rows]
    extended_bars = np.maximum(counts - bars[:, 0], 1)
    per_bar = np.where(regular, SHARE_OF_DAY_REGULAR * np.stack([shape.volume_share for shape in shapes]),
                       (1 - SHARE_OF_DAY_REGULAR) / extended_bars[:, None]) * shares[:, None]
    prints = np.stack([shape.print_bar for shape in shapes])[traded]
    spread = np.where(regular_t, np.where(prints, 0.15, 0.4), 0.9)
    volume = np.maximum(1.0, np.round(per_bar[traded] * np.exp(spread * normal[3])))
    # The real feed sends whole numbers mostly, and fractional share volumes for some bars (303067.656...).
    fractional = uniform[0] < 0.2  # and, given that, uniform[0] / 0.2 is a uniform fraction
    volume = np.where(fractional, volume + np.round(uniform[0] / 0.2, 6), volume)
    vwap = np.round(low + (high - low) * (0.2 + 0.6 * uniform[1]), 4)
    trades = np.maximum(1, (volume / np.where(regular_t, 90.0, 40.0)).astype(np.int64))
    # Thin extended-hours bars sometimes come without vw/n: the contract makes them optional.
    # (A traded extended minute's chance is uniform below its fill rate: its lowest 2 % decide.)
    optional_missing = ~regular_t & (chance[traded] < 0.02 * fill[traded])
    t = (base_ms + MINUTE_MS * minute)[traded]
    minutes = {"t": t, "o": open_, "h": high, "l": low, "c": close, "v": volume, "vw": vwap, "n": trades,
               "optional_missing": optional_missing}

    # The official daily bar: the 09:30 open, the closing print's close, the regular session's range, and every
    # minute's volume plus the trades no minute aggregate saw. Each day's regular bars are one run of `bars`.
    day_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    regular_start = np.concatenate([[0], np.cumsum(bars[:, 0])[:-1]])
    day_volume = np.add.reduceat(volume, day_start)
    extra = 1 + UNREPORTED_VOLUME[0] + (UNREPORTED_VOLUME[1] - UNREPORTED_VOLUME[0]) * unreported
    daily = {
        "t": base_ms[:, 0] - 4 * 3_600_000,  # midnight New York: 04:00 less four hours, never across a DST change
        "o": open_[regular_t][regular_start],
        "h": np.maximum.reduceat(high[regular_t], regular_start),
        "l": np.minimum.reduceat(low[regular_t], regular_start),
        "c": close[regular_t][regular_start + bars[:, 0] - 1],
        "v": np.round(day_volume * extra),
        # Over the regular session, so it lies in the day's range even when pre-market traded far from it.
        "vw": np.round(np.add.reduceat((vwap * volume)[regular_t], regular_start)
                       / np.add.reduceat(volume[regular_t], regular_start), 4),
        "n": np.round(np.add.reduceat(trades, day_start) * extra).astype(np.int64),
    }
    return Block(ticker, tuple(days), minutes, counts, daily)


def _empty(columns: Iterable[str]) -> dict[str, np.ndarray]:
    return {key: np.array([]) for key in columns}


def _concat(parts: list[dict[str, np.ndarray]], columns: Iterable[str]) -> dict[str, np.ndarray]:
    if not parts:
        return _empty(columns)
    return {key: np.concatenate([part[key] for part in parts]) for key in columns}


BLOCK_DAYS = 16  # days generated together: enough to amortise NumPy's per-call cost, few past a page's end


def _blocks(ticker: str, date_from: dt.date, date_to: dt.date,
            finish: Callable[[Block], Block] | None = None) -> Iterable[Block]:
    days = trading_days(date_from, date_to)
    for start in range(0, len(days), BLOCK_DAYS):
        block = _generate(ticker, days[start:start + BLOCK_DAYS])
        yield finish(block) if finish else block


@functools.lru_cache(maxsize=512)
def day_bars(ticker: str, day: dt.date) -> dict[str, np.ndarray]:
    """Columns t (ms), o, h, l, c, v, vw, n (and optional_missing) of one ticker's trading day, as traded, in the
    clean market. Deterministic in (ticker, day)."""
    if not trading_days(day, day):
        return _empty(COLUMNS)
    return _generate(ticker, [day]).minutes


def range_bars(ticker: str, date_from: dt.date, date_to: dt.date, enough: Callable[[int], bool] | None = None,
               *, finish: Callable[[Block], Block] | None = None) -> dict[str, np.ndarray]:
    """All bars for the New York trading days in [date_from, date_to], ascending by t; with `enough`, only the
    first days whose bars (counted so far) satisfy it, so a page of a long range costs a page, not the range.
    `finish` changes each generated block before it is cut: the sample's injected imperfections
    (`stockpipe.sample.faults.with_minute_faults`) come in through it."""
    parts: list[dict[str, np.ndarray]] = []
    count = 0
    for block in _blocks(ticker, date_from, date_to, finish):
        if enough is None:
            parts.append(block.minutes)
            continue
        ends = count + np.cumsum(block.counts)
        satisfied = [i for i, total in enumerate(ends) if enough(int(total))]
        if not satisfied:
            parts.append(block.minutes)
            count = int(ends[-1])
            continue
        keep = int(ends[satisfied[0]] - count)
        parts.append({key: column[:keep] for key, column in block.minutes.items()})
        break
    return _concat(parts, COLUMNS)


def daily_bars(ticker: str, date_from: dt.date, date_to: dt.date) -> dict[str, np.ndarray]:
    """The official daily bars (as traded) of the trading days in [date_from, date_to]: what
    `/v2/aggs/ticker/{T}/range/1/day/...?adjusted=false` serves. They describe the true market, so the sample's
    injected faults never reach them (as a provider's corrected daily bar would not show a bad print)."""
    return _concat([block.daily for block in _blocks(ticker, date_from, date_to)], DAILY_COLUMNS)


def official_daily_bar(ticker: str, day: dt.date) -> dict[str, Any] | None:
    """One ticker's official daily bar for `day` as the API's JSON has it (as traded); None when NYSE was closed."""
    columns = daily_bars(ticker, day, day)
    return daily_bars_as_json(columns)[0] if columns["t"].size else None


def daily_bars_as_json(columns: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    return [{"v": json_volume(float(v)), "vw": float(vw), "o": float(o), "c": float(c), "h": float(h), "l": float(lo),
             "t": int(t), "n": int(n)}
            for t, o, h, lo, c, v, vw, n in zip(*(columns[key] for key in DAILY_COLUMNS), strict=True)]


def json_volume(volume: float) -> int | float:
    return int(volume) if volume.is_integer() else volume


def bars_as_json(columns: dict[str, np.ndarray], start: int, stop: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    t, o, h, lo, c, v, vw, n, missing = (columns[k] for k in COLUMNS)
    for i in range(start, stop):
        bar: dict[str, Any] = {
            "v": json_volume(float(v[i])),
            "o": float(o[i]),
            "c": float(c[i]),
            "h": float(h[i]),
            "l": float(lo[i]),
            "t": int(t[i]),
        }
        if not missing[i]:
            bar["vw"] = float(vw[i])
            bar["n"] = int(n[i])
        out.append(bar)
    return out


def adjusted_bars(ticker: str, columns: dict[str, np.ndarray], splits: Iterable[Split]) -> dict[str, np.ndarray]:
    """What `adjusted=true` serves: every bar before a split of the ticker divided by its ratio (volume
    multiplied), by the splits the server knows when it answers. Minute and daily columns alike (a daily bar's t is
    its day's midnight, so a split's own day is on the new basis)."""
    factor = np.ones(columns["t"].size)
    for split in splits:
        if split.ticker == ticker:
            starts = dt.datetime.combine(split.execution_date, dt.time(), NEW_YORK)
            factor = np.where(columns["t"] < int(starts.timestamp() * 1000), factor * split.ratio, factor)
    out = dict(columns)
    for key in ("o", "h", "l", "c", "vw"):
        out[key] = np.round(columns[key] / factor, 4)
    out["v"] = np.round(columns["v"] * factor, 4)
    return out

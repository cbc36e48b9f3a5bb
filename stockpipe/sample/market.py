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
import hashlib
import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from stockpipe.market_calendar import NEW_YORK, session_hours, trading_days
from stockpipe.sample.actions import SAMPLE_DIVIDENDS, SAMPLE_SPLITS, Split

MINUTES_PER_DAY_MAX = 16 * 60  # 04:00-20:00 New York: no day has more bars than this
PRE_MARKET_FILL = 0.30  # share of extended-hours minutes that trade, roughly what liquid large caps show
AFTER_HOURS_FILL = 0.35
COLUMNS = ("t", "o", "h", "l", "c", "v", "vw", "n", "optional_missing")
DAILY_COLUMNS = ("t", "o", "h", "l", "c", "v", "vw", "n")

MINUTE_MS = 60_000
FIRST_SESSION = dt.date(2000, 1, 3)
ANCHOR_YEARS = tuple(range(2019, 2026))
# Years before the first anchor where the walk is pinned to a smooth trend, so 19 unanchored years cannot wander
# a price to pennies or thousands (the early sample has no real levels to follow).
TREND_YEARS = (2000, 2005, 2010, 2015)
LEVEL_IN_2000 = 0.3  # the 2000 level as a share of the 2019 one, on today's basis: growth like a large cap's
GROWTH_AFTER_ANCHORS = 0.08 / 252  # log drift a session after the last anchor
SHARE_OF_DAY_REGULAR = 0.9  # of a day's minute volume; extended hours trade the rest
CLOSING_PRINT = 8.0  # volume multiple of the close-stamped bar over its U-shape neighbours: the closing auction
OPENING_PRINT = 2.7  # the same for the 09:30 bar: the opening auction
MIN_TICK_MOVE = 0.015  # a minute's price move (dollars, one sd) never smaller: cents rounding cannot freeze a price
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


def _seed(*parts: object) -> int:
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _base_price(ticker: str) -> float:
    """A ticker's price level on today's basis (after all its splits)."""
    return 20.0 + (zlib.crc32(ticker.encode()) % 48000) / 100.0


def _profile(ticker: str) -> TickerProfile:
    """The real tickers' profiles; any other ticker gets a large cap's volatility and a volume from a checksum, and
    yearly levels from a seeded walk ending at its `_base_price` (it has no splits, so as traded is today's basis)."""
    if ticker in PROFILES:
        return PROFILES[ticker]
    rng = np.random.default_rng(_seed("profile", ticker))
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
    draws = np.random.default_rng(_seed("path", stream, ticker)).standard_normal(_PATH_DRAWS)[:count]
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


def _anchors(profile: TickerProfile, days: np.ndarray, factor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(session index, log level on today's basis) of every point the walk is pinned to: the real levels of
    ANCHOR_YEARS and, before them, a smooth trend from LEVEL_IN_2000 of the first."""
    def first_session(year: int) -> int:
        return int(np.searchsorted(days, np.datetime64(f"{year}-01-01", "D")))

    index = [first_session(year) for year in ANCHOR_YEARS]
    level = [math.log(price / factor[i]) for price, i in zip(profile.anchors, index, strict=True)]
    trend_index = [first_session(year) for year in TREND_YEARS]
    start = level[0] + math.log(LEVEL_IN_2000)
    trend = [start + (level[0] - start) * i / index[0] for i in trend_index]
    return np.array(trend_index + index), np.array(trend + level)


def _bridge(increments: np.ndarray, anchor_index: np.ndarray, anchor_level: np.ndarray) -> np.ndarray:
    """A walk through every anchor: between two, the walk's own steps plus the constant drift that lands it on the
    next (a discrete Brownian bridge); after the last, its steps plus a large cap's growth."""
    walk = np.cumsum(increments)
    offset = anchor_level - walk[anchor_index]
    sessions = np.arange(walk.size)
    correction = np.interp(sessions, anchor_index, offset)
    correction += np.maximum(sessions - anchor_index[-1], 0) * GROWTH_AFTER_ANCHORS
    return walk + correction


@functools.lru_cache(maxsize=256)
def _ticker_path(ticker: str) -> DailyPath:
    days = _sessions()
    count = days.size
    profile = _profile(ticker)
    # A large cap moves about a quarter of its daily variance overnight (median gap about 0.4 %): the rest is the
    # session's. TSLA-like names gap more, but not without limit.
    gap_volatility = min(0.4 * profile.daily_volatility, 0.011)
    intraday_volatility = math.sqrt(profile.daily_volatility ** 2 - gap_volatility ** 2)
    gaps = _path_draws(ticker, "gap", count) * gap_volatility
    sessions_moves = _path_draws(ticker, "session", count) * intraday_volatility

    factor = np.ones(count)
    for split in SAMPLE_SPLITS:
        if split.ticker == ticker:
            factor[days < np.datetime64(split.execution_date, "D")] *= split.ratio
    anchor_index, anchor_level = _anchors(profile, days, factor)

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
        first_pass = _bridge(gaps + sessions_moves, anchor_index, anchor_level)
        previous = np.exp(first_pass[np.array(ex_index) - 1])
        drops[ex_index] = np.log1p(-np.array(cash) / previous)

    log_close = _bridge(gaps + drops + sessions_moves, anchor_index, anchor_level)
    log_prev_close = np.concatenate([[log_close[0] - gaps[0] - sessions_moves[0]], log_close[:-1]])
    log_open = log_prev_close + gaps + drops
    # Busier on days that move: volume rises with the size of the day's return.
    activity = np.exp(0.3 * _path_draws(ticker, "volume", count))
    shares = profile.shares_per_day * activity * (1 + 10 * np.abs(log_close - log_prev_close))
    return DailyPath(days, log_prev_close, log_open, log_close, factor, shares, intraday_volatility)


# ---------------------------------------------------------------------------------------------------------------
# The minutes


@functools.cache
def _day_layout(day: dt.date) -> tuple[int, int, int, int]:
    """(epoch ms of 04:00 New York, and the minutes after it of the open, the close stamp and the end of extended
    hours). 04:00 to 20:00 never crosses a DST change (it happens at 02:00), so minutes are uniform from 04:00."""
    hours = session_hours(day)
    minute = dt.timedelta(minutes=1)
    return (int(hours.pre_open.timestamp() * 1000), (hours.open - hours.pre_open) // minute,
            (hours.close - hours.pre_open) // minute, (hours.post_close - hours.pre_open) // minute)


@dataclasses.dataclass(frozen=True)
class _Block:
    """The bars of consecutive trading days of one ticker: minute columns, bars per day, official daily bars."""

    ticker: str
    days: tuple[dt.date, ...]
    minutes: dict[str, np.ndarray]
    counts: np.ndarray
    daily: dict[str, np.ndarray]


def _generate(ticker: str, days: Sequence[dt.date]) -> _Block:
    """Minute bars and official daily bars of `days` (NYSE sessions), vectorised over a (day, minute) grid from
    04:00; a minute's place in the grid decides its session, and only traded minutes are kept."""
    path = _ticker_path(ticker)
    rows = path.rows(days)
    layout = np.array([_day_layout(day) for day in days], dtype=np.int64).reshape(-1, 4)
    base_ms, open_m, close_m, end_m = (layout[:, i:i + 1] for i in range(4))
    minute = np.arange(MINUTES_PER_DAY_MAX)
    pre = minute < open_m
    regular = (minute >= open_m) & (minute <= close_m)  # 09:30 through the close stamp, inclusive
    post = (minute > close_m) & (minute < end_m)

    size = (len(days), MINUTES_PER_DAY_MAX)
    normal = np.empty((len(days), 5, MINUTES_PER_DAY_MAX))
    uniform = np.empty((len(days), 5, MINUTES_PER_DAY_MAX))
    unreported = np.empty(len(days))
    for i, day in enumerate(days):
        rng = np.random.default_rng(_seed("minutes", ticker, day.isoformat()))
        normal[i] = rng.standard_normal((5, MINUTES_PER_DAY_MAX))
        uniform[i] = rng.random((5, MINUTES_PER_DAY_MAX))
        unreported[i] = rng.random()

    log_prev, log_open, log_close = (a[rows][:, None] for a in (path.log_prev_close, path.log_open, path.log_close))
    factor = path.factor[rows][:, None]
    bars = close_m - open_m + 1
    position = minute - open_m  # 0 at 09:30
    to_close = close_m - minute  # 0 at the close stamp

    # A minute's sd of log price: the day's session variance spread over its bars, a little higher after the open
    # and before the close (normalised so the day's total is kept), and never below MIN_TICK_MOVE in dollars.
    shape = np.where(regular, 1 + 0.3 * np.exp(-position / 15) + 0.15 * np.exp(-to_close / 20), 0.0)
    shape /= np.sqrt((shape ** 2).sum(axis=1, keepdims=True) / bars)
    price = np.exp(log_open) * factor
    quiet = np.maximum(path.intraday_volatility / np.sqrt(bars), MIN_TICK_MOVE / price)
    sigma = np.where(regular, quiet * shape, 0.4 * quiet)
    # Clipped shocks: no clean minute moves more than 3.5 of its sd, so the day's spike rule (10 MADs) never fires.
    step = np.clip(normal[:, 0], -3.5, 3.5) * sigma

    # Regular session: a bridge from the open (the 09:30 bar's open) to the close (the close-stamped bar's close).
    walk = np.cumsum(np.where(regular, step, 0.0), axis=1)
    done = np.clip(position + 1, 0, bars)
    x_regular = log_open + walk - done / bars * (walk[:, -1:] - (log_close - log_open))
    # Pre-market: a bridge from the previous close to the open; after hours: a walk from the close.
    walk = np.cumsum(np.where(pre, step, 0.0), axis=1)
    x_pre = log_prev + walk - (minute + 1) / (open_m + 1) * (walk[:, -1:] - (log_open - log_prev))
    x_post = log_close + np.cumsum(np.where(post, step, 0.0), axis=1)
    log_c = np.where(pre, x_pre, np.where(regular, x_regular, x_post))
    # A bar opens at about the last price of the minute before; the 09:30 bar opens at the day's official open.
    log_o = np.concatenate([log_prev, log_c[:, :-1]], axis=1) + 0.2 * sigma * normal[:, 1]
    log_o = np.where(position == 0, log_open, log_o)

    close = np.round(np.exp(log_c) * factor, 2)
    open_ = np.round(np.exp(log_o) * factor, 2)
    top, bottom = np.maximum(open_, close), np.minimum(open_, close)
    high = np.round(top * (1 + 0.5 * sigma * np.abs(normal[:, 2])), 2)
    low = np.round(bottom * (1 - 0.5 * sigma * np.abs(normal[:, 3])), 2)

    # Volume: U-shaped through the session, the opening and closing prints several times a midday bar, thin
    # extended hours; as traded, so a day before a split traded fewer (larger) shares.
    traded = regular | (pre & (uniform[:, 0] < PRE_MARKET_FILL)) | (post & (uniform[:, 0] < AFTER_HOURS_FILL))
    u_shape = 1 + 2.0 * np.exp(-position / 20) + 1.5 * np.exp(-to_close / 25)
    u_shape *= np.where(position == 0, OPENING_PRINT, 1.0) * np.where(to_close == 0, CLOSING_PRINT, 1.0)
    u_shape = np.where(regular, u_shape, 0.0)
    shares = (path.shares[rows] / path.factor[rows])[:, None]
    prints = (position == 0) | (to_close == 0)
    noise = np.exp(np.where(regular, np.where(prints, 0.15, 0.4), 0.9) * normal[:, 4])
    extended_bars = np.maximum((traded & ~regular).sum(axis=1, keepdims=True), 1)
    expected = np.where(regular, SHARE_OF_DAY_REGULAR * u_shape / u_shape.sum(axis=1, keepdims=True),
                        (1 - SHARE_OF_DAY_REGULAR) / extended_bars)
    volume = np.maximum(1.0, np.round(shares * expected * noise))
    # The real feed sends whole numbers mostly, and fractional share volumes for some bars (303067.656...).
    volume = np.where(uniform[:, 1] < 0.2, volume + np.round(uniform[:, 2], 6), volume)
    vwap = np.round(low + (high - low) * (0.2 + 0.6 * uniform[:, 3]), 4)
    trades = np.maximum(1, (volume / np.where(regular, 90.0, 40.0)).astype(np.int64))
    # Thin extended-hours bars sometimes come without vw/n: the contract makes them optional.
    optional_missing = ~regular & (uniform[:, 4] < 0.02)
    t = base_ms + MINUTE_MS * minute

    grid = {"t": t, "o": open_, "h": high, "l": low, "c": close, "v": volume, "vw": vwap, "n": trades,
            "optional_missing": optional_missing}
    minutes = {key: np.broadcast_to(grid[key], size)[traded] for key in COLUMNS}
    counts = traded.sum(axis=1)

    # The official daily bar: the 09:30 open, the closing print's close, the regular session's range, and every
    # minute's volume plus the trades no minute aggregate saw.
    day_volume = np.where(traded, volume, 0.0).sum(axis=1)
    extra = 1 + UNREPORTED_VOLUME[0] + (UNREPORTED_VOLUME[1] - UNREPORTED_VOLUME[0]) * unreported
    daily = {
        "t": base_ms[:, 0] - 4 * 3_600_000,  # midnight New York: 04:00 less four hours, never across a DST change
        "o": np.take_along_axis(open_, open_m, axis=1)[:, 0],
        "h": np.where(regular, high, -np.inf).max(axis=1),
        "l": np.where(regular, low, np.inf).min(axis=1),
        "c": np.take_along_axis(close, close_m, axis=1)[:, 0],
        "v": np.round(day_volume * extra),
        "vw": np.round(np.where(traded, vwap * volume, 0.0).sum(axis=1) / day_volume, 4),
        "n": np.round(np.where(traded, trades, 0).sum(axis=1) * extra).astype(np.int64),
    }
    return _Block(ticker, tuple(days), minutes, counts, daily)


def _empty(columns: Iterable[str]) -> dict[str, np.ndarray]:
    return {key: np.array([]) for key in columns}


def _concat(parts: list[dict[str, np.ndarray]], columns: Iterable[str]) -> dict[str, np.ndarray]:
    if not parts:
        return _empty(columns)
    return {key: np.concatenate([part[key] for part in parts]) for key in columns}


BLOCK_DAYS = 16  # days generated together: enough to amortise NumPy's per-call cost, few past a page's end


def _blocks(ticker: str, date_from: dt.date, date_to: dt.date,
            finish: Callable[[_Block], _Block] | None = None) -> Iterable[_Block]:
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
               *, faults: bool = False) -> dict[str, np.ndarray]:
    """All bars for the New York trading days in [date_from, date_to], ascending by t; with `enough`, only the
    first days whose bars (counted so far) satisfy it, so a page of a long range costs a page, not the range.
    `faults`: with the sample's injected imperfections (`stockpipe.sample.faults`) in the minutes."""
    from stockpipe.sample.faults import with_minute_faults  # faults build on this module

    parts: list[dict[str, np.ndarray]] = []
    count = 0
    for block in _blocks(ticker, date_from, date_to, with_minute_faults if faults else None):
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
    return [{"v": _volume(float(v)), "vw": float(vw), "o": float(o), "c": float(c), "h": float(h), "l": float(lo),
             "t": int(t), "n": int(n)}
            for t, o, h, lo, c, v, vw, n in zip(*(columns[key] for key in DAILY_COLUMNS), strict=True)]


def _volume(volume: float) -> int | float:
    return int(volume) if volume.is_integer() else volume


def bars_as_json(columns: dict[str, np.ndarray], start: int, stop: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    t, o, h, lo, c, v, vw, n, missing = (columns[k] for k in COLUMNS)
    for i in range(start, stop):
        bar: dict[str, Any] = {
            "v": _volume(float(v[i])),
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

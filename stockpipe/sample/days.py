"""What the sample's market and its injected faults both build on: deterministic seeds, a trading day's minute
layout, and the block of bars one generation yields. Its own module, so the market does not import the faults and
the faults do not reach into the market's private names: the faults arrive as the `finish` hook of
`market.range_bars`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib

import numpy as np

from stockpipe.market_calendar import session_hours


def seed(*parts: object) -> int:
    """A 64-bit seed from the parts' text: the same parts give the same draws in every process and run."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


@functools.cache
def day_layout(day: dt.date) -> tuple[int, int, int, int]:
    """(epoch ms of 04:00 New York, and the minutes after it of the open, the close stamp and the end of extended
    hours). 04:00 to 20:00 never crosses a DST change (it happens at 02:00), so minutes are uniform from 04:00."""
    hours = session_hours(day)
    minute = dt.timedelta(minutes=1)
    return (int(hours.pre_open.timestamp() * 1000), (hours.open - hours.pre_open) // minute,
            (hours.close - hours.pre_open) // minute, (hours.post_close - hours.pre_open) // minute)


@dataclasses.dataclass(frozen=True)
class Block:
    """The bars of consecutive trading days of one ticker: minute columns, bars per day, official daily bars."""

    ticker: str
    days: tuple[dt.date, ...]
    minutes: dict[str, np.ndarray]
    counts: np.ndarray
    daily: dict[str, np.ndarray]

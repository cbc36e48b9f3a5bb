"""NYSE trading days and session bounds from a maintained calendar (exchange_calendars' XNYS), not a hand list."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import pandas as pd

NEW_YORK = ZoneInfo("America/New_York")
PRE_MARKET_OPEN = dt.time(4, 0)
AFTER_HOURS_CLOSE = dt.time(20, 0)
# On early-close days (13:00) extended trading ends at 17:00.
EARLY_CLOSE_AFTER_HOURS_CLOSE = dt.time(17, 0)


@functools.lru_cache(maxsize=1)
def _xnys() -> xcals.ExchangeCalendar:
    return xcals.get_calendar("XNYS", start="2000-01-03")


def trading_days(date_from: dt.date, date_to: dt.date) -> list[dt.date]:
    """NYSE sessions in [date_from, date_to], both inclusive."""
    cal = _xnys()
    lo = max(pd.Timestamp(date_from), cal.first_session)
    hi = min(pd.Timestamp(date_to), cal.last_session)
    if lo > hi:
        return []
    return [ts.date() for ts in cal.sessions_in_range(lo, hi)]


@dataclass(frozen=True)
class SessionHours:
    """One trading day's extended-hours window and regular session, as aware New York datetimes."""

    day: dt.date
    pre_open: dt.datetime
    open: dt.datetime
    close: dt.datetime
    post_close: dt.datetime

    @property
    def early_close(self) -> bool:
        return self.close.time() < dt.time(16, 0)


@functools.lru_cache(maxsize=16_384)
def session_hours(day: dt.date) -> SessionHours:
    cal = _xnys()
    ts = pd.Timestamp(day)
    regular_open = cal.session_open(ts).tz_convert(NEW_YORK).to_pydatetime()
    regular_close = cal.session_close(ts).tz_convert(NEW_YORK).to_pydatetime()
    post = EARLY_CLOSE_AFTER_HOURS_CLOSE if regular_close.time() < dt.time(16, 0) else AFTER_HOURS_CLOSE
    return SessionHours(
        day=day,
        pre_open=dt.datetime.combine(day, PRE_MARKET_OPEN, NEW_YORK),
        open=regular_open,
        close=regular_close,
        post_close=dt.datetime.combine(day, post, NEW_YORK),
    )


def regular_minutes(day: dt.date) -> int:
    """Minute bars the regular session can hold: one per minute stamp from the open through the close stamp, whose
    bar holds the closing auction's print (391 on a full day, 211 on an early close)."""
    hours = session_hours(day)
    return int((hours.close - hours.open).total_seconds() // 60) + 1


@dataclass(frozen=True)
class Session:
    """One trading day in trading-day order: its index among the calendar's sessions (consecutive sessions differ
    by one, whatever weekends and holidays lie between), the session before it, and its regular bounds (UTC)."""

    day: dt.date
    index: int
    previous: dt.date | None
    open: dt.datetime
    close: dt.datetime


def sessions_between(date_from: dt.date, date_to: dt.date) -> list[Session]:
    """Every NYSE session in [date_from, date_to], indexed from the calendar's first session (2000-01-03)."""
    cal = _xnys()
    lo = max(pd.Timestamp(date_from), cal.first_session)
    hi = min(pd.Timestamp(date_to), cal.last_session)
    if lo > hi:
        return []
    every = cal.sessions
    first = int(every.get_indexer([cal.date_to_session(lo, direction="next")])[0])
    last = int(every.get_indexer([cal.date_to_session(hi, direction="previous")])[0])
    opens, closes = cal.opens, cal.closes
    found = []
    for index in range(first, last + 1):
        found.append(Session(
            day=every[index].date(), index=index, previous=every[index - 1].date() if index else None,
            open=opens.iloc[index].to_pydatetime(), close=closes.iloc[index].to_pydatetime(),
        ))
    return found


def new_york_today(now: dt.datetime | None = None) -> dt.date:
    now = now or dt.datetime.now(dt.UTC)
    return now.astimezone(NEW_YORK).date()

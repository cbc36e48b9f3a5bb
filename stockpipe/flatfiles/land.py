"""Which days a flat-file run lands: listed by the endpoint (not guessed from the clock), reused when landed whole
with the same ETag, landed again when the provider republished the file, and, when the endpoint lacks a day,
`not published` (the latest trading day: its file may not be out yet) or `missing` (an older day: a failure)."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from stockpipe.errors import StopError
from stockpipe.flatfiles.store import DayRefused, FlatFileStore, Listed, Republished
from stockpipe.flatfiles.zone import FlatFileZone, LandedFile
from stockpipe.market_calendar import trading_days

log = logging.getLogger(__name__)

REPUBLISH_ATTEMPTS = 3  # a file republished while it downloads is downloaded again, at most this many times


class DayStatus(StrEnum):
    LANDED = "landed"  # downloaded by this run
    REUSED = "reused"  # landed whole before, same ETag: no download
    RELANDED = "relanded"  # landed before, but the provider republished it (a new ETag): downloaded again
    NOT_PUBLISHED = "not_published"  # the latest trading day, not on the endpoint yet: the next run takes it
    MISSING = "missing"  # an older day the endpoint lacks: a failure of that day


@dataclass(frozen=True)
class DayFetch:
    day: dt.date
    status: DayStatus
    landed: LandedFile | None = None
    reason: str = ""
    bytes: int = 0  # downloaded by this run
    seconds: float = 0.0

    @property
    def stored(self) -> bool:
        return self.landed is not None


@dataclass
class LandedDays:
    days: list[DayFetch] = field(default_factory=list)
    stopped: StopError | None = None  # the credentials refused or the endpoint unreachable

    def files(self) -> list[LandedFile]:
        return [d.landed for d in self.days if d.landed is not None]


def latest_publishable(today: dt.date) -> dt.date:
    """The last trading day whose file may not be out yet: the one before today (published about 11:00 New York
    today), or today itself when it is a trading day. Days before it should all be on the endpoint."""
    earlier = trading_days(today - dt.timedelta(days=10), today - dt.timedelta(days=1))
    return earlier[-1] if earlier else today


def land_days(store: FlatFileStore, zone: FlatFileZone, days: Sequence[dt.date], today: dt.date, *,
              refetch: bool = False, on_day: Callable[[DayFetch], None] | None = None) -> LandedDays:
    """Every requested day's file in the landing zone, by what the endpoint lists."""
    result = LandedDays()
    try:
        listed = store.list_days(days)
    except StopError as exc:
        result.stopped = exc
        return result
    recent = latest_publishable(today)
    for day in days:
        fetched = _one_day(store, zone, day, listed.get(day), recent, refetch)
        result.days.append(fetched)
        if on_day is not None:
            on_day(fetched)
    return result


def _one_day(store: FlatFileStore, zone: FlatFileZone, day: dt.date, listed: Listed | None, recent: dt.date,
             refetch: bool) -> DayFetch:
    before = zone.landed(day)
    if listed is None:
        return _lacking(day, recent, "not in the endpoint's listing")
    if before is not None and before.etag == listed.etag and not refetch:
        return DayFetch(day, DayStatus.REUSED, before)
    started = time.monotonic()
    for attempt in range(1, REPUBLISH_ATTEMPTS + 1):
        try:
            part = zone.part(day, listed.etag)
            etag, size = store.download(listed, part)
            landed = zone.complete(day, part, listed.key, etag, size)
        except DayRefused as refused:
            return _lacking(day, recent, f"the endpoint answered {refused.status}")
        except Republished:
            if attempt == REPUBLISH_ATTEMPTS:
                raise
            fresh = store.list_days([day]).get(day)
            if fresh is None:
                return _lacking(day, recent, "no longer in the endpoint's listing")
            listed = fresh
            continue
        status = DayStatus.RELANDED if before is not None and before.etag != etag else DayStatus.LANDED
        if status is DayStatus.RELANDED:
            log.info("%s: republished by the provider (ETag %s -> %s): landed again", day, before.etag if before
                     else "-", etag)
        return DayFetch(day, status, landed, bytes=size, seconds=time.monotonic() - started)
    raise AssertionError("unreachable")


def _lacking(day: dt.date, recent: dt.date, why: str) -> DayFetch:
    if day >= recent:
        return DayFetch(day, DayStatus.NOT_PUBLISHED, reason=f"{why}: not published yet (the provider publishes a "
                        "day's file about 11:00 New York the next day); the next run takes it")
    return DayFetch(day, DayStatus.MISSING, reason=f"{why}, though a day this old should be there")

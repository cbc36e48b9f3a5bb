"""The landing zone (bronze): every fetched page stored raw before any transform.

Layout, one folder per fetch of one ticker's date range:

    <landing>/ticker=AAPL/fetch=2024-01-08_2024-01-12_20261122T014700123456Z_4242-9f86d081/
        page-00001.json        the response body, byte for byte
        page-00001.meta.json   ticker, range, url (never the key: auth travels in a header), request_id, fetched_at
        _complete.json         written last: the fetch finished; final_through = last day that was already over

A day can be served from the landing zone when a complete fetch covers it and the day was over (before New York
"today") when it was fetched: past minute bars do not change, the current day's do.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from stockpipe.massive import Page

_FETCH_DIR = re.compile(r"^fetch=(\d{4}-\d{2}-\d{2})_(\d{4}-\d{2}-\d{2})_(\d{8}T\d{12}Z)_(\d+)-[0-9a-f]{8}$")
COMPLETE_MARKER = "_complete.json"


def default_landing_path(table_path: str) -> str:
    return table_path.rstrip("/") + "_landing"


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class LandedFetch:
    ticker: str
    path: Path
    date_from: dt.date
    date_to: dt.date
    fetched_at: dt.datetime
    complete: bool
    final_through: dt.date | None

    @property
    def fetch_id(self) -> str:
        return self.path.name.removeprefix("fetch=")

    def pages(self) -> list[Path]:
        return sorted(self.path.glob("page-*[0-9].json"))

    def covers_final(self, day: dt.date) -> bool:
        return (
            self.complete
            and self.final_through is not None
            and self.date_from <= day <= min(self.date_to, self.final_through)
        )

    def last_next_url(self) -> str | None:
        """Where an interrupted fetch resumes: the next_url of its last landed page."""
        pages = self.pages()
        if not pages:
            return None
        meta = json.loads(pages[-1].with_suffix(".meta.json").read_text())
        return meta.get("next_url")


class FetchWriter:
    """Lands the pages of one fetch as they arrive; `finish()` marks it complete."""

    def __init__(self, fetch: LandedFetch) -> None:
        self.fetch = fetch
        self._count = len(fetch.pages())

    def add(self, page: Page) -> Path:
        self._count += 1
        cursor = parse_qs(urlsplit(page.url).query).get("cursor", [None])[0]
        page_path = self.fetch.path / f"page-{self._count:05d}.json"
        meta = {
            "ticker": self.fetch.ticker,
            "from": self.fetch.date_from.isoformat(),
            "to": self.fetch.date_to.isoformat(),
            "url": page.url,
            "cursor": cursor,
            "request_id": page.request_id,
            "status": page.status,
            "bars": page.bar_count,
            "next_url": page.next_url,
            "fetched_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        }
        # Body first, then its metadata: a page without metadata is ignored on resume and refetched.
        _atomic_write(page_path, page.body)
        _atomic_write(page_path.with_suffix(".meta.json"), json.dumps(meta, indent=1).encode())
        return page_path

    def abandon_if_empty(self) -> None:
        """Remove the fetch's folder when not one page landed in it (nothing to resume from)."""
        if self._count == 0:
            shutil.rmtree(self.fetch.path, ignore_errors=True)

    def finish(self, final_through: dt.date) -> LandedFetch:
        marker = {"pages": self._count, "final_through": final_through.isoformat()}
        _atomic_write(self.fetch.path / COMPLETE_MARKER, json.dumps(marker).encode())
        return LandedFetch(
            self.fetch.ticker, self.fetch.path, self.fetch.date_from, self.fetch.date_to,
            self.fetch.fetched_at, True, final_through,
        )


class LandingZone:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def ticker_dir(self, ticker: str) -> Path:
        return self.root / f"ticker={ticker}"

    def fetches(self, ticker: str) -> list[LandedFetch]:
        """Every fetch landed for the ticker, oldest first."""
        found: list[LandedFetch] = []
        base = self.ticker_dir(ticker)
        if not base.is_dir():
            return found
        for child in base.iterdir():
            match = _FETCH_DIR.match(child.name)
            if not match or not child.is_dir():
                continue
            marker = child / COMPLETE_MARKER
            final_through = None
            if marker.exists():
                final_through = dt.date.fromisoformat(json.loads(marker.read_text())["final_through"])
            fetched_at = dt.datetime.strptime(match[3], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=dt.timezone.utc)
            found.append(
                LandedFetch(
                    ticker, child, dt.date.fromisoformat(match[1]), dt.date.fromisoformat(match[2]),
                    fetched_at, marker.exists(), final_through,
                )
            )
        return sorted(found, key=lambda f: f.fetched_at)

    def resumable(self, ticker: str, date_from: dt.date, date_to: dt.date) -> LandedFetch | None:
        """The newest incomplete fetch of exactly this range whose last page points on: resume it."""
        for fetch in reversed(self.fetches(ticker)):
            if not fetch.complete and (fetch.date_from, fetch.date_to) == (date_from, date_to):
                _drop_orphan_pages(fetch)
                if fetch.pages() and fetch.last_next_url():
                    return fetch
        return None

    def new_fetch(self, ticker: str, date_from: dt.date, date_to: dt.date) -> FetchWriter:
        now = dt.datetime.now(dt.timezone.utc)
        # pid and a random token: two harvesters (or threads) starting in the same microsecond never share a folder.
        name = f"fetch={date_from}_{date_to}_{now.strftime('%Y%m%dT%H%M%S%fZ')}_{os.getpid()}-{secrets.token_hex(4)}"
        path = self.ticker_dir(ticker) / name
        path.mkdir(parents=True, exist_ok=False)
        return FetchWriter(LandedFetch(ticker, path, date_from, date_to, now, False, None))

    def resume(self, fetch: LandedFetch) -> FetchWriter:
        return FetchWriter(fetch)

    def assign_days(self, ticker: str, days: Iterable[dt.date]) -> tuple[dict[dt.date, LandedFetch], list[dt.date]]:
        """For each day, the newest complete fetch holding it as a finished day; and the days none holds."""
        fetches = [f for f in self.fetches(ticker) if f.complete]
        assigned: dict[dt.date, LandedFetch] = {}
        missing: list[dt.date] = []
        for day in days:
            holder = next((f for f in reversed(fetches) if f.covers_final(day)), None)
            if holder is None:
                missing.append(day)
            else:
                assigned[day] = holder
        return assigned, missing

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _drop_orphan_pages(fetch: LandedFetch) -> None:
    """A page body without its metadata was cut off by a crash between the two writes: forget it."""
    for page in fetch.pages():
        if not page.with_suffix(".meta.json").exists():
            page.unlink()

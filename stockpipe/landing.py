"""The landing zone (bronze): every fetched page stored raw before any transform.

Layout, one folder per fetch of one ticker's date range:

    <landing>/ticker=AAPL/fetch=2024-01-08_2024-01-12_20261122T014700123456Z_4242-9f86d081/
        page-00001.json        the response body, byte for byte
        page-00001.meta.json   ticker, range, url (never the key: auth travels in a header), request_id, adjusted,
                               fetched_at
        _complete.json         written last: the fetch finished; final_through = last day that was already over;
                               adjusted = whether any page came split-adjusted
    <landing>/reference=splits/fetch=2024-01-08_2024-01-12_.../   the splits list of an execution-date window

A day can be served from the landing zone when a complete fetch covers it as traded and the day was over (before
New York "today") when it was fetched: past minute bars as traded do not change; the current day's do, and so does
split-adjusted history (every landing zone written before bars were fetched as traded), which is fetched again.

`raw_bars_from_pages` reads landed pages back in bulk (`spark.read.json`, explicit schema), taking ticker and fetch
from the folder names above: the one place that writes those names is the one place that parses them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from stockpipe.massive import Page

log = logging.getLogger(__name__)

_FETCH_DIR = re.compile(r"^fetch=(\d{4}-\d{2}-\d{2})_(\d{4}-\d{2}-\d{2})_(\d{8}T\d{12}Z)_(\d+)-[0-9a-f]{8}$")
COMPLETE_MARKER = "_complete.json"
SPLITS = "splits"
WRITER_LOCK = ".writer.lock"


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
    as_traded: bool = True  # False: fetched split-adjusted (before this version); never served as traded

    @property
    def fetch_id(self) -> str:
        return self.path.name.removeprefix("fetch=")

    def pages(self) -> list[Path]:
        return sorted(self.path.glob("page-*[0-9].json"))

    def covers_final(self, day: dt.date) -> bool:
        return (
            self.as_traded
            and self.complete
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


class WriterLock:
    """An exclusive lock on one fetch folder while a writer lands pages into it: another harvester (a process or a
    thread) never resumes, or tidies, a fetch that is still being written. The OS drops it when the writer dies, so
    a killed run's fetch is resumable at once."""

    def __init__(self, handle: int | None) -> None:
        self._handle = handle

    @classmethod
    def try_acquire(cls, folder: Path) -> WriterLock | None:
        handle = os.open(folder / WRITER_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(handle)
                return None
            # A file system without locks (some FUSE mounts): a run then relies on one writer per table.
            log.debug("no lock on %s (%s): proceeding unlocked", folder, exc)
        return cls(handle)

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                os.close(self._handle)  # closing the descriptor drops the flock
            self._handle = None


class FetchWriter:
    """Lands the pages of one fetch as they arrive; `finish()` marks it complete. Holds the fetch's writer lock
    until it finishes, is abandoned or is closed."""

    def __init__(self, fetch: LandedFetch, lock: WriterLock | None = None) -> None:
        self.fetch = fetch
        self._lock = lock if lock is not None else WriterLock.try_acquire(fetch.path)
        self._count = len(fetch.pages())
        self._adjusted = not fetch.as_traded  # any page served split-adjusted makes the whole fetch so

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()

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
            "adjusted": page.adjusted,
            "fetched_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        self._adjusted = self._adjusted or page.adjusted is True
        # Body first, then its metadata: a page without metadata is ignored on resume and refetched.
        _atomic_write(page_path, page.body)
        _atomic_write(page_path.with_suffix(".meta.json"), json.dumps(meta, indent=1).encode())
        return page_path

    def abandon_if_empty(self) -> None:
        """Remove the fetch's folder when not one page landed in it (nothing to resume from)."""
        if self._count == 0:
            shutil.rmtree(self.fetch.path, ignore_errors=True)
        self.close()

    def finish(self, final_through: dt.date) -> LandedFetch:
        marker = {"pages": self._count, "final_through": final_through.isoformat(), "adjusted": self._adjusted}
        _atomic_write(self.fetch.path / COMPLETE_MARKER, json.dumps(marker).encode())
        self.close()
        return LandedFetch(
            self.fetch.ticker, self.fetch.path, self.fetch.date_from, self.fetch.date_to,
            self.fetch.fetched_at, True, final_through, as_traded=not self._adjusted,
        )


class LandingZone:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def ticker_dir(self, ticker: str) -> Path:
        return self.root / f"ticker={ticker}"

    @property
    def splits_dir(self) -> Path:
        return self.root / f"reference={SPLITS}"

    def fetches(self, ticker: str) -> list[LandedFetch]:
        """Every fetch landed for the ticker, oldest first."""
        return _fetches_in(self.ticker_dir(ticker), ticker)

    def splits_fetches(self) -> list[LandedFetch]:
        """Every splits window landed, oldest first."""
        return _fetches_in(self.splits_dir, SPLITS)

    def splits_refreshed_through(self) -> dt.date | None:
        """The last execution date a complete splits fetch asked for: the splits table's last refresh."""
        return max((f.date_to for f in self.splits_fetches() if f.complete), default=None)

    def new_splits_fetch(self, date_from: dt.date, date_to: dt.date) -> FetchWriter:
        return self._new_fetch(self.splits_dir, SPLITS, date_from, date_to)

    def resumable(self, ticker: str, date_from: dt.date, date_to: dt.date) -> FetchWriter | None:
        """A writer that resumes the newest incomplete fetch of exactly this range whose last page points on, and
        that no live writer holds."""
        for fetch in reversed(self.fetches(ticker)):
            if fetch.complete or not fetch.as_traded or (fetch.date_from, fetch.date_to) != (date_from, date_to):
                continue
            lock = WriterLock.try_acquire(fetch.path)
            if lock is None:
                continue  # another harvester is landing this fetch right now
            _drop_orphan_pages(fetch)
            if fetch.pages() and fetch.last_next_url():
                return FetchWriter(fetch, lock)
            lock.release()
        return None

    def new_fetch(self, ticker: str, date_from: dt.date, date_to: dt.date) -> FetchWriter:
        return self._new_fetch(self.ticker_dir(ticker), ticker, date_from, date_to)

    @staticmethod
    def _new_fetch(folder: Path, label: str, date_from: dt.date, date_to: dt.date) -> FetchWriter:
        now = dt.datetime.now(dt.UTC)
        # pid and a random token: two harvesters (or threads) starting in the same microsecond never share a folder.
        name = f"fetch={date_from}_{date_to}_{now.strftime('%Y%m%dT%H%M%S%fZ')}_{os.getpid()}-{secrets.token_hex(4)}"
        path = folder / name
        path.mkdir(parents=True, exist_ok=False)
        return FetchWriter(LandedFetch(label, path, date_from, date_to, now, False, None))

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

    def split_adjusted_days(self, ticker: str, days: Iterable[dt.date]) -> list[dt.date]:
        """Of these days, those a complete fetch holds only split-adjusted (landed before bars were fetched as
        traded): they are fetched again, not served."""
        stale = [f for f in self.fetches(ticker) if f.complete and not f.as_traded and f.final_through is not None]
        return [day for day in days
                if any(f.date_from <= day <= min(f.date_to, f.final_through or f.date_to) for f in stale)]


def _fetches_in(folder: Path, label: str) -> list[LandedFetch]:
    found: list[LandedFetch] = []
    if not folder.is_dir():
        return found
    for child in folder.iterdir():
        match = _FETCH_DIR.match(child.name)
        if not match or not child.is_dir():
            continue
        marker_path = child / COMPLETE_MARKER
        final_through = None
        if marker_path.exists():
            marker = json.loads(marker_path.read_text())
            final_through = dt.date.fromisoformat(marker["final_through"])
            # Fetches landed before this version have no `adjusted`: they asked the API's default, adjusted.
            as_traded = marker.get("adjusted") is False
        else:
            as_traded = _last_page_as_traded(child)
        fetched_at = dt.datetime.strptime(match[3], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=dt.UTC)
        found.append(
            LandedFetch(
                label, child, dt.date.fromisoformat(match[1]), dt.date.fromisoformat(match[2]),
                fetched_at, marker_path.exists(), final_through, as_traded=as_traded,
            )
        )
    return sorted(found, key=lambda f: f.fetched_at)


def _last_page_as_traded(folder: Path) -> bool:
    metas = sorted(folder.glob("page-*[0-9].meta.json"))
    return bool(metas) and json.loads(metas[-1].read_text()).get("adjusted") is False



def _drop_orphan_pages(fetch: LandedFetch) -> None:
    """A page body without its metadata was cut off by a crash between the two writes: forget it."""
    for page in fetch.pages():
        if not page.with_suffix(".meta.json").exists():
            page.unlink()


# -------------------------------------------------------------------------------------------------------------------
# Reading what landed, in bulk: the raw pages' schema, and the folder names above (ticker=, fetch=) parsed back.
BAR_SCHEMA = T.StructType(
    [
        T.StructField("t", T.LongType()),
        T.StructField("o", T.DoubleType()),
        T.StructField("h", T.DoubleType()),
        T.StructField("l", T.DoubleType()),
        T.StructField("c", T.DoubleType()),
        # The API sends int, x.0 and fractional volumes (303067.656...): a double keeps all three exactly.
        T.StructField("v", T.DoubleType()),
        T.StructField("vw", T.DoubleType()),
        T.StructField("n", T.LongType()),
    ]
)
PAGE_SCHEMA = T.StructType(
    [
        T.StructField("ticker", T.StringType()),
        T.StructField("status", T.StringType()),
        T.StructField("request_id", T.StringType()),
        T.StructField("results", T.ArrayType(BAR_SCHEMA)),
    ]
)


def raw_bars_from_pages(spark: SparkSession, page_files: Iterable[str]) -> DataFrame:
    """Landed pages -> one row per bar with the API's fields renamed, plus the fetch each bar came from.

    ticker and fetch come from the landing path (what we asked for), ingested_at from the fetch's start time.
    """
    files = list(page_files)
    if not files:
        empty = T.StructType(
            [T.StructField("ticker", T.StringType()), T.StructField("fetch_id", T.StringType())]
            + [T.StructField(n, t) for n, t in _RAW_TYPES]
            + [T.StructField("ingested_at", T.TimestampType())]
        )
        return spark.createDataFrame([], empty)
    pages = spark.read.schema(PAGE_SCHEMA).option("multiLine", True).option("mode", "FAILFAST").json(files)
    # The file's own path, from the file source's hidden metadata column: the older file-name function is not
    # supported on Unity Catalog and is gone from recent Databricks runtimes. What the path says is worked out once
    # per page, before the bars are exploded out of it, not once per bar.
    path = F.col("_metadata.file_path")
    fetch_id = F.regexp_extract(path, r"fetch=([^/]+)/", 1)
    per_page = pages.select(
        F.regexp_extract(path, r"ticker=([^/]+)/", 1).alias("ticker"),
        fetch_id.alias("fetch_id"),
        # The fetch id's stamp is UTC; its offset is parsed with it, so the session time zone cannot move it.
        F.to_timestamp(
            F.concat(F.regexp_extract(fetch_id, r"_(\d{8}T\d{12})Z_", 1), F.lit("+0000")),
            "yyyyMMdd'T'HHmmssSSSSSSZ",
        ).alias("ingested_at"),
        "results",
    )
    return (
        per_page.select("ticker", "fetch_id", "ingested_at", F.explode("results").alias("bar"))
        .select(
            "ticker",
            "fetch_id",
            F.col("bar.t").alias("timestamp_ms"),
            F.col("bar.o").alias("open"),
            F.col("bar.h").alias("high"),
            F.col("bar.l").alias("low"),
            F.col("bar.c").alias("close"),
            F.col("bar.v").alias("volume"),
            F.col("bar.vw").alias("vwap"),
            F.col("bar.n").alias("num_transactions"),
            "ingested_at",
        )
    )


_RAW_TYPES = [
    ("timestamp_ms", T.LongType()),
    ("open", T.DoubleType()),
    ("high", T.DoubleType()),
    ("low", T.DoubleType()),
    ("close", T.DoubleType()),
    ("volume", T.DoubleType()),
    ("vwap", T.DoubleType()),
    ("num_transactions", T.LongType()),
]

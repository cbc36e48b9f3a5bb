"""The landing zone (bronze): every fetched page stored raw before any transform.

Layout, one folder per fetch of one ticker's date range:

    <landing>/ticker=AAPL/fetch=2024-01-08_2024-01-12_20261122T014700123456Z_4242-9f86d081/
        page-00001.json        the response body, byte for byte
        page-00001.meta.json   ticker, range, url (never the key: auth travels in a header), request_id, adjusted,
                               fetched_at
        _complete.json         written last: the fetch finished; final_through = last day that was already over;
                               adjusted = whether any page came split-adjusted
    <landing>/reference=splits/fetch=2023-01-09_2024-01-12_.../      the splits list of an execution-date window
    <landing>/reference=dividends/fetch=2023-01-09_2024-01-12_.../   the dividends list of an ex-date window
    <landing>/reference=official_daily/ticker=AAPL/fetch=...         one ticker's official daily bars over a range
    <landing>/reference=official_daily/ticker=_grouped/fetch=...     every stock's official daily bar of one date

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

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from stockpipe.massive import Page

log = logging.getLogger(__name__)

_FETCH_DIR = re.compile(r"^fetch=(\d{4}-\d{2}-\d{2})_(\d{4}-\d{2}-\d{2})_(\d{8}T\d{12}Z)_(\d+)-[0-9a-f]{8}$")
COMPLETE_MARKER = "_complete.json"
REFERENCE_LISTS = ("splits", "dividends")
OFFICIAL_DAILY = "official_daily"
# The grouped endpoint's answers are every ticker's: they land under a label no exchange symbol can take.
GROUPED = "_grouped"
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

    def reference_dir(self, kind: str) -> Path:
        return self.root / f"reference={kind}"

    def fetches(self, ticker: str) -> list[LandedFetch]:
        """Every fetch landed for the ticker, oldest first."""
        return _fetches_in(self.ticker_dir(ticker), ticker)

    def reference_fetches(self, kind: str) -> list[LandedFetch]:
        """Every window of a reference list (splits, dividends) landed, oldest first."""
        return _fetches_in(self.reference_dir(kind), kind)

    def new_reference_fetch(self, kind: str, date_from: dt.date, date_to: dt.date) -> FetchWriter:
        return self._new_fetch(self.reference_dir(kind), kind, date_from, date_to)

    def official(self) -> LandingZone:
        """Where official daily bars land: a landing zone of its own, one folder per ticker (and one for the
        grouped answers), so the minute bars' day assignment works for them unchanged."""
        return LandingZone(self.reference_dir(OFFICIAL_DAILY))

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
#
# A page is read typed (the fast path, every well-formed page); a page whose typed read fails (a price sent as text, a
# fractional `t`, a bar that is not an object) is read again bar by bar from its own text in the same pass, so one
# bad bar costs its page a slower parse and never the run. The rules that judge each bar live in stockpipe.quality.
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
CORRUPT = "_corrupt_record"
PAGE_SCHEMA = T.StructType(
    [
        T.StructField("results", T.ArrayType(BAR_SCHEMA)),
        T.StructField(CORRUPT, T.StringType()),
    ]
)
# One bar read from its text: every field a double, so a fractional `t` or `n` reads as what it is, and a field that
# is not a JSON number (or a bar that is not an object) marks the bar in its own corrupt column.
_BAR_TEXT_SCHEMA = T.StructType([T.StructField(f.name, T.DoubleType()) for f in BAR_SCHEMA.fields]
                                + [T.StructField(CORRUPT, T.StringType())])
# A page's text, keeping each bar as its own JSON text.
_PAGE_TEXT_SCHEMA = "results array<string>"
# The raw text kept of a page that is not JSON at all (hand-edited, or a disk fault): enough to see what it was.
UNREADABLE_TEXT_CHARS = 2_000
_PAGE_NUMBER = r"page-(\d+)\.json$"


def _bar_from_text(text: Column) -> Column:
    """A bar of a page whose typed read failed, parsed from its own JSON text."""
    parsed = F.from_json(text, _BAR_TEXT_SCHEMA, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT})
    return F.struct(
        *[parsed[f.name].alias(f.name) for f in BAR_SCHEMA.fields],
        text.alias("raw"), parsed[CORRUPT].isNotNull().alias("not_numbers"),
        (parsed.isNull() | ~F.ltrim(text).startswith("{")).alias("not_object"),
    )


def _unreadable_page(page_text: Column) -> Column:
    """A page that is not JSON at all: one pseudo-bar carrying the start of its text, so the quarantine says so."""
    empty = [F.lit(None).cast("double").alias(f.name) for f in BAR_SCHEMA.fields]
    return F.array(F.struct(*empty, F.substring(page_text, 1, UNREADABLE_TEXT_CHARS).alias("raw"),
                            F.lit(True).alias("not_numbers"), F.lit(True).alias("not_object")))


def raw_bars_from_pages(spark: SparkSession, page_files: Iterable[str]) -> DataFrame:
    """Landed pages -> one row per bar with the API's fields renamed, plus where it came from: ticker and fetch from
    the landing path (what we asked for), page number and position on the page (later pages and later positions win a
    duplicate), ingested_at from the fetch's start time. Nothing is judged here: `t_value` is `t` as sent (a double,
    so a fractional one shows), `timestamp_ms` is set only when it is a whole number, and `raw`, `not_numbers` and
    `not_object` say what a bar read from its text looked like (stockpipe.quality.rules reads them)."""
    files = list(page_files)
    if not files:
        return spark.createDataFrame([], RAW_BARS_SCHEMA)
    pages = (spark.read.schema(PAGE_SCHEMA).option("multiLine", True).option("mode", "PERMISSIVE")
             .option("columnNameOfCorruptRecord", CORRUPT).json(files))
    # The file's own path, from the file source's hidden metadata column: the older file-name function is not
    # supported on Unity Catalog and is gone from recent Databricks runtimes. What the path says is worked out once
    # per page, before the bars are exploded out of it, not once per bar.
    path = F.col("_metadata.file_path")
    fetch_id = F.regexp_extract(path, r"fetch=([^/]+)/", 1)
    page_text = F.col(CORRUPT)
    from_text = F.from_json(page_text, _PAGE_TEXT_SCHEMA)["results"]
    per_page = pages.select(
        F.regexp_extract(path, r"ticker=([^/]+)/", 1).alias("ticker"),
        fetch_id.alias("fetch_id"),
        F.regexp_extract(path, _PAGE_NUMBER, 1).cast("int").alias("page"),
        # The fetch id's stamp is UTC; its offset is parsed with it, so the session time zone cannot move it.
        F.to_timestamp(
            F.concat(F.regexp_extract(fetch_id, r"_(\d{8}T\d{12})Z_", 1), F.lit("+0000")),
            "yyyyMMdd'T'HHmmssSSSSSSZ",
        ).alias("ingested_at"),
        # When the page was landed, which is when it was fetched: a bar whose minute had not ended by then is from
        # the future (a clock or a feed gone wrong), whatever the fetch's start says.
        F.col("_metadata.file_modification_time").alias("fetched_at"),
        # A page read typed keeps its bars as read (a read that failed part-way may have filled some: not used);
        # a page whose typed read failed carries its bars read from their text instead.
        F.when(page_text.isNull(), F.col("results")).alias("typed_bars"),
        F.when(page_text.isNotNull(), F.when(from_text.isNull(), _unreadable_page(page_text))
               .otherwise(F.transform(from_text, _bar_from_text))).alias("text_bars"),
    )
    # Two generators in a row, each yielding one null row for a page that is not its own, instead of one generator
    # over an array rebuilt bar by bar (`transform`) into a shape both paths share: the typed bars, every well-formed
    # page's, are exploded as read, which parses faster (docs/measurements.md).
    typed = per_page.select("ticker", "fetch_id", "page", "ingested_at", "fetched_at", "text_bars",
                            F.posexplode_outer("typed_bars").alias("typed_position", "typed"))
    both = typed.select("ticker", "fetch_id", "page", "ingested_at", "fetched_at", "typed_position", "typed",
                        F.posexplode_outer("text_bars").alias("text_position", "text"))
    on_text = F.col("text_position").isNotNull()

    def field(name: str, typed_value: Column) -> Column:
        return F.when(on_text, F.col(f"text.{name}")).otherwise(typed_value)

    # `t` and `n` as sent, as doubles on both paths, so a fractional one shows.
    t = field("t", F.col("typed.t").cast("double"))
    n = field("n", F.col("typed.n").cast("double"))
    # Cast only what a long holds: with ANSI SQL on (Spark 4's default, Databricks serverless) casting NaN,
    # Infinity or 1e300 raises, and every landed bar's columns are computed, the ones quarantined too. A bar whose
    # `t` or `n` was sent but is not such a number lands with a null timestamp_ms or num_transactions, which is
    # how the bar rules see it.
    whole_ms = _whole_below(t, 2.0**62)
    whole_n = _whole_below(n, 2.0**63)
    return (
        both.filter(F.col("typed_position").isNotNull() | on_text)  # an empty page's one null row
        .select(
            "ticker",
            "fetch_id",
            "page",
            F.coalesce("text_position", "typed_position").alias("position"),
            F.when(whole_ms, t.cast("long")).alias("timestamp_ms"),
            *[field(short, F.col(f"typed.{short}")).alias(name) for short, name in _PRICE_FIELDS],
            F.when(whole_n, n.cast("long")).alias("num_transactions"),
            "ingested_at",
            "fetched_at",
            t.alias("t_value"),
            n.alias("n_value"),
            F.col("text.raw").alias("raw"),
            F.coalesce(F.col("text.not_numbers"), F.lit(False)).alias("not_numbers"),
            # A typed page's bar that is JSON null; a text page's bar that is not an object.
            F.when(on_text, F.col("text.not_object")).otherwise(F.col("typed").isNull()).alias("not_object"),
        )
    )


def _whole_below(number: Column, limit: float) -> Column:
    """A number without a fraction below `limit` in size (a long holds every whole double below 2**63)."""
    return number.isNotNull() & ~F.isnan(number) & (F.abs(number) < F.lit(limit)) & (number == F.floor(number))


_PRICE_FIELDS = (("o", "open"), ("h", "high"), ("l", "low"), ("c", "close"), ("v", "volume"), ("vw", "vwap"))


RAW_BARS_SCHEMA = T.StructType(
    [
        T.StructField("ticker", T.StringType()),
        T.StructField("fetch_id", T.StringType()),
        T.StructField("page", T.IntegerType()),
        T.StructField("position", T.IntegerType()),
        T.StructField("timestamp_ms", T.LongType()),
        T.StructField("open", T.DoubleType()),
        T.StructField("high", T.DoubleType()),
        T.StructField("low", T.DoubleType()),
        T.StructField("close", T.DoubleType()),
        T.StructField("volume", T.DoubleType()),
        T.StructField("vwap", T.DoubleType()),
        T.StructField("num_transactions", T.LongType()),
        T.StructField("ingested_at", T.TimestampType()),
        T.StructField("fetched_at", T.TimestampType()),
        T.StructField("t_value", T.DoubleType()),
        T.StructField("n_value", T.DoubleType()),
        T.StructField("raw", T.StringType()),
        T.StructField("not_numbers", T.BooleanType()),
        T.StructField("not_object", T.BooleanType()),
    ]
)

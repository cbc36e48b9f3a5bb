"""The whole market's official daily bars, one grouped call a trading day (`market_daily.py`).

The grouped daily endpoint answers every ticker of one date in one call, so a free key (5 calls a minute) that could
never fetch the market's minute bars can keep its daily bars: five years are 1,260 calls, about four hours paced.

- A day is fetched once: its answer lands raw (`<landing>/reference=official_daily/ticker=_grouped/...`, the folder
  the harvester's own official fetch reads, so neither calls for a day the other landed), and a day the landing zone
  holds as a finished day, or whose market the table already holds, makes no call. Weekends and holidays make none.
- Answers are stored as they land, a batch of days a commit, into `stocks_official_daily` (as traded, one row per
  (ticker, trade_date), the day's rows replaced whole); a kill loses nothing: the next run stores what landed and
  fetches only what did not. A batch ends at DAYS_PER_COMMIT days, or where the next call must wait on the key's
  window (`EARLY_WORK_MIN_WAIT_S` or more: on the free key, each minute's five answers): what landed is stored, and
  the derived tables brought up to date with it, in a wait that is there anyway, so after the last call only the
  last minute's days are left to store and derive.
- A bar that breaks a rule (a price missing or not positive, a high below the low or outside the open and close, a
  negative volume, a ticker twice) goes to `stocks_quarantine`, never into the table.
- The current day, which the free plan refuses, is `partial`: a warning, and a later run fetches it.
- Splits and dividends are refreshed for every ticker as the harvester refreshes them; then the derived tables
  (split-adjusted closes, returns, breadth: `stockpipe.breadth`) are brought up to date, with no call.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql.pandas.types import from_arrow_schema

from stockpipe.config import BREADTH_TABLE, MARKET_DAILY_TABLE, HarvestConfig
from stockpipe.errors import FetchFailedError, NoTradingDayError, PlanRefusedError, StopError
from stockpipe.fetching import Fetcher, ReferenceFetch, open_client
from stockpipe.landing import GROUPED, LandedFetch, LandingZone
from stockpipe.market_calendar import new_york_today, trading_days
from stockpipe.massive import FetchStats, MassiveClient
from stockpipe.paths import beside, refuse_foreign_folder
from stockpipe.progress import Progress
from stockpipe.quality.quarantine import KEY, QUARANTINE_SCHEMA
from stockpipe.reference.corporate_actions import ACTION_KINDS, landed_actions, store_actions
from stockpipe.storage import DeltaStorage, ReplacePredicate, RowFilter

log = logging.getLogger(__name__)

# The answers with over-the-counter names land apart: a day landed without them does not answer a run that wants them.
GROUPED_OTC = "_grouped_otc"
# A day the table holds for at least this many tickers is the market's (the harvester stores a handful a day).
MARKET_DAY_TICKERS = 1_000
# Days stored a commit: a commit every ~4 minutes on the free key, and never more than this many days to store again
# from the landing zone after a kill.
DAYS_PER_COMMIT = 20
# What landed is stored and derived before a wait on the key's window at least this long (and at least as long as
# the last such work took): the wait hides it. A paid key's calls do not wait; its batches are DAYS_PER_COMMIT days.
EARLY_WORK_MIN_WAIT_S = 15.0
OFFICIAL_ARROW = pa.schema([
    pa.field("ticker", pa.string()), pa.field("trade_date", pa.date32()), pa.field("open", pa.float64()),
    pa.field("high", pa.float64()), pa.field("low", pa.float64()), pa.field("close", pa.float64()),
    pa.field("volume", pa.float64()), pa.field("vwap", pa.float64()), pa.field("num_transactions", pa.int64()),
])
PRICE_NAMES = {"o": "open", "h": "high", "l": "low", "c": "close"}
QUARANTINE_ARROW = pa.schema([
    pa.field(f.name, pa.string() if f.name in ("ticker", "reason", "raw", "landed_page", "run_id", "source")
             else pa.date32() if f.name == "trade_date" else pa.int64() if f.name == "timestamp_ms"
             else pa.int32() if f.name == "position" else pa.timestamp("us", tz="UTC"), nullable=f.nullable)
    for f in QUARANTINE_SCHEMA.fields
])


@dataclasses.dataclass
class DayResult:
    """One trading day of the run: how it was served, and what was stored of it."""

    day: dt.date
    how: str  # fetched | landed (stored from an earlier run's answer) | stored (already in the table) | refused |
    #           failed | empty (the answer held no bar)
    rows: int = 0
    quarantined: int = 0
    error: str | None = None


@dataclasses.dataclass
class MarketDailyReport:
    official_path: str
    engine: str
    days: list[DayResult]
    calls: int
    waited_s: float
    seconds: float
    version: int | None  # the official table's version after the run's last commit; None when nothing was written
    tickers: int  # distinct tickers stored over the run's days
    references: list[ReferenceFetch]
    derived: Any = None  # stockpipe.breadth's report of the last build, when the derived tables were brought up to date
    derived_early: int = 0  # builds made while the calls waited on the key's window, before the last one
    stopped: StopError | None = None
    stats: list[FetchStats] = dataclasses.field(default_factory=list)

    def count(self, how: str) -> int:
        return sum(1 for d in self.days if d.how == how)

    @property
    def rows(self) -> int:
        return sum(d.rows for d in self.days)

    @property
    def quarantined(self) -> int:
        return sum(d.quarantined for d in self.days)

    @property
    def refused(self) -> list[dt.date]:
        return [d.day for d in self.days if d.how == "refused"]

    @property
    def failed(self) -> list[DayResult]:
        return [d for d in self.days if d.how == "failed"]


# -- the rules an official bar keeps -------------------------------------------------------------------------------
def bar_problem(item: Any) -> str | None:
    """The first rule a grouped answer's item breaks, or None: a ticker, finite positive prices with the high above
    and the low below the others, a finite volume not below zero."""
    if not isinstance(item, dict) or not isinstance(item.get("T"), str) or not item["T"].strip():
        return "no_ticker"
    prices = []
    for key in ("o", "h", "l", "c"):
        value = item.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            return f"missing_{PRICE_NAMES[key]}"
        if value <= 0:
            return "non_positive_price"
        prices.append(float(value))
    o, h, low, c = prices
    if h < low or h < max(o, c) or low > min(o, c):
        return "high_low_inconsistent"
    volume = item.get("v")
    if not isinstance(volume, int | float) or isinstance(volume, bool) or not math.isfinite(volume) or volume < 0:
        return "bad_volume"
    return None


@dataclasses.dataclass
class ParsedDay:
    rows: pa.Table  # OFFICIAL_ARROW
    bad: list[dict[str, Any]]  # QUARANTINE_ARROW rows


def parse_answer(fetch: LandedFetch, landing_root: Path, run_id: str, source: str) -> ParsedDay:
    """A landed grouped answer's bars: the rule-keeping ones as rows (the first of a ticker listed twice), the rest
    as quarantine rows keyed by their page and position."""
    columns: dict[str, list[Any]] = {name: [] for name in OFFICIAL_ARROW.names}
    bad: list[dict[str, Any]] = []
    seen: set[str] = set()
    fetched_at = fetch.fetched_at
    for page in fetch.pages():
        items = json.loads(page.read_bytes()).get("results") or []
        relative = page.relative_to(landing_root).as_posix()
        for position, item in enumerate(items):
            problem = bar_problem(item)
            if problem is None and item["T"] in seen:
                problem = "duplicate_ticker"
            if problem is not None:
                ticker = item.get("T") if isinstance(item, dict) and isinstance(item.get("T"), str) else ""
                bad.append({"ticker": ticker or "?", "trade_date": fetch.date_from, "timestamp_ms": None,
                            "reason": problem, "raw": json.dumps(item)[:2000], "landed_page": relative,
                            "position": position, "run_id": run_id, "source": source, "fetched_at": fetched_at})
                continue
            seen.add(item["T"])
            vwap, count = item.get("vw"), item.get("n")
            for name, value in (("ticker", item["T"]), ("trade_date", fetch.date_from), ("open", float(item["o"])),
                                ("high", float(item["h"])), ("low", float(item["l"])), ("close", float(item["c"])),
                                ("volume", float(item["v"])),
                                ("vwap", float(vwap) if isinstance(vwap, int | float) and math.isfinite(vwap)
                                 else None),
                                ("num_transactions", int(count) if isinstance(count, int | float)
                                 and math.isfinite(count) else None)):
                columns[name].append(value)
    return ParsedDay(pa.table(columns, schema=OFFICIAL_ARROW), bad)


# -- the run -------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MarketDailyConfig:
    harvest: HarvestConfig  # the client's settings (source, key, pacing), the landing zone, the tables' base
    include_otc: bool = False
    derive: bool = True  # bring the derived tables up to date after storing

    @property
    def official_path(self) -> str:
        return self.harvest.official_path

    @property
    def label(self) -> str:
        return GROUPED_OTC if self.include_otc else GROUPED


def grouped_url(client: MassiveClient, day: dt.date, include_otc: bool) -> str:
    return client.grouped_url(day) + ("&include_otc=true" if include_otc else "")


def market_days_stored(storage: DeltaStorage, path: str, days: Sequence[dt.date]) -> set[dt.date]:
    """The days the table already holds for the market (at least MARKET_DAY_TICKERS tickers)."""
    if not days or not storage.is_delta(path):
        return set()
    counts = storage.count_by(path, ["trade_date"], where=RowFilter.of(trade_date=list(days)))
    found = dict(zip(counts.column("trade_date").to_pylist(), counts.column("rows").to_pylist(), strict=True))
    return {day for day, rows in found.items() if rows >= MARKET_DAY_TICKERS}


def run_market_daily(cfg: MarketDailyConfig, storage: DeltaStorage, *,
                     derive: Callable[[DeltaStorage, list[dt.date]], Any] | None = None) -> MarketDailyReport:
    """Fetch, land and store the grouped answers of the run's trading days (see the module's docstring)."""
    started = time.monotonic()
    hc = cfg.harvest
    for path in (hc.official_path, hc.quarantine_path, hc.splits_path, hc.dividends_path):
        refuse_foreign_folder(path)
    days = trading_days(hc.date_from, hc.date_to)
    if not days:
        raise NoTradingDayError(hc.date_from, hc.date_to)
    today = hc.today or new_york_today()
    landing = LandingZone(hc.landing_path)
    zone = landing.official()
    stored = market_days_stored(storage, hc.official_path, days)
    landed, _ = zone.assign_days(cfg.label, days)
    to_fetch = [d for d in days if d not in landed and d not in stored]
    results: dict[dt.date, DayResult] = {d: DayResult(d, "stored") for d in days if d in stored}
    pending: list[tuple[dt.date, LandedFetch, str]] = [(d, landed[d], "landed") for d in days
                                                       if d in landed and d not in stored]
    report = MarketDailyReport(hc.official_path, storage.name, [], 0, 0.0, 0.0, None, 0, [])
    stats: list[FetchStats] = []
    source = hc.source
    log.info("%d trading day(s): %d already stored, %d landed to store, %d to fetch", len(days), len(stored),
             len(pending), len(to_fetch))

    to_derive: set[dt.date] = set()  # days stored by this run and not derived yet
    actions_written = False

    def store_pending() -> None:
        if pending:
            version = store_days(storage, cfg, [(d, f) for d, f, _ in pending], results,
                                 {d: how for d, _, how in pending}, Path(hc.landing_path), source)
            report.version = version if version is not None else report.version
            to_derive.update(d for d, _, _ in pending if results[d].how in ("fetched", "landed"))
            pending.clear()

    def bring_up_to_date() -> bool:
        """The splits and dividends landed so far into their tables (before a build reads the splits: the build
        after the last call then finds the same splits, not a change that rebuilds every day), then the derived
        tables with the days stored since the last build."""
        nonlocal actions_written
        if not actions_written:
            write_actions(storage, landing, hc)
            actions_written = True
        if derive is None or not cfg.derive:
            return False
        report.derived = derive(storage, sorted(to_derive))
        to_derive.clear()
        return True

    last_early_s = 0.0
    progress = Progress(len(to_fetch), enabled=hc.show_progress, unit="day")
    with open_client(hc, progress) as client:
        progress.eta = client.limiter.eta
        fetcher = Fetcher(hc, landing, days, client=client)
        try:
            for kind in ("splits", "dividends"):
                fetched = fetcher.refresh_actions(kind, hc.date_from)
                if fetched is not None:
                    report.references.append(fetched)
                    stats.append(fetched.stats)
            for number, day in enumerate(to_fetch, 1):
                result, fetch, stop = fetch_day(client, zone, cfg, day, today, stats)
                results[day] = result
                progress.advance(day.isoformat())
                if fetch is not None:
                    pending.append((day, fetch, "fetched"))
                if stop is not None:  # a rejected key or an unreachable API: no further call can succeed
                    report.stopped = stop
                    break
                if len(pending) >= DAYS_PER_COMMIT:
                    store_pending()
                elif pending and number < len(to_fetch) and \
                        client.limiter.delay() >= max(EARLY_WORK_MIN_WAIT_S, last_early_s):
                    # The next call waits on the window anyway: store and derive what landed meanwhile.
                    began = time.monotonic()
                    store_pending()
                    report.derived_early += bring_up_to_date()
                    last_early_s = time.monotonic() - began
        finally:
            progress.close()
            fetcher.progress.close()
            store_pending()
    report.days = [results.get(d) or DayResult(d, "failed", error="not fetched: the run stopped first")
                   for d in days]
    report.calls = sum(s.calls for s in stats)
    report.waited_s = sum(s.waited_s for s in stats)
    report.stats = stats
    if storage.is_delta(hc.official_path):
        report.tickers = distinct_tickers(storage, hc.official_path, days)
    # The references were all fetched before the first day: written already if a build ran during a wait.
    if not actions_written:
        write_actions(storage, landing, hc)
    # The build finds the days where the tables disagree whatever it is told; after builds during the waits, only
    # days stored since need one.
    if derive is not None and cfg.derive and (to_derive or not report.derived_early):
        report.derived = derive(storage, sorted(to_derive))
    report.seconds = time.monotonic() - started
    return report


def fetch_day(client: MassiveClient, zone: LandingZone, cfg: MarketDailyConfig, day: dt.date, today: dt.date,
              stats: list[FetchStats]) -> tuple[DayResult, LandedFetch | None, StopError | None]:
    """One grouped call, landed raw; what the plan refuses (the free tier's current day) is `refused`."""
    stat = FetchStats(f"grouped {day}")
    stats.append(stat)
    writer = zone.new_fetch(cfg.label, day, day)
    try:
        for page in client.iter_url(cfg.label, grouped_url(client, day, cfg.include_otc), stat):
            writer.add(page)
        fetch = writer.finish(final_through=today - dt.timedelta(days=1))
        return DayResult(day, "fetched"), fetch, None
    except PlanRefusedError as exc:
        writer.abandon_if_empty()
        return DayResult(day, "refused", error=str(exc)), None, None
    except StopError as exc:
        writer.abandon_if_empty()
        return DayResult(day, "failed", error=str(exc)), None, exc
    except FetchFailedError as exc:
        writer.abandon_if_empty()
        return DayResult(day, "failed", error=str(exc)), None, None
    finally:
        writer.close()


def store_days(storage: DeltaStorage, cfg: MarketDailyConfig, fetches: list[tuple[dt.date, LandedFetch]],
               results: dict[dt.date, DayResult], how: dict[dt.date, str], landing_root: Path,
               source: str) -> int | None:
    """The days' rule-keeping bars into the official table in one commit (each day's rows replaced whole), the rest
    into the quarantine (each bad bar once: a replayed answer adds nothing); the table's new version."""
    run_id = storage.run_id or ""
    tables, bad = [], []
    for day, fetch in fetches:
        parsed = parse_answer(fetch, landing_root, run_id, source)
        results[day] = DayResult(day, how[day] if parsed.rows.num_rows else "empty", parsed.rows.num_rows,
                                 len(parsed.bad))
        tables.append(parsed.rows)
        bad.extend(parsed.bad)
    rows = pa.concat_tables(tables).sort_by([("trade_date", "ascending"), ("ticker", "ascending")])
    version = None
    days = sorted({day for day, _ in fetches if results[day].rows})
    if days:
        storage.create_if_missing(cfg.official_path, from_arrow_schema(OFFICIAL_ARROW))
        version = storage.write_batches(rows.filter(pc.is_in(rows["trade_date"], pa.array(days)))
                                        .to_batches(max_chunksize=1 << 20), OFFICIAL_ARROW, cfg.official_path,
                                        mode="overwrite", replace=ReplacePredicate.of(trade_date=days))
    if bad:
        record_bad(storage, cfg.harvest.quarantine_path, bad)
    log.info("stored %d day(s) of the market (%d rows, %d quarantined)", len(days), rows.num_rows, len(bad))
    return version


def record_bad(storage: DeltaStorage, path: str, bad: list[dict[str, Any]]) -> int | None:
    """Append the bad bars the quarantine does not hold yet (by landed page and position)."""
    storage.create_if_missing(path, QUARANTINE_SCHEMA)
    pages = sorted({row["landed_page"] for row in bad})
    known = storage.read_arrow(path, where=RowFilter.of(landed_page=pages), columns=list(KEY))
    seen = set(zip(known.column("landed_page").to_pylist(), known.column("position").to_pylist(), strict=True))
    new = [row for row in bad if (row["landed_page"], row["position"]) not in seen]
    if not new:
        return None
    table = pa.Table.from_pylist(new, schema=QUARANTINE_ARROW)
    return storage.write_batches(table.to_batches(), QUARANTINE_ARROW, path, mode="append")


def write_actions(storage: DeltaStorage, landing: LandingZone, hc: HarvestConfig) -> None:
    """Every ticker's splits and dividends from every landed window into their tables (a ticker listed no more keeps
    its rows: the lists are windows, not the whole history)."""
    paths = {"splits": hc.splits_path, "dividends": hc.dividends_path}
    for kind in ACTION_KINDS:
        actions = landed_actions(landing, kind, None)
        if actions:
            store_actions(storage, paths[kind.name], kind, {a.ticker for a in actions}, actions)


def distinct_tickers(storage: DeltaStorage, path: str, days: Iterable[dt.date]) -> int:
    table = storage.read_arrow(path, where=RowFilter.of(trade_date=sorted(days)), columns=["ticker"])
    return len(pc.unique(table.column("ticker")))


def default_market_paths(table_path: str) -> tuple[str, str]:
    """The derived tables beside the minute table."""
    return beside(table_path, MARKET_DAILY_TABLE), beside(table_path, BREADTH_TABLE)

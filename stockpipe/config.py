"""What one harvest run is asked to do, validated: built by the CLI layer (`cli.build_config`) or by a test."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Literal, Protocol

from stockpipe.flatfiles.store import Credentials
from stockpipe.layout import PARTITIONED, Layout
from stockpipe.massive import DEFAULT_BASE_URL, FREE_TIER_CALLS_PER_MINUTE
from stockpipe.paths import beside

Source = Literal["api", "sample", "flatfiles"]
SPLITS_TABLE = "stocks_splits"
DIVIDENDS_TABLE = "stocks_dividends"
OFFICIAL_TABLE = "stocks_official_daily"
# Derived from the official daily bars of the whole market (market_daily.py): adjusted closes, returns, 52-week
# extremes per (ticker, trade_date), and the market's breadth per day.
MARKET_DAILY_TABLE = "stocks_market_daily"
BREADTH_TABLE = "stocks_market_breadth"
CHECKS_TABLE = "quality_checks"
QUARANTINE_TABLE = "stocks_quarantine"
# Calls in flight when the network round trip, not the rate limit, bounds a run (a paid key).
FAST_CONCURRENCY = 8
# The sample source unpaced: its server runs in the harvester's own process, so calls share one interpreter lock
# and two in flight fetch about as fast as eight (docs/measurements.md); with two, tickers land a pair at a time
# instead of all at the end, so each is transformed while the rest are fetched.
SAMPLE_CONCURRENCY = 2
# Runs of at least this many trading days, of more than one ticker, transform each ticker while the rest are fetched
# (`harvest.EarlyTransform`): a ticker of a year or more is worth the jobs of its own; such a run asks the sample
# server for a process of its own (`stockpipe.sample.process`), so the fetch does not hold its interpreter lock.
EARLY_FROM_DAYS = 250


def transforms_early(tickers: int, days: int) -> bool:
    return days >= EARLY_FROM_DAYS and tickers > 1


@dataclass(frozen=True)
class Tables:
    """Where a harvest's tables are: the minute bars and every table beside them that the run writes."""

    minutes: str
    splits: str
    dividends: str
    official: str
    checks: str
    quarantine: str

    def all(self) -> tuple[str, ...]:
        return (self.minutes, self.splits, self.dividends, self.official, self.checks, self.quarantine)


class FileEndpoint(Protocol):
    """Where a flat-file run's files come from, chosen once where the run is configured: the provider's S3 endpoint
    (`flatfiles.store.S3Endpoint`) or the sample market's loopback stand-in (`sample.source.SampleFlatFiles`)."""

    @property
    def name(self) -> str:
        """What a commit records as its source: `flatfiles` (real files) or `sample`."""

    def serve(self) -> AbstractContextManager[tuple[str, Credentials]]:
        """The endpoint's URL and the credentials to sign with, for as long as the context is open."""


class Endpoint(Protocol):
    """Where a run's calls go, chosen once where the run is configured: the API (`fetching.ApiEndpoint`) or the
    offline sample (`sample.source.SampleSource`). The fetch sees a base URL and a key, nothing else."""

    @property
    def name(self) -> str: ...

    @property
    def api_key(self) -> str: ...

    def serve(self, own_process: bool = False) -> AbstractContextManager[str]:
        """The base URL, for as long as the context is open."""


@dataclass(frozen=True)
class HarvestConfig:
    tickers: tuple[str, ...]
    date_from: dt.date
    date_to: dt.date
    table_path: str
    landing_path: str
    splits_path: str = ""  # the splits table; beside the minute table when empty
    dividends_path: str = ""  # stocks_dividends; beside the minute table when empty
    official_path: str = ""  # stocks_official_daily; beside the minute table when empty
    checks_path: str = ""  # quality_checks; beside the minute table when empty
    quarantine_path: str = ""  # stocks_quarantine; beside the minute table when empty
    source: Source = "sample"
    base_url: str = DEFAULT_BASE_URL
    api_key: str = field(default="", repr=False)
    calls_per_minute: int | None = None  # as asked; `pace` is what the run keeps to
    layout: Layout = PARTITIONED
    refetch: bool = False
    allow_shrink: bool = False  # a refetch may replace stored days with far fewer rows
    allow_mixed_source: bool = False  # sample bars may go into a table the API filled
    sample_faults: bool = False  # the sample source injects the imperfections of real feeds
    concurrency: int | None = None  # as asked; `in_flight` is what the run uses
    window_seconds: float = 60.0  # the rate limit's rolling window (a minute for Massive; shorter in tests)
    show_progress: bool = True
    today: dt.date | None = None  # New York today; injectable so tests can pin "the current day"
    read_timeout: float = 30.0
    max_attempts: int = 8
    # Injected time for tests (pacing and backoff without real waiting); None means the real clock.
    clock: Callable[[], float] | None = field(default=None, repr=False, compare=False)
    sleep: Callable[[float], None] | None = field(default=None, repr=False, compare=False)
    # Where the calls go; None: the API at base_url with api_key (a sample run is given its SampleSource).
    endpoint: Endpoint | None = field(default=None, repr=False, compare=False)
    # A flat-file run (--source flatfiles): where its files come from, and whether it stores every ticker of them.
    flatfiles: FileEndpoint | None = field(default=None, repr=False, compare=False)
    universe_market: bool = False

    def __post_init__(self) -> None:
        for name, table in (("splits_path", SPLITS_TABLE), ("dividends_path", DIVIDENDS_TABLE),
                            ("official_path", OFFICIAL_TABLE), ("checks_path", CHECKS_TABLE),
                            ("quarantine_path", QUARANTINE_TABLE)):
            if not getattr(self, name):
                object.__setattr__(self, name, beside(self.table_path, table))

    @property
    def tables(self) -> Tables:
        return Tables(self.table_path, self.splits_path, self.dividends_path, self.official_path, self.checks_path,
                      self.quarantine_path)

    @property
    def pace(self) -> int | None:
        """Calls per rolling minute this run keeps to: as asked, else the free tier's 5 for the API and unpaced
        (None) for the loopback sample source."""
        if self.calls_per_minute is not None or self.source == "sample":
            return self.calls_per_minute
        return FREE_TIER_CALLS_PER_MINUTE

    @property
    def in_flight(self) -> int:
        """Calls in flight at once, all through one limiter: as asked, else one where the limit bounds the run (more
        would only queue in the limiter), two for the sample source unpaced (its server shares the process) and
        several where the network round trip bounds it."""
        if self.concurrency is not None:
            return self.concurrency
        if self.pace is not None and self.pace <= 60:
            return 1
        return SAMPLE_CONCURRENCY if self.source == "sample" and self.pace is None else FAST_CONCURRENCY

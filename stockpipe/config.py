"""What one harvest run is asked to do, validated: built by the CLI layer (`cli.build_config`) or by a test."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from stockpipe.massive import DEFAULT_BASE_URL

Layout = Literal["partitioned", "clustered"]
Source = Literal["api", "sample"]


@dataclass(frozen=True)
class HarvestConfig:
    tickers: tuple[str, ...]
    date_from: dt.date
    date_to: dt.date
    table_path: str
    landing_path: str
    source: Source = "sample"
    base_url: str = DEFAULT_BASE_URL
    api_key: str = field(default="", repr=False)
    calls_per_minute: int | None = None
    layout: Layout = "partitioned"
    refetch: bool = False
    concurrency: int = 1  # calls in flight at once; every call still goes through the one limiter
    window_seconds: float = 60.0  # the rate limit's rolling window (a minute for Massive; shorter in tests)
    show_progress: bool = True
    today: dt.date | None = None  # New York today; injectable so tests can pin "the current day"
    read_timeout: float = 30.0
    max_attempts: int = 8
    # Injected time for tests (pacing and backoff without real waiting); None means the real clock.
    clock: Callable[[], float] | None = field(default=None, repr=False, compare=False)
    sleep: Callable[[float], None] | None = field(default=None, repr=False, compare=False)

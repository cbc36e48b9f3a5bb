"""The offline sample source: a deterministic market of minute and daily bars, its corporate actions, the feed
faults it can inject, and a loopback server that speaks the Massive contract over it.

- `market`: one continuous price path per ticker following the real stock's broad shape, cut into minute bars
  (09:30 through the close stamp, closing print included, thin extended hours) and official daily bars.
- `actions`: the real splits and cash dividends of the eight tickers.
- `faults`: bad prints, missing minutes, malformed bars and short answers, where each falls (off by default).
- `server`: `SampleApiServer`, the aggregates, grouped daily, splits and dividends endpoints on 127.0.0.1.
"""

from stockpipe.sample.actions import SAMPLE_DIVIDENDS, SAMPLE_SPLITS, Dividend, Split, split_factor
from stockpipe.sample.faults import FAULT_KINDS, FaultKind, SampleFault, sample_fault_details, sample_faults
from stockpipe.sample.market import (
    MINUTES_PER_DAY_MAX,
    PROFILES,
    TickerProfile,
    adjusted_bars,
    bars_as_json,
    daily_bars,
    daily_bars_as_json,
    day_bars,
    official_daily_bar,
    range_bars,
)
from stockpipe.sample.server import DIVIDENDS_PATH, SPLITS_PATH, ApiRequest, SampleApiServer

__all__ = [
    "DIVIDENDS_PATH",
    "FAULT_KINDS",
    "MINUTES_PER_DAY_MAX",
    "PROFILES",
    "SAMPLE_DIVIDENDS",
    "SAMPLE_SPLITS",
    "SPLITS_PATH",
    "ApiRequest",
    "Dividend",
    "FaultKind",
    "SampleApiServer",
    "SampleFault",
    "Split",
    "TickerProfile",
    "adjusted_bars",
    "bars_as_json",
    "daily_bars",
    "daily_bars_as_json",
    "day_bars",
    "official_daily_bar",
    "range_bars",
    "sample_fault_details",
    "sample_faults",
    "split_factor",
]

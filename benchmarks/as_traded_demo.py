"""Evidence for analysis.md ("As traded, not adjusted"): NVDA around its 10-for-1 split of 2024-06-10 from the
sample source, as the old pipeline stored it (adjusted=true, each day fetched by a daily run on the day after) and as
the table stores it now (adjusted=false), plus what a --refetch of the old days returned after the split.

    python -m benchmarks.as_traded_demo > docs/evidence/as_traded.txt

The loopback server knows the splits it is given: before 2024-06-10 it does not list NVDA's split (a provider
learns of a split when it executes, or later), from then on it does.
"""

from __future__ import annotations

import datetime as dt
import statistics
import sys

import requests

from stockpipe.market_calendar import NEW_YORK, trading_days
from stockpipe.reports import format_table
from stockpipe.sample import SAMPLE_SPLITS
from stockpipe.testing import ApiBehaviour, FakeMassiveServer

TICKER = "NVDA"
SPLIT_DAY = dt.date(2024, 6, 10)
DAYS = trading_days(dt.date(2024, 6, 5), dt.date(2024, 6, 12))


def regular_close(server: FakeMassiveServer, day: dt.date, adjusted: bool) -> float:
    """The day's close: the closing print, in the bar stamped 16:00 New York, as one aggregates call answers it."""
    url = (f"{server.base_url}/v2/aggs/ticker/{TICKER}/range/1/minute/{day}/{day}"
           f"?adjusted={str(adjusted).lower()}&sort=asc&limit=50000")
    bars = requests.get(url, timeout=10).json()["results"]
    regular = [b for b in bars if dt.datetime.fromtimestamp(b["t"] / 1000, NEW_YORK).time() <= dt.time(16)]
    return float(regular[-1]["c"])


def main() -> int:
    known_before = tuple(s for s in SAMPLE_SPLITS if not (s.ticker == TICKER and s.execution_date == SPLIT_DAY))
    rows = []
    with FakeMassiveServer(ApiBehaviour(splits=known_before)) as before, FakeMassiveServer() as after:
        for day in DAYS:
            # The old daily job fetched each day the day after it, adjusted, and kept that page forever.
            old_daily = regular_close(before if day < SPLIT_DAY else after, day, adjusted=True)
            refetched = regular_close(after, day, adjusted=True)  # a --refetch after the split
            as_traded = regular_close(after, day, adjusted=False)
            assert as_traded == regular_close(before, day, adjusted=False)  # as traded never moves
            rows.append((day.isoformat(), f"{old_daily:,.2f}", f"{refetched:,.2f}", f"{as_traded:,.2f}"))
    print(format_table(
        ["trade date", "old: adjusted, fetched next day", "old: --refetch after the split", "now: as traded"],
        rows, title=f"{TICKER} regular-session close around its 10-for-1 split of {SPLIT_DAY} (sample source)"))
    old_ratio = statistics.fmean(float(r[1].replace(",", "")) for r in rows[:3]) / statistics.fmean(
        float(r[1].replace(",", "")) for r in rows[3:])
    print(f"\nOld table: days before the split stored at {old_ratio:.1f}x the days after (two bases in one column); "
          "a --refetch of them changed their stored prices tenfold.")
    print("Now: the same prices whenever fetched; split adjustment comes from stocks_splits on read.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

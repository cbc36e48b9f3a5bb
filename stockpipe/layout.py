"""How a table of minute bars is laid out: a value the table is created with, which the write, the refetch guard and
the checks read, instead of a constant each of them repeats.

`partitioned` is the assignment's answer: a folder per (ticker, trade_date), one file in each. `clustered` is Delta's
liquid clustering on the same keys (delta-spark 3.2+ or Databricks): no folders, OPTIMIZE clusters. `by-date` holds
the whole market: a folder per trade_date, its file sorted by ticker then time so a one-ticker query skips by Parquet
statistics, and maintenance Z-orders (or clusters) it by ticker; at 11,000 tickers a day, `partitioned` would make
11,000 files of ~190 rows each every day (docs/market.md). Whatever the layout, a run replaces exactly the
(ticker, trade_date) days it stores: that is the unit of a write, not a folder.
"""

from __future__ import annotations

from dataclasses import dataclass

# What a run replaces and what a minute's duplicates share: a ticker's trading day.
DAY_KEY = ("ticker", "trade_date")


@dataclass(frozen=True)
class Layout:
    name: str
    partition_by: tuple[str, ...] = ()
    cluster_by: tuple[str, ...] = ()
    # The order of the rows inside each file (what Parquet's statistics can then skip on).
    sort_by: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.name

    @property
    def by_day_key(self) -> bool:
        """Partitioned by the day key itself: the harvest's ranking already puts each partition's rows in one task,
        sorted, so the write needs no shuffle of its own."""
        return self.partition_by == DAY_KEY

    def describe(self) -> str:
        if self.cluster_by:
            return f"liquid clustering by ({', '.join(self.cluster_by)})"
        return f"partitioned by ({', '.join(self.partition_by)})" if self.partition_by else "no partitions"


PARTITIONED = Layout("partitioned", partition_by=DAY_KEY, sort_by=("timestamp_ms",))
CLUSTERED = Layout("clustered", cluster_by=DAY_KEY, sort_by=(*DAY_KEY, "timestamp_ms"))
BY_DATE = Layout("by-date", partition_by=("trade_date",), sort_by=("ticker", "timestamp_ms"))
LAYOUTS = {layout.name: layout for layout in (PARTITIONED, CLUSTERED, BY_DATE)}
# What maintenance Z-orders a layout's files by, where it does not cluster them itself.
ZORDER_BY = {BY_DATE.name: ("ticker",)}
# The starter's, kept for Part 1: a folder per (ticker, minute), one tiny file in each.
BROKEN = Layout("broken", partition_by=("ticker", "minute"))

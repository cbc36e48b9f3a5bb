"""`stocks_quarantine`: the bars that broke a bar rule, kept beside the facts instead of in them.

One row per bad bar of a landed answer: its ticker, its trade_date and minute where `t` could be read, the raw bar as
JSON text, the first rule it broke (`reason`), where it landed (the page under the landing zone and its position
there) and the run that first met it. A rerun that replays the same landed page records nothing new (a bar is keyed
by its page and position), so the table is a log of bad answers, each once; a refetch that gets the bad bar again is a
new answer and a new row.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from stockpipe.quality.rules import POSITIONS_PER_PAGE
from stockpipe.storage import DeltaStorage

QUARANTINE_SCHEMA = T.StructType([
    T.StructField("ticker", T.StringType(), False),
    T.StructField("trade_date", T.DateType()),
    T.StructField("timestamp_ms", T.LongType()),
    T.StructField("reason", T.StringType(), False),
    T.StructField("raw", T.StringType()),
    T.StructField("landed_page", T.StringType(), False),
    T.StructField("position", T.IntegerType(), False),
    T.StructField("run_id", T.StringType()),
    T.StructField("source", T.StringType()),
    T.StructField("fetched_at", T.TimestampType()),
])
KEY = ("landed_page", "position")


def quarantined_bars(ranked: DataFrame, run_id: str | None, source: str) -> DataFrame:
    """The run's bad bars in QUARANTINE_SCHEMA: those of the days it stores, and those whose day is unknown. (The
    harvest's ranked bars carry what a bad bar needs in `_bad`, and its place in the answer in `_order`.)"""
    page_number = (F.col("_order") / POSITIONS_PER_PAGE).cast("long")
    page = F.format_string("ticker=%s/fetch=%s/page-%05d.json", F.col("ticker"), F.col("_bad.fetch_id"), page_number)
    chosen = ranked.filter(F.col("_bad").isNotNull() & (F.col("assigned") | F.col("trade_date").isNull()))
    return chosen.select(
        "ticker", "trade_date", "timestamp_ms", F.col("_bad.reason").alias("reason"), F.col("_bad.raw").alias("raw"),
        page.alias("landed_page"), (F.col("_order") % POSITIONS_PER_PAGE).alias("position"),
        F.lit(run_id).cast("string").alias("run_id"), F.lit(source).alias("source"),
        F.col("ingested_at").alias("fetched_at"),
    ).select(*[F.col(f.name).cast(f.dataType) for f in QUARANTINE_SCHEMA.fields])


def record_quarantine(storage: DeltaStorage, path: str, bad: DataFrame) -> int | None:
    """Append the bars not recorded yet (by page and position) in one commit; None when every one already is."""
    storage.create_if_missing(path, QUARANTINE_SCHEMA)
    known = storage.read(path).select(*KEY)
    new = bad.join(known, list(KEY), "left_anti")
    if new.isEmpty():
        return None
    return storage.write(new, path, mode="append")

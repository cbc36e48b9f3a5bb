"""The flat files prepared where Spark reads them: one Spark task a landed file, each running the same Arrow and
NumPy preparation the delta-rs engine runs in its own process (`flatfiles.arrow`), so a five-day run reads five
files at once locally, a cluster a year at once, and both engines store the same rows by construction.

Each task yields its file's rows for the table, and leaves beside the landed file what the run collects once the
rows are written: each (ticker, day)'s figures for the checks and the bad bars for the quarantine (a JSON file a
day under the run's folder of the landing zone, which every task can reach: a local folder, or a Unity Catalog
volume on Databricks). So the rows cross into Spark once and are written as they come: the preparation is not run
again, and no copy of the rows is kept, to learn what the checks need.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import from_arrow_schema

from stockpipe.compat import default_parallelism, ship_package
from stockpipe.flatfiles.arrow import QUARANTINE, SILVER, prepare_day
from stockpipe.flatfiles.rows import numpy_rows
from stockpipe.flatfiles.zone import LandedFile
from stockpipe.quality.checks import DayStats

FILE_SCHEMA = ("day date, path string, key string, etag string, size long, landed_at string, part int, "
               "parts int")
# A day's file is shared by at most this many tasks (each a run of its tickers).
MAX_PARTS = 8


def parts_a_file(files: int, parallelism: int) -> int:
    """Tasks a file, so that a few days still keep every core busy: a day alone on a 2-core laptop is two tasks
    (two files of the day, each a run of tickers, sorted); a week or more, a task a file."""
    return max(1, min(MAX_PARTS, -(-parallelism // max(1, files))))


def prepared_frame(spark: SparkSession, files: list[LandedFile], tickers: frozenset[str] | None,
                   run_id: str | None, source: str, side_folder: Path) -> DataFrame:
    """A frame of every landed file's prepared rows, a task a file (or a run of its tickers, `parts_a_file`); each
    task's figures and bad bars land in `side_folder` (read them with `side_outputs` once the frame has been
    written)."""
    ship_package(spark)
    parts = parts_a_file(len(files), default_parallelism(spark))
    listing = spark.createDataFrame(
        [(f.day, str(f.path), f.key, f.etag, f.size, f.landed_at.isoformat(), part, parts)
         for f in files for part in range(parts)], FILE_SCHEMA)
    # One (file, part) a task: a range partitioning by both puts each in a partition of its own.
    by_file = listing.repartitionByRange(len(files) * parts, "day", "part")
    wanted = sorted(tickers) if tickers is not None else None
    folder = str(side_folder)
    return by_file.mapInArrow(lambda batches: _prepare(batches, wanted, run_id, source, folder),
                              from_arrow_schema(SILVER))


def _prepare(batches: Iterable[pa.RecordBatch], tickers: list[str] | None, run_id: str | None, source: str,
             side_folder: str) -> Iterator[pa.RecordBatch]:
    wanted = frozenset(tickers) if tickers is not None else None
    for batch in batches:
        for row in batch.to_pylist():
            file = LandedFile(row["day"], Path(row["path"]), row["key"], row["etag"], int(row["size"]),
                              dt.datetime.fromisoformat(row["landed_at"]))
            part = (int(row["part"]), int(row["parts"]))
            day = prepare_day(numpy_rows(file, wanted, part=part), run_id, source)
            side = {"stats": [dataclasses.asdict(s) for s in day.stats], "quarantine": day.quarantine.to_pylist(),
                    "outside_day": day.outside_day}
            target = Path(side_folder) / f"{file.day.isoformat()}.{part[0]}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(json.dumps(side, default=str))
            partial.replace(target)  # a retried task's file replaces the first attempt's, whole
            yield from day.rows.to_batches(max_chunksize=1 << 18)


def side_outputs(side_folder: Path, files: list[LandedFile]) -> tuple[list[DayStats], pa.Table]:
    """The figures and the bad bars the tasks left, one file a task."""
    stats, bad = [], []
    for file in files:
        left = sorted(side_folder.glob(f"{file.day.isoformat()}.*.json"))
        if not left:
            raise FileNotFoundError(f"no figures for {file.day} in {side_folder}: its task left none")
        for found in (json.loads(one.read_text()) for one in left):
            for figures in found["stats"]:
                figures["trade_date"] = (dt.date.fromisoformat(figures["trade_date"]) if figures["trade_date"]
                                         else None)
                stats.append(DayStats(**figures))
            bad.extend(found["quarantine"])
    for item in bad:
        item["trade_date"] = dt.date.fromisoformat(item["trade_date"]) if item["trade_date"] else None
        item["fetched_at"] = dt.datetime.fromisoformat(item["fetched_at"]) if item["fetched_at"] else None
    return stats, pa.Table.from_pylist(bad, schema=QUARANTINE)

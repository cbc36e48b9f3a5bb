"""`make bench`: every comparison measured side by side in one run, written to bench_results/ (markdown, JSON, PNG).

Sections (each figure in analysis.md names this command), each on every engine the session has (delta-rs always,
delta-spark when its jars load, e.g. with DELTA_JARS_DIR) unless --engines says otherwise:
  1. broken vs fixed harvester on the same sample data (8 tickers x 5 trading days)
  2. layouts at 8 x 5 and 500 x 20: (ticker, trade_date) partitions; trade_date partitions + Z-ORDER by ticker;
     liquid clustering (delta-spark only); the broken (ticker, minute) layout at the small size only
  3. fetch efficiency against the loopback server with a real 5 calls / 60 s window, and the starter's naive loop
  4. end-to-end cost as tickers grow: 8, 64, 512 tickers x 5 days (the first engine only)
  5. VACUUM of a 1,000-file table: Spark's default listing/state parallelism vs this project's local session
  6. the fixed harvester end to end in its own process at a real 5-calls-per-60-s window: wall vs the rate-limit
     floor, and a rerun with every page reused (the post-fetch cost alone); run before the bench's own session
  7. fetching 512 tickers x 5 days from the loopback server, unpaced, at concurrency 1, 4, 8 and 16, at loopback
     speed and with a simulated 100 ms round trip per call
  8. the backfill cost curve: the fixed harvester in its own process on the sample source (unpaced), 8 tickers x 5
     days, 1 year and 5 years, on each engine: wall, time after the last call, rows/s, and the peak resident memory
     of the Python driver, the JVM and the largest Python worker (polled from /proc); plus the 5-year table
     written --layout clustered on delta-spark. Run before the bench's own session, like 6 and 7
  9. the daily table over the 5-year table of section 8, on each engine, `daily_bars.py` in its own process: the
     full build, a build with nothing new (no commit), and the incremental build after the last day is fetched again
 10-13. the whole market from the daily flat files: a market day beside lean Arrow and PySpark pipelines, the cost
     curve in tickers a day, five days in one run against five runs, the layout crossover (benchmarks/market.py)

Times are medians of --repeat runs (queries and small writes); a row says n= where fewer runs were affordable.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import requests
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from stockpipe import DEFAULT_TICKERS
from stockpipe.cli import setup_logging
from stockpipe.config import HarvestConfig
from stockpipe.external import scan_files_read
from stockpipe.fetching import fetch_all
from stockpipe.harvest import run_broken, run_fixed
from stockpipe.landing import LandingZone, default_landing_path
from stockpipe.market_calendar import NEW_YORK, trading_days
from stockpipe.massive import FREE_TIER_CALLS_PER_MINUTE, ClientConfig, FetchStats, MassiveClient
from stockpipe.paths import count_partition_dirs, parquet_files_on_disk
from stockpipe.sample import range_bars
from stockpipe.sample.source import SampleSource
from stockpipe.sample.universe import market_symbols
from stockpipe.session import build_session, session_has_delta
from stockpipe.storage import DeltaStorage, RowFilter
from stockpipe.storage.delta_rs import DeltaRsStorage
from stockpipe.storage.delta_spark import DeltaSparkStorage
from stockpipe.testing import ApiBehaviour, FakeMassiveServer, Fault
from stockpipe.transforms import (
    session_bounds,
    to_broken,
    to_silver,
    with_market_session,
    with_trade_date,
    with_trade_ts,
)

log = logging.getLogger("benchmarks.bench")
SMALL = (DEFAULT_TICKERS, dt.date(2024, 1, 8), dt.date(2024, 1, 12))
ZORDER_TARGET_BYTES = 2 * 1024 * 1024
LARGE_DAYS = (dt.date(2024, 1, 2), dt.date(2024, 1, 30))  # 20 NYSE sessions
# The free tier's limit, enforced for real by the loopback server in sections 3 and 6.
CALLS_PER_MINUTE = FREE_TIER_CALLS_PER_MINUTE  # the window of a real free key
WINDOW_S = 60.0
# Section 7: a fetch big enough that the round trip, not the limit, bounds it.
CONCURRENCY_TICKERS = 512
CONCURRENCY_LEVELS = (1, 4, 8, 16)
ROUND_TRIPS_S = (0.0, 0.1)
# Section 5: 2 x this many files (half tombstoned).
VACUUM_PARTITIONS = 500


def floor_seconds(calls: int, calls_per_minute: int, window: float = 60.0) -> float:
    """The least wall time `calls` calls can take under a rolling window: full windows after the first burst."""
    return window * max(0, math.ceil(calls / calls_per_minute) - 1)


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def median_time(action: Callable[[], Any], repeat: int) -> float:
    return statistics.median(timed(action)[0] for _ in range(repeat))


def synthetic_tickers(count: int) -> list[str]:
    """The eight, then the sample market's most active names (the sample serves the symbols it lists)."""
    return list(market_symbols()[:count])


def synthetic_bars(spark: SparkSession, tickers: list[str], first: dt.date, last: dt.date) -> DataFrame:
    """Silver rows straight from the generator (no HTTP): for layout studies where fetching is not the point."""
    frames = []
    for ticker in tickers:
        columns = range_bars(ticker, first, last)
        frames.append(pd.DataFrame({
            "ticker": ticker, "fetch_id": "bench", "timestamp_ms": columns["t"], "open": columns["o"],
            "high": columns["h"], "low": columns["l"], "close": columns["c"], "volume": columns["v"],
            "vwap": columns["vw"], "num_transactions": columns["n"],
        }))
    bars = spark.createDataFrame(pd.concat(frames, ignore_index=True))
    bars = (bars.transform(with_trade_ts)
            .transform(with_trade_date)
            .withColumn("ingested_at", F.current_timestamp()))
    return to_silver(with_market_session(bars, session_bounds(spark, trading_days(first, last))))


# -------------------------------------------------------------------------------------------------------------------
def _queries(tickers: list[str], days: list[dt.date]) -> dict[str, RowFilter]:
    ticker, day = tickers[0], days[len(days) // 2]
    return {
        "one ticker, one day": RowFilter.of(ticker=[ticker], trade_date=[day]),
        "all tickers, one day": RowFilter.of(trade_date=[day]),
        "one ticker, all days": RowFilter.of(ticker=[ticker]),
    }


def _run_query(storage: DeltaStorage, path: str, where: RowFilter, broken: bool) -> DataFrame:
    if broken:
        # No trade_date column (bug 3): the only way to ask for a day is a range on epoch milliseconds.
        ticker_clause = [(c, v) for c, v in where.clauses if c == "ticker"]
        day_clause = [v for c, v in where.clauses if c == "trade_date"]
        frame = storage.read(path, RowFilter(tuple(ticker_clause)) if ticker_clause else None)
        if day_clause:
            day = day_clause[0][0]
            start = int(dt.datetime.combine(day, dt.time(4), tzinfo=NEW_YORK).timestamp() * 1000)
            frame = frame.filter((F.col("timestamp_ms") >= start) & (F.col("timestamp_ms") < start + 16 * 3600_000))
    else:
        frame = storage.read(path, where)
    return frame.agg(F.count(F.lit(1)).alias("bars"), F.sum("volume").alias("volume"))


def _collect_query(storage: DeltaStorage, path: str, where: RowFilter, broken: bool) -> None:
    _run_query(storage, path, where, broken).collect()


@dataclass
class LayoutResult:
    size: str
    layout: str
    partitions: int | None = None
    files: int | None = None
    bytes: int | None = None
    write_s: float | None = None
    write_runs: int = 0
    queries: dict[str, float] = field(default_factory=dict)
    files_read: dict[str, int | None] = field(default_factory=dict)
    note: str = ""

    @property
    def avg_file_kib(self) -> float | None:
        return self.bytes / self.files / 1024 if self.files and self.bytes is not None else None


def measure_layout(storage: DeltaStorage, silver: DataFrame, root: Path, size: str, layout: str,
                   tickers: list[str], days: list[dt.date], repeat: int, write_repeat: int) -> LayoutResult:
    path = str(root / f"{size}_{layout}".replace(" ", "_").replace(",", ""))
    result = LayoutResult(size, layout)
    broken = layout.startswith("broken")
    if layout.startswith("liquid") and not storage.supports_clustering:
        result.note = f"not measured: the {storage.name} engine cannot create liquid clustering (needs delta-spark)"
        return result

    def write() -> None:
        shutil.rmtree(path, ignore_errors=True)
        if broken:
            storage.write(silver.transform(to_broken), path, mode="append", partition_by=["ticker", "minute"])
        elif layout.startswith("partitioned by (ticker"):
            storage.write(silver, path, mode="append", partition_by=["ticker", "trade_date"])
        elif layout.startswith("partitioned by trade_date"):
            storage.write(silver, path, mode="append", partition_by=["trade_date"])
            # Files of ~2 MiB, so a day holds several files whose ticker ranges statistics can tell apart.
            storage.optimize(path, zorder_by=["ticker"], target_file_bytes=ZORDER_TARGET_BYTES)
        else:
            storage.write(silver, path, mode="append", cluster_by=["ticker", "trade_date"])
            storage.optimize(path)

    times = [timed(write)[0] for _ in range(write_repeat)]
    result.write_s, result.write_runs = statistics.median(times), write_repeat
    storage.vacuum(path, 0)  # measure the live layout, not leftovers of the write
    detail = storage.detail(path)
    result.partitions = detail.num_partitions or None
    result.files, result.bytes = detail.num_files, detail.size_bytes
    for query, where in _queries(tickers, days).items():
        # Counting files read also warms the caches, so the timed runs compare like with like.
        result.files_read[query] = scan_files_read(_run_query(storage, path, where, broken))
        result.queries[query] = median_time(partial(_collect_query, storage, path, where, broken), repeat)
    shutil.rmtree(path, ignore_errors=True)
    return result


# -------------------------------------------------------------------------------------------------------------------
def bench_broken_vs_fixed(spark: SparkSession, storage: DeltaStorage, root: Path, repeat: int) -> dict[str, Any]:
    tickers, first, last = SMALL
    days = trading_days(first, last)
    out: dict[str, Any] = {}
    for name in ("broken", "fixed"):
        path = str(root / f"harvest_{name}")
        cfg = HarvestConfig(tickers=tickers, date_from=first, date_to=last, table_path=path,
                            landing_path=str(root / "landing"), show_progress=False, endpoint=SampleSource(tickers))
        fetch_all(cfg, LandingZone(cfg.landing_path), days)  # land once, so both time only transform + write
        # On delta-spark the broken run (22,962 one-bar files) takes minutes: once is enough to tell, and says n=1.
        runs_wanted = 1 if (name == "broken" and storage.name == "delta-spark") else repeat
        runs = [timed(partial(_harvest_once, spark, storage, cfg, name))[0] for _ in range(runs_wanted)]
        detail = storage.detail(path)
        table: dict[str, Any] = {
            "write_s": statistics.median(runs), "write_runs": runs_wanted,
            "partition_dirs_on_disk": count_partition_dirs(path),
            "live_partitions": detail.num_partitions,
            "live_files": detail.num_files,
            "files_on_disk": storage.files_on_disk(path),
            "bytes_live": detail.size_bytes,
            "bytes_on_disk": sum(p.stat().st_size for p in parquet_files_on_disk(path)),
            "rows": storage.count(path),
            "tickers": sorted(r["ticker"] for r in storage.read(path).select("ticker").distinct().collect()),
            "queries": {}, "files_read": {},
        }
        for query, where in _queries(["JPM"], days).items():  # JPM: the one ticker the broken table still has
            table["files_read"][query] = scan_files_read(_run_query(storage, path, where, name == "broken"))
            table["queries"][query] = median_time(
                partial(_collect_query, storage, path, where, name == "broken"), repeat)
        out[name] = table
    return out


def _harvest_once(spark: SparkSession, storage: DeltaStorage, cfg: HarvestConfig, name: str) -> None:
    shutil.rmtree(cfg.table_path, ignore_errors=True)
    if name == "broken":
        run_broken(cfg, lambda: (spark, storage), lambda _, path: shutil.rmtree(path, ignore_errors=True))
    else:
        run_fixed(cfg, lambda: (spark, storage))


def bench_fetch() -> dict[str, Any]:
    """8 single-page tickers through the real client against a server enforcing a real rolling window."""
    window_s, calls_per_minute = WINDOW_S, CALLS_PER_MINUTE
    tickers, first, last = SMALL
    result: dict[str, Any] = {}
    with FakeMassiveServer(ApiBehaviour(calls_per_window=calls_per_minute, window_seconds=window_s)) as server:
        # The starter: one call per ticker, no pacing, `response.json()["results"]` on whatever comes back.
        rows_before_crash, crashed_at = 0, None
        for ticker in tickers:
            response = requests.get(f"{server.base_url}/v2/aggs/ticker/{ticker}/range/1/minute/{first}/{last}",
                                    params={"adjusted": "true", "sort": "asc", "limit": "50000"}, timeout=10)
            payload = response.json()
            if "results" not in payload:
                crashed_at = ticker
                break
            rows_before_crash += len(payload["results"])
        result["starter"] = {"crashed_at": crashed_at, "status": response.status_code,
                             "tickers_before_crash": tickers.index(crashed_at) if crashed_at else len(tickers)}
    with FakeMassiveServer(ApiBehaviour(calls_per_window=calls_per_minute, window_seconds=window_s)) as server:
        client = MassiveClient(ClientConfig(base_url=server.base_url, calls_per_minute=calls_per_minute,
                                            window_seconds=window_s))
        stats = [FetchStats(t) for t in tickers]
        wall, _ = timed(lambda: [list(client.iter_pages(t, first, last, s)) for t, s in zip(tickers, stats,
                                                                                          strict=True)])
        calls_needed = len(tickers)
        result["client"] = {
            "wall_s": wall, "floor_s": floor_seconds(calls_needed, calls_per_minute, window_s),
            "calls": sum(s.calls for s in stats), "calls_needed": calls_needed,
            "http_429": sum(s.http_429 for s in stats), "server_429": sum(1 for e in server.log if e.status == 429),
        }
        result["client"]["ratio"] = result["client"]["wall_s"] / result["client"]["floor_s"]
        # What public fixes do: a fixed 13 s sleep between calls.
        result["fixed_sleep_13s_s"] = 13.0 * (calls_needed - 1)
    return result


def bench_end_to_end(engine: str, root: Path) -> dict[str, Any]:
    """The fixed harvester as a user runs it (its own process, so Spark's start counts), 8 tickers x 5 days against
    a loopback server enforcing a real 5-calls-per-60-s window; then the same command again, every page reused, which
    is the post-fetch cost alone."""
    tickers, first, last = SMALL
    window_s, calls_per_minute = WINDOW_S, CALLS_PER_MINUTE
    path = root / f"e2e_{engine}"
    argv = [sys.executable, str(Path(__file__).resolve().parents[1] / "fixed_stock_harvester.py"),
            "--tickers", ",".join(tickers), "--from", str(first), "--to", str(last), "--table-path", str(path),
            "--calls-per-minute", str(calls_per_minute), "--engine", engine]
    env = {**os.environ, "MASSIVE_API_KEY": "bench-key"}
    out: dict[str, Any] = {}
    behaviour = ApiBehaviour(api_key="bench-key", calls_per_window=calls_per_minute, window_seconds=window_s)
    with FakeMassiveServer(behaviour) as server:
        for run in ("first", "rerun"):
            answered = len(server.log)
            started = time.monotonic()
            done = subprocess.run([*argv, "--base-url", server.base_url], env=env, capture_output=True, text=True,
                                  timeout=900)
            wall = time.monotonic() - started
            if done.returncode != 0:
                raise RuntimeError(f"fixed harvester failed ({done.returncode}): {done.stderr.strip()[-300:]}")
            phases = _phase_seconds(done.stdout)
            out[run] = {"wall_s": wall, "phases": phases,
                        "calls": sum(1 for e in server.log[answered:] if e.status == 200),
                        "post_fetch_s": sum(v for k, v in phases.items() if k not in ("fetch", "total"))}
    # The floor is what the run's own calls need at the window: the minute bars' and the reference data's alike.
    out["floor_s"] = floor_seconds(out["first"]["calls"], calls_per_minute, window_s)
    out["ratio"] = out["first"]["wall_s"] / out["floor_s"]
    shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(default_landing_path(str(path)), ignore_errors=True)
    return out


BACKFILLS = (("5 days", dt.date(2024, 1, 8), dt.date(2024, 1, 12)), ("1 year", dt.date(2023, 1, 3),
             dt.date(2023, 12, 29)), ("5 years", dt.date(2019, 1, 2), dt.date(2023, 12, 29)))


class PeakMemory:
    """Peak resident memory of a process and its descendants, by role, polled from /proc (Linux): each process's
    own high-water mark (VmHWM), read while it lives, so a peak between polls is not missed."""

    def __init__(self, pid: int, interval_s: float = 0.25) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peaks = {"driver": 0, "jvm": 0, "worker": 0, "sample_server": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _poll(self) -> None:
        while not self._stop.is_set():
            for pid, role in self._family().items():
                self.peaks[role] = max(self.peaks[role], _high_water_kib(pid))
            self._stop.wait(self.interval_s)

    def _family(self) -> dict[int, str]:
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(entry.name))
        roles, queue = {self.pid: "driver"}, [self.pid]
        while queue:
            for child in children.get(queue.pop(), []):
                try:
                    command = (Path("/proc") / str(child) / "cmdline").read_bytes()
                except OSError:
                    continue
                roles[child] = _role(command)
                queue.append(child)
        return roles


# Issue #29: five years of the 8 tickers, seconds after the last call, with validation and checks on.
FIVE_YEAR_LIMIT_S = {"delta-rs": 45.0, "delta-spark": 90.0}
PYTHON_LIMIT_MIB = 2048


def _role(command: bytes) -> str:
    """What a child of the harvester is, from its command line: the JVM, the sample server of a long run (a process
    of its own, `stockpipe.sample.process`), or a Python worker of Spark's."""
    argv = command.split(b"\0")
    if b"java" in argv[0]:
        return "jvm"
    return "sample_server" if b"stockpipe.sample.process" in argv else "worker"


def _high_water_kib(pid: int) -> int:
    try:
        for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def bench_backfill(engine: str, root: Path, layout: str = "partitioned",
                   sizes: tuple[tuple[str, dt.date, dt.date], ...] = BACKFILLS,
                   daily: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The fixed harvester as a user runs a backfill: its own process, the sample source, a fresh table and landing
    zone per size; the phases from its own summary, the memory from /proc. With `daily`, the daily table's builds
    over the 5-year table are measured too (section 9) and appended there."""
    script = str(Path(__file__).resolve().parents[1] / "fixed_stock_harvester.py")
    results = []
    for label, first, last in sizes:
        # A folder of its own: every table the run writes beside the minute table starts empty, as in a new install.
        folder = root / f"backfill_{engine}_{layout}_{first}"
        path = folder / "stocks_fixed"
        argv = [sys.executable, script, "--source", "sample", "--from", str(first), "--to", str(last),
                "--table-path", str(path), "--engine", engine, "--layout", layout]
        started = time.monotonic()
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with PeakMemory(process.pid) as memory:
            stdout, stderr = process.communicate(timeout=1800)
        wall = time.monotonic() - started
        if process.returncode != 0:
            raise RuntimeError(f"backfill {label} on {engine} failed ({process.returncode}): {stderr.strip()[-300:]}")
        phases = _phase_seconds(stdout)
        rows = sum(int(m.group(1).replace(",", "")) for m in re.finditer(r"^Rows written: ([\d,]+)", stdout, re.M)) \
            or _rows_from_summary(stdout)
        after = sum(v for k, v in phases.items() if k not in ("fetch", "total"))
        files = parquet_files_on_disk(str(path))
        if daily is not None and label == "5 years" and layout == "partitioned":
            daily += bench_daily(engine, path, last)
        results.append({"size": label, "engine": engine, "layout": layout, "rows": rows, "wall_s": wall,
                        "after_last_call_s": after, "phases": phases, "rows_per_s": rows / after if after else None,
                        "files": len(files), "avg_file_kib": sum(f.stat().st_size for f in files) / len(files) / 1024
                        if files else None, "peak_kib": dict(memory.peaks)})
        shutil.rmtree(folder, ignore_errors=True)
    return results


def bench_daily(engine: str, table: Path, last_day: dt.date) -> list[dict[str, Any]]:
    """`daily_bars.py` over a backfilled table, each build in its own process: the first (full) build, one with
    nothing new, and one after the harvester fetched the last day again (its rows rewritten, and the 50 trading days
    its windows reach... none after the last day, so only that day's rows)."""
    root = Path(__file__).resolve().parents[1]
    daily = [sys.executable, str(root / "daily_bars.py"), "--table-path", str(table), "--engine", engine]
    refetch = [sys.executable, str(root / "fixed_stock_harvester.py"), "--source", "sample", "--from", str(last_day),
               "--to", str(last_day), "--table-path", str(table), "--engine", engine, "--refetch"]
    measured = []
    for label, before in (("full (first build)", None), ("nothing new", None), ("after a refetch of the last day",
                                                                               refetch)):
        if before is not None:
            subprocess.run(before, check=True, capture_output=True, timeout=1800)
        started = time.monotonic()
        process = subprocess.Popen(daily, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with PeakMemory(process.pid) as memory:
            stdout, stderr = process.communicate(timeout=1800)
        wall = time.monotonic() - started
        if process.returncode != 0:
            raise RuntimeError(f"daily build ({label}) on {engine} failed: {stderr.strip()[-300:]}")
        built = re.search(r"Table \S+: ([^;]+);", stdout)
        seconds = re.search(r"; ([\d.]+) s$", stdout, re.M)
        measured.append({"engine": engine, "build": label, "wall_s": wall,
                         "build_s": float(seconds.group(1)) if seconds else None,
                         "written": built.group(1) if built else "?", "peak_kib": dict(memory.peaks)})
    return measured


def _rows_from_summary(stdout: str) -> int:
    """The summary table's rows column (the last), summed over its ticker lines."""
    total = 0
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) > 3 and parts[1] in ("success", "partial") and parts[-1].replace(",", "").isdigit():
            total += int(parts[-1].replace(",", ""))
    return total


def bench_concurrency(root: Path) -> list[dict[str, Any]]:
    """Fetching only: `tickers` x 5 days from a loopback server, unpaced (a paid key), at each concurrency, each into
    a fresh landing zone; once as fast as loopback answers and once with a simulated network round trip per call (the
    server holds each answer that long, as the real API's distance does). CPU is this whole process's: client and
    fake server share it."""
    first, last = SMALL[1], SMALL[2]
    days = trading_days(first, last)
    tickers = CONCURRENCY_TICKERS
    names = tuple(synthetic_tickers(tickers))
    out = []
    for latency in ROUND_TRIPS_S:
        faults = [Fault("delay", times=10**9, seconds=latency)] if latency else []
        with FakeMassiveServer(ApiBehaviour(api_key="bench-key", faults=faults)) as server:
            for level in CONCURRENCY_LEVELS:
                landing = root / f"landing_{latency}_{level}"
                cfg = HarvestConfig(tickers=names, date_from=first, date_to=last, table_path=str(root / "unused"),
                                    landing_path=str(landing), source="api", base_url=server.base_url,
                                    api_key="bench-key", calls_per_minute=1_000_000, show_progress=False,
                                    concurrency=level)
                cpu_before = time.process_time()
                wall, result = timed(partial(fetch_all, cfg, LandingZone(landing), days))
                fetched = result.tickers
                calls = sum(item.stats.calls for item in fetched.values())
                out.append({"latency_ms": int(latency * 1000), "concurrency": level, "tickers": tickers,
                            "calls": calls, "wall_s": wall, "calls_per_s": calls / wall,
                            "process_cpu_s": time.process_time() - cpu_before,
                            "failed": sum(1 for item in fetched.values() if item.failed)})
                shutil.rmtree(landing, ignore_errors=True)
    return out


def _phase_seconds(summary: str) -> dict[str, float]:
    """The fixed harvester's own 'Seconds: fetch 0.5, spark start 3.1, ...' line."""
    line = next((ln for ln in summary.splitlines() if ln.startswith("Seconds: ")), "")
    phases = {}
    for part in line.removeprefix("Seconds: ").split(", "):
        name, _, value = part.rpartition(" ")
        if name:
            phases[name] = float(value)
    return phases


def bench_vacuum(spark: SparkSession, storage: DeltaStorage, root: Path) -> dict[str, Any]:
    """VACUUM RETAIN 0 HOURS on a table with 2 x `partitions` files (half of them tombstoned by an overwrite), once
    with Spark's defaults for listing and state-rebuild parallelism and once with this project's local session.
    delta-rs has no such knobs: both rows time the same call."""
    partitions = VACUUM_PARTITIONS
    frame = spark.range(0, 40 * partitions).selectExpr("id", f"id % {partitions} AS p", "id * 0.5 AS x")
    knobs = {"spark.sql.sources.parallelPartitionDiscovery.parallelism": "10000",
             "spark.databricks.delta.snapshotPartitions": "50"}
    out: dict[str, Any] = {}
    for label in ("Spark defaults", "this project's session"):
        path = str(root / f"vacuum_{label[:4]}")
        storage.write(frame, path, mode="overwrite", partition_by=["p"])
        storage.write(frame, path, mode="overwrite", partition_by=["p"])
        files_before = storage.files_on_disk(path)
        saved = {key: spark.conf.get(key, None) for key in knobs}
        if label == "Spark defaults" and storage.name == "delta-spark":
            for key, value in knobs.items():
                spark.conf.set(key, value)
        try:
            seconds, vacuumed = timed(partial(storage.vacuum, path, 0))
        finally:
            for key, previous in saved.items():
                if previous is not None:
                    spark.conf.set(key, previous)
        out[label] = {"files_before": files_before, "deleted": vacuumed.files_removed, "seconds": seconds}
        shutil.rmtree(path, ignore_errors=True)
    return out


def bench_scaling(spark: SparkSession, storage: DeltaStorage, root: Path, sizes: list[int]) -> list[dict[str, Any]]:
    out = []
    first, last = SMALL[1], SMALL[2]
    for count in sizes:
        path = str(root / f"scale_{count}")
        names = tuple(synthetic_tickers(count))
        cfg = HarvestConfig(tickers=names, date_from=first, date_to=last, table_path=path,
                            landing_path=default_landing_path(path), show_progress=False, endpoint=SampleSource(names))
        wall, report = timed(partial(run_fixed, cfg, lambda: (spark, storage)))
        rows = report.rows_written
        out.append({"tickers": count, "rows": rows, "wall_s": wall, "rows_per_s": rows / wall,
                    "seconds": report.seconds, "partitions": report.partitions_written})
        shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(default_landing_path(path), ignore_errors=True)
    return out


# -------------------------------------------------------------------------------------------------------------------
def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _md_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render(results: dict[str, Any]) -> str:
    md = [f"# Benchmark results\n\nProduced by `make bench` on {results['machine']}, engines "
          f"{', '.join(results['engines'])}, {results['started']}. Times are medians of {results['repeat']} runs "
          "unless a row says n=1.\n"]
    if results.get("broken_vs_fixed"):
        md += ["## 1. Broken vs fixed harvester, same sample data (8 tickers x 5 trading days)\n",
               "Both harvesters run from the same landed pages, so the times are transform + write only. The broken "
               "table holds JPM alone, so its queries ask for JPM; files on disk include the overwritten tickers'.\n"]
    for engine, pair in results.get("broken_vs_fixed", {}).items():
        md += _render_broken_vs_fixed(engine, pair["broken"], pair["fixed"])
    if "layouts" in results:
        rows = []
        for r in results["layouts"]:
            q = r["queries"]
            partitions = f"{r['partitions']:,}" if r["partitions"] else "-"
            rows.append([r["size"], r.get("engine", "delta-rs"), r["layout"], r["note"] or partitions,
                         f"{r['files']:,}" if r["files"] is not None else "-",
                         _fmt(r["bytes"] / r["files"] / 1024, 1) if r.get("files") else "-",
                         (_fmt(r["write_s"]) + (f" (n={r['write_runs']})" if r["write_runs"] == 1 else ""))
                         if r["write_s"] is not None else "-",
                         *[f"{_fmt(q.get(n), 3)} ({r['files_read'].get(n, '-')})" for n in
                           ("one ticker, one day", "all tickers, one day", "one ticker, all days")]])
        md += ["## 2. Layouts\n",
               "Query cells: median seconds (files read by the scan).\n",
               _md_table(["size", "engine", "layout", "partitions", "files", "avg file KiB", "write s",
                          "one ticker, one day", "all tickers, one day", "one ticker, all days"], rows),
               "\n![layouts](layouts.png)\n"]
    if "fetch" in results:
        c, s = results["fetch"]["client"], results["fetch"]["starter"]
        md += ["## 3. Fetch against a real 5 calls / 60 s window (8 single-page tickers, loopback server)\n",
               _md_table(["", "value"], [
                   ["our client: wall time (s)", _fmt(c["wall_s"])],
                   ["floor (s): full windows after the first burst", _fmt(c["floor_s"])],
                   ["wall / floor", _fmt(c["ratio"], 3)],
                   ["calls made / calls needed", f"{c['calls']} / {c['calls_needed']}"],
                   ["429s received", c["http_429"]],
                   ["a fixed 13 s sleep between calls (public fixes), s", _fmt(results["fetch"]["fixed_sleep_13s_s"])],
                   ["the starter's unpaced loop", f"crashed at {s['crashed_at']} (HTTP {s['status']}) after "
                    f"{s['tickers_before_crash']} tickers" if s["crashed_at"] else "did not crash"],
               ]), ""]
    if "scaling" in results:
        rows = [[r["tickers"], f"{r['rows']:,}", f"{r['partitions']:,}", _fmt(r["wall_s"]), f"{r['rows_per_s']:,.0f}",
                 ", ".join(f"{k} {v:.1f}" for k, v in r["seconds"].items())] for r in results["scaling"]]
        md += [f"## 4. End to end as tickers grow on {results.get('scaling_engine', 'delta-rs')} (5 trading days, "
               "sample source unpaced, n=1)\n",
               _md_table(["tickers", "rows", "partitions", "wall s", "rows / s", "phases (s)"], rows),
               "\n![scaling](scaling.png)\n"]
    if "vacuum" in results:
        rows = [[engine, label, f"{v['files_before']:,}", f"{v['deleted']:,}", _fmt(v["seconds"])]
                for engine, runs in results["vacuum"].items() for label, v in runs.items()]
        md += ["## 5. VACUUM RETAIN 0 HOURS of a 1,000-file table (500 partitions, overwritten once)\n",
               "Spark defaults: `parallelPartitionDiscovery.parallelism` 10,000 and Delta's `snapshotPartitions` 50, "
               "set for that run only; delta-rs has neither knob, so its two rows time the same call.\n",
               _md_table(["engine", "session", "files on disk", "deleted", "seconds"], rows), ""]
    if "e2e" in results:
        rows = []
        for engine, e in results["e2e"].items():
            if "error" in e:
                rows.append([engine, "not measured: " + e["error"][:120], "", "", "", ""])
                continue
            for run in ("first", "rerun"):
                r = e[run]
                phases = ", ".join(f"{k} {v:.1f}" for k, v in r["phases"].items())
                rows.append([engine, run, _fmt(r["wall_s"]), _fmt(e["floor_s"]) if run == "first" else "-",
                             _fmt(e["ratio"], 3) if run == "first" else "-", f"{_fmt(r['post_fetch_s'])} ({phases})"])
        md += ["## 6. The fixed harvester end to end at a real 5 calls / 60 s window (8 tickers x 5 days, own "
               "process)\n",
               "first: every page fetched, paced; rerun: every page reused, no call. Post-fetch = Spark start not "
               "hidden by the fetch + transform + write, from the harvester's own summary.\n",
               _md_table(["engine", "run", "wall s", "floor s", "wall / floor", "post-fetch s (phases)"], rows), ""]
    if "concurrency" in results:
        rows = [[f"{r.get('latency_ms', 0)} ms", r["concurrency"], f"{r['calls']:,}", _fmt(r["wall_s"]),
                 f"{r['calls_per_s']:,.0f}", _fmt(r.get("process_cpu_s", r.get("client_cpu_s"))), r["failed"]]
                for r in results["concurrency"]]
        md += ["## 7. Fetching 512 tickers x 5 days, unpaced (a paid key's case; loopback server, n=1 each)\n",
               "round trip: time the server holds each answer (0 = loopback speed; 100 ms stands in for the distance "
               "to the real API). CPU s: this process's CPU time, client and fake server together (they share one "
               "interpreter); when it nears the wall time, CPU is the bound, not the calls in flight.\n",
               _md_table(["round trip", "concurrency", "calls", "wall s", "calls / s", "CPU s", "failed"], rows), ""]
    if "backfill" in results:
        md += _render_backfill(results["backfill"])
    if "daily" in results:
        rows = [[r["engine"], r["build"], _fmt(r["wall_s"], 1), _fmt(r["build_s"], 1), r["written"],
                 _mib(r["peak_kib"]["driver"]), _mib(r["peak_kib"]["jvm"])] for r in results["daily"]]
        md += ["## 9. The daily table over the 5-year table of section 8 (own process each, n=1)\n",
               "wall: the process, Spark's start included; build: what `daily_bars.py` reports (after its session "
               "is up).\n",
               _md_table(["engine", "build", "wall s", "build s", "what it wrote", "driver MiB", "JVM MiB"], rows),
               ""]
    if "market" in results:
        from benchmarks import market

        md += market.render(results["market"])
    return "\n".join(md)


def _mib(kib: int) -> str:
    return f"{kib / 1024:,.0f}" if kib else "-"


def _render_backfill(runs: list[dict[str, Any]]) -> list[str]:
    rows = []
    for r in runs:
        if "error" in r:
            rows.append([r["engine"], "not measured: " + r["error"][:120], *[""] * 11])
            continue
        phases = ", ".join(f"{k} {v:.1f}" for k, v in r["phases"].items() if k not in ("total",))
        peak = r["peak_kib"]
        rows.append([r["size"], r["engine"] + ("" if r["layout"] == "partitioned" else f" ({r['layout']})"),
                     f"{r['rows']:,}", _fmt(r["wall_s"], 1), _fmt(r["after_last_call_s"], 1),
                     f"{r['rows_per_s']:,.0f}" if r["rows_per_s"] else "-", f"{r['files']:,}",
                     _fmt(r["avg_file_kib"], 1) if r["avg_file_kib"] else "-", _mib(peak["driver"]),
                     _mib(peak["jvm"]), _mib(peak["worker"]),
                     _mib(peak.get("sample_server", 0)), phases])
    return ["## 8. Backfill cost curve: 8 tickers, sample source unpaced, a fresh table each (own process, n=1)\n",
            "After the last call: every phase but the fetch (Spark start not hidden by it, transform, write, "
            "checks, reference data). Rows / s: rows stored per second after the last call. Peaks: each process's "
            "resident high-water mark (VmHWM), MiB; worker: the largest single Python worker of Spark's; sample "
            "server: the loopback API's own process, which a run of a year or more starts (- when it ran in the "
            "harvester's process, or the run predates this column).\n",
            _md_table(["range", "engine", "rows", "wall s", "after last call s", "rows / s", "files",
                       "avg file KiB", "driver MiB", "JVM MiB", "worker MiB", "sample server MiB", "phases (s)"],
                      rows),
            "\n![backfill](backfill.png)\n"]


def _runs(measured: dict[str, Any]) -> str:
    return " (n=1)" if measured.get("write_runs") == 1 else ""


def _render_broken_vs_fixed(engine: str, b: dict[str, Any], f: dict[str, Any]) -> list[str]:
    rows = [
        ["tickers in the table", ", ".join(b["tickers"]), f"{len(f['tickers'])} (all)", ""],
        ["rows", f"{b['rows']:,}", f"{f['rows']:,}", _fmt(f["rows"] / b["rows"])],
        ["partition directories on disk", f"{b['partition_dirs_on_disk']:,}", f"{f['partition_dirs_on_disk']:,}",
         _fmt(f["partition_dirs_on_disk"] / b["partition_dirs_on_disk"], 4)],
        ["live partitions", f"{b['live_partitions']:,}", f"{f['live_partitions']:,}",
         _fmt(f["live_partitions"] / b["live_partitions"], 4)],
        ["parquet files on disk", f"{b['files_on_disk']:,}", f"{f['files_on_disk']:,}",
         _fmt(f["files_on_disk"] / b["files_on_disk"], 4)],
        ["bytes on disk", f"{b['bytes_on_disk']:,}", f"{f['bytes_on_disk']:,}",
         _fmt(f["bytes_on_disk"] / b["bytes_on_disk"])],
        ["transform + write time (s)", _fmt(b["write_s"]) + _runs(b), _fmt(f["write_s"]) + _runs(f),
         _fmt(f["write_s"] / b["write_s"])],
    ]
    for q in b["queries"]:
        label = q.replace("one ticker", "JPM")
        rows.append([f"query: {label}, s", _fmt(b["queries"][q], 3), _fmt(f["queries"][q], 3),
                     _fmt(f["queries"][q] / b["queries"][q])])
        rows.append([f"files read: {label}", b["files_read"][q], f["files_read"][q], ""])
    return [f"### On {engine}\n", _md_table(["", "broken", "fixed", "fixed / broken"], rows), ""]


def charts(results: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "market" in results:
        from benchmarks import market

        market.chart(results["market"], out)
    if "layouts" in results:
        measured = [r for r in results["layouts"] if r["files"]]
        fig, axes = plt.subplots(1, 2, figsize=(12, 0.5 * len(measured) + 1.5))
        labels = [f"{r['size']} {r.get('engine', 'delta-rs')}\n{r['layout']}" for r in measured]
        axes[0].barh(labels, [r["files"] for r in measured], color="#4c72b0")
        axes[0].set_xscale("log")
        axes[0].set_xlabel("files in the table (log)")
        axes[1].barh(labels, [r["queries"]["one ticker, one day"] for r in measured], color="#dd8452")
        axes[1].set_xlabel("one ticker, one day: median s")
        axes[1].set_yticklabels([])
        fig.tight_layout()
        fig.savefig(out / "layouts.png", dpi=100)
        plt.close(fig)
    if "scaling" in results:
        fig, axis = plt.subplots(figsize=(6, 3.6))
        xs = [r["tickers"] for r in results["scaling"]]
        axis.plot(xs, [r["rows_per_s"] for r in results["scaling"]], marker="o")
        axis.set_xscale("log", base=2)
        axis.set_xlabel("tickers (5 trading days)")
        axis.set_ylabel("rows / second, end to end")
        fig.tight_layout()
        fig.savefig(out / "scaling.png", dpi=100)
        plt.close(fig)
    measured = [r for r in results.get("backfill", []) if "error" not in r and r["layout"] == "partitioned"]
    if measured:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for engine, colour in (("delta-rs", "#4c72b0"), ("delta-spark", "#dd8452")):
            mine = [r for r in measured if r["engine"] == engine]
            if not mine:
                continue
            rows = [r["rows"] for r in mine]
            axes[0].plot(rows, [r["after_last_call_s"] for r in mine], marker="o", color=colour, label=engine)
            # Issue #29's bound for five years on this engine, drawn where the five-year point can be read against it.
            axes[0].axhline(FIVE_YEAR_LIMIT_S[engine], color=colour, linestyle=":", linewidth=1,
                            label=f"{engine}: five-year limit, {FIVE_YEAR_LIMIT_S[engine]:.0f} s")
            axes[1].plot(rows, [r["peak_kib"]["driver"] / 1024 for r in mine], marker="o", color=colour,
                         label=f"{engine}: Python driver")
            axes[1].plot(rows, [r["peak_kib"]["jvm"] / 1024 for r in mine], marker="s", linestyle="--",
                         color=colour, label=f"{engine}: JVM")
        axes[1].axhline(PYTHON_LIMIT_MIB, color="grey", linestyle=":", linewidth=1,
                        label=f"Python driver limit, {PYTHON_LIMIT_MIB:,} MiB")
        for axis in axes:
            axis.set_xscale("log")
            axis.set_xlabel("rows stored (8 tickers: 5 days, 1 year, 5 years)")
            axis.legend(fontsize=8)
        axes[0].set_ylim(bottom=0)
        axes[0].set_ylabel("seconds after the last call")
        axes[1].set_ylabel("peak resident MiB")
        fig.tight_layout()
        fig.savefig(out / "backfill.png", dpi=100)
        plt.close(fig)


def _delta_spark_loads() -> bool:
    """Whether delta-spark's jars load here (DELTA_JARS_DIR or Maven), asked of a short process of its own."""
    probe = ("import sys; from stockpipe.session import build_session; "
             "sys.exit(0 if build_session('probe').has_delta_spark else 3)")
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1]).returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench_results", help="results folder [bench_results]")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timed step [3]")
    parser.add_argument("--only", choices=("broken_vs_fixed", "layouts", "fetch", "scaling", "vacuum", "e2e",
                                                    "concurrency", "backfill", "market"),
                        action="append")
    parser.add_argument("--engines", choices=("all", "delta-rs", "delta-spark"), default="all",
                        help="engines to measure: every one this session has, or one [all]")
    parser.add_argument("--large-tickers", type=int, default=500)
    parser.add_argument("--scaling", default="8,64,512", help="ticker counts for section 4 [8,64,512]")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite results.md and the charts from results.json without measuring")
    args = parser.parse_args(argv)
    setup_logging(False)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.render_only:
        stored = json.loads((out / "results.json").read_text())
        charts(stored, out)
        (out / "results.md").write_text(render(stored))
        return 0
    sections = set(args.only or ("broken_vs_fixed", "layouts", "fetch", "scaling", "vacuum", "e2e", "concurrency",
                                 "backfill", "market"))
    end_to_end: dict[str, Any] = {}
    backfills: list[dict[str, Any]] = []
    daily_builds: list[dict[str, Any]] = []
    # Sections that run the harvester in its own process, before this one starts Spark.
    wanted = ["delta-rs", "delta-spark"] if args.engines == "all" else [args.engines]
    if "backfill" in sections:
        with tempfile.TemporaryDirectory(prefix="stocks-bench-backfill-") as tmp:
            for engine in wanted:
                print(f"backfills of 5 days, 1 year and 5 years on {engine} (about 5 minutes)...", file=sys.stderr)
                try:
                    backfills += bench_backfill(engine, Path(tmp), daily=daily_builds)
                    if engine == "delta-spark":
                        print("the 5-year backfill --layout clustered on delta-spark...", file=sys.stderr)
                        backfills += bench_backfill(engine, Path(tmp), "clustered", BACKFILLS[-1:])
                except RuntimeError as exc:  # delta-spark without its jars: say so, measure the rest
                    backfills.append({"engine": engine, "error": str(exc)})
    market_results: dict[str, Any] = {}
    if "market" in sections:
        from benchmarks.market import bench_market

        # The market's own processes, before this one starts Spark; delta-spark where its jars load.
        market_results = bench_market([e for e in wanted if e != "delta-spark" or _delta_spark_loads()])
    fetch_curve: list[dict[str, Any]] = []
    if "concurrency" in sections:
        print("fetching 512 tickers at concurrency 1, 4, 8, 16...", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="stocks-bench-fetch-") as tmp:
            fetch_curve = bench_concurrency(Path(tmp))
    if "e2e" in sections:
        # Before this process starts Spark: one Spark at a time on a laptop's cores.
        with tempfile.TemporaryDirectory(prefix="stocks-bench-e2e-") as tmp:
            for engine in wanted:
                print(f"end to end at 5 calls / 60 s on {engine} (about 2 minutes)...", file=sys.stderr)
                try:
                    end_to_end[engine] = bench_end_to_end(engine, Path(tmp))
                except RuntimeError as exc:  # delta-spark without its jars: say so, measure the rest
                    end_to_end[engine] = {"error": str(exc)}
    info = build_session("bench", master="local[*]")
    spark = info.spark
    engines: list[DeltaStorage] = [DeltaRsStorage(spark)]
    if session_has_delta(spark):
        engines.append(DeltaSparkStorage(spark))
    if args.engines != "all":
        engines = [e for e in engines if e.name == args.engines]
        if not engines:
            print(f"error: engine {args.engines} is not available in this session ({info.reason})", file=sys.stderr)
            return 2
    results: dict[str, Any] = {"engines": [e.name for e in engines], "repeat": args.repeat,
                               "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}, "
                                          f"Spark {spark.version}",
                               "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")}
    previous = out / "results.json"
    if args.only and previous.exists():
        results = {**json.loads(previous.read_text()), **{k: results[k] for k in ("engines", "repeat", "machine",
                                                                                   "started")}}
    if market_results:
        results["market"] = market_results
    if end_to_end:
        results["e2e"] = end_to_end
    if fetch_curve:
        results["concurrency"] = fetch_curve
    if backfills:
        results["backfill"] = backfills
    if daily_builds:
        results["daily"] = daily_builds
    with tempfile.TemporaryDirectory(prefix="stocks-bench-") as tmp:
        root = Path(tmp)
        if "fetch" in sections:
            print("fetch: 8 tickers through a real 5/min window (about a minute)...", file=sys.stderr)
            results["fetch"] = bench_fetch()
        if "broken_vs_fixed" in sections:
            results["broken_vs_fixed"] = {}
            for storage in engines:
                print(f"broken vs fixed harvester on {storage.name}...", file=sys.stderr)
                results["broken_vs_fixed"][storage.name] = bench_broken_vs_fixed(spark, storage, root / storage.name,
                                                                                  args.repeat)
        if "vacuum" in sections:
            results["vacuum"] = {}
            for storage in engines:
                print(f"VACUUM of 1,000 files on {storage.name}...", file=sys.stderr)
                results["vacuum"][storage.name] = bench_vacuum(spark, storage, root)
        if "layouts" in sections:
            layouts = []
            sizes = [("8 x 5", list(SMALL[0]), SMALL[1], SMALL[2], args.repeat),
                     (f"{args.large_tickers} x 20", synthetic_tickers(args.large_tickers), *LARGE_DAYS, 1)]
            for size, tickers, first, last, write_repeat in sizes:
                silver = synthetic_bars(spark, tickers, first, last).cache()
                silver.count()
                days = trading_days(first, last)
                for storage in engines:
                    print(f"layouts at {size} on {storage.name}...", file=sys.stderr)
                    names = ["partitioned by (ticker, trade_date)", "partitioned by trade_date + Z-ORDER(ticker)"]
                    if storage.supports_clustering:
                        names.append("liquid clustering (ticker, trade_date)")
                    if size == "8 x 5":
                        names.append("broken: (ticker, minute), all tickers")
                    for name in names:
                        slow = name.startswith("broken") and storage.name == "delta-spark"
                        row = measure_layout(storage, silver, root, size, name, tickers, days, args.repeat,
                                             1 if slow else write_repeat).__dict__
                        layouts.append({**row, "engine": storage.name})
                silver.unpersist()
            results["layouts"] = layouts
        if "scaling" in sections:
            print(f"end-to-end scaling on {engines[0].name}...", file=sys.stderr)
            results["scaling"] = bench_scaling(spark, engines[0], root, [int(x) for x in args.scaling.split(",")])
            results["scaling_engine"] = engines[0].name
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    charts(results, out)
    (out / "results.md").write_text(render(results))
    print(render(results))
    print(f"\nwritten: {out / 'results.md'}, {out / 'results.json'}, charts in {out}", file=sys.stderr)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench`'s market sections: the whole market from the daily flat files (issue #44), side by side in one run.

 10. one market day (the sample market: 11,000 tickers, ~2 M bars) through `fixed_stock_harvester.py --source
     flatfiles --universe market --layout by-date`, from the loopback S3 stand-in, beside a lean pipeline of the same
     file on the same engine: Arrow + delta-rs (GET the object, read the CSV, add `timestamp_ms` and `trade_date`,
     write Delta by trade_date) and PySpark + delta-spark (the same in Spark). Both run in one warm process, the
     session up, each on a fresh table and landing zone (so ours downloads the file too); then ours once more as a
     user runs it, its own process, for the wall time and the peak memory of the driver, the JVM and a worker.
 11. the cost curve in tickers a day: a market of 10, 100, 1,000 and 11,000 tickers (spread across the sample's
     liquidity, so each size has its share of busy and quiet names), one day through the flat files on each engine;
     the REST path (`--source sample`) at 10, 100 and 1,000 tickers for scale.
 12. five market days in one run against five runs of one day, each run its own process, on each engine.
 13. the layout crossover: a month (21 sessions) of 8, 500 and 11,000 tickers written a day a commit as
     (ticker, trade_date) partitions, by-date, and clustered (delta-spark only): files a day, one ticker's month
     queried (a Spark count through the port, so every layout is read the same way), and OPTIMIZE (Z-ORDER BY
     ticker for by-date; clustering for clustered; compaction for the partitions).

Each measured step runs in a process of its own (`python -m benchmarks.market --step ...`), so one Spark runs at a
time and nothing leaks from one into the next.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DAY = dt.date(2024, 1, 8)
WEEK = (dt.date(2024, 1, 8), dt.date(2024, 1, 12))
MONTH = (dt.date(2024, 1, 2), dt.date(2024, 1, 31))
CURVE = (10, 100, 1_000, 11_000)
REST_CURVE = (10, 100, 1_000)
CROSSOVER = (8, 500, 11_000)
WARM_RUNS = 2
# The targets of issue #44: a market day at most 3x the lean Arrow pipeline on delta-rs and 1.2x the lean PySpark
# one on delta-spark, with the driver under 2 GiB.
TARGET_RATIO = {"delta-rs": 3.0, "delta-spark": 1.2}
DRIVER_LIMIT_MIB = 2048


def spread(count: int) -> list[str]:
    """`count` symbols of the sample market, every k-th by liquidity: the eight themselves at 8."""
    from stockpipe import DEFAULT_TICKERS
    from stockpipe.sample.universe import market_symbols

    every = market_symbols()
    if count == len(DEFAULT_TICKERS):
        return list(DEFAULT_TICKERS)
    if count >= len(every):
        return list(every)
    step = len(every) / count
    return sorted({every[int(i * step)] for i in range(count)})


@contextlib.contextmanager
def stand_in(symbols: Sequence[str] | None) -> Iterator[str]:
    """The sample market's flat files on loopback, every file of the month made before any clock starts."""
    from stockpipe.market_calendar import trading_days
    from stockpipe.sample.flatfiles import day_file
    from stockpipe.sample.s3 import SampleFlatFilesServer

    for day in trading_days(*WEEK):
        day_file(day, symbols)
    with SampleFlatFilesServer(symbols) as server:
        yield server.url


def _env() -> dict[str, str]:
    return {**os.environ, "MASSIVE_S3_ACCESS_KEY_ID": "sample", "MASSIVE_S3_SECRET_ACCESS_KEY": "sample",
            "PYTHONPATH": str(REPO)}


def door(argv: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """The fixed harvester as a user runs it, its own process: wall, the phases of its summary, peak memory."""
    from benchmarks.bench import PeakMemory, _phase_seconds

    started = time.monotonic()
    process = subprocess.Popen([sys.executable, str(REPO / "fixed_stock_harvester.py"), *argv], env=env or _env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with PeakMemory(process.pid) as memory:
        stdout, stderr = process.communicate(timeout=3600)
    wall = time.monotonic() - started
    if process.returncode not in (0,):
        raise RuntimeError(f"fixed_stock_harvester.py {' '.join(argv)} exited {process.returncode}: "
                           f"{stderr.strip()[-400:]}")
    phases = _phase_seconds(stdout)
    return {"wall_s": wall, "phases": phases, "peak_kib": dict(memory.peaks),
            "after_start_s": sum(v for k, v in phases.items() if k not in ("spark start", "total"))}


def flat_argv(url: str, table: Path, engine: str, first: dt.date, last: dt.date) -> list[str]:
    return ["--source", "flatfiles", "--flatfiles-url", url, "--universe", "market", "--layout", "by-date",
            "--from", first.isoformat(), "--to", last.isoformat(), "--table-path", str(table), "--engine", engine]


def step(name: str, *args: str) -> dict[str, Any]:
    """A measuring step in a process of its own (one Spark at a time); it prints its result as JSON."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.market", "--step", name, *args], env=_env(),
                          capture_output=True, text=True, timeout=7200, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"step {name} failed ({done.returncode}): {done.stderr.strip()[-600:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# -- 10. a market day against lean pipelines ------------------------------------------------------------------------
def _lean_arrow(url: str, table: Path) -> None:
    import boto3
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    from deltalake import write_deltalake

    from stockpipe.sample.flatfiles import BUCKET, day_key

    client = boto3.client("s3", endpoint_url=url, aws_access_key_id="sample", aws_secret_access_key="sample",
                          region_name="us-east-1")
    body = client.get_object(Bucket=BUCKET, Key=day_key(DAY))["Body"].read()
    types = {"ticker": pa.string(), "volume": pa.float64(), "open": pa.float64(), "close": pa.float64(),
             "high": pa.float64(), "low": pa.float64(), "window_start": pa.int64(), "transactions": pa.int64()}
    rows = pacsv.read_csv(pa.CompressedInputStream(pa.BufferReader(body), "gzip"),
                          convert_options=pacsv.ConvertOptions(column_types=types))
    ms = pc.divide(rows.column("window_start"), 1_000_000)
    instants = pc.cast(ms, pa.timestamp("ms", tz="UTC")).cast(pa.timestamp("ms", tz="America/New_York"))
    local = pc.local_timestamp(instants)
    rows = rows.append_column("timestamp_ms", ms).append_column("trade_date", pc.cast(local, pa.date32()))
    write_deltalake(str(table), rows, partition_by=["trade_date"], mode="overwrite")


def _lean_spark(spark: Any, url: str, table: Path, scratch: Path) -> None:
    import boto3
    from pyspark.sql import functions as F

    from stockpipe.sample.flatfiles import BUCKET, day_key

    client = boto3.client("s3", endpoint_url=url, aws_access_key_id="sample", aws_secret_access_key="sample",
                          region_name="us-east-1")
    local = scratch / f"{DAY}.csv.gz"
    client.download_file(BUCKET, day_key(DAY), str(local))
    schema = ("ticker string, volume double, open double, close double, high double, low double, "
              "window_start long, transactions long")
    rows = spark.read.csv(str(local), header=True, schema=schema)
    rows = rows.withColumn("timestamp_ms", (F.col("window_start") / 1_000_000).cast("long"))
    rows = rows.withColumn("trade_date", F.to_date(F.from_utc_timestamp(F.timestamp_millis("timestamp_ms"),
                                                                       "America/New_York")))
    rows.write.format("delta").partitionBy("trade_date").mode("overwrite").save(str(table))


def warm_day(engine: str, url: str) -> dict[str, Any]:
    """Ours and the lean pipeline of the same engine, alternately, in one warm session: each once to warm up, then
    WARM_RUNS each; every run on a fresh table and landing zone."""
    import fixed_stock_harvester
    from stockpipe.session import build_session

    spark = build_session("bench-market", master="local[*]").spark  # the doors reuse it
    times: dict[str, list[float]] = {"lean": [], "ours": []}
    with tempfile.TemporaryDirectory(prefix="stocks-bench-market-") as tmp:
        root = Path(tmp)
        for run in range(WARM_RUNS + 1):
            for who in ("lean", "ours"):
                folder = root / f"{who}{run}"
                folder.mkdir()
                started = time.monotonic()
                if who == "ours":
                    said = io.StringIO()
                    with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
                        code = fixed_stock_harvester.main(flat_argv(url, folder / "stocks_fixed", engine, DAY, DAY))
                    if code != 0:
                        raise RuntimeError(f"the market day on {engine} exited {code}: {said.getvalue()[-800:]}")
                elif engine == "delta-rs":
                    _lean_arrow(url, folder / "lean")
                else:
                    _lean_spark(spark, url, folder / "lean", folder)
                if run:  # the first of each warms up
                    times[who].append(time.monotonic() - started)
                shutil.rmtree(folder, ignore_errors=True)
    lean, ours = statistics.median(times["lean"]), statistics.median(times["ours"])
    return {"engine": engine, "lean_s": lean, "ours_s": ours, "ratio": ours / lean, "runs": times,
            "target": TARGET_RATIO[engine]}


def bench_market_day(engines: Sequence[str], root: Path) -> list[dict[str, Any]]:
    results = []
    with stand_in(None) as url:
        for engine in engines:
            print(f"a market day on {engine}: ours beside the lean pipeline, warm...", file=sys.stderr)
            warm = step("warm-day", engine, url)
            print(f"a market day on {engine}: as a user runs it, its own process...", file=sys.stderr)
            cold = door(flat_argv(url, root / f"day-{engine}" / "stocks_fixed", engine, DAY, DAY))
            shutil.rmtree(root / f"day-{engine}", ignore_errors=True)
            results.append({**warm, "cold": cold})
    return results


# -- 11. the cost curve in tickers a day -----------------------------------------------------------------------------
def bench_curve(engines: Sequence[str], root: Path) -> list[dict[str, Any]]:
    rows = []
    for count in CURVE:
        symbols = spread(count)
        with stand_in(symbols) as url:
            for engine in engines:
                print(f"cost curve: {count:,} tickers through the flat files on {engine}...", file=sys.stderr)
                ran = door(flat_argv(url, root / f"curve-{engine}-{count}" / "stocks_fixed", engine, DAY, DAY))
                rows.append({"tickers": count, "path": "flat files", "engine": engine, **ran})
                shutil.rmtree(root / f"curve-{engine}-{count}", ignore_errors=True)
        if count in REST_CURVE:
            listed = root / f"tickers-{count}.txt"
            listed.write_text("\n".join(symbols) + "\n")
            print(f"cost curve: {count:,} tickers through the REST path (sample) on delta-rs...", file=sys.stderr)
            ran = door(["--source", "sample", "--tickers", f"@{listed}", "--from", DAY.isoformat(), "--to",
                        DAY.isoformat(), "--table-path", str(root / f"rest-{count}" / "stocks_fixed"),
                        "--engine", "delta-rs", "--layout", "by-date"])
            rows.append({"tickers": count, "path": "REST (sample)", "engine": "delta-rs", **ran})
            shutil.rmtree(root / f"rest-{count}", ignore_errors=True)
    return rows


# -- 12. five days in one run against five runs ---------------------------------------------------------------------
def bench_week(engines: Sequence[str], root: Path) -> list[dict[str, Any]]:
    from stockpipe.market_calendar import trading_days

    rows = []
    with stand_in(None) as url:
        for engine in engines:
            print(f"five market days in one run on {engine}...", file=sys.stderr)
            one = door(flat_argv(url, root / f"week-{engine}" / "stocks_fixed", engine, *WEEK))
            shutil.rmtree(root / f"week-{engine}", ignore_errors=True)
            print(f"five runs of one market day on {engine}...", file=sys.stderr)
            each = [door(flat_argv(url, root / f"days-{engine}" / "stocks_fixed", engine, day, day))
                    for day in trading_days(*WEEK)]
            shutil.rmtree(root / f"days-{engine}", ignore_errors=True)
            rows.append({"engine": engine, "one_run": one, "five_runs_wall_s": sum(r["wall_s"] for r in each),
                         "five_runs_after_start_s": sum(r["after_start_s"] for r in each)})
    return rows


# -- 13. the layout crossover ---------------------------------------------------------------------------------------
def crossover(with_delta_spark: bool) -> dict[str, Any]:
    """A month of each size in each layout, a day a commit; then the query and OPTIMIZE of each (see the module)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from stockpipe.flatfiles.arrow import SILVER, prepare_day
    from stockpipe.flatfiles.rows import numpy_rows
    from stockpipe.flatfiles.zone import LandedFile
    from stockpipe.layout import BY_DATE, CLUSTERED, PARTITIONED, Layout
    from stockpipe.market_calendar import trading_days
    from stockpipe.sample.flatfiles import day_file
    from stockpipe.session import build_session
    from stockpipe.storage import DeltaStorage, RowFilter
    from stockpipe.storage.delta_rs import DeltaRsStorage
    from stockpipe.storage.delta_spark import DeltaSparkStorage
    from stockpipe.transforms import SILVER_SCHEMA

    spark = build_session("bench-crossover", master="local[*]").spark
    delta_rs = DeltaRsStorage(spark)
    plans: list[tuple[Layout, DeltaStorage]] = [(PARTITIONED, delta_rs), (BY_DATE, delta_rs)]
    if with_delta_spark:
        plans.append((CLUSTERED, DeltaSparkStorage(spark)))
    days = trading_days(*MONTH)
    sizes = {count: spread(count) for count in CROSSOVER}
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="stocks-bench-crossover-") as tmp:
        root = Path(tmp)
        tables = {(count, layout.name): root / f"{layout.name}-{count}" for count in CROSSOVER for layout, _ in plans}
        write_s = dict.fromkeys(tables, 0.0)
        for (_, name), path in tables.items():
            layout, storage = next((lay, sto) for lay, sto in plans if lay.name == name)
            storage.create_if_missing(str(path), SILVER_SCHEMA, partition_by=layout.partition_by,
                                      cluster_by=layout.cluster_by)
        for day in days:
            print(f"crossover: {day} into {len(tables)} tables...", file=sys.stderr)
            file = day_file(day)
            landed = LandedFile(day, file, file.name, "bench", file.stat().st_size, dt.datetime.now(dt.UTC))
            whole = prepare_day(numpy_rows(landed, None), "bench", "sample").rows
            for count, symbols in sizes.items():
                rows = whole if count >= 11_000 else whole.filter(pc.is_in(whole.column("ticker"),
                                                                           pa.array(symbols)))
                for layout, storage in plans:
                    started = time.monotonic()
                    storage.write_batches(rows.to_batches(max_chunksize=1 << 20), SILVER, str(tables[(count,
                                          layout.name)]), mode="append", partition_by=layout.partition_by)
                    write_s[(count, layout.name)] += time.monotonic() - started
            del whole
        for (count, name), path in tables.items():
            layout, storage = next((lay, sto) for lay, sto in plans if lay.name == name)
            ticker = "AAPL" if "AAPL" in sizes[count] else sizes[count][0]
            files = storage.detail(str(path)).num_files
            where = RowFilter.of(ticker=[ticker], trade_date=days)
            queries = []
            for _ in range(3):
                started = time.monotonic()
                rows_read = storage.read(str(path), where).count()
                queries.append(time.monotonic() - started)
            print(f"crossover: OPTIMIZE {name} at {count:,}...", file=sys.stderr)
            started = time.monotonic()
            storage.optimize(str(path), zorder_by=("ticker",) if layout is BY_DATE else ())
            optimize_s = time.monotonic() - started
            after = storage.detail(str(path)).num_files
            started = time.monotonic()
            storage.read(str(path), where).count()
            query_after = time.monotonic() - started
            results.append({"tickers": count, "layout": name, "engine": storage.name, "days": len(days),
                            "files": files, "files_a_day": files / len(days), "bytes": storage.detail(str(path))
                            .size_bytes, "write_s": write_s[(count, name)], "query_s": statistics.median(queries),
                            "rows": rows_read, "optimize_s": optimize_s, "files_after": after,
                            "query_after_s": query_after})
            shutil.rmtree(path, ignore_errors=True)
    return {"rows": results, "month": [str(MONTH[0]), str(MONTH[1])]}


# -- the whole of it, and its page ------------------------------------------------------------------------------------
def bench_market(engines: Sequence[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="stocks-bench-market-") as tmp:
        root = Path(tmp)
        day = bench_market_day(engines, root)
        curve = bench_curve(engines, root)
        week = bench_week(engines, root)
    print("the layout crossover: a month at 8, 500 and 11,000 tickers (about 15 minutes)...", file=sys.stderr)
    layouts = step("crossover", "delta-spark" if "delta-spark" in engines else "delta-rs")
    return {"day": day, "curve": curve, "week": week, "crossover": layouts}


def _s(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def render(market: dict[str, Any]) -> list[str]:
    from benchmarks.bench import _md_table

    md = ["## 10. One market day: 11,000 tickers, ~2 M bars, from the loopback S3 stand-in\n",
          "Warm (the session up, medians of 2 after one to warm up; each run downloads the file into a fresh "
          "landing zone and writes a fresh table), then ours as a user runs it (its own process, cold).\n"]
    rows = []
    for r in market["day"]:
        cold = r["cold"]
        peaks = cold["peak_kib"]
        rows.append([r["engine"], _s(r["lean_s"], 2), _s(r["ours_s"], 2), f"{r['ratio']:.2f}x (target "
                     f"{r['target']}x)", _s(cold["wall_s"]), _s(cold["phases"].get("spark start")),
                     f"{peaks['driver'] / 1024:,.0f}", f"{peaks['jvm'] / 1024:,.0f}", f"{peaks['worker'] / 1024:,.0f}"])
    md += [_md_table(["engine", "lean s", "ours s", "ours / lean", "cold wall s", "of it Spark start s",
                      "driver MiB", "JVM MiB", "largest worker MiB"], rows), ""]
    md += ["## 11. Cost curve in tickers a day (one day, its own process each)\n",
           "`after start` is the run less the session's start; the REST path fetches each ticker's minutes from the "
           "loopback sample API, unpaced. Picture: market_curve.png.\n"]
    rows = [[f"{r['tickers']:,}", r["path"], r["engine"], _s(r["wall_s"]), _s(r["after_start_s"]),
             f"{r['after_start_s'] / r['tickers'] * 1000:,.2f}", f"{r['peak_kib']['driver'] / 1024:,.0f}"]
            for r in market["curve"]]
    md += [_md_table(["tickers", "path", "engine", "wall s", "after start s", "ms a ticker", "driver MiB"], rows), ""]
    md += ["## 12. Five market days: one run against five runs of one day (each run its own process)\n"]
    rows = [[r["engine"], _s(r["one_run"]["wall_s"]), _s(r["five_runs_wall_s"]), _s(r["one_run"]["after_start_s"]),
             _s(r["five_runs_after_start_s"]), f"{r['one_run']['peak_kib']['driver'] / 1024:,.0f}"]
            for r in market["week"]]
    md += [_md_table(["engine", "one run s", "five runs s", "one run after start s", "five runs after start s",
                      "one run driver MiB"], rows), ""]
    layouts = market["crossover"]
    md += [f"## 13. Layout crossover: a month ({layouts['month'][0]} to {layouts['month'][1]}, a day a commit)\n",
           "One ticker's month is a Spark count through the port (files skipped by partition values or statistics); "
           "OPTIMIZE is compaction for the partitions, Z-ORDER BY ticker for by-date, clustering for clustered.\n"]
    rows = [[f"{r['tickers']:,}", r["layout"], r["engine"], _s(r["files_a_day"]), f"{r['files']:,}",
             _s(r["write_s"]), _s(r["query_s"], 2), _s(r["optimize_s"]), f"{r['files_after']:,}",
             _s(r["query_after_s"], 2)] for r in layouts["rows"]]
    md += [_md_table(["tickers", "layout", "engine", "files a day", "files", "write s (month)",
                      "one ticker's month s", "OPTIMIZE s", "files after", "query after s"], rows), ""]
    return md


def chart(market: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7.5, 4.5))
    for (path, engine), style in (((("flat files", "delta-rs")), "o-"), (("flat files", "delta-spark"), "s-"),
                                  (("REST (sample)", "delta-rs"), "^--")):
        points = [(r["tickers"], r["after_start_s"]) for r in market["curve"]
                  if r["path"] == path and r["engine"] == engine]
        if points:
            axes.plot(*zip(*points, strict=True), style, label=f"{path}, {engine}")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("tickers a day")
    axes.set_ylabel("seconds for the day (session start excluded)")
    axes.set_title("One day's cost as the universe grows")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(out / "market_curve.png", dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--step", choices=("warm-day", "crossover"), required=True)
    parser.add_argument("args", nargs="*")
    args = parser.parse_args(argv)
    from stockpipe.cli import setup_logging

    setup_logging(False)
    if args.step == "warm-day":
        engine, url = args.args
        result = warm_day(engine, url)
    else:
        result = crossover(args.args[:1] == ["delta-spark"])
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The dashboard's whole-market Market view over a year of the whole market: how long it takes to open.

A synthetic market (numpy random data, heavy-tailed liquidity: most names trade little, a few trade billions a day;
a share of penny stocks; a few 2-for-1 splits and late listings) written with delta-rs as `stocks_market_daily`
(partitioned by trade_date, each day's file sorted by ticker) and `stocks_market_breadth`, in the schemas of issue
#45's spec. Then it times the loaders the view calls (the stored days from the log, one day's rows, the breadth
table, one ticker's history), cold (a fresh process's first call, what Streamlit's cache misses) and warm, and once
in the real browser (`python dashboard.py` on a loopback port, Debian's chromium through playwright): navigation to the
first render of the movers chart.

    python -m benchmarks.dashboard_market                       # 11,000 tickers x 252 sessions (2.8 M rows)
    python -m benchmarks.dashboard_market --tickers 3000 --base /tmp/market --shot /tmp/market.png   # kept there
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from benchmarks.streamlit_server import streamlit_server

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHART = "[data-testid='stVegaLiteChart'] canvas, [data-testid='stVegaLiteChart'] svg"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
LAST_DAY = dt.date(2024, 12, 31)
# One year of NYSE sessions, and 52 weeks of them: the window of the 52-week high and low.
YEAR = 252
WINDOW = 252
# The spec's schemas (issue #45): the tables stockpipe/breadth.py derives from stocks_official_daily.
MARKET_DAILY_SCHEMA = pa.schema([
    ("ticker", pa.string()), ("trade_date", pa.date32()), ("close", pa.float64()), ("volume", pa.float64()),
    ("dollar_volume", pa.float64()), ("split_factor", pa.float64()), ("adj_close", pa.float64()),
    ("daily_return", pa.float64()), ("high_52w", pa.float64()), ("low_52w", pa.float64()),
    ("new_high", pa.bool_()), ("new_low", pa.bool_()),
])
BREADTH_SCHEMA = pa.schema([
    ("trade_date", pa.date32()), ("tickers", pa.int64()), ("advancers", pa.int64()), ("decliners", pa.int64()),
    ("unchanged", pa.int64()), ("new_highs", pa.int64()), ("new_lows", pa.int64()),
    ("with_52w_history", pa.int64()),
])


def sessions(count: int, last: dt.date = LAST_DAY) -> list[dt.date]:
    """The `count` NYSE sessions that end on (or before) `last`."""
    from stockpipe.market_calendar import trading_days

    days = trading_days(last - dt.timedelta(days=2 * count + 30), last)
    return days[-count:]


def symbols(count: int, rng: np.random.Generator) -> list[str]:
    """`count` distinct ticker-like symbols of one to five letters, sorted."""
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    found: set[str] = set()
    while len(found) < count:
        lengths = rng.choice([1, 2, 3, 4, 5], size=count, p=[0.005, 0.03, 0.3, 0.6, 0.065])
        for length in lengths:
            found.add("".join(rng.choice(letters, size=length)))
            if len(found) == count:
                break
    return sorted(found)


def market_daily(tickers: int, days: int, seed: int = 45) -> pa.Table:
    """`stocks_market_daily` for a synthetic market of `tickers` names over the last `days` sessions, rows in
    (trade_date, ticker) order. Prices and volumes are heavy-tailed (lognormal price around $20 with a share of penny
    stocks; lognormal dollar volume around $2 M, from a few thousand dollars to billions); daily returns are
    Student-t, wilder for small names. Every 10th name lists later in the year (its first day has no return); one in
    200 splits 2-for-1 mid-year. 52-week figures only where the name's history reaches 251 sessions back."""
    rng = np.random.default_rng(seed)
    names = np.array(symbols(tickers, rng))
    dates = sessions(days)
    price0 = np.exp(rng.normal(np.log(20.0), 1.4, tickers))
    liquidity = np.exp(rng.normal(np.log(2e6), 2.0, tickers)).clip(None, 2e10)  # typical dollar volume a day
    vol = np.clip(0.35 / np.log10(liquidity).clip(3, None) * rng.uniform(0.6, 1.4, tickers), 0.005, 0.25)
    returns = rng.standard_t(4, size=(days, tickers)) * vol / np.sqrt(2.0)
    returns = returns.clip(-0.9, 3.0)
    # Prices rounded to the cent: a share of each day's names close unchanged, as penny stocks do.
    adj = np.round(price0 * np.cumprod(1.0 + returns, axis=0), 2).clip(0.01, None)
    spread = np.abs(rng.normal(0, 0.6, (days, tickers))) * vol
    adj_high, adj_low = adj * (1.0 + spread), adj / (1.0 + spread)
    start = np.where(np.arange(tickers) % 10 == 3, rng.integers(1, max(days - 5, 2), tickers), 0)
    present = np.arange(days)[:, None] >= start[None, :]
    factor = np.ones((days, tickers))
    splitting = np.flatnonzero(np.arange(tickers) % 200 == 7)
    for column in splitting:  # as traded: twice the adjusted price before the split
        factor[: days // 2, column] = 2.0
    close = adj * factor
    volume = np.round(liquidity * np.exp(rng.normal(0, 0.5, (days, tickers))) / close).clip(100, None)
    previous = np.vstack([np.full((1, tickers), np.nan), adj[:-1]])
    daily_return = np.where(present & (np.arange(days)[:, None] > start[None, :]), adj / previous - 1.0, np.nan)
    high_52w, low_52w, new_high, new_low = extremes(adj_high, adj_low, start)
    rows = present.ravel()  # day-major: (trade_date, ticker) order, each day's names sorted
    columns = {
        "ticker": np.tile(names, days)[rows],
        "trade_date": np.repeat(np.array(dates, dtype="datetime64[D]"), tickers)[rows],
        "close": close.ravel()[rows], "volume": volume.ravel()[rows],
        "dollar_volume": (close * volume).ravel()[rows], "split_factor": factor.ravel()[rows],
        "adj_close": adj.ravel()[rows], "daily_return": daily_return.ravel()[rows],
        "high_52w": high_52w.ravel()[rows], "low_52w": low_52w.ravel()[rows],
        "new_high": new_high.ravel()[rows], "new_low": new_low.ravel()[rows],
    }
    arrays = []
    for field in MARKET_DAILY_SCHEMA:
        values = columns[field.name]
        if field.name in ("daily_return", "high_52w", "low_52w", "new_high", "new_low"):
            mask = ~np.isfinite(values.astype("float64"))
            arrays.append(pa.array(np.where(mask, 0, values).astype(field.type.to_pandas_dtype()), type=field.type,
                                   mask=mask))
        else:
            arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=MARKET_DAILY_SCHEMA)


def extremes(high: np.ndarray, low: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, ...]:
    """The 52-week high and low (the day and the 251 sessions before it) and whether the day set a new one, NaN
    where the name's history does not reach 251 sessions back. new_high/new_low come as 1.0/0.0/NaN."""
    days, tickers = high.shape
    high_52w, low_52w = np.full((days, tickers), np.nan), np.full((days, tickers), np.nan)
    new_high, new_low = np.full((days, tickers), np.nan), np.full((days, tickers), np.nan)
    for day in range(WINDOW - 1, days):
        reaches = start <= day - (WINDOW - 1)
        before_high = high[day - WINDOW + 1: day].max(axis=0)
        before_low = low[day - WINDOW + 1: day].min(axis=0)
        high_52w[day] = np.where(reaches, np.maximum(before_high, high[day]), np.nan)
        low_52w[day] = np.where(reaches, np.minimum(before_low, low[day]), np.nan)
        new_high[day] = np.where(reaches, (high[day] > before_high).astype(float), np.nan)
        new_low[day] = np.where(reaches, (low[day] < before_low).astype(float), np.nan)
    return high_52w, low_52w, new_high, new_low


def breadth(daily: pa.Table) -> pa.Table:
    """`stocks_market_breadth` of a `stocks_market_daily` table: one row a day."""
    returns = daily.column("daily_return")
    flags = pa.table({
        "trade_date": daily.column("trade_date"),
        "one": pa.array(np.ones(daily.num_rows, dtype="int64")),
        "up": pc.cast(pc.fill_null(pc.greater(returns, 0), False), pa.int64()),
        "down": pc.cast(pc.fill_null(pc.less(returns, 0), False), pa.int64()),
        "flat": pc.cast(pc.fill_null(pc.equal(returns, 0), False), pa.int64()),
        "high": pc.cast(pc.fill_null(daily.column("new_high"), False), pa.int64()),
        "low": pc.cast(pc.fill_null(daily.column("new_low"), False), pa.int64()),
        "history": pc.cast(pc.is_valid(daily.column("high_52w")), pa.int64()),
    })
    summed = flags.group_by("trade_date").aggregate([(c, "sum") for c in flags.column_names[1:]])
    named = pa.table({
        "trade_date": summed.column("trade_date"), "tickers": summed.column("one_sum"),
        "advancers": summed.column("up_sum"), "decliners": summed.column("down_sum"),
        "unchanged": summed.column("flat_sum"), "new_highs": summed.column("high_sum"),
        "new_lows": summed.column("low_sum"), "with_52w_history": summed.column("history_sum"),
    }, schema=BREADTH_SCHEMA)
    return named.sort_by("trade_date")


def write_market(base: Path, daily: pa.Table, market_breadth: pa.Table | None = None, *,
                 commit_per_day: bool = False) -> None:
    """Both tables under `base`, as the pipeline lays them out: the daily rows partitioned by trade_date (one file a
    day, sorted by ticker), the breadth table in one file. `commit_per_day`: one commit a day, the log of a table
    filled a night at a time (252 commits and their checkpoints), instead of one commit."""
    from deltalake import write_deltalake

    ordered = daily.sort_by([("trade_date", "ascending"), ("ticker", "ascending")])
    path = str(base / "stocks_market_daily")
    if commit_per_day:
        for day in pc.unique(ordered.column("trade_date")).to_pylist():
            write_deltalake(path, ordered.filter(pc.equal(ordered.column("trade_date"), pa.scalar(day, pa.date32()))),
                            partition_by=["trade_date"], mode="append")
    else:
        write_deltalake(path, ordered, partition_by=["trade_date"], mode="overwrite")
    write_deltalake(str(base / "stocks_market_breadth"),
                    market_breadth if market_breadth is not None else breadth(ordered), mode="overwrite")


def load_dashboard() -> ModuleType:
    """dashboard.py's functions, without drawing the page (its `main()` runs in a run of the page only)."""
    spec = importlib.util.spec_from_file_location("dashboard_for_bench", REPO / "dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Timings:
    rows: int
    days: int
    cold: dict[str, float]
    warm: dict[str, float]
    browser: BrowserTimes | None
    empty_page: BrowserTimes | None  # the same page over no table: what Streamlit and the browser cost anyway


def time_loaders(base: Path, ticker: str) -> tuple[dict[str, float], dict[str, float]]:
    """Each loader the view calls on open (and the search's), cold in this process (nothing cached) and warm
    (Streamlit's cache hit), in seconds. Run in a fresh process for a true cold start."""
    board = load_dashboard()
    cold: dict[str, float] = {}
    warm: dict[str, float] = {}
    for label in ("cold", "warm"):
        found = cold if label == "cold" else warm
        started = time.perf_counter()
        daily = board.open_table(base / board.MARKET_DAILY_TABLE)  # the page opens each table on every redraw
        market_breadth = board.open_table(base / board.BREADTH_TABLE)
        found["open both tables (log)"] = time.perf_counter() - started
        started = time.perf_counter()
        days = board.market_days(str(base), daily.version())
        found["stored days (log)"] = time.perf_counter() - started
        started = time.perf_counter()
        bars = board.market_day(str(base), daily.version(), days[-1])
        found["the latest day"] = time.perf_counter() - started
        started = time.perf_counter()
        board.market_breadth(str(base), market_breadth.version())
        found["breadth"] = time.perf_counter() - started
        started = time.perf_counter()
        board.eligible_movers(bars, board.MIN_PRICE, board.DOLLAR_VOLUME_FLOORS[board.DEFAULT_FLOOR])
        bars.nlargest(board.LEADERS, "dollar_volume")
        found["rank movers, most active"] = time.perf_counter() - started
        found["view on open"] = sum(found.values())
        started = time.perf_counter()
        board.ticker_history(str(base), daily.version(), ticker, None)
        found["search: one ticker's year"] = time.perf_counter() - started
    return cold, warm


@dataclass(frozen=True)
class BrowserTimes:
    """Seconds from navigation to the view drawn: on a server just started (its imports, Streamlit's cache empty,
    the browser's download of Streamlit's scripts), the same visitor opening it again, and a new visitor (a fresh
    browser context: no cached scripts) on the running server."""

    cold: float
    again: list[float]
    new_visitor: float


def time_browser(base: Path, loads: int, shot: Path | None = None, width: int = 1280,
                 search: str | None = None, ready: tuple[str, ...] = (CHART, "text=Gainers")) -> BrowserTimes:
    """Navigation to the movers chart drawn (`ready`) in the real browser on one server: cold, `loads - 1` times
    again, once by a new visitor. `shot`: a full-page screenshot of the view, with `search` typed in its search
    box."""
    from playwright.sync_api import sync_playwright

    with streamlit_server(base) as address, sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            def opened(page: Any) -> float:
                started = time.monotonic()
                page.goto(address, timeout=120_000)
                for selector in ready:
                    page.wait_for_selector(selector, timeout=120_000)
                return time.monotonic() - started

            def visitor() -> Any:
                return browser.new_context(viewport={"width": width, "height": 1100}).new_page()

            page = visitor()
            cold = opened(page)
            again = [opened(page) for _ in range(max(1, loads - 1))]
            new_visitor = opened(visitor())
            if shot is not None:  # the whole view: Streamlit scrolls inside its page, so a window as tall
                if search:
                    box = page.locator("input[aria-label='Ticker']")
                    box.fill(search)
                    box.press("Enter")
                    page.wait_for_selector(f"text={search} close on", timeout=60_000)
                page.set_viewport_size({"width": width, "height": 3600})
                page.wait_for_timeout(2500)  # the other charts finish drawing
                page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    return BrowserTimes(cold, again, new_visitor)


def measure(tickers: int = 11_000, days: int = YEAR, base: Path | None = None, loads: int = 3,
            shot: Path | None = None, browser: bool = True) -> Timings:
    """Build the market under `base` (a temporary folder when None, removed after), time the loaders in a fresh
    process, and the browser's first render of the movers."""
    own = base is None
    folder = Path(tempfile.mkdtemp(prefix="dashboard-market-")) if base is None else base
    try:
        started = time.perf_counter()
        daily = market_daily(tickers, days)
        if (folder / "stocks_market_daily").exists():
            shutil.rmtree(folder / "stocks_market_daily")
        write_market(folder, daily, commit_per_day=True)
        print(f"built {daily.num_rows:,} rows ({tickers:,} tickers x {days} sessions, a commit a day) in "
              f"{time.perf_counter() - started:.1f} s under {folder}", flush=True)
        # A ticker that split 2-for-1 mid-year: its search shows split-adjusted closes.
        ticker = str(daily.filter(pc.equal(daily.column("split_factor"), 2.0)).column("ticker")[0])
        answer = subprocess.run([sys.executable, "-m", "benchmarks.dashboard_market", "--loaders-only",
                                 "--base", str(folder), "--ticker", ticker], cwd=REPO,
                                capture_output=True, text=True)
        if answer.returncode != 0:
            raise RuntimeError(f"timing the loaders failed:\n{answer.stderr}")
        cold: dict[str, float] = {}
        warm: dict[str, float] = {}
        for line in answer.stdout.splitlines():
            if line.count("\t") != 2:  # Streamlit's warnings, outside a page
                continue
            kind, name, seconds = line.split("\t")
            (cold if kind == "cold" else warm)[name] = float(seconds)
        times = time_browser(folder, loads, shot, search=ticker) if browser else None
        empty = None
        if browser:
            with tempfile.TemporaryDirectory(prefix="dashboard-empty-") as nothing:
                empty = time_browser(Path(nothing), loads, ready=("text=make demo",))
        return Timings(daily.num_rows, days, cold, warm, times, empty)
    finally:
        if own:
            shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickers", type=int, default=11_000)
    parser.add_argument("--days", type=int, default=YEAR)
    parser.add_argument("--base", type=Path, default=None,
                        help="build the tables here, and keep them [a temporary folder, removed after]")
    parser.add_argument("--loads", type=int, default=3, help="page loads to time in the browser")
    parser.add_argument("--shot", type=Path, default=None, help="a full-page screenshot of the Market view")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--loaders-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ticker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.loaders_only:  # the child process: the loaders over an existing base, cold then warm
        cold, warm = time_loaders(args.base, args.ticker)
        for kind, found in (("cold", cold), ("warm", warm)):
            for name, seconds in found.items():
                print(f"{kind}\t{name}\t{seconds:.4f}")
        return 0
    timings = measure(args.tickers, args.days, args.base, args.loads, args.shot, not args.no_browser)
    print(f"{'loader':<28}{'cold s':>9}{'warm s':>9}")
    for name in timings.cold:
        print(f"{name:<28}{timings.cold[name]:>9.3f}{timings.warm[name]:>9.4f}")
    for label, shown in (("the Market view, navigation to the movers chart drawn", timings.browser),
                         ("the same page over no table (Streamlit's and the browser's own cost)", timings.empty_page)):
        if shown is not None:
            print(f"{label}: {shown.cold:.2f} s on a server just started, {statistics.median(shown.again):.2f} s "
                  f"opened again (median of {len(shown.again)}), {shown.new_visitor:.2f} s for a new visitor")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shared helpers for end-to-end tests: run a door in-process (same Spark session), read a table back through the
engine under test."""

from __future__ import annotations

import datetime as dt
import functools
import re
import socket
from collections import defaultdict
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from stockpipe.market_calendar import NEW_YORK, trading_days
from stockpipe.sample import range_bars
from stockpipe.storage import DeltaStorage

ROOT = Path(__file__).resolve().parents[1]
# A scenario whose code branches by engine runs on both (see conftest.pytest_generate_tests).
BOTH_ENGINES = pytest.mark.engines("delta-rs", "delta-spark")
DELTA_SPARK_ONLY = pytest.mark.engines("delta-spark")
EIGHT = "AAPL,MSFT,GOOGL,AMZN,TSLA,META,NVDA,JPM"
MONDAY, FRIDAY = dt.date(2024, 1, 8), dt.date(2024, 1, 12)
TRIO = ("AAPL", "MSFT", "NVDA")
KEY = "secret-key-for-tests-9f86d081884c7d65"


def closed_port_url() -> str:
    """A loopback URL nothing listens on: the port is bound, read and closed, so connecting is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class FakeClock:
    """Injected time for pacing and backoff: sleeping advances it instantly."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
WEEK = ["--from", "2024-01-08", "--to", "2024-01-12"]


def run_door(module, argv: list[str], capsys) -> tuple[int, str, str]:
    code = module.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


STORED_COLUMNS = ("ticker", "timestamp_ms", "trade_ts", "trade_date", "market_session", "open", "high", "low",
                  "close", "volume", "vwap", "num_transactions")


def table_rows(storage: DeltaStorage, path: str | Path) -> list[tuple]:
    """Every stored column of every row (ingested_at aside: it is the fetch's time, not the market's), trade_ts as
    epoch microseconds so the session's time zone cannot change what is compared."""
    frame = storage.read(str(path)).withColumn("trade_ts", F.unix_micros("trade_ts"))
    return sorted(tuple(r) for r in frame.select(*STORED_COLUMNS).collect())


@functools.lru_cache(maxsize=1)
def _nyse():
    import exchange_calendars

    return exchange_calendars.get_calendar("XNYS", start="2000-01-03")


def expected_session(ms: int) -> str:
    """pre / regular / post for a bar starting at `ms`, from the exchange's own calendar and New York wall time,
    without the pipeline's code: the bar stamped at the close holds the closing auction, so it is regular."""
    local = dt.datetime.fromtimestamp(ms / 1000, NEW_YORK)
    close = _nyse().session_close(local.date().isoformat()).tz_convert(NEW_YORK).time()
    if local.time() < dt.time(9, 30):
        return "pre"
    return "regular" if local.time() <= close else "post"


def expected_rows(tickers: list[str], date_from: dt.date, date_to: dt.date) -> list[tuple]:
    """What the sample source holds for these tickers and New York days, as the table must store it: every bar
    exactly once, every column, the time columns worked out here from the epoch milliseconds alone."""
    rows = []
    for ticker in tickers:
        columns = range_bars(ticker, date_from, date_to)
        for i, t in enumerate(columns["t"].tolist()):
            missing = bool(columns["optional_missing"][i])
            rows.append((
                ticker, t, t * 1000, dt.datetime.fromtimestamp(t / 1000, NEW_YORK).date(), expected_session(t),
                float(columns["o"][i]), float(columns["h"][i]), float(columns["l"][i]), float(columns["c"][i]),
                float(columns["v"][i]), None if missing else float(columns["vw"][i]),
                None if missing else int(columns["n"][i]),
            ))
    return sorted(rows)


def live_files_by_partition(storage: DeltaStorage, path: str | Path) -> dict[tuple[str, str], set[str]]:
    files: dict[tuple[str, str], set[str]] = defaultdict(set)
    for info in storage.detail(str(path)).files:
        files[(info.partition["ticker"], info.partition["trade_date"])].add(Path(info.path).name)
    return dict(files)


def days(date_from: str, date_to: str) -> list[dt.date]:
    return trading_days(dt.date.fromisoformat(date_from), dt.date.fromisoformat(date_to))


def harvest(storage, path, server, clock, *, tickers=("AAPL", "MSFT"), date_from="2024-01-08", date_to="2024-01-12",
            refetch=False, today=None, max_attempts=8, read_timeout=30.0, layout="partitioned"):
    """run_fixed on the engine under test against a test server with an injected clock: retries and pacing cost no
    real time."""
    from stockpipe.config import HarvestConfig
    from stockpipe.harvest import run_fixed
    from stockpipe.landing import default_landing_path
    from stockpipe.layout import LAYOUTS

    cfg = HarvestConfig(
        tickers=tuple(tickers), date_from=dt.date.fromisoformat(date_from), date_to=dt.date.fromisoformat(date_to),
        table_path=str(path), landing_path=default_landing_path(str(path)), source="api", base_url=server.base_url,
        api_key=server.api_key or "k", calls_per_minute=5, refetch=refetch, show_progress=False, today=today,
        max_attempts=max_attempts, read_timeout=read_timeout, clock=clock, sleep=clock.sleep, layout=LAYOUTS[layout],
    )
    return run_fixed(cfg, lambda: (storage.spark, storage))


def every_bar_once(storage: DeltaStorage, path: str | Path, tickers: tuple[str, ...] = TRIO) -> bool:
    return table_rows(storage, path) == expected_rows(list(tickers), MONDAY, FRIDAY)


def aggs_calls(server) -> list:
    """The calls a test server answered for minute bars (reference data and official daily bars counted apart)."""
    return [entry for entry in server.log if entry.path.startswith("/v2/aggs/ticker/") and "/range/1/minute/" in
            entry.path]


def reference_calls(server) -> list:
    """Every call beside the minute bars: splits, dividends, official daily bars (grouped or ranged)."""
    return [entry for entry in server.log if entry not in aggs_calls(server)]


def splits_calls(server) -> list:
    return [entry for entry in server.log if entry.path == "/v3/reference/splits"]


def summary_rows(out: str) -> dict[str, dict[str, str]]:
    """The harvester's end summary as {ticker: {column: cell}}: columns are found by the header, not by position,
    so a new column does not silently shift what a test reads."""
    lines = out.splitlines()
    start = lines.index("Summary")
    header = re.split(r"\s{2,}", lines[start + 1].strip())
    rows: dict[str, dict[str, str]] = {}
    for line in lines[start + 3:]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows

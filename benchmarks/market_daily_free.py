"""market_daily.py on the free key, for real: eight trading days of the whole sample market through a loopback API
that enforces 5 calls a rolling minute in real time, as the provider does, then the same run again.

    python -m benchmarks.market_daily_free [--engine delta-rs|delta-spark] [--days 8]

Prints the calls made, the seconds taken against the floor those calls allow at 5 a minute (the first five at once,
each next five a minute later), the seconds spent storing answers against the seconds spent waiting for the next
call, and the second run's calls (none expected). The derived tables are built as the door builds them (after the
last call) unless --no-derive. Takes a little over a minute.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path
from typing import Any

import databricks_utils as du
import market_daily
import stockpipe.marketdaily as marketdaily
from stockpipe.config import HarvestConfig
from stockpipe.landing import default_landing_path
from stockpipe.market_calendar import trading_days
from stockpipe.marketdaily import MarketDailyConfig, run_market_daily
from stockpipe.storage import EngineName, choose_engine
from stockpipe.testing import ApiBehaviour, FakeMassiveServer

FREE_CALLS_PER_MINUTE = 5


def floor_seconds(calls: int, per_minute: int = FREE_CALLS_PER_MINUTE) -> float:
    """The least time `calls` take under a rolling window of `per_minute` calls a minute."""
    return 60.0 * max(0, (calls - 1) // per_minute)


def bench(engine: EngineName, days: int, derive: bool = True) -> dict[str, Any]:
    spark = du.get_spark("bench-market-daily", want_delta_spark=engine != "delta-rs")
    storage, _ = choose_engine(spark, engine)
    chosen = trading_days(dt.date(2024, 1, 2), dt.date(2024, 3, 1))[:days]
    stored: list[tuple[float, float]] = []  # each commit of answers: (began, ended), monotonic
    built: list[tuple[float, float]] = []  # each build of the derived tables

    def timed(work, spans):  # type: ignore[no-untyped-def]
        """`work`, each call's (began, ended) appended to `spans`."""
        def run(*args, **kwargs):  # type: ignore[no-untyped-def]
            started = time.monotonic()
            try:
                return work(*args, **kwargs)
            finally:
                spans.append((started, time.monotonic()))
        return run

    marketdaily.store_days = timed(marketdaily.store_days, stored)
    with tempfile.TemporaryDirectory() as root, FakeMassiveServer(
            ApiBehaviour(calls_per_window=FREE_CALLS_PER_MINUTE)) as server:
        table = str(Path(root) / "stocks_fixed")
        cfg = MarketDailyConfig(HarvestConfig(
            tickers=(), date_from=chosen[0], date_to=chosen[-1], table_path=table,
            landing_path=default_landing_path(table), source="api", base_url=server.base_url, api_key="bench-key",
            calls_per_minute=FREE_CALLS_PER_MINUTE, show_progress=False), derive=derive)
        started = time.monotonic()
        # As the door runs it, unless --no-derive.
        derived = timed(market_daily._derive(table), built) if derive else None
        first = run_market_daily(cfg, storage, derive=derived)
        ended = time.monotonic()
        seconds = ended - started
        answered = len(server.log)
        last_call = server.log[-1].at
        stored_first, built_first = list(stored), list(built)
        run_market_daily(cfg, storage, derive=derived)
        second_calls = len(server.log) - answered
    floor = floor_seconds(first.calls)

    def after(spans: list[tuple[float, float]]) -> float:
        return sum(end - max(began, last_call) for began, end in spans if end > last_call)

    return {"days": len(chosen), "calls": first.calls, "http_429": sum(s.http_429 for s in first.stats),
            "seconds": seconds, "floor_s": floor, "ratio": seconds / floor if floor else float("nan"),
            "rows": first.rows, "store_s_per_day": sum(e - b for b, e in stored_first) / max(1, len(chosen)),
            "wait_s_per_call": first.waited_s / max(1, first.calls), "second_run_calls": second_calls,
            "commits": len(stored_first), "builds": len(built_first),
            "builds_in_waits": sum(1 for _, end in built_first if end <= last_call),
            "after_last_call_s": ended - last_call, "store_after_s": after(stored_first),
            "derive_after_s": after(built_first),
            "build_s": [round(end - began, 2) for began, end in built_first],
            "store_s": [round(end - began, 2) for began, end in stored_first]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", default="delta-rs", choices=("delta-rs", "delta-spark"))
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--no-derive", action="store_true", help="leave out the derived tables' build, as the door's "
                        "--no-derive does")
    args = parser.parse_args(argv)
    found = bench(args.engine, args.days, derive=not args.no_derive)
    print(f"market_daily.py, {found['days']} trading days of the sample market on a 5-a-minute key "
          f"({args.engine}{', no derived tables' if args.no_derive else ', derived tables included'}): "
          f"{found['calls']} calls ({found['http_429']} answered 429), {found['seconds']:.1f} s "
          f"against a floor of {found['floor_s']:.0f} s = {found['ratio']:.3f}x; {found['rows']:,} rows; storing "
          f"{found['store_s_per_day']:.2f} s a day against {found['wait_s_per_call']:.1f} s waited a call "
          f"({found['commits']} commits, {found['builds']} builds of the derived tables, "
          f"{found['builds_in_waits']} during the waits); after the last call {found['after_last_call_s']:.1f} s "
          f"(storing {found['store_after_s']:.1f}, deriving {found['derive_after_s']:.1f}; each commit "
          f"{found['store_s']} s, each build {found['build_s']} s); "
          f"a second run: {found['second_run_calls']} calls")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

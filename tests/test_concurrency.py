"""Several things at once: Spark starting while calls wait on the rate limit, and two harvesters writing the same
table."""

from __future__ import annotations

import os
import tempfile
import threading

import pytest

from stockpipe.errors import KeyRejectedError
from stockpipe.testing import ApiBehaviour, FakeMassiveServer, Fault
from tests.helpers import (
    BOTH_ENGINES,
    FRIDAY,
    KEY,
    MONDAY,
    TRIO,
    FakeClock,
    every_bar_once,
    harvest,
)

pytestmark = pytest.mark.slow


def test_spark_starts_once_while_fetching_after_the_first_landed_ticker(storage, tmp_path, clock):
    """The session is asked for as soon as one ticker has landed, on a worker thread, exactly once; the calls still
    to make are made meanwhile. A run that lands nothing never asks."""
    from stockpipe.config import HarvestConfig
    from stockpipe.harvest import run_fixed

    asked: list[tuple[int, str]] = []

    def run(server, tickers):
        cfg = HarvestConfig(tickers=tickers, date_from=MONDAY, date_to=FRIDAY, table_path=str(tmp_path / "t"),
                            landing_path=str(tmp_path / "landing"), source="api", base_url=server.base_url,
                            api_key=KEY, calls_per_minute=5, show_progress=False, clock=clock, sleep=clock.sleep)

        def factory():
            asked.append((len(server.log), threading.current_thread().name))
            return storage.spark, storage

        return run_fixed(cfg, factory)

    with FakeMassiveServer(ApiBehaviour(api_key=KEY, faults=[Fault("401", ticker="AAPL")])) as server:
        assert isinstance(run(server, ("AAPL", "MSFT")).stopped, KeyRejectedError)
    assert asked == []  # nothing landed: Spark is never started
    with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:
        report = run(server, TRIO)
    assert len(asked) == 1 and asked[0][1].startswith("spark-start")
    assert asked[0][0] >= 1  # asked only once a ticker had landed
    assert report.engine == storage.name and report.rows_written > 0


def test_a_paced_run_warms_spark_up_on_the_first_ticker_and_leaves_nothing_behind(storage, tmp_path, clock,
                                                                                   monkeypatch):
    """8 tickers at 5 calls a minute: a window of waiting lies ahead after the first ticker, so the transform and a
    scratch write run on it in the background. The injected clock lets the fetch end long before that first pass
    does, so no second pass follows. The stored table is exactly the 8 tickers' bars."""
    import stockpipe.harvest.background as harvest_module

    warmed: list[tuple[list[str], list[str]]] = []
    real_warm_up = harvest_module.warm_up

    def recording(spark, engine, landed, days, layout, fetch_done):
        before = set(os.listdir(tempfile.gettempdir()))
        # as if the calls were still waiting on the window
        real_warm_up(spark, engine, landed, days, layout, lambda: False)
        after = set(os.listdir(tempfile.gettempdir()))
        warmed.append((sorted(landed), sorted(n for n in after - before if n.startswith("stocks-warm-up-"))))

    monkeypatch.setattr(harvest_module, "warm_up", recording)
    eight = ("AAPL", "MSFT", "GOOGL", "AMZN", "TSLA", "META", "NVDA", "JPM")
    with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:
        report = harvest(storage, tmp_path / "t", server, clock, tickers=eight)
    assert warmed == [(["AAPL"], [])]  # once, on the first ticker; its scratch table is gone
    assert report.engine == storage.name and not report.failed
    assert every_bar_once(storage, tmp_path / "t", eight)


# -- concurrency -----------------------------------------------------------------------------------------------------
@BOTH_ENGINES  # a lost commit race is recognised by each engine's own error
def test_two_writers_on_different_tickers_both_succeed(storage, tmp_path, clock):
    path = tmp_path / "t"
    errors: list[BaseException] = []

    def writer(tickers):
        try:
            with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:

                harvest(storage, path, server, FakeClock(), tickers=tickers)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in (("AAPL", "MSFT"), ("NVDA", "JPM"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not errors
    assert every_bar_once(storage, path, ("AAPL", "MSFT", "NVDA", "JPM"))


@BOTH_ENGINES
def test_two_writers_on_the_same_partitions_leave_one_consistent_table(storage, tmp_path):
    path = tmp_path / "t"
    results: list[object] = []

    def writer():
        try:
            with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:

                results.append(harvest(storage, path, server, FakeClock(), tickers=("AAPL", "MSFT")))
        except BaseException as exc:  # noqa: BLE001 - either outcome is allowed; the table must stay consistent
            results.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert len(results) == 2
    assert all(not isinstance(r, BaseException) or "concurrent" in str(r).lower() for r in results), results
    assert every_bar_once(storage, path, ("AAPL", "MSFT"))


def test_calls_in_flight_follow_what_bounds_the_run():
    """One where the rate limit bounds the run, two for the unpaced sample (its answers are made on the same CPU, and
    a long run's tickers then land a pair at a time), eight where a paid key's round trip does; as asked always."""
    from stockpipe.config import FAST_CONCURRENCY, SAMPLE_CONCURRENCY, HarvestConfig

    def in_flight(**given) -> int:
        return HarvestConfig(("AAPL",), MONDAY, FRIDAY, "t", "l", **given).in_flight

    assert in_flight(source="api") == 1
    assert in_flight(source="sample") == SAMPLE_CONCURRENCY == 2
    assert in_flight(source="sample", calls_per_minute=5) == 1
    assert in_flight(source="api", calls_per_minute=1000) == in_flight(source="sample", calls_per_minute=1000) \
        == FAST_CONCURRENCY
    assert in_flight(source="sample", concurrency=5) == 5


@pytest.mark.parametrize("then, passes", [("keeps waiting", 4), ("calls due now", 1), ("fetch done", 1)])
def test_warm_up_passes_go_on_over_the_landed_tickers_only_while_the_wait_lasts(monkeypatch, then, passes):
    """Pass after pass over the tickers landed so far, up to WARM_UP_PASSES, while the calls still to make wait on the
    window; none once the calls are due before a pass would end, or the fetch is done (no Spark here: the passes are
    recorded, the session is a stand-in)."""
    import datetime as dt

    import stockpipe.harvest.background as harvest_module
    from stockpipe.fetching import TickerFetch
    from stockpipe.layout import PARTITIONED
    from stockpipe.massive import FetchStats

    first_pass_began, go_on = threading.Event(), threading.Event()
    seen: list[list[str]] = []

    def recording(spark, storage, landed, days, layout, fetch_done):
        seen.append(sorted(landed))
        if len(seen) == 1:
            first_pass_began.set()
            assert go_on.wait(10)

    def landed_item(ticker: str) -> TickerFetch:
        item = TickerFetch(ticker, FetchStats(ticker))
        item.stats.calls = 1
        return item

    monkeypatch.setattr(harvest_module, "warm_up", recording)
    with harvest_module.SparkInBackground(lambda: (object(), object())) as spark_early:  # type: ignore[arg-type]
        landed = spark_early.on_landed([dt.date(2024, 3, 11)], PARTITIONED)
        landed(landed_item("AAPL"), 60.0)
        assert first_pass_began.wait(10)
        landed(landed_item("MSFT"), 0.0 if then == "calls due now" else 58.0)
        if then == "fetch done":
            spark_early.fetch_done()
        go_on.set()
        spark_early.result()
    assert seen == [["AAPL"]] + [["AAPL", "MSFT"]] * (passes - 1)
    assert harvest_module.WARM_UP_PASSES == 4

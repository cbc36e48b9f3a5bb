"""The landing zone across runs: finished days reused without a call, the current day fetched again, a killed run
resumed without refetching what landed, and the metadata a landed page keeps."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time

import pytest

import fixed_stock_harvester
from stockpipe.landing import LandingZone, default_landing_path
from stockpipe.testing import ApiBehaviour, FakeMassiveServer, Fault
from tests.helpers import (
    FRIDAY,
    KEY,
    MONDAY,
    ROOT,
    TRIO,
    aggs_calls,
    every_bar_once,
    harvest,
    splits_calls,
)

pytestmark = pytest.mark.slow


# -- landing zone ----------------------------------------------------------------------------------------------------
def test_rerun_of_finished_days_makes_no_call(storage, tmp_path, clock):
    with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:
        harvest(storage, tmp_path / "t", server, clock, tickers=TRIO)
        first = len(server.log)
        harvest(storage, tmp_path / "t", server, clock, tickers=TRIO)
        second = len(server.log) - first
        report = harvest(storage, tmp_path / "t", server, clock, tickers=TRIO)
        # three tickers and the splits and dividends lists fill the free key's window; the official bars (one ranged
        # call a ticker) are deferred to the next run, which makes only them; then none at all
        assert (first, second, len(server.log)) == (3 + 2, 3, first + second)
    assert all(t.stats.pages_from_landing == 1 and t.stats.calls == 0 for t in report.tickers)
    assert every_bar_once(storage, tmp_path / "t")


def test_the_current_day_is_always_fetched_again(storage, tmp_path, clock):
    with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:
        harvest(storage, tmp_path / "t", server, clock, tickers=("AAPL",), today=FRIDAY)
        harvest(storage, tmp_path / "t", server, clock, tickers=("AAPL",), today=FRIDAY)
        assert len(aggs_calls(server)) == 2
        # The day after, Friday is over: fetched once more (only Friday), then never again.
        harvest(storage, tmp_path / "t", server, clock, tickers=("AAPL",), today=FRIDAY + dt.timedelta(days=1))
        harvest(storage, tmp_path / "t", server, clock, tickers=("AAPL",), today=FRIDAY + dt.timedelta(days=1))
        assert len(aggs_calls(server)) == 3
        assert aggs_calls(server)[-1].path.endswith("/2024-01-12/2024-01-12")
        assert len(splits_calls(server)) == 2  # one on each new day; the same day's reruns find them refreshed
    assert every_bar_once(storage, tmp_path / "t", ("AAPL",))


def test_refetch_ignores_the_landing_zone(storage, tmp_path, clock):
    with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:
        harvest(storage, tmp_path / "t", server, clock, tickers=("AAPL",))
        report = harvest(storage, tmp_path / "t", server, clock, tickers=("AAPL",), refetch=True)
        assert len(aggs_calls(server)) == 2
    assert report.tickers[0].counts.duplicates == 0  # the older fetch's pages are superseded, not double-counted
    assert every_bar_once(storage, tmp_path / "t", ("AAPL",))


# -- crash and resume ------------------------------------------------------------------------------------------------
def test_a_fetch_still_being_written_is_never_resumed_or_tidied_by_another_writer(tmp_path):
    from stockpipe.massive import Page

    landing = LandingZone(tmp_path / "landing")
    writer = landing.new_fetch("AAPL", MONDAY, FRIDAY)
    writer.add(Page("AAPL", "http://127.0.0.1/v2/aggs?cursor=1", b'{"adjusted": false, "results": []}', "r1", "OK", 0,
                    "http://127.0.0.1/v2/aggs?cursor=2", adjusted=False))
    orphan = writer.fetch.path / "page-00002.json"  # a body whose metadata is still being written
    orphan.write_bytes(b"{}")
    assert landing.resumable("AAPL", MONDAY, FRIDAY) is None  # the writer holds it
    assert orphan.exists()
    writer.close()  # the writer is gone (as after a crash): its fetch is resumable, without the orphan page
    resumed = landing.resumable("AAPL", MONDAY, FRIDAY)
    assert resumed is not None and resumed.fetch.path == writer.fetch.path
    assert not orphan.exists() and len(resumed.fetch.pages()) == 1
    assert landing.resumable("AAPL", MONDAY, FRIDAY) is None  # now held by the resuming writer
    resumed.close()


def _harvester(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "fixed_stock_harvester.py"), *argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_mid_run_then_rerun_fetches_only_what_is_missing(storage, tmp_path):
    path = tmp_path / "t"
    env = {**os.environ, "MASSIVE_API_KEY": KEY}
    tickers = "AAPL,MSFT,NVDA,JPM"
    # JPM's answer hangs, so the process is killed with three tickers landed and nothing written.
    with FakeMassiveServer(ApiBehaviour(api_key=KEY, faults=[Fault("delay", ticker="JPM", seconds=20)])) as server:
        def argv(base_url: str) -> list[str]:
            return ["--tickers", tickers, "--from", "2024-01-08", "--to", "2024-01-12", "--base-url", base_url,
                    "--table-path", str(path), "--calls-per-minute", "100000", "--engine", storage.name]

        process = _harvester(argv(server.base_url), env)
        landing = LandingZone(default_landing_path(str(path)))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum(
            1 for t in ("AAPL", "MSFT", "NVDA") if any(f.complete for f in landing.fetches(t))
        ) < 3:
            time.sleep(0.1)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    assert not path.exists(), "nothing may be written before every fetch is done"
    with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:
        os.environ["MASSIVE_API_KEY"] = KEY
        try:
            code = fixed_stock_harvester.main(argv(server.base_url))
        finally:
            del os.environ["MASSIVE_API_KEY"]
        fetched = sorted(entry.path.split("/")[4] for entry in aggs_calls(server))
    assert code == 0
    assert fetched == ["JPM"]
    assert every_bar_once(storage, path, ("AAPL", "MSFT", "NVDA", "JPM"))


def test_landed_pages_carry_request_metadata_and_follow_up_cursors(tmp_path, clock, spark):
    import json

    from stockpipe.landing import LandingZone

    with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:
        from stockpipe.config import HarvestConfig
        from stockpipe.fetching import Fetcher
        from stockpipe.massive import ClientConfig, MassiveClient

        client = MassiveClient(ClientConfig(base_url=server.base_url, api_key=KEY, calls_per_minute=None,
                                            page_limit=1000), clock=clock, sleep=clock.sleep)
        cfg = HarvestConfig(("AAPL",), MONDAY, FRIDAY, str(tmp_path / "t"), str(tmp_path / "landing"), source="api",
                            show_progress=False, today=FRIDAY + dt.timedelta(days=3))
        with Fetcher(cfg, LandingZone(cfg.landing_path), [MONDAY, FRIDAY], client=client) as fetcher:
            result = fetcher.fetch("AAPL")
    fetch = next(iter(result.assignment.values()))
    metas = [json.loads(p.with_suffix(".meta.json").read_text()) for p in fetch.pages()]
    assert len(metas) == 3 and metas[0]["cursor"] is None and all(m["cursor"] for m in metas[1:])
    assert all(m["request_id"] and m["ticker"] == "AAPL" and m["from"] == "2024-01-08" for m in metas)
    assert all(KEY not in json.dumps(m) for m in metas)


def test_a_door_run_as_a_script_exits_without_stopping_spark_and_its_jvm_cleans_up_after_it(tmp_path):
    """run_as_script leaves a classic local session to its JVM: the process exits with the door's code, then the
    JVM, seeing its gateway's stdin closed, stops the session in its own shutdown hook and removes Spark's temporary
    folders (here under SPARK_LOCAL_DIRS) within seconds."""
    local_dirs = tmp_path / "spark-local"
    local_dirs.mkdir()
    env = {**os.environ, "SPARK_LOCAL_DIRS": str(local_dirs)}
    for name in ("MASSIVE_API_KEY", "POLYGON_API_KEY", "SPARK_REMOTE"):  # the sample source, a classic session
        env.pop(name, None)
    argv = ["--source", "sample", "--tickers", "AAPL", "--from", "2024-03-11", "--to", "2024-03-11",
            "--table-path", str(tmp_path / "stocks_fixed"), "--engine", "delta-rs"]
    done = subprocess.run([sys.executable, str(ROOT / "fixed_stock_harvester.py"), *argv], cwd=ROOT, env=env,
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          timeout=300, check=False)  # stderr a pipe: run() returns once the JVM has let it go too
    assert done.returncode == 0, done.stderr[-500:]
    assert "Traceback" not in done.stderr and "ERROR" not in done.stderr
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(local_dirs.iterdir()):  # bounded: the hook runs as the JVM exits
        time.sleep(0.2)
    assert not any(local_dirs.iterdir()), sorted(p.name for p in local_dirs.iterdir())

"""What real runs meet, injected through the loopback server: shared-key 429s, 5xx bursts, timeouts, resets,
cut-off JSON, bad bars, a rejected key; a crash mid-run; two writers at once; hostile input; the key's secrecy."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fixed_stock_harvester
from stockpipe.errors import KeyRejectedError, StopError, UsageError
from stockpipe.landing import LandingZone, default_landing_path
from stockpipe.reports import fixed_errors
from stockpipe.testing import ApiBehaviour, FakeMassiveServer, Fault
from tests.helpers import ROOT, FakeClock, closed_port_url, expected_rows, harvest, table_rows

pytestmark = pytest.mark.slow
MONDAY, FRIDAY = dt.date(2024, 1, 8), dt.date(2024, 1, 12)
TRIO = ("AAPL", "MSFT", "NVDA")
KEY = "secret-key-for-tests-9f86d081884c7d65"


def every_bar_once(storage, path, tickers=TRIO) -> bool:
    return table_rows(storage, path) == expected_rows(list(tickers), MONDAY, FRIDAY)


# -- faults ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "faults",
    [
        pytest.param([Fault("500", times=2), Fault("502", times=2), Fault("503", times=2)], id="5xx-bursts"),
        pytest.param([Fault("delay", seconds=0.5, times=2)], id="read-timeouts"),
        pytest.param([Fault("reset", times=3)], id="connection-resets"),
        pytest.param([Fault("truncate", times=2)], id="cut-off-json"),
        pytest.param([Fault("missing_field", times=1)], id="bar-missing-field-once"),
        pytest.param([Fault("429", times=4)], id="429-without-retry-after"),
        pytest.param([Fault("429", retry_after="3", times=2)], id="429-with-retry-after"),
    ],
)
def test_transient_faults_end_with_every_bar_landed_once(storage, tmp_path, clock, faults):
    injected = sum(f.times for f in faults)
    with FakeMassiveServer(ApiBehaviour(api_key=KEY, faults=faults)) as server:
        report = harvest(storage, tmp_path / "t", server, clock, tickers=TRIO, read_timeout=0.2)
    assert not report.failed
    assert sum(t.stats.retries for t in report.tickers) == injected  # every fault met, every one survived
    assert every_bar_once(storage, tmp_path / "t")


def test_shared_key_with_35_percent_random_429s(storage, tmp_path, clock):
    eight = ("AAPL", "MSFT", "GOOGL", "AMZN", "TSLA", "META", "NVDA", "JPM")
    with FakeMassiveServer(ApiBehaviour(api_key=KEY, random_429_rate=0.35, seed=5)) as server:
        report = harvest(storage, tmp_path / "t", server, clock, tickers=eight)
        received = sum(t.stats.http_429 for t in report.tickers)
        served = sum(1 for entry in server.log if entry.status == 429)
    assert not report.failed
    assert received == served >= 5  # other users' traffic, as the server saw it: every 429 was waited out
    assert every_bar_once(storage, tmp_path / "t", eight)


def test_persistent_bad_bar_fails_that_ticker_only(storage, tmp_path, clock):
    bad_bars = [Fault("missing_field", ticker="MSFT", times=100)]
    with FakeMassiveServer(ApiBehaviour(api_key=KEY, faults=bad_bars)) as server:
        report = harvest(storage, tmp_path / "t", server, clock, tickers=TRIO, max_attempts=3)
    assert [t.ticker for t in report.failed] == ["MSFT"]
    assert "lacks required field" in report.failed[0].stats.error
    assert table_rows(storage, tmp_path / "t") == expected_rows(["AAPL", "NVDA"], MONDAY, FRIDAY)


def test_rejected_key_mid_run_stops_calling_and_keeps_earlier_tickers(storage, tmp_path, clock):
    with FakeMassiveServer(ApiBehaviour(api_key=KEY, faults=[Fault("401", ticker="MSFT")])) as server:
        report = harvest(storage, tmp_path / "t", server, clock, tickers=TRIO)
        calls = len(server.log)
    assert calls == 2  # AAPL, then MSFT's refused call; none for NVDA
    assert isinstance(report.stopped, KeyRejectedError) and "API key rejected" in str(report.stopped)
    assert KEY not in str(report.stopped)
    assert table_rows(storage, tmp_path / "t") == expected_rows(["AAPL"], MONDAY, FRIDAY)


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
    assert report.engine == storage.name and sum(t.rows_written for t in report.tickers) > 0


def test_a_paced_run_warms_spark_up_on_the_first_ticker_and_leaves_nothing_behind(storage, tmp_path, clock,
                                                                                   monkeypatch):
    """8 tickers at 5 calls a minute: a window of waiting lies ahead after the first ticker, so the transform and a
    scratch write run once on it in the background. The stored table is exactly the 8 tickers' bars."""
    import stockpipe.harvest as harvest_module

    warmed: list[tuple[str, list[str]]] = []
    real_warm_up = harvest_module.warm_up

    def recording(spark, engine, item, days, fetch_done):
        before = set(os.listdir(tempfile.gettempdir()))
        real_warm_up(spark, engine, item, days, lambda: False)  # as if the calls were still waiting on the window
        after = set(os.listdir(tempfile.gettempdir()))
        warmed.append((item.ticker, sorted(n for n in after - before if n.startswith("stocks-warm-up-"))))

    monkeypatch.setattr(harvest_module, "warm_up", recording)
    eight = ("AAPL", "MSFT", "GOOGL", "AMZN", "TSLA", "META", "NVDA", "JPM")
    with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:
        report = harvest(storage, tmp_path / "t", server, clock, tickers=eight)
    assert warmed == [("AAPL", [])]  # once, on the first ticker; its scratch table is gone
    assert report.engine == storage.name and not report.failed
    assert every_bar_once(storage, tmp_path / "t", eight)


def test_rejected_key_at_the_door_is_one_line_and_exit_1(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MASSIVE_API_KEY", "wrong-" + KEY)
    with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:
        code = fixed_stock_harvester.main(["--tickers", "AAPL", "--from", "2024-01-08", "--to", "2024-01-08",
                                           "--base-url", server.base_url, "--table-path", str(tmp_path / "t")])
        assert len(server.log) == 1
    out, err = capsys.readouterr()
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("error: API key rejected (HTTP 401 for AAPL): Unknown API Key")
    assert KEY not in out + err and "Traceback" not in err
    assert not (tmp_path / "t").exists()


# -- landing zone ----------------------------------------------------------------------------------------------------
def test_rerun_of_finished_days_makes_no_call(storage, tmp_path, clock):
    with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:
        harvest(storage, tmp_path / "t", server, clock, tickers=TRIO)
        first = len(server.log)
        report = harvest(storage, tmp_path / "t", server, clock, tickers=TRIO)
        assert len(server.log) == first == 3
    assert all(t.stats.pages_from_landing == 1 and t.stats.calls == 0 for t in report.tickers)
    assert every_bar_once(storage, tmp_path / "t")


def test_the_current_day_is_always_fetched_again(storage, tmp_path, clock):
    with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:
        harvest(storage, tmp_path / "t", server, clock, tickers=("AAPL",), today=FRIDAY)
        harvest(storage, tmp_path / "t", server, clock, tickers=("AAPL",), today=FRIDAY)
        assert len(server.log) == 2
        # The day after, Friday is over: fetched once more (only Friday), then never again.
        harvest(storage, tmp_path / "t", server, clock, tickers=("AAPL",), today=FRIDAY + dt.timedelta(days=1))
        harvest(storage, tmp_path / "t", server, clock, tickers=("AAPL",), today=FRIDAY + dt.timedelta(days=1))
        assert len(server.log) == 3
        assert server.log[-1].path.endswith("/2024-01-12/2024-01-12")
    assert every_bar_once(storage, tmp_path / "t", ("AAPL",))


def test_refetch_ignores_the_landing_zone(storage, tmp_path, clock):
    with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:
        harvest(storage, tmp_path / "t", server, clock, tickers=("AAPL",))
        report = harvest(storage, tmp_path / "t", server, clock, tickers=("AAPL",), refetch=True)
        assert len(server.log) == 2
    assert report.tickers[0].duplicates == 0  # the older fetch's pages are superseded, not double-counted
    assert every_bar_once(storage, tmp_path / "t", ("AAPL",))


# -- crash and resume ------------------------------------------------------------------------------------------------
def test_a_fetch_still_being_written_is_never_resumed_or_tidied_by_another_writer(tmp_path):
    from stockpipe.massive import Page

    landing = LandingZone(tmp_path / "landing")
    writer = landing.new_fetch("AAPL", MONDAY, FRIDAY)
    writer.add(Page("AAPL", "http://127.0.0.1/v2/aggs?cursor=1", b'{"results": []}', "r1", "OK", 0,
                    "http://127.0.0.1/v2/aggs?cursor=2"))
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
        fetched = sorted(entry.path.split("/")[4] for entry in server.log)
    assert code == 0
    assert fetched == ["JPM"]
    assert every_bar_once(storage, path, ("AAPL", "MSFT", "NVDA", "JPM"))


# -- concurrency -----------------------------------------------------------------------------------------------------
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


# -- bad input -------------------------------------------------------------------------------------------------------
bad_tickers = st.text(min_size=1, max_size=15).filter(
    lambda s: not __import__("re").fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9]|[.\-](?=[A-Za-z0-9])){0,11}", s.strip())
    and "," not in s
)
bad_dates = st.one_of(
    st.text(max_size=12).filter(lambda s: not __import__("re").fullmatch(r"\d{4}-\d{2}-\d{2}", s)),
    st.from_regex(r"\A\d{4}-(1[3-9]|00)-\d{2}\Z"),
    st.just("2024-02-30"),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ticker=bad_tickers)
def test_bad_tickers_never_traceback_never_write(ticker, tmp_path, capsys):
    code = fixed_stock_harvester.main(["--tickers", ticker, "--table-path", str(tmp_path / "t")])
    _, err = capsys.readouterr()
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "t").exists()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(date=bad_dates, flag=st.sampled_from(["--from", "--to"]))
def test_bad_dates_never_traceback_never_write(date, flag, tmp_path, capsys):
    code = fixed_stock_harvester.main([flag, date, "--table-path", str(tmp_path / "t")])
    _, err = capsys.readouterr()
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "t").exists()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(days_back=st.integers(1, 4000))
def test_from_after_to_or_future_dates_are_refused(days_back, tmp_path, capsys):
    today = dt.date.today()
    cases = [["--from", str(today - dt.timedelta(days=days_back - 1)), "--to", str(today - dt.timedelta(days_back))],
             ["--to", str(today + dt.timedelta(days=days_back + 1))]]
    for argv in cases:
        assert fixed_stock_harvester.main([*argv, "--table-path", str(tmp_path / "t")]) == 2
    assert not (tmp_path / "t").exists()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.text(alphabet="`'\"\x00\n", min_size=1, max_size=4))
def test_paths_with_quotes_or_control_characters_are_refused(junk, tmp_path, capsys):
    code = fixed_stock_harvester.main(["--table-path", str(tmp_path / f"t{junk}x")])
    _, err = capsys.readouterr()
    assert code == 2 and "--table-path" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("symbol", ["ß", "ﬁ", "AAPLß", "ǅ", "Ⅻ"])
def test_non_ascii_symbols_are_refused_before_any_case_change(symbol):
    from stockpipe.cli import parse_tickers

    with pytest.raises(UsageError, match="is not an exchange symbol"):
        parse_tickers(symbol)  # "ß".upper() is "SS", "ﬁ".upper() is "FI": valid-looking, never asked for


@pytest.mark.parametrize("argv", [["--tickers", "../etc"], ["--from", "yesterday"], ["--calls-per-minute", "0"],
                                  ["--table-path", "/"], ["--engine", "duckdb"], ["--bogus"]])
def test_bad_input_in_a_real_process_is_one_line_exit_2(argv, tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "fixed_stock_harvester.py"), *argv], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert list(tmp_path.iterdir()) == []


# -- secrets ---------------------------------------------------------------------------------------------------------
def test_the_key_appears_in_nothing_a_run_writes_or_prints(tmp_path, capsys, monkeypatch, storage):
    monkeypatch.setenv("MASSIVE_API_KEY", KEY)
    faults = [Fault("429"), Fault("500"), Fault("truncate"), Fault("401", ticker="NVDA")]
    with FakeMassiveServer(ApiBehaviour(api_key=KEY, faults=faults)) as server:
        code = fixed_stock_harvester.main(["--tickers", "AAPL,MSFT,NVDA", "--from", "2024-01-08", "--to",
                                           "2024-01-12", "--base-url", server.base_url, "--table-path",
                                           str(tmp_path / "t"), "--calls-per-minute", "100000", "-v",
                                           "--engine", storage.name])
        assert all(entry.authorization == f"Bearer {KEY}" for entry in server.log)
    out, err = capsys.readouterr()
    assert code == 1 and "API key rejected" in err
    assert KEY not in out and KEY not in err
    written = [p for p in Path(tmp_path).rglob("*") if p.is_file()]
    assert len(written) > 10
    assert not [p for p in written if KEY.encode() in p.read_bytes()]


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


# -- the real API's scopes: a plan refusal, an unreachable host ------------------------------------------------------
def test_plan_refusing_today_stores_the_earlier_days_and_reports_today(storage, tmp_path, clock):
    """The free tier refuses a range that includes the current day: retried once without today, the past days are
    stored, and today is reported as not in the plan (the run's exit code then says not everything was stored)."""
    path = tmp_path / "t"
    with FakeMassiveServer(ApiBehaviour(api_key=KEY, plan_refuses_from=FRIDAY)) as server:
        report = harvest(storage, path, server, clock, tickers=("AAPL", "MSFT"), today=FRIDAY)
        assert [entry.status for entry in server.log] == [403, 200, 403, 200]
    assert not report.failed and [t.ticker for t in report.partial] == ["AAPL", "MSFT"]
    assert all(t.not_in_plan == [FRIDAY] and "data timeframe" in t.plan_message for t in report.partial)
    assert table_rows(storage, path) == expected_rows(["AAPL", "MSFT"], MONDAY, FRIDAY - dt.timedelta(days=1))


def test_plan_refusal_keeps_stored_today_of_other_tickers(storage, tmp_path, clock):
    """A ticker whose today was refused is written only on its earlier days: the same commit keeps another ticker's
    today, and no stored partition is emptied."""
    path = tmp_path / "t"
    with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:
        harvest(storage, path, server, clock, tickers=("AAPL", "MSFT"), today=FRIDAY)
    # AAPL is served in full; MSFT's whole-week request is refused once and its retry without today succeeds.
    with FakeMassiveServer(ApiBehaviour(api_key=KEY, faults=[Fault("403", ticker="MSFT")])) as server:
        report = harvest(storage, path, server, clock, tickers=("AAPL", "MSFT"), today=FRIDAY, refetch=True)
    assert [t.ticker for t in report.partial] == ["MSFT"] and report.partial[0].not_in_plan == [FRIDAY]
    assert " OR " in storage.history(str(path), limit=1)[-1].parameters["predicate"]
    assert table_rows(storage, path) == expected_rows(["AAPL", "MSFT"], MONDAY, FRIDAY)  # MSFT's Friday kept


def test_plan_refusal_of_a_past_range_fails_that_ticker_and_fetches_the_next(storage, tmp_path, clock):
    with FakeMassiveServer(ApiBehaviour(api_key=KEY, faults=[Fault("403", ticker="MSFT")])) as server:
        report = harvest(storage, tmp_path / "t", server, clock, tickers=TRIO)
    assert [t.ticker for t in report.failed] == ["MSFT"] and "not in your plan" in report.failed[0].stats.error
    assert report.failed[0].stats.calls == 1
    assert table_rows(storage, tmp_path / "t") == expected_rows(["AAPL", "NVDA"], MONDAY, FRIDAY)


def test_unreachable_api_gives_up_on_every_ticker_after_the_first_and_starts_no_spark(tmp_path, clock):
    from stockpipe.config import HarvestConfig
    from stockpipe.errors import ApiUnreachableError
    from stockpipe.harvest import run_fixed

    base = closed_port_url()
    eight = ("AAPL", "MSFT", "GOOGL", "AMZN", "TSLA", "META", "NVDA", "JPM")
    cfg = HarvestConfig(tickers=eight, date_from=MONDAY, date_to=FRIDAY, table_path=str(tmp_path / "t"),
                        landing_path=str(tmp_path / "landing"), source="api", base_url=base, api_key=KEY,
                        show_progress=False, clock=clock, sleep=clock.sleep)

    def no_spark():
        raise AssertionError("Spark must not start when nothing can be written")

    report = run_fixed(cfg, no_spark)
    assert isinstance(report.stopped, ApiUnreachableError) and f"cannot reach {base}" in str(report.stopped)
    first, *rest = report.tickers
    assert (first.stats.calls, first.stats.retries) == (4, 3) and first.stats.waited_s > 0  # counts are kept
    assert all(t.stats.calls == 0 and t.stats.error.startswith("not fetched: cannot reach") for t in rest)
    assert not (tmp_path / "t").exists() and not any((tmp_path / "landing").rglob("page-*"))


def test_unreachable_api_at_the_door_is_one_error_line_after_the_summary(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MASSIVE_API_KEY", KEY)
    base = closed_port_url()
    code = fixed_stock_harvester.main(["--tickers", "AAPL,MSFT", "--from", "2024-01-08", "--to", "2024-01-12",
                                       "--base-url", base, "--table-path", str(tmp_path / "t")])
    out, err = capsys.readouterr()
    assert code == 1 and "Spark was not started" in out
    assert "FAILED, not fetched because the run stopped: MSFT (their partitions were left untouched)" in out
    assert err.strip().splitlines()[-1].startswith(f"error: cannot reach {base}: could not connect")
    assert "Traceback" not in err and KEY not in out + err


class HostGoneError(StopError):
    """A stop error whose constructor takes more than a message, as a later one may."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"{host} went away: {reason}")


def test_a_stop_error_of_any_shape_is_reported_with_what_was_stored(storage, tmp_path, clock, monkeypatch):
    """The run's summary travels in the report, not rebuilt into the exception: an error class whose constructor
    takes other arguments used to break the run with a TypeError after its first tickers were stored."""
    from stockpipe.massive import MassiveClient

    real_iter_pages = MassiveClient.iter_pages

    def iter_pages(self, ticker, *args, **kwargs):
        if ticker == "MSFT":
            raise HostGoneError("api.example", "maintenance")
        return real_iter_pages(self, ticker, *args, **kwargs)

    monkeypatch.setattr(MassiveClient, "iter_pages", iter_pages)
    with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:
        report = harvest(storage, tmp_path / "t", server, clock, tickers=TRIO)
    assert isinstance(report.stopped, HostGoneError)
    assert [t.ticker for t in report.tickers if t.rows_written] == ["AAPL"]
    assert table_rows(storage, tmp_path / "t") == expected_rows(["AAPL"], MONDAY, FRIDAY)
    assert fixed_errors(report) == ["api.example went away: maintenance (stored 1 ticker(s) fetched before that)"]

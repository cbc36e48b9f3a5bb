"""What the API answers, injected through the loopback server: shared-key 429s, 5xx bursts, timeouts, resets,
cut-off JSON, bad bars, a rejected key, a plan refusal, an unreachable host. Each ends with every bar stored once, or
with the one ticker (or the run) failed and everything else stored."""

from __future__ import annotations

import datetime as dt

import pytest

import fixed_stock_harvester
from stockpipe.errors import KeyRejectedError, StopError
from stockpipe.testing import ApiBehaviour, FakeMassiveServer, Fault
from tests.helpers import (
    FRIDAY,
    KEY,
    MONDAY,
    TRIO,
    aggs_calls,
    closed_port_url,
    every_bar_once,
    expected_rows,
    harvest,
    splits_calls,
    table_rows,
)

pytestmark = pytest.mark.slow


# -- faults ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "faults",
    [
        pytest.param([Fault("500", times=2), Fault("502", times=2), Fault("503", times=2)], id="5xx-bursts"),
        pytest.param([Fault("delay", seconds=0.5, times=2)], id="read-timeouts"),
        pytest.param([Fault("reset", times=3)], id="connection-resets"),
        pytest.param([Fault("truncate", times=2)], id="cut-off-json"),
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
        received = (sum(t.stats.http_429 for t in report.tickers)
                    + sum(f.stats.http_429 for f in report.fetched_references))
        served = sum(1 for entry in server.log if entry.status == 429)
    assert not report.failed
    assert received == served >= 5  # other users' traffic, as the server saw it: every 429 was waited out
    assert every_bar_once(storage, tmp_path / "t", eight)


def test_a_bar_missing_its_close_is_quarantined_without_a_retry_and_the_rest_stored(storage, tmp_path, clock):
    """It used to cost the ticker eight calls and then fail it: a bar without `c` is data, not a transfer error."""
    bad_bars = [Fault("missing_field", ticker="MSFT", times=100)]
    with FakeMassiveServer(ApiBehaviour(api_key=KEY, faults=bad_bars)) as server:
        report = harvest(storage, tmp_path / "t", server, clock, tickers=TRIO, max_attempts=3)
    assert not report.failed and sum(t.stats.retries for t in report.tickers) == 0
    msft = {t.ticker: t for t in report.tickers}["MSFT"]
    assert (msft.stats.calls, msft.counts.quarantined) == (1, 1)
    first = min(expected_rows(["MSFT"], MONDAY, FRIDAY), key=lambda row: row[1])  # the page's first bar lost its `c`
    assert table_rows(storage, tmp_path / "t") == [row for row in expected_rows(list(TRIO), MONDAY, FRIDAY)
                                                   if row != first]
    quarantined = storage.read(str(tmp_path / "stocks_quarantine")).collect()
    assert [(r.ticker, r.timestamp_ms, r.reason) for r in quarantined] == [("MSFT", first[1], "prices_present")]


def test_rejected_key_mid_run_stops_calling_and_keeps_earlier_tickers(storage, tmp_path, clock):
    with FakeMassiveServer(ApiBehaviour(api_key=KEY, faults=[Fault("401", ticker="MSFT")])) as server:
        report = harvest(storage, tmp_path / "t", server, clock, tickers=TRIO)
        calls = len(server.log)
    assert calls == 2  # AAPL, then MSFT's refused call; none for NVDA
    assert isinstance(report.stopped, KeyRejectedError) and "API key rejected" in str(report.stopped)
    assert KEY not in str(report.stopped)
    assert table_rows(storage, tmp_path / "t") == expected_rows(["AAPL"], MONDAY, FRIDAY)


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


# -- the real API's scopes: a plan refusal, an unreachable host ------------------------------------------------------
def test_plan_refusing_today_stores_the_earlier_days_and_reports_today(storage, tmp_path, clock):
    """The free tier refuses a range that includes the current day: retried once without today, the past days are
    stored, and today is reported as not in the plan (the run's exit code then says not everything was stored)."""
    path = tmp_path / "t"
    with FakeMassiveServer(ApiBehaviour(api_key=KEY, plan_refuses_from=FRIDAY)) as server:
        report = harvest(storage, path, server, clock, tickers=("AAPL", "MSFT"), today=FRIDAY)
        assert [entry.status for entry in aggs_calls(server)] == [403, 200, 403, 200]
        assert [entry.status for entry in splits_calls(server)] == [200]
    assert not report.failed and [t.ticker for t in report.partial] == ["AAPL", "MSFT"]
    assert all(t.not_in_plan == (FRIDAY,) and "data timeframe" in t.plan_message for t in report.partial)
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
    assert [t.ticker for t in report.partial] == ["MSFT"] and report.partial[0].not_in_plan == (FRIDAY,)
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
    assert [t.ticker for t in report.tickers if t.counts.rows_written] == ["AAPL"]
    assert table_rows(storage, tmp_path / "t") == expected_rows(["AAPL"], MONDAY, FRIDAY)
    assert report.errors() == ["api.example went away: maintenance (stored 1 ticker(s) fetched before that)"]

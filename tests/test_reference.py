"""Reference data beside the bars, on both engines: splits and dividends landed and replayed through one path (the
provider's duplicates folded), re-read over the year before a run and not again the same day, a split listed late
re-adjusting the days before it on the next daily build, the official daily bars by the cheaper endpoint, and the
call budget of a one-day run on the free key (tests/test_free_slots.py has the floor)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

import daily_bars
from stockpipe.landing import LandingZone
from stockpipe.massive import Page
from stockpipe.reference.corporate_actions import DIVIDENDS, SPLITS, StoredDividend, landed_actions
from stockpipe.reference.official_bars import plan_official
from stockpipe.sample import SAMPLE_DIVIDENDS, SAMPLE_SPLITS, official_daily_bar
from stockpipe.testing import ApiBehaviour, FakeMassiveServer
from tests.helpers import aggs_calls, harvest, reference_calls, run_door

pytestmark = pytest.mark.slow
EIGHT = ("AAPL", "MSFT", "GOOGL", "AMZN", "TSLA", "META", "NVDA", "JPM")


def land(landing: LandingZone, kind: str, results: list[dict], date_from: dt.date, date_to: dt.date) -> None:
    writer = landing.new_reference_fetch(kind, date_from, date_to)
    body = json.dumps({"status": "OK", "results": results}).encode()
    writer.add(Page(kind, f"http://127.0.0.1/v3/reference/{kind}", body, "r", "OK", len(results), None))
    writer.finish(final_through=date_to)


def dividend(ticker: str, day: str, cash: float, id_: str, **more: object) -> dict:
    return {"ticker": ticker, "ex_dividend_date": day, "cash_amount": cash, "id": id_, "currency": "USD",
            "frequency": 4, "dividend_type": "CD", **more}


def test_dividends_are_one_per_payment_newest_window_wins_and_malformed_items_skipped(tmp_path):
    landing = LandingZone(tmp_path)
    land(landing, "dividends", [dividend("AAPL", "2024-02-09", 0.24, "E1"),
                                dividend("AAPL", "2024-02-09", 0.24, "E2"),  # the same payment under a second id
                                dividend("MSFT", "2024-02-14", 0.75, "E3"), {"ticker": "AAPL", "id": "E4"}],
         dt.date(2023, 1, 1), dt.date(2024, 3, 1))
    land(landing, "dividends", [dividend("MSFT", "2024-02-14", 0.76, "E3")],  # corrected later
         dt.date(2024, 2, 1), dt.date(2024, 3, 2))
    found = landed_actions(landing, DIVIDENDS, ["AAPL", "MSFT"])
    assert [(d.ticker, d.ex_dividend_date, d.cash_amount) for d in found if isinstance(d, StoredDividend)] == [
        ("AAPL", dt.date(2024, 2, 9), 0.24), ("MSFT", dt.date(2024, 2, 14), 0.76)]
    assert landed_actions(landing, DIVIDENDS, ["JPM"]) == [] and landed_actions(landing, SPLITS, ["AAPL"]) == []


def test_the_official_plan_takes_the_cheaper_endpoint_and_skips_today(tmp_path):
    zone = LandingZone(tmp_path)
    week = [dt.date(2024, 1, d) for d in (8, 9, 10, 11, 12)]
    eight = {t: week for t in EIGHT}
    assert plan_official(zone, eight, today=dt.date(2024, 1, 12)).grouped == tuple(week[:4])  # 4 dates < 8 tickers
    two = plan_official(zone, {t: week for t in EIGHT[:2]}, today=dt.date(2024, 2, 1))
    assert two.ranges == (("AAPL", week[0], week[-1]), ("MSFT", week[0], week[-1])) and not two.grouped


@pytest.fixture(scope="module")
def one_day(tmp_path_factory, storage):
    """Eight one-page tickers, one past day, fetched twice the same day."""
    from tests.helpers import FakeClock

    path = tmp_path_factory.mktemp("budget") / "stocks_fixed"
    today = dt.date(2024, 3, 12)
    with FakeMassiveServer(ApiBehaviour(api_key="k")) as server:
        first = harvest(storage, path, server, FakeClock(), tickers=EIGHT, date_from="2024-03-11",
                        date_to="2024-03-11", today=today)
        calls = list(server.log)
        again = harvest(storage, path, server, FakeClock(), tickers=EIGHT, date_from="2024-03-11",
                        date_to="2024-03-11", today=today)
        second = server.log[len(calls):]
    return path, first, again, calls, second


def test_a_one_day_run_fits_two_reference_calls_and_the_rerun_makes_the_deferred_one(one_day):
    """Eight bars at 5 a minute leave two slots in the second window: splits and dividends. The official bars' one
    grouped call is deferred; the rerun makes it, and nothing else."""
    _, first, again, calls, second = one_day
    paths = sorted(entry.path for entry in calls if "/range/1/minute/" not in entry.path)
    assert paths == ["/v3/reference/dividends", "/v3/reference/splits"]
    assert len(calls) == 8 + 2 and [entry.path for entry in second] == [
        "/v2/aggs/grouped/locale/us/market/stocks/2024-03-11"]
    assert [(f.kind, f.deferred) for f in first.fetched_references] == [("splits", 0), ("dividends", 0),
                                                                         ("official_daily", 1)]
    assert [(f.kind, f.stats.calls, f.deferred) for f in again.fetched_references] == [("official_daily", 1, 0)]
    windows = {f.kind: (f.date_from, f.date_to) for f in first.fetched_references if f.kind != "official_daily"}
    assert windows == {"splits": (dt.date(2023, 3, 12), dt.date(2024, 3, 12)),
                       "dividends": (dt.date(2023, 3, 12), dt.date(2024, 3, 12))}


def test_dividends_and_official_bars_are_stored_as_the_source_serves_them(storage, one_day):
    path, *_ = one_day
    base = path.parent
    dividends = {(r.ticker, r.ex_dividend_date, r.cash_amount) for r in storage.read(str(base / "stocks_dividends"))
                 .collect()}
    assert dividends == {(d.ticker, d.ex_dividend_date, d.cash_amount) for d in SAMPLE_DIVIDENDS
                         if dt.date(2023, 3, 12) <= d.ex_dividend_date <= dt.date(2024, 3, 12)}
    official = {r.ticker: r for r in storage.read(str(base / "stocks_official_daily")).collect()}
    assert set(official) == set(EIGHT)
    for ticker, row in official.items():
        served = official_daily_bar(ticker, dt.date(2024, 3, 11))
        assert served is not None
        assert (row.open, row.high, row.low, row.close, row.volume) == (served["o"], served["h"], served["l"],
                                                                        served["c"], served["v"])


def test_a_split_listed_late_readjusts_the_days_before_it_on_the_next_daily_build(storage, tmp_path, capsys):
    """The provider lists NVDA's 10-for-1 split of 2024-06-10 only after the run that stored the week before it:
    the next run (for a later day) re-reads the year before its first day, learns it, and the next daily build
    divides the earlier days by ten."""
    from tests.helpers import FakeClock

    path = tmp_path / "stocks_fixed"
    unlisted = tuple(s for s in SAMPLE_SPLITS if (s.ticker, s.execution_date) != ("NVDA", dt.date(2024, 6, 10)))
    with FakeMassiveServer(ApiBehaviour(api_key="k", splits=unlisted)) as server:
        harvest(storage, path, server, FakeClock(), tickers=("NVDA",), date_from="2024-06-03",
                date_to="2024-06-07", today=dt.date(2024, 6, 12))
    assert run_door(daily_bars, ["--table-path", str(path), "--engine", storage.name], capsys)[0] == 0
    before = {r.trade_date: r for r in storage.read(str(tmp_path / "stocks_daily")).collect()}
    assert all(r.split_factor == 1.0 and r.adj_close == r.close for r in before.values())
    with FakeMassiveServer(ApiBehaviour(api_key="k")) as server:
        harvest(storage, path, server, FakeClock(), tickers=("NVDA",), date_from="2024-06-13", date_to="2024-06-13",
                today=dt.date(2024, 6, 14))
        assert [e.path for e in reference_calls(server) if "splits" in e.path] == ["/v3/reference/splits"]
        assert len(aggs_calls(server)) == 1
    code, out, _ = run_door(daily_bars, ["--table-path", str(path), "--engine", storage.name], capsys)
    assert code == 0 and "6 row(s) rewritten" in out  # the five earlier days and the new one
    after = {r.trade_date: r for r in storage.read(str(tmp_path / "stocks_daily")).collect()}
    for day, row in before.items():
        assert after[day].close == row.close and after[day].split_factor == 10.0
        assert after[day].adj_close == pytest.approx(row.close / 10)
    assert after[dt.date(2024, 6, 13)].split_factor == 1.0


def test_a_plan_that_refuses_official_bars_is_a_warning_and_the_bars_are_stored(storage, tmp_path, clock):
    from stockpipe.reports import render_fixed
    from stockpipe.testing import Fault

    with FakeMassiveServer(ApiBehaviour(api_key="k", faults=[Fault("403", ticker="grouped", times=10)])) as server:
        # two tickers' one day leave the free key's window a slot for the grouped call
        report = harvest(storage, tmp_path / "stocks_fixed", server, clock, tickers=EIGHT[:2], date_from="2024-03-11",
                         date_to="2024-03-11", today=dt.date(2024, 3, 14))
        grouped = [e for e in server.log if "/grouped/" in e.path]
    official = next(f for f in report.fetched_references if f.kind == "official_daily")
    assert official.refused and not report.errors() and [e.status for e in grouped] == [403]
    assert "warning: official daily bars not in your plan" in render_fixed(report)
    assert report.rows_written > 0 and not report.failed

"""The assignment's own run on a free key keeps to its floor: a one-day run of the eight tickers makes eight minute-bar
calls (five, then three a window later), and the reference calls take only the two slots the bars leave free in that
window: splits first, then dividends. The official daily bars do not fit: they are deferred (said so in one line), a
later run fetches them, and meanwhile the daily build reads what market_daily.py stored. A paid key defers nothing.
Pacing runs on a fake clock: the run's simulated seconds are what a real window would cost."""

from __future__ import annotations

import datetime as dt

import pytest

import daily_bars
from stockpipe.reference.official_bars import OFFICIAL_SCHEMA
from stockpipe.sample import official_daily_bar
from stockpipe.testing import ApiBehaviour, FakeMassiveServer
from tests.helpers import FakeClock, aggs_calls, reference_calls

pytestmark = pytest.mark.slow
EIGHT = ("AAPL", "MSFT", "GOOGL", "AMZN", "TSLA", "META", "NVDA", "JPM")
DAY, TODAY, EARLIER = dt.date(2024, 3, 11), dt.date(2024, 3, 12), dt.date(2024, 3, 8)
GROUPED = f"/v2/aggs/grouped/locale/us/market/stocks/{DAY}"
DEFERRED = ("Official daily bars deferred: no free call in the pacing window; a later run or market_daily.py "
            "fetches them")


def run(storage, path, server, clock, calls_per_minute):
    """run_fixed for the eight tickers' one day, at a pace, on the injected clock."""
    from stockpipe.config import HarvestConfig
    from stockpipe.harvest import run_fixed
    from stockpipe.landing import default_landing_path

    cfg = HarvestConfig(tickers=EIGHT, date_from=DAY, date_to=DAY, table_path=str(path),
                        landing_path=default_landing_path(str(path)), source="api", base_url=server.base_url,
                        api_key="k", calls_per_minute=calls_per_minute, show_progress=False, today=TODAY,
                        clock=clock, sleep=clock.sleep)
    return run_fixed(cfg, lambda: (storage.spark, storage))


def market_daily_rows() -> list[tuple]:
    """What market_daily.py stores from a grouped answer: AAPL's bar of the run's day and of an earlier one, and a
    ticker the harvester never asks for."""
    rows = []
    for ticker, day in (("AAPL", DAY), ("AAPL", EARLIER), ("IBM", DAY)):
        bar = official_daily_bar(ticker, day) or {"o": 190.0, "h": 191.0, "l": 189.0, "c": 190.5, "v": 1e6,
                                                  "vw": 190.2, "n": 1000}
        rows.append((ticker, day, *(float(bar[k]) for k in ("o", "h", "l", "c", "v", "vw")), int(bar["n"])))
    return rows


def official_rows(storage, base) -> dict[tuple[str, dt.date], float]:
    return {(r.ticker, r.trade_date): r.close for r in storage.read(str(base / "stocks_official_daily")).collect()}


@pytest.fixture(scope="module")
def free_key(tmp_path_factory, storage, spark):
    """The free key's first run (stocks_official_daily already holding what market_daily.py stored), the daily build
    after it, then a later run the same day."""
    from stockpipe.reports import render_fixed

    base = tmp_path_factory.mktemp("free-key")
    path = base / "stocks_fixed"
    storage.write(spark.createDataFrame(market_daily_rows(), OFFICIAL_SCHEMA), str(base / "stocks_official_daily"),
                  mode="overwrite")
    with FakeMassiveServer(ApiBehaviour(api_key="k")) as server:
        clock = FakeClock()
        started = clock.now
        first = run(storage, path, server, clock, calls_per_minute=5)
        elapsed = clock.now - started
        calls = list(server.log)
        official_after_first = official_rows(storage, base)
        # the daily build between the two runs reads the official table as the first left it
        built = daily_bars.main(["--table-path", str(path), "--engine", storage.name])
        daily = {r.ticker: r.official_close for r in storage.read(str(base / "stocks_daily")).collect()}
        later = run(storage, path, server, FakeClock(), calls_per_minute=5)
        second = server.log[len(calls):]
    return {"base": base, "first": first, "elapsed": elapsed, "calls": calls, "text": render_fixed(first),
            "official_after_first": official_after_first, "built": built, "daily": daily, "later": later,
            "second": second}


def test_a_free_key_day_makes_at_most_ten_calls_within_its_floor(free_key):
    calls = free_key["calls"]
    assert len(calls) <= 10 and all(entry.status == 200 for entry in calls)
    assert len(aggs_calls(_Log(calls))) == 8
    assert free_key["elapsed"] <= 1.10 * 60.0  # one window after the first burst, not two


def test_splits_then_dividends_take_the_free_slots_and_the_official_bars_are_deferred(free_key):
    paths = [entry.path for entry in reference_calls(_Log(free_key["calls"]))]
    assert paths == ["/v3/reference/splits", "/v3/reference/dividends"]
    kinds = {f.kind: f for f in free_key["first"].fetched_references}
    assert kinds["splits"].landed is not None and kinds["dividends"].landed is not None
    official = kinds["official_daily"]
    assert official.deferred and official.stats.calls == 0 and official.landed is None and official.error is None


def test_the_deferral_is_one_line_in_the_summary_and_the_runs_record_and_no_error(free_key):
    first = free_key["first"]
    assert free_key["text"].count(DEFERRED) == 1
    assert first.notes() == [DEFERRED]
    assert first.errors() == [] and first.warnings() == []
    # the official table's line counts the bar market_daily.py stored for one of the run's days
    assert first.references.known["official_daily"] == 1 and first.references.versions["official_daily"] is None


def test_the_harvester_keeps_the_official_rows_it_did_not_fetch(free_key):
    assert free_key["official_after_first"] == {(row[0], row[1]): row[5] for row in market_daily_rows()}


def test_the_daily_build_reads_the_official_bar_market_daily_stored(free_key):
    """AAPL's official bar of the day is the one market_daily.py stored; MSFT's is nowhere yet."""
    served = official_daily_bar("AAPL", DAY)
    assert free_key["built"] == 0 and served is not None
    assert free_key["daily"]["AAPL"] == served["c"] and free_key["daily"]["MSFT"] is None


def test_a_later_run_fetches_what_was_deferred(free_key, storage):
    assert [entry.path for entry in free_key["second"]] == [GROUPED]
    later = free_key["later"]
    assert [(f.kind, f.stats.calls, f.deferred) for f in later.fetched_references] == [("official_daily", 1, 0)]
    assert later.notes() == []
    stored = official_rows(storage, free_key["base"])
    assert {t for t, d in stored if d == DAY} == {*EIGHT, "IBM"}  # the eight fetched, IBM's row kept
    assert ("AAPL", EARLIER) in stored


def test_a_paid_key_makes_every_call_and_defers_nothing(storage, tmp_path):
    clock = FakeClock()
    with FakeMassiveServer(ApiBehaviour(api_key="k")) as server:
        report = run(storage, tmp_path / "stocks_fixed", server, clock, calls_per_minute=1000)
        paths = sorted(entry.path for entry in reference_calls(server))
        assert len(server.log) == 8 + 3
    assert paths == [GROUPED, "/v3/reference/dividends", "/v3/reference/splits"]
    assert not any(f.deferred for f in report.fetched_references) and report.notes() == []
    assert clock.sleeps == []


class _Log:
    """A server's log as the helpers read it (they take a server)."""

    def __init__(self, entries) -> None:
        self.log = entries

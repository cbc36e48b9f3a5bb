"""The dashboard: each view with Streamlit's AppTest over tables written by each engine (so delta-rs reads what
delta-spark wrote), the empty and half-built states, the whole market's view over a synthetic market (its derived
tables written with delta-rs in the spec's schemas), and each market once in a real browser (Debian's chromium driven
by playwright) against its server (`python dashboard.py`) on a loopback port."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import daily_bars
import fixed_stock_harvester
from benchmarks.streamlit_server import streamlit_server
from tests.helpers import ROOT

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
BROWSER_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


FIRST, LAST = "2023-12-01", "2024-01-12"  # 29 trading days: enough for sma_20 and volatility_20 on the last days


@pytest.fixture(scope="module")
def tables(storage, tmp_path_factory):
    """The pipeline's tables for two tickers over six weeks, written by the engine under test."""
    base = tmp_path_factory.mktemp(f"dashboard-{storage.name}")
    table = str(base / "stocks_fixed")
    assert fixed_stock_harvester.main(["--source", "sample", "--tickers", "AAPL,NVDA", "--from", FIRST,
                                       "--to", LAST, "--table-path", table, "--engine", storage.name]) == 0
    assert daily_bars.main(["--table-path", table, "--engine", storage.name]) == 0
    return base


def app(base, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("STOCKS_BASE_PATH", str(base))
    return AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60).run()


def charts(at) -> list:
    return list(at.get("vega_lite_chart"))


def spec(chart) -> str:
    return chart.proto.spec


def test_every_view_renders_from_the_tables(tables, monkeypatch):
    at = app(tables, monkeypatch)
    assert not at.exception
    assert at.title[0].value == "Stock pipeline"
    ticker, intraday_ticker, day = list(at.selectbox)[:3]
    assert ticker.options == ["AAPL", "NVDA"] and intraday_ticker.options == ["AAPL", "NVDA"]
    assert len(day.options) == 29 and day.options[-5:] == ["2024-01-08", "2024-01-09", "2024-01-10", "2024-01-11",
                                                          "2024-01-12"]
    assert day.value == "2024-01-12"  # the latest day first
    movers_chart, price_chart, volume_chart, intraday_chart = charts(at)
    assert '"sma 20"' in spec(price_chart) and '"sma 50"' in spec(price_chart)  # the moving averages over the candles
    assert '"_volume"' in spec(volume_chart)
    assert all(f'"{m} min"' in spec(intraday_chart) for m in (5, 15, 60)) and "total_return" in spec(movers_chart)
    movers, leaders, daily, runs, outcomes, checks, tables_health = (frame.value for frame in at.dataframe)
    assert len(daily) == 29 and len(runs) == 2 and list(tables_health["table"]) == [
        "stocks_fixed", "stocks_splits", "stocks_dividends", "stocks_official_daily", "stocks_daily",
        "pipeline_runs", "quality_checks", "stocks_quarantine", "stocks_market_daily", "stocks_market_breadth"]
    assert set(runs["status"]) == {"success"} and len(checks) == 0
    # a clean sample: nothing quarantined, so that table is not there, and that is not a problem; nor is the whole
    # market's (the eight tickers' demo does without it)
    assert list(tables_health["status"]) == ["ok"] * 7 + ["none yet"] * 3
    assert list(outcomes["ticker"]) == ["AAPL", "NVDA"] and set(outcomes["status"]) == {"success"}
    assert at.subheader[0].value == "Top movers on 2024-01-12" and "Last harvest: success" in [
        h.value for h in at.subheader]
    assert any("bars: pre" in caption.value for caption in at.caption)
    assert "No check warned or failed." in [s.value for s in at.success]


def test_the_market_view_ranks_the_latest_day_by_total_return_and_volatility(tables, storage, monkeypatch):
    at = app(tables, monkeypatch)
    movers, leaders = at.dataframe[0].value, at.dataframe[1].value
    latest = {r.ticker: r for r in storage.read(str(tables / "stocks_daily")).collect()
              if str(r.trade_date) == "2024-01-12"}
    assert list(movers["ticker"]) == sorted(latest, key=lambda t: -latest[t].total_return)
    assert list(leaders["ticker"]) == sorted(latest, key=lambda t: -latest[t].volatility_20)
    for row in leaders.to_dict("records"):
        # shown in percent to two decimals, as the charts label returns
        assert row["volatility_20"] == f"{100 * latest[row['ticker']].volatility_20:.2f}%"
        assert float(row["sma_20"].replace(",", "")) > 0
    for row in movers.to_dict("records"):
        assert row["total_return"] == f"{100 * latest[row['ticker']].total_return:+.2f}%"


def test_switching_ticker_and_basis_redraws_without_error(tables, monkeypatch):
    at = app(tables, monkeypatch)
    at.selectbox[0].set_value("NVDA").run()
    traded = numbers(at.dataframe[2].value, "close", "volume")
    at.radio[0].set_value("split-adjusted").run()
    at.selectbox[2].set_value("2024-01-08").run()
    assert not at.exception and len(charts(at)) == 4
    # The table follows the chart's basis: NVDA's 10-for-1 split of 2024-06-10 comes after these weeks, so adjusted
    # closes are a tenth of the traded ones (to the cent: ten times one is within 5 cents), volumes ten times.
    adjusted = numbers(at.dataframe[2].value, "close", "volume")
    assert (adjusted["close"] * 10 - traded["close"]).abs().max() <= 0.05 + 1e-9
    assert (traded["close"] > 100).all() and ((adjusted["volume"] / traded["volume"]).round() == 10).all()
    assert any(c.value.startswith("Split-adjusted prices and volumes") for c in at.caption)


def numbers(frame, *columns: str):
    """Columns of a table as the page shows them (text with thousands separators) read back as numbers."""
    return frame[list(columns)].apply(lambda column: column.str.replace(",", "").astype(float))


def every_cell(at) -> list[str]:
    return [str(value) for frame in at.dataframe for column in frame.value for value in frame.value[column]]


def test_tables_show_units_and_formats_a_reader_expects(tables, monkeypatch, caplog):
    """Returns in percent with their sign (as the charts label them), prices to the cent and volumes with thousands
    separators, an empty cell where a value is missing (never `None`), and no deprecation logged by Streamlit."""
    with caplog.at_level("WARNING"):
        at = app(tables, monkeypatch)
    assert not at.exception
    assert not [cell for cell in every_cell(at) if cell in ("None", "nan", "NaT", "<NA>")]
    daily = at.dataframe[2].value
    assert daily["daily_return"].str.fullmatch(r"([+-]\d+\.\d\d%)?").all()
    assert daily["daily_return"].eq("").sum() == 1  # the first stored day has no previous day: empty, not None
    assert daily["volume"].str.fullmatch(r"\d{1,3}(,\d{3})+").all()
    assert daily["close"].str.fullmatch(r"[\d,]+\.\d\d").all()
    assert "deprecat" not in caplog.text.lower()


def test_the_movers_chart_keeps_a_readable_height_with_two_tickers(tables, monkeypatch):
    """Two bars at 30 px each collapsed the chart to a line and cut its labels: a bar chart is at least ~150 px."""
    at = app(tables, monkeypatch)
    movers = json.loads(spec(charts(at)[0]))
    assert movers["height"] >= 150


def test_the_operations_view_shows_last_night_at_a_glance(tables, storage, spark, tmp_path, monkeypatch):
    """A night whose harvest failed one ticker, with bars quarantined and a failing check, after a run killed the
    night before (abandoned) and a row from before the run lifecycle: the headline says failed with its numbers,
    the runs say each status, the chosen harvest's tickers and failing check are listed. The rows are written by the
    run log's writer and read by the page with delta-rs."""
    import datetime as dt

    from stockpipe.runlog import RunRecord, TickerOutcome, end_run
    from stockpipe.storage.log_table import ArrowLogTable
    from tests.ops_tables import check_row, write_quality

    base = tmp_path / "base"
    shutil.copytree(tables, base)
    log = ArrowLogTable(str(base / "pipeline_runs"))
    night = dt.datetime.now(dt.UTC)
    killed = RunRecord("k" * 32, "fixed_stock_harvester", night - dt.timedelta(days=1), status="abandoned",
                       message="its process 4242 on runner is gone")
    failed = RunRecord("f" * 32, "fixed_stock_harvester", night, status="failed", exit_code=1, duration_s=95.0,
                       message="1 ticker(s) failed: NVDA", ticker_outcomes=[
                           TickerOutcome("AAPL", "partial", 4, [dt.date(2024, 1, 12)], 2, 1, 1, quarantined=3),
                           TickerOutcome("NVDA", "failed", 0, [], 8, 0, 7, error="HTTP 503 after 8 attempts")])
    for row in (killed, failed):
        end_run(log, row)
    write_quality(spark, storage, base, [check_row("f" * 32, "AAPL", "spike", "fail"),
                                         check_row("f" * 32, "AAPL", "completeness", "pass"),
                                         check_row("k" * 32, "NVDA", "staleness", "fail")], [])
    at = app(base, monkeypatch)
    assert not at.exception
    assert "Last harvest: failed" in [h.value for h in at.subheader]
    alerts = at.dataframe[2].value  # the market view's alerts: every warn and fail row, newest first
    assert sorted(alerts["check"]) == ["spike", "staleness"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"started (UTC)": f"{night:%Y-%m-%d %H:%M}", "duration": "1 min 35 s",
                       "tickers stored": "1 of 2", "days refused by the plan": "1", "quarantined bars": "3",
                       "failing checks": "1"}
    assert at.error[0].value == "1 ticker(s) failed: NVDA"
    runs, outcomes, checks = (frame.value for frame in at.dataframe[4:7])
    assert list(runs["status"])[:2] == ["failed", "success"] and "abandoned" in set(runs["status"])
    assert (runs["failing checks"].iloc[0], runs["quarantined"].iloc[0]) == ("1", "3")
    assert outcomes.to_dict("records")[1] == {"ticker": "NVDA", "status": "failed", "days stored": "0",
                                              "days refused": "", "calls": "8", "429s": "0", "retries": "7",
                                              "quarantined": "0", "error": "HTTP 503 after 8 attempts"}
    assert outcomes.to_dict("records")[0]["days refused"] == "2024-01-12"
    assert list(checks["check"]) == ["spike"] and list(checks["status"]) == ["fail"]
    at.selectbox(key="ops_run").set_value("k" * 32).run()  # the night before: killed, no tickers, its own check
    assert not at.exception and list(at.dataframe[6].value["check"]) == ["staleness"]


def test_an_empty_base_path_names_the_commands_instead_of_failing(tmp_path, monkeypatch):
    at = app(tmp_path, monkeypatch)
    assert not at.exception
    messages = " ".join(info.value for info in at.info)
    assert "python daily_bars.py" in messages and "python fixed_stock_harvester.py" in messages
    assert "make demo" in messages
    statuses = dict(zip(at.dataframe[0].value["table"], at.dataframe[0].value["status"], strict=True))
    for optional in ("stocks_quarantine", "stocks_market_daily", "stocks_market_breadth"):
        assert statuses.pop(optional) == "none yet"
    assert all(status.startswith("missing: ") for status in statuses.values())


def test_a_minute_table_without_the_daily_table_still_shows_the_day(tables, tmp_path, monkeypatch):
    shutil.copytree(tables / "stocks_fixed", tmp_path / "stocks_fixed")
    at = app(tmp_path, monkeypatch)
    assert not at.exception and len(charts(at)) == 1
    health = at.dataframe[0].value
    assert health["last OPTIMIZE (UTC)"].iloc[0] == "never"  # not None: the table was never compacted
    assert "python daily_bars.py" in " ".join(info.value for info in at.info)


def require_browser() -> None:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("STOCKS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"STOCKS_REQUIRE_BROWSER=1 but {CHROMIUM} is missing (apt-get install -y chromium)")
        pytest.skip(f"no {CHROMIUM} here (apt-get install -y chromium to run it)")


CHART = "[data-testid='stVegaLiteChart'] canvas, [data-testid='stVegaLiteChart'] svg"


def chart_heights(page) -> list[float]:
    """The drawn height of every chart on the page, in pixels (the visible tab's; hidden tabs draw nothing)."""
    return [box["height"] for box in (chart.bounding_box() for chart in
                                      page.locator("[data-testid='stVegaLiteChart']").all()) if box]


def test_the_page_in_a_real_browser_shows_the_tickers_and_a_chart(tables, tmp_path):
    require_browser()
    from playwright.sync_api import sync_playwright

    with streamlit_server(tables) as url, sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=BROWSER_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url, timeout=60_000)
            page.wait_for_selector("text=Stock pipeline", timeout=60_000)
            # The market view, first: its movers chart (two tickers, drawn at a readable height), the volatility
            # leaders, the alerts.
            page.wait_for_selector("text=Top movers on 2024-01-12", timeout=60_000)
            page.wait_for_selector(CHART, timeout=60_000)
            assert min(chart_heights(page)) >= 150
            assert page.get_by_text("Volatility leaders").is_visible()
            assert page.get_by_text("No check warned or failed.").is_visible()
            page.screenshot(path=str(tmp_path / "market.png"), full_page=True)
            # The daily view: candles with their moving averages, and the ticker picker (a combobox: its chosen
            # ticker is its input's value, the rest its options).
            page.get_by_role("tab", name="Daily").click()
            assert page.get_by_role("combobox", name="Ticker").first.input_value() == "AAPL"
            page.wait_for_selector("text=moving average", timeout=60_000)
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            page.get_by_role("tab", name="Intraday").click()
            page.wait_for_selector("text=moving averages of the close over 5, 15, 60 minutes", timeout=60_000)
            assert page.locator("[data-testid='stException']").count() == 0
            # Operations at both widths a person uses: every table fits its column (a long run message is
            # cut in its cell, not the table at the right edge).
            page.get_by_role("tab", name="Operations").click()
            page.wait_for_selector("text=Last runs, newest first", timeout=60_000)
            for width in (1280, 1400):
                page.set_viewport_size({"width": width, "height": 1000})
                page.wait_for_timeout(1500)
                overflow = page.evaluate("""() => Array.from(document.querySelectorAll('.dvn-scroller'))
                    .filter(s => s.clientWidth > 0).map(s => s.scrollWidth - s.clientWidth)""")
                assert overflow and max(overflow) <= 1, (width, overflow)
        finally:
            browser.close()
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000 and (tmp_path / "market.png").stat().st_size > 10_000


# The whole market: the derived tables of issue #45 (stocks_market_daily by trade_date, stocks_market_breadth),
# written directly with delta-rs over a synthetic market, with a penny stock that quintuples on the last day.
MARKET_TICKERS, MARKET_SESSIONS = 3_000, 260
PENNY = "PNNY"


@dataclass(frozen=True)
class Market:
    base: Path
    daily: pa.Table
    days: list[str]
    split: str  # a ticker that split 2-for-1 in the middle of the stored days


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> Market:
    from benchmarks.dashboard_market import MARKET_DAILY_SCHEMA, breadth, market_daily, write_market

    daily = market_daily(MARKET_TICKERS, MARKET_SESSIONS)
    days = sorted({str(d) for d in pc.unique(daily.column("trade_date")).to_pylist()})
    # $0.01 to $0.05 on a few thousand dollars: the day's largest return by far (the synthetic market's is +300%).
    penny = pa.Table.from_pylist([
        {"ticker": PENNY, "trade_date": dt.date.fromisoformat(days[-2]), "close": 0.01, "volume": 100_000.0,
         "dollar_volume": 1_000.0, "split_factor": 1.0, "adj_close": 0.01, "daily_return": None, "high_52w": None,
         "low_52w": None, "new_high": None, "new_low": None},
        {"ticker": PENNY, "trade_date": dt.date.fromisoformat(days[-1]), "close": 0.05, "volume": 200_000.0,
         "dollar_volume": 10_000.0, "split_factor": 1.0, "adj_close": 0.05, "daily_return": 4.0, "high_52w": None,
         "low_52w": None, "new_high": None, "new_low": None}], schema=MARKET_DAILY_SCHEMA)
    daily = pa.concat_tables([daily, penny])
    base = tmp_path_factory.mktemp("whole-market")
    write_market(base, daily, breadth(daily))
    splits = pc.unique(daily.filter(pc.equal(daily.column("split_factor"), 2.0)).column("ticker")).to_pylist()
    return Market(base, daily, days, splits[0])


def day_rows(market: Market, day: str) -> pa.Table:
    return market.daily.filter(pc.equal(market.daily.column("trade_date"), pa.scalar(dt.date.fromisoformat(day))))


def expected_movers(market: Market, day: str, min_price: float = 1.0, min_dollar_volume: float = 1e6):
    """The day's ten gainers and losers among names with a return, a close of at least `min_price` and a dollar
    volume of at least `min_dollar_volume`, and its ten most active by dollar volume, computed here with Arrow."""
    rows = day_rows(market, day)
    eligible = rows.filter(pc.and_(pc.and_(pc.is_valid(rows.column("daily_return")),
                                           pc.greater_equal(rows.column("close"), min_price)),
                                   pc.greater_equal(rows.column("dollar_volume"), min_dollar_volume)))
    up = eligible.sort_by([("daily_return", "descending")]).slice(0, 10).column("ticker").to_pylist()
    down = eligible.sort_by([("daily_return", "ascending")]).slice(0, 10).column("ticker").to_pylist()
    active = rows.sort_by([("dollar_volume", "descending")]).slice(0, 10).column("ticker").to_pylist()
    return up, down, active


def test_the_market_tables_hold_the_specs_schemas(market):
    from deltalake import DeltaTable

    from benchmarks.dashboard_market import BREADTH_SCHEMA, MARKET_DAILY_SCHEMA

    daily = DeltaTable(str(market.base / "stocks_market_daily"))
    assert pa.schema(daily.schema().to_arrow()) == MARKET_DAILY_SCHEMA
    assert list(daily.metadata().partition_columns) == ["trade_date"]
    assert pa.schema(DeltaTable(str(market.base / "stocks_market_breadth")).schema().to_arrow()) == BREADTH_SCHEMA


def test_the_whole_market_view_ranks_the_movers_among_names_that_trade(market, monkeypatch):
    """Gainers and losers of the latest day among names above $1 and $1M traded, the most active by dollar volume:
    the penny stock that quintupled on $10,000 is not the headline, until the reader lowers both minimums."""
    at = app(market.base, monkeypatch)
    assert not at.exception
    last = market.days[-1]
    assert at.selectbox(key="market_day").value == last  # the latest day first
    headings = [h.value for h in at.subheader]
    assert headings[:4] == [f"Top movers on {last}", f"Most active on {last}", "Market breadth", "Find a ticker"]
    gainers, losers, active = (frame.value for frame in at.dataframe[:3])
    up, down, busiest = expected_movers(market, last)
    assert list(gainers["ticker"]) == up and list(losers["ticker"]) == down and list(active["ticker"]) == busiest
    assert PENNY not in set(gainers["ticker"]) | set(active["ticker"])
    rule = next(c.value for c in at.caption if c.value.startswith("Ranked by daily return"))
    assert "$1.00 or more" in rule and "$1M or more traded" in rule and "penny stock" in rule
    assert gainers["return"].str.fullmatch(r"\+\d+\.\d\d%").all() and gainers["traded"].str.startswith("$").all()
    from benchmarks.dashboard_market import breadth

    metrics = {m.label: m.value for m in at.metric}  # the day in numbers: the breadth table's row
    counts = next(r for r in breadth(market.daily).to_pylist() if str(r["trade_date"]) == last)
    assert metrics == {label: f"{counts[column]:,}" for label, column in (
        ("tickers traded", "tickers"), ("advancers", "advancers"), ("decliners", "decliners"),
        ("unchanged", "unchanged"), ("new 52-week highs", "new_highs"), ("new 52-week lows", "new_lows"))}
    assert counts["tickers"] == day_rows(market, last).num_rows and counts["new_highs"] > 0
    at.select_slider(key="market_floor").set_value("none")
    at.number_input(key="market_min_price").set_value(0.0).run()
    assert not at.exception and at.dataframe[0].value["ticker"].iloc[0] == PENNY


def test_the_market_day_picker_shows_an_earlier_day(market, monkeypatch):
    at = app(market.base, monkeypatch)
    day = market.days[-5]
    at.selectbox(key="market_day").set_value(day).run()
    assert not at.exception and at.subheader[0].value == f"Top movers on {day}"
    up, down, busiest = expected_movers(market, day)
    assert [list(frame.value["ticker"]) for frame in at.dataframe[:3]] == [up, down, busiest]


def test_the_market_search_finds_any_ticker_and_says_when_it_does_not(market, monkeypatch):
    """Typed in lower case, a ticker that split 2-for-1: its latest figures (as traded) and a year of its
    split-adjusted closes; an unknown ticker is named in a warning."""
    at = app(market.base, monkeypatch)
    at.text_input(key="market_search").input(market.split.lower()).run()
    assert not at.exception
    rows = market.daily.filter(pc.equal(market.daily.column("ticker"), market.split)).sort_by("trade_date")
    last = rows.slice(rows.num_rows - 1).to_pylist()[0]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics[f"{market.split} close on {market.days[-1]}"] == f"{last['close']:,.2f}"
    history = json.loads(spec(charts(at)[-1]))
    assert history["encoding"]["y"]["field"] == "adj_close"
    year = [d for d in market.days if d >= str(dt.date.fromisoformat(market.days[-1]) - dt.timedelta(days=365))]
    assert any(f"over {len(year):,} sessions" in c.value for c in at.caption)
    at.text_input(key="market_search").input("NOSUCHX").run()
    assert not at.exception and at.warning[0].value.startswith("No ticker NOSUCHX in stocks_market_daily")


def test_the_market_view_opens_on_one_day_file_and_the_breadth(market, monkeypatch):
    """Partition pruning: the view's first draw opens one data file of stocks_market_daily (the chosen day's, of
    260) and the breadth table's."""
    import streamlit as st

    from stockpipe import readers

    opened: list[str] = []
    original = readers._read_file

    def counting(file, *args, **kwargs):
        opened.append(str(file))
        return original(file, *args, **kwargs)

    st.cache_data.clear()
    monkeypatch.setattr(readers, "_read_file", counting)
    at = app(market.base, monkeypatch)
    assert not at.exception
    daily_files = [f for f in opened if "/stocks_market_daily/" in f]
    assert len(daily_files) == 1 and f"trade_date={market.days[-1]}" in daily_files[0]
    assert len([f for f in opened if "/stocks_market_breadth/" in f]) == 1


def test_every_market_chart_keeps_a_readable_height(market, monkeypatch):
    """Ten bars or three (a minimum close that leaves three movers), a bar chart keeps at least six rows' height plus
    its axis; the charts over time are never lower than 180 px."""
    rows = day_rows(market, market.days[-1])
    traded = rows.filter(pc.and_(pc.is_valid(rows.column("daily_return")),
                                 pc.greater_equal(rows.column("dollar_volume"), 1e6)))
    third = traded.sort_by([("close", "descending")]).column("close")[2].as_py()
    at = app(market.base, monkeypatch)
    at.number_input(key="market_min_price").set_value(third).run()
    assert not at.exception and len(at.dataframe[0].value) == 3  # few enough to have collapsed the chart before
    heights = [json.loads(spec(chart))["height"] for chart in charts(at)]
    assert len(heights) == 5 and min(heights) >= 180, heights  # gainers, losers, most active, breadth, highs/lows


def test_the_whole_market_in_a_real_browser(market, tmp_path):
    """The view over the synthetic market in chromium: the movers, the most active, the breadth chart and the search
    box render; the penny stock is not among the gainers; the search finds a ticker and names an unknown one. The
    page opened again shows the movers within 3 s of navigating (the first opening also pays the server's imports
    and the browser's download of Streamlit's scripts: both printed, and timed over 11,000 tickers by
    benchmarks/dashboard_market.py)."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with streamlit_server(market.base) as url, sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=BROWSER_FLAGS)
        try:
            loads = []
            # A visitor on a cold server, the same visitor again, a new visitor (a fresh browser context).
            for fresh in (True, False, True):
                if fresh:
                    page = browser.new_context(viewport={"width": 1280, "height": 1100}).new_page()
                started = time.monotonic()
                page.goto(url, timeout=60_000)
                page.wait_for_selector("text=Gainers", timeout=60_000)
                page.wait_for_selector(CHART, timeout=60_000)
                loads.append(time.monotonic() - started)
            print(f"whole market ({MARKET_TICKERS:,} tickers x {MARKET_SESSIONS} sessions), navigation to the movers "
                  f"chart: {loads[0]:.2f} s on a cold server, {loads[1]:.2f} s opened again, {loads[2]:.2f} s for a "
                  "new visitor")
            assert loads[1] < 3.0, loads
            page.wait_for_selector(f"text=Top movers on {market.days[-1]}", timeout=60_000)
            for text in ("Losers", f"Most active on {market.days[-1]}", "Market breadth", "advance-decline line"):
                page.wait_for_selector(f"text={text}", timeout=60_000)
            page.wait_for_function("document.querySelectorAll(\"[data-testid='stVegaLiteChart'] svg, "
                                   "[data-testid='stVegaLiteChart'] canvas\").length >= 5", timeout=60_000)
            assert min(chart_heights(page)) >= 150
            up, _, _ = expected_movers(market, market.days[-1])
            page.wait_for_selector(f"[data-testid='stDataFrame'] td >> text={up[0]}", state="attached",
                                   timeout=60_000)  # the grid draws on a canvas; its cells, for readers, hidden
            gainers = page.locator("[data-testid='stDataFrame']").first.locator("td").all_inner_texts()
            assert up[0] in gainers and PENNY not in gainers
            search = page.locator("input[aria-label='Ticker']")
            search.fill(market.split.lower())
            search.press("Enter")
            page.wait_for_selector(f"text={market.split} close on {market.days[-1]}", timeout=60_000)
            page.set_viewport_size({"width": 1280, "height": 3400})  # Streamlit scrolls inside: the whole view
            page.wait_for_timeout(1500)
            page.screenshot(path=str(tmp_path / "market_view.png"), full_page=True)
            search.fill("NOSUCHX")
            search.press("Enter")
            page.wait_for_selector("text=No ticker NOSUCHX in stocks_market_daily", timeout=60_000)
            assert page.locator("[data-testid='stException']").count() == 0
        finally:
            browser.close()
    assert (tmp_path / "market_view.png").stat().st_size > 50_000

"""The sample source's realism and determinism, its corporate actions and injected faults, and the sample server's
answers (minute and daily aggregates, grouped daily, splits and dividends lists)."""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal

import numpy as np
import pytest
import requests

from stockpipe import DEFAULT_TICKERS
from stockpipe.market_calendar import NEW_YORK, session_hours, trading_days
from stockpipe.sample import (
    PROFILES,
    SAMPLE_DIVIDENDS,
    SAMPLE_SPLITS,
    Dividend,
    SampleApiServer,
    Split,
    daily_bars,
    day_bars,
    official_daily_bar,
    range_bars,
    sample_fault_details,
    sample_faults,
    split_factor,
)
from stockpipe.sample.faults import with_minute_faults
from stockpipe.sample.marketday import market_day
from stockpipe.sample.universe import (
    ACTIVE_HEAD,
    MARKET_SIZE,
    PLACEHOLDERS,
    is_sample_symbol,
    market_symbols,
    minutes_share,
    one_slip,
    otc_symbols,
)
from stockpipe.testing import ApiBehaviour, FakeMassiveServer, Fault

MONDAY, FRIDAY = dt.date(2024, 1, 8), dt.date(2024, 1, 12)
OTHER = market_symbols()[8]  # the most active synthetic name of the sample market
STEADY = ("AAPL", "MSFT", "JPM", "GOOGL", "AMZN", "META")
ANCHOR_YEARS = range(2019, 2026)
# Years whose daily paths the statistics below are measured on: the anchored span, both ends and the middle.
MEASURED_YEARS = (2019, 2021, 2023, 2025)


def ny(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, NEW_YORK)


def ms(day: dt.date, hh: int, mm: int) -> int:
    return int(dt.datetime.combine(day, dt.time(hh, mm), NEW_YORK).timestamp() * 1000)


def regular(bars: dict[str, np.ndarray], day: dt.date) -> np.ndarray:
    """The regular session's bars: 09:30 through the bar stamped at the calendar's close, inclusive."""
    hours = session_hours(day)
    return (bars["t"] >= hours.open.timestamp() * 1000) & (bars["t"] <= hours.close.timestamp() * 1000)


def first_session(year: int) -> dt.date:
    return trading_days(dt.date(year, 1, 1), dt.date(year, 1, 10))[0]


@pytest.fixture(scope="module")
def paths() -> dict[str, dict[str, np.ndarray]]:
    """Each default ticker's official daily bars over MEASURED_YEARS, on today's basis (split factors divided out),
    with the year each day belongs to, so statistics never straddle two years' gap."""
    out = {}
    for ticker in DEFAULT_TICKERS:
        parts = []
        for year in MEASURED_YEARS:
            bars = daily_bars(ticker, dt.date(year, 1, 1), dt.date(year, 12, 31))
            days = [ny(int(t)).date() for t in bars["t"]]
            factor = np.array([split_factor(ticker, day) for day in days])
            parts.append({"o": bars["o"] / factor, "c": bars["c"] / factor, "year": np.full(len(days), year)})
        out[ticker] = {key: np.concatenate([p[key] for p in parts]) for key in ("o", "c", "year")}
    return out


def within_years(path: dict[str, np.ndarray], values: np.ndarray) -> np.ndarray:
    """Day-over-day values whose two days fall in the same measured year."""
    return values[path["year"][1:] == path["year"][:-1]]


# -- calendar and session ------------------------------------------------------------------------------------------
def test_only_nyse_trading_days_have_bars():
    # 2024-01-13/14 weekend, 2024-01-15 Martin Luther King Jr. Day, 2024-03-29 Good Friday.
    assert trading_days(dt.date(2024, 1, 12), dt.date(2024, 1, 16)) == [dt.date(2024, 1, 12), dt.date(2024, 1, 16)]
    assert range_bars("AAPL", dt.date(2024, 3, 29), dt.date(2024, 3, 29))["t"].size == 0
    assert official_daily_bar("AAPL", dt.date(2024, 3, 29)) is None


def test_regular_session_runs_0930_through_the_close_stamp_in_winter_and_summer():
    for day in (dt.date(2024, 1, 8), dt.date(2024, 7, 8)):
        bars = day_bars("MSFT", day)
        times = [ny(int(t)) for t in bars["t"]]
        session = [t for t in times if dt.time(9, 30) <= t.time() <= dt.time(16, 0)]
        assert len(session) == 391 and session[0].time() == dt.time(9, 30) and session[-1].time() == dt.time(16, 0)
        assert min(times).time() >= dt.time(4, 0) and max(times).time() <= dt.time(19, 59)
        # Extended hours are thin: most of their minutes have no bar.
        assert len(times) - 391 < 0.5 * (330 + 239)


def test_early_close_day_has_its_closing_print_in_the_1300_bar():
    day = dt.date(2024, 11, 29)  # the Friday after Thanksgiving
    bars = day_bars("MSFT", day)
    times = [ny(int(t)).time() for t in bars["t"]]
    session = regular(bars, day)
    assert session.sum() == 211 and times[int(np.flatnonzero(session)[-1])] == dt.time(13, 0)
    assert max(times) < dt.time(17, 0)
    volume = bars["v"][session]
    assert volume[-1] > 5 * np.median(volume)
    assert official_daily_bar("MSFT", day)["c"] == bars["c"][session][-1]


def test_a_day_is_identical_whatever_range_was_asked():
    day = dt.date(2024, 1, 10)
    alone = day_bars.__wrapped__("NVDA", day)
    # The day in a week, and deep in a longer range (another place in the blocks the generator works in).
    for date_from in (MONDAY, dt.date(2023, 11, 1)):
        wide = range_bars("NVDA", date_from, FRIDAY)
        mask = np.isin(wide["t"], alone["t"])
        assert mask.sum() == alone["t"].size
        for key in ("o", "h", "l", "c", "v", "vw", "n"):
            assert np.array_equal(wide[key][mask], alone[key]), key
        daily = daily_bars("NVDA", date_from, FRIDAY)
        assert daily["c"][daily["t"] == ms(day, 0, 0)][0] == official_daily_bar("NVDA", day)["c"]


def test_bars_are_sane_in_cents_and_volumes_mix_whole_and_fractional():
    bars = range_bars("TSLA", MONDAY, FRIDAY)
    assert (bars["l"] <= np.minimum(bars["o"], bars["c"])).all()
    assert (bars["h"] >= np.maximum(bars["o"], bars["c"])).all()
    for key in ("o", "h", "l", "c"):
        assert all(Decimal(str(float(x))).as_tuple().exponent >= -2 for x in bars[key])
    whole = np.mod(bars["v"], 1) == 0
    assert 0.5 < whole.mean() < 0.95
    assert (np.diff(bars["t"]) > 0).all()
    # Some thin extended-hours bars come without vw/n; no regular bar does.
    in_session = np.zeros(bars["t"].size, dtype=bool)
    for day in trading_days(MONDAY, FRIDAY):
        in_session |= regular(bars, day)
    assert bars["optional_missing"].any() and not bars["optional_missing"][in_session].any()


# -- the daily path: realism ----------------------------------------------------------------------------------------
def test_days_open_near_the_previous_close(paths):
    for ticker, path in paths.items():
        gaps = within_years(path, np.abs(np.log(path["o"][1:] / path["c"][:-1])))
        assert 0.002 <= np.median(gaps) <= 0.01, ticker


def test_daily_volatility_is_a_large_caps_and_higher_for_tsla_and_nvda(paths):
    volatility = {ticker: within_years(path, np.diff(np.log(path["c"]))).std() for ticker, path in paths.items()}
    for ticker in STEADY:
        assert 0.01 <= volatility[ticker] <= 0.02, (ticker, volatility[ticker])
    for ticker in ("TSLA", "NVDA"):
        assert max(volatility[t] for t in STEADY) < volatility[ticker] < 0.045, (ticker, volatility[ticker])


def test_the_path_passes_each_tickers_real_level_as_traded_at_the_start_of_each_year():
    levels = {"AAPL": (157, 297, 133, 178, 130, 187, 244), "GOOGL": (1050, 1368, 1757, 2900, 89, 139, 190),
              "NVDA": (136, 238, 524, 300, 146, 481, 138), "JPM": (98, 140, 127, 159, 134, 170, 240)}
    for ticker in DEFAULT_TICKERS:
        for year, level in zip(ANCHOR_YEARS, levels.get(ticker, PROFILES[ticker].anchors), strict=True):
            close = official_daily_bar(ticker, first_session(year))["c"]
            assert close == pytest.approx(level, rel=0.03), (ticker, year)


def test_prices_jump_as_traded_at_each_split_and_not_on_todays_basis():
    for split in SAMPLE_SPLITS:
        before, on = trading_days(split.execution_date - dt.timedelta(days=7), split.execution_date)[-2:]
        ratio = daily_bars(split.ticker, before, before)["c"][0] / daily_bars(split.ticker, on, on)["o"][0]
        assert ratio == pytest.approx(split.ratio, rel=0.05), split


def test_the_sample_spans_2000_to_the_end_of_the_calendar_and_any_ticker():
    for day in (dt.date(2000, 1, 3), dt.date(2008, 10, 10), dt.date(2027, 6, 1)):
        for ticker in ("NVDA", "ZZZZ"):
            bar = official_daily_bar(ticker, day)
            assert bar is not None and 10 < bar["c"] < 5000, (ticker, day)
    # A ticker outside the eight: a large cap's volatility, today's level from its checksum (as before).
    bars = daily_bars("ZZZZ", dt.date(2024, 1, 1), dt.date(2024, 12, 31))
    assert 0.01 <= np.diff(np.log(bars["c"])).std() <= 0.02
    assert np.median(np.abs(np.log(bars["o"][1:] / bars["c"][:-1]))) <= 0.01


def test_the_price_falls_by_about_the_dividend_on_its_ex_date():
    gaps, yields = [], []
    for dividend in SAMPLE_DIVIDENDS:
        if dividend.ticker in ("AAPL", "MSFT", "JPM") and dividend.ex_dividend_date.year <= 2025:
            before, ex = trading_days(dividend.ex_dividend_date - dt.timedelta(days=7), dividend.ex_dividend_date)[-2:]
            bars = daily_bars(dividend.ticker, before, ex)
            gaps.append(bars["o"][1] / bars["c"][0] - 1)
            yields.append(dividend.cash_amount / bars["c"][0])
    # Each gap is noise (sd ~0.5 %) plus minus the yield: over 84 ex-dates the noise averages out, the drop does not.
    assert np.mean(gaps) < -0.002
    assert abs(np.mean(gaps) + np.mean(yields)) < 0.0015


# -- the minutes: shape and the quality rules the pipeline checks ---------------------------------------------------
def sample_days() -> list[tuple[str, dt.date]]:
    """Days across the whole span (low and high price levels, DST, early closes) for every default ticker and one
    other."""
    days = [dt.date(2000, 3, 1), dt.date(2005, 11, 25), dt.date(2012, 6, 4), dt.date(2019, 3, 11),
            dt.date(2020, 3, 16), dt.date(2022, 8, 25), dt.date(2024, 11, 29), dt.date(2027, 1, 5)]
    # FWTK: the lowest level a checksum gives (as traded about $10 in 2000), where cents rounding bites most.
    return [(ticker, day) for ticker in (*DEFAULT_TICKERS, "ZZZZ", "FWTK") for day in days]


def test_the_clean_market_passes_every_quality_rule():
    for ticker, day in sample_days():
        bars = day_bars(ticker, day)
        session = regular(bars, day)
        hours = session_hours(day)
        assert session.sum() == (hours.close - hours.open) // dt.timedelta(minutes=1) + 1, (ticker, day)
        assert (bars["v"][session] > 0).all()
        closes = bars["c"][session]
        moves = np.diff(np.log(closes))
        mad = np.median(np.abs(moves - np.median(moves)))
        assert np.abs(moves).max() <= max(10 * mad, 0.05), (ticker, day)
        unchanged = np.concatenate([[0], np.diff(closes) == 0, [0]])
        edges = np.flatnonzero(np.diff(unchanged))
        longest = (edges[1::2] - edges[::2]).max(initial=0) + 1
        assert longest < 30, (ticker, day)


def test_volume_is_u_shaped_with_opening_and_closing_prints():
    for ticker in DEFAULT_TICKERS:
        for day in trading_days(dt.date(2023, 3, 1), dt.date(2023, 3, 8)):
            volume = day_bars(ticker, day)["v"][regular(day_bars(ticker, day), day)]
            typical = np.median(volume)
            midday = volume[150:270].mean()  # 12:00-13:59
            assert volume[1:31].mean() > 1.3 * midday and volume[-31:-1].mean() > 1.3 * midday, (ticker, day)
            assert volume[0] > 4 * typical and volume[-1] > 8 * typical, (ticker, day)


# -- corporate actions ----------------------------------------------------------------------------------------------
def test_the_sample_splits_are_exactly_the_seven_real_ones():
    assert {(s.ticker, s.execution_date.isoformat(), s.split_to / s.split_from) for s in SAMPLE_SPLITS} == {
        ("AAPL", "2020-08-31", 4), ("TSLA", "2020-08-31", 5), ("TSLA", "2022-08-25", 3), ("AMZN", "2022-06-06", 20),
        ("GOOGL", "2022-07-18", 20), ("NVDA", "2021-07-20", 4), ("NVDA", "2024-06-10", 10)}


def test_dividends_are_quarterly_where_the_real_ones_are():
    by_ticker: dict[str, list[Dividend]] = {}
    for dividend in SAMPLE_DIVIDENDS:
        by_ticker.setdefault(dividend.ticker, []).append(dividend)
    for ticker in ("AAPL", "MSFT", "JPM", "NVDA"):
        for year in ANCHOR_YEARS:
            assert sum(d.ex_dividend_date.year == year for d in by_ticker[ticker]) == 4, (ticker, year)
    assert min(d.ex_dividend_date for d in by_ticker["META"]).year == 2024
    assert min(d.ex_dividend_date for d in by_ticker["GOOGL"]) >= dt.date(2024, 6, 1)
    assert set(by_ticker) == {"AAPL", "MSFT", "JPM", "META", "GOOGL", "NVDA"}
    for dividend in SAMPLE_DIVIDENDS:
        assert trading_days(dividend.ex_dividend_date, dividend.ex_dividend_date), dividend
        assert dividend.declaration_date < dividend.ex_dividend_date <= dividend.record_date < dividend.pay_date
        assert (dividend.frequency, dividend.dividend_type, dividend.currency) == (4, "CD", "USD")
        # A dividend is a small share of the price: amounts as declared, on the basis the stock traded then.
        price = official_daily_bar(dividend.ticker, dividend.ex_dividend_date)["o"]
        assert 0.00002 < dividend.cash_amount / price < 0.015, dividend
    assert len({d.id for d in SAMPLE_DIVIDENDS}) == len(SAMPLE_DIVIDENDS)


def test_aapls_dividends_before_its_split_are_on_the_old_basis():
    amounts = {d.ex_dividend_date: d.cash_amount for d in SAMPLE_DIVIDENDS if d.ticker == "AAPL"}
    assert amounts[dt.date(2020, 8, 7)] == pytest.approx(4 * amounts[dt.date(2020, 11, 6)])


def test_ids_are_stable_and_a_dividend_is_never_a_split():
    split = Split("AAPL", dt.date(2020, 8, 31), 1, 4)
    # The id the splits table already stores for this split: it must not move.
    assert split.id == "E" + hashlib.blake2b(b"AAPL|2020-08-31", digest_size=32).hexdigest()
    dividend = Dividend("AAPL", dt.date(2020, 8, 31), 0.1, dt.date(2020, 8, 1), dt.date(2020, 9, 1),
                        dt.date(2020, 9, 10))
    assert dividend.id != split.id and dividend.id.startswith("E") and len(dividend.id) == 65


# -- the server -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server():
    with SampleApiServer(universe=(OTHER, "AAPL", "FOO")) as running:
        yield running


def get(server: SampleApiServer, path: str, **params: object) -> dict:
    response = requests.get(f"{server.base_url}{path}", params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def follow(server: SampleApiServer, path: str, **params: object) -> tuple[list[dict], int]:
    """Every result across pages, and how many pages it took."""
    page = get(server, path, **params)
    results, pages = list(page.get("results", [])), 1
    while "next_url" in page:
        page = get(server, page["next_url"].removeprefix(server.base_url))
        results += page.get("results", [])
        pages += 1
    return results, pages


def test_daily_range_serves_the_official_bars_stamped_at_midnight_new_york(server):
    page = get(server, "/v2/aggs/ticker/AAPL/range/1/day/2024-01-05/2024-01-16", adjusted="false")
    days = trading_days(dt.date(2024, 1, 5), dt.date(2024, 1, 16))
    assert page["resultsCount"] == len(days) == 7 and "next_url" not in page
    assert page["results"] == [official_daily_bar("AAPL", day) for day in days]
    assert [ny(bar["t"]) for bar in page["results"]] == [dt.datetime.combine(d, dt.time(), NEW_YORK) for d in days]


def test_daily_range_adjusted_divides_the_days_before_a_split_and_pages_backwards(server):
    path = "/v2/aggs/ticker/NVDA/range/1/day/2024-06-05/2024-06-12"
    traded = get(server, path, adjusted="false")["results"]
    adjusted, pages = follow(server, path, adjusted="true", sort="desc", limit=2)
    assert pages == 3 and [bar["t"] for bar in adjusted] == [bar["t"] for bar in reversed(traded)]
    for raw, adj in zip(traded, reversed(adjusted), strict=True):
        factor = 10 if ny(raw["t"]).date() < dt.date(2024, 6, 10) else 1
        assert adj["c"] == pytest.approx(raw["c"] / factor) and adj["v"] == pytest.approx(raw["v"] * factor)


def test_the_official_daily_bar_agrees_with_the_minutes(server):
    for ticker in ("MSFT", "NVDA"):
        for day in (MONDAY, dt.date(2024, 11, 29)):
            minutes = day_bars(ticker, day)
            session = regular(minutes, day)
            official = official_daily_bar(ticker, day)
            assert official["o"] == minutes["o"][session][0] and official["c"] == minutes["c"][session][-1]
            assert official["h"] == minutes["h"][session].max() and official["l"] == minutes["l"][session].min()
            assert 1.01 * minutes["v"].sum() - 1 <= official["v"] <= 1.06 * minutes["v"].sum() + 1
            assert official["l"] <= official["vw"] <= official["h"] and official["n"] >= minutes["n"].sum()


def test_grouped_daily_holds_every_universe_ticker_consistent_with_its_minutes(server):
    page = get(server, "/v2/aggs/grouped/locale/us/market/stocks/2024-01-08", adjusted="false")
    # The universe first (FOO is not a sample ticker), then the rest of the synthetic market: every listed name.
    assert [bar["T"] for bar in page["results"][:9]] == [*DEFAULT_TICKERS, OTHER]
    assert sorted(bar["T"] for bar in page["results"]) == sorted(market_symbols())
    assert page["resultsCount"] == page["queryCount"] == MARKET_SIZE and page["adjusted"] is False
    assert "next_url" not in page
    for bar in page["results"][:9]:
        official = official_daily_bar(bar["T"], MONDAY)
        assert {k: v for k, v in bar.items() if k not in ("T", "t")} == {k: v for k, v in official.items() if k != "t"}
        minutes = range_bars(bar["T"], MONDAY, MONDAY)
        assert bar["c"] == minutes["c"][minutes["t"] == ms(MONDAY, 16, 0)][0]  # the closing print's bar
        assert bar["v"] >= minutes["v"].sum()
        assert ny(bar["t"]) == dt.datetime.combine(MONDAY, dt.time(16, 0), NEW_YORK)  # as the contract stamps it


def test_grouped_daily_of_the_whole_market_agrees_with_the_flat_files_prints_and_adds_otc_on_request(server):
    page = get(server, "/v2/aggs/grouped/locale/us/market/stocks/2024-01-08", adjusted="false", include_otc="true")
    by_ticker = {bar["T"]: bar for bar in page["results"]}
    assert set(otc_symbols()) <= set(by_ticker) and len(by_ticker) == MARKET_SIZE + len(otc_symbols())
    assert not set(otc_symbols()) & set(market_symbols())
    # The busiest synthetic names trade their opening and closing prints: the grouped bar's open and close are the
    # flat file's minutes at 09:30 and 16:00.
    head = tuple(t for t in market_symbols()[8:40] if t != OTHER)  # OTHER, in the universe, has its own bars
    minutes = market_day(MONDAY, head).minutes
    for ticker in head:
        mine = minutes["ticker"] == ticker
        at = {int(t): (o, c)
              for t, o, c in zip(minutes["t"][mine], minutes["o"][mine], minutes["c"][mine], strict=True)}
        bar = by_ticker[ticker]
        assert bar["o"] == at[ms(MONDAY, 9, 30)][0] and bar["c"] == at[ms(MONDAY, 16, 0)][1]
        assert bar["l"] <= min(bar["o"], bar["c"]) <= max(bar["o"], bar["c"]) <= bar["h"] and bar["l"] <= bar["vw"]
    # Volume is heavy-tailed, as the market's is: the busiest tenth trades most of the shares.
    volumes = sorted((bar["v"] * bar["c"] for bar in page["results"]), reverse=True)
    assert sum(volumes[:len(volumes) // 10]) > 0.8 * sum(volumes)
    assert len(get(server, "/v2/aggs/grouped/locale/us/market/stocks/2024-01-08")["results"]) == MARKET_SIZE


def test_grouped_daily_faults_break_two_rules_a_day_only_when_asked():
    with SampleApiServer(faults=True) as faulty:
        for day in ("2024-01-08", "2024-01-09"):
            results = get(faulty, f"/v2/aggs/grouped/locale/us/market/stocks/{day}", adjusted="false")["results"]
            assert sum("c" not in bar for bar in results) == 1
            assert sum("c" in bar and bar["h"] < bar["l"] for bar in results) == 1


def test_grouped_daily_has_no_bar_for_a_day_not_over_yet():
    during = dt.datetime.combine(MONDAY, dt.time(15, 0), NEW_YORK).timestamp()
    with SampleApiServer(now=lambda: during) as early:
        page = get(early, "/v2/aggs/grouped/locale/us/market/stocks/2024-01-08", adjusted="false")
        assert "results" not in page and page["resultsCount"] == 0


def test_grouped_daily_of_a_holiday_is_ok_and_empty_and_adjusts_by_default(server):
    holiday = get(server, "/v2/aggs/grouped/locale/us/market/stocks/2024-01-15")
    assert holiday["status"] == "OK" and holiday["resultsCount"] == 0 and "results" not in holiday
    before_split = get(server, "/v2/aggs/grouped/locale/us/market/stocks/2024-06-07")
    nvda = next(bar for bar in before_split["results"] if bar["T"] == "NVDA")
    assert before_split["adjusted"] is True
    assert nvda["c"] == pytest.approx(official_daily_bar("NVDA", dt.date(2024, 6, 7))["c"] / 10)


def test_dividends_list_filters_sorts_and_pages(server):
    wanted = [d.as_json() for d in SAMPLE_DIVIDENDS
              if d.ticker == "JPM" and dt.date(2021, 1, 1) <= d.ex_dividend_date < dt.date(2022, 7, 5)]
    results, pages = follow(server, "/v3/reference/dividends", ticker="JPM", limit=2,
                            **{"ex_dividend_date.gte": "2021-01-01", "ex_dividend_date.lt": "2022-07-05"})
    assert results == wanted and len(wanted) == 6 and pages == 3
    exact = get(server, "/v3/reference/dividends", ex_dividend_date="2024-06-10")["results"]
    assert [(d["ticker"], d["cash_amount"]) for d in exact] == [("GOOGL", 0.2)]
    by_ticker = get(server, "/v3/reference/dividends", sort="ticker", order="desc", limit=1000,
                    **{"ex_dividend_date.gte": "2024-01-01", "ex_dividend_date.lte": "2024-12-31"})["results"]
    assert [d["ticker"] for d in by_ticker] == sorted((d["ticker"] for d in by_ticker), reverse=True)
    assert {d["ticker"] for d in by_ticker} == {"AAPL", "MSFT", "JPM", "META", "GOOGL", "NVDA"}
    assert len(get(server, "/v3/reference/dividends")["results"]) == 10  # the API's default limit
    nothing = get(server, "/v3/reference/dividends", ticker="TSLA")
    assert "results" not in nothing and "next_url" not in nothing


def test_a_server_can_announce_a_late_dividend():
    late = Dividend("TSLA", dt.date(2025, 3, 3), 1.0, dt.date(2025, 2, 3), dt.date(2025, 3, 4), dt.date(2025, 3, 20),
                    frequency=0, dividend_type="SC")
    with SampleApiServer(dividends=(*SAMPLE_DIVIDENDS, late)) as announcing:
        assert get(announcing, "/v3/reference/dividends", ticker="TSLA")["results"] == [late.as_json()]


def test_a_symbol_the_sample_does_not_list_is_answered_as_the_api_answers_an_unknown_one(server):
    """A typo of one of the eight, a placeholder: status OK, no results, as the real API answers an unknown symbol,
    for minutes and for days."""
    for symbol in ("APPL", "FOO"):
        for span in ("minute", "day"):
            page = get(server, f"/v2/aggs/ticker/{symbol}/range/1/{span}/2024-01-08/2024-01-12", adjusted="false")
            assert (page["status"], page["resultsCount"], "results" in page) == ("OK", 0, False), (symbol, span)
    assert get(server, f"/v2/aggs/ticker/{OTHER}/range/1/minute/2024-01-08/2024-01-08")["resultsCount"] > 0


def test_the_server_answers_only_minutes_that_have_ended():
    """At 08:05 New York the day's bars end with the 08:04 minute (the API aggregates a minute once it is over), and
    the day has no official daily bar yet; the day before is whole."""
    at = dt.datetime(2024, 1, 9, 8, 5, 30, tzinfo=NEW_YORK).timestamp()
    with SampleApiServer(now=lambda: at) as early:
        minutes, _ = follow(early, "/v2/aggs/ticker/AAPL/range/1/minute/2024-01-08/2024-01-09", adjusted="false")
        daily = get(early, "/v2/aggs/ticker/AAPL/range/1/day/2024-01-08/2024-01-09", adjusted="false")["results"]
        grouped = get(early, "/v2/aggs/grouped/locale/us/market/stocks/2024-01-09", adjusted="false")
    served = [bar["t"] for bar in minutes]
    whole_monday = range_bars("AAPL", MONDAY, MONDAY)["t"].tolist()
    assert served[:len(whole_monday)] == whole_monday
    tuesday = [t for t in served if ny(t).date() == dt.date(2024, 1, 9)]
    assert tuesday and ny(tuesday[-1]) <= dt.datetime(2024, 1, 9, 8, 4, tzinfo=NEW_YORK)
    assert tuesday == [t for t in range_bars("AAPL", dt.date(2024, 1, 9), dt.date(2024, 1, 9))["t"].tolist()
                       if t + 60_000 <= at * 1000]
    assert [ny(bar["t"]).date() for bar in daily] == [MONDAY] and "results" not in grouped


# -- the sample market's universe -------------------------------------------------------------------------------------
def test_the_market_has_its_size_the_eight_first_and_the_providers_symbol_shapes():
    symbols = market_symbols()
    assert len(symbols) == len(set(symbols)) == MARKET_SIZE and symbols[:8] == DEFAULT_TICKERS
    assert any("." in s for s in symbols) and any(s[-2:-1] == "p" for s in symbols)  # BRK.B-like, MRTpA-like
    assert all(s.replace(".", "").isalpha() and s[0].isupper() for s in symbols)


def test_no_sample_symbol_is_a_slip_of_the_eight_or_a_placeholder():
    slips = set().union(*(one_slip(name) for name in DEFAULT_TICKERS)) - set(DEFAULT_TICKERS)
    assert {"APPL", "MSFTT", "GOGL", "JMP"} <= slips
    assert not (slips | PLACEHOLDERS) & set(market_symbols())
    assert not any(is_sample_symbol(s) for s in ("APPL", "FOO", "XYZ", "aapl"))


def test_liquidity_is_heavy_tailed_as_in_the_providers_files():
    """A few hundred names trade every minute; most trade a few dozen to a hundred minutes of the 960; a day of the
    whole market is about 2 M bars."""
    shares = minutes_share(np.arange(1, MARKET_SIZE + 1))
    assert (shares == 1).sum() == ACTIVE_HEAD
    assert 30 <= 960 * np.median(shares) <= 120 and 960 * shares[-1] >= 24
    assert 1.5e6 <= 960 * shares.sum() <= 2.5e6


def test_unknown_paths_are_404_and_other_spans_400(server):
    assert requests.get(f"{server.base_url}/v3/reference/tickers", timeout=5).status_code == 404
    url = f"{server.base_url}/v2/aggs/ticker/AAPL/range/1/hour/2024-01-08/2024-01-08"
    assert requests.get(url, timeout=5).status_code == 400


def test_server_rolling_window_answers_429_with_retry_after():
    with FakeMassiveServer(ApiBehaviour(calls_per_window=2, window_seconds=30, rate_limit_retry_after=True)) as server:
        url = f"{server.base_url}/v2/aggs/ticker/AAPL/range/1/minute/2024-01-08/2024-01-08"
        codes = [requests.get(url, timeout=5) for _ in range(3)]
    assert [r.status_code for r in codes] == [200, 200, 429]
    assert 1 <= int(codes[2].headers["Retry-After"]) <= 30


def test_fake_server_faults_and_plan_refusals_reach_the_new_endpoints():
    behaviour = ApiBehaviour(faults=[Fault("503", ticker="dividends")], plan_refuses_from=dt.date(2024, 6, 1))
    with FakeMassiveServer(behaviour) as fake:
        base = fake.base_url
        assert requests.get(f"{base}/v3/reference/splits", timeout=5).status_code == 200
        assert requests.get(f"{base}/v3/reference/dividends", timeout=5).status_code == 503
        assert requests.get(f"{base}/v3/reference/dividends", timeout=5).status_code == 200
        assert requests.get(f"{base}/v2/aggs/grouped/locale/us/market/stocks/2024-06-03", timeout=5).status_code == 403
        assert requests.get(f"{base}/v2/aggs/grouped/locale/us/market/stocks/2024-05-31", timeout=5).status_code == 200


# -- injected faults ------------------------------------------------------------------------------------------------
def demo_week_faults() -> dict[str, list]:
    found: dict[str, list] = {}
    for day in trading_days(MONDAY, FRIDAY):
        for ticker in DEFAULT_TICKERS:
            for fault in sample_fault_details(ticker, day):
                found.setdefault(fault.kind, []).append(fault)
    return found


def test_the_demo_week_shows_every_fault_kind_and_stays_mostly_clean():
    found = demo_week_faults()
    assert set(found) == {"bad_print", "missing_minutes", "malformed_bar", "short_answer"}
    faulted = {(f.ticker, f.day) for faults in found.values() for f in faults}
    assert len(faulted) <= 8 < 40 - len(faulted)
    assert all(sample_faults(f.ticker, f.day) >= {f.kind} for faults in found.values() for f in faults)
    # Every week does, not only the demo's; another ticker meets faults too, rarely.
    weeks = [dt.date(2019, 5, 6) + dt.timedelta(weeks=w) for w in range(0, 300, 37)]
    for monday in weeks:
        kinds = {k for d in trading_days(monday, monday + dt.timedelta(days=4)) for t in DEFAULT_TICKERS
                 for k in sample_faults(t, d)}
        assert len(kinds) == 4, monday
    other = [sample_faults("ZZZZ", d) for d in trading_days(dt.date(2023, 1, 1), dt.date(2024, 12, 31))]
    assert 0 < sum(bool(kinds) for kinds in other) < 0.2 * len(other)


def minute_page(server: SampleApiServer, ticker: str, date_from: dt.date, date_to: dt.date) -> dict:
    return get(server, f"/v2/aggs/ticker/{ticker}/range/1/minute/{date_from}/{date_to}", adjusted="false",
               limit=50_000)


def test_without_faults_the_server_serves_the_clean_market(server):
    found = demo_week_faults()
    for kind in ("bad_print", "missing_minutes", "malformed_bar"):
        fault = found[kind][0]
        page = minute_page(server, fault.ticker, fault.day, fault.day)
        assert [bar["t"] for bar in page["results"]] == range_bars(fault.ticker, fault.day, fault.day)["t"].tolist()
        assert all(isinstance(bar.get("c"), float) for bar in page["results"])


def test_with_faults_each_kind_is_served_where_the_table_says():
    found = demo_week_faults()
    with SampleApiServer(faults=True) as faulty:
        bad = found["bad_print"][0]
        bars = {bar["t"]: bar for bar in minute_page(faulty, bad.ticker, bad.day, bad.day)["results"]}
        spike, before = bars[bad.t], bars[bad.t - 60_000]
        assert spike["l"] == spike["c"] <= 0.93 * before["c"]  # far below its neighbour...
        assert spike["l"] <= min(spike["o"], spike["c"]) <= max(spike["o"], spike["c"]) <= spike["h"]  # ...yet valid

        gap = found["missing_minutes"][0]
        times = [bar["t"] for bar in minute_page(faulty, gap.ticker, gap.day, gap.day)["results"]]
        hours = session_hours(gap.day)
        in_session = [t for t in times if hours.open.timestamp() * 1000 <= t <= hours.close.timestamp() * 1000]
        missing = set(range(gap.t, gap.t + 60_000 * gap.length, 60_000))
        assert 25 <= gap.length <= 40 and not missing & set(times)
        assert 0.5 < len(in_session) / 391 < 0.95 and len(in_session) == 391 - gap.length

        odd = found["malformed_bar"][0]
        bar = next(b for b in minute_page(faulty, odd.ticker, odd.day, odd.day)["results"] if b["t"] == odd.t)
        assert ("c" not in bar) if odd.variant == "no_close" else isinstance(bar["c"], str) and float(bar["c"]) > 0

        short = found["short_answer"][0]
        page = minute_page(faulty, short.ticker, short.day, FRIDAY)
        assert "next_url" not in page and {ny(bar["t"]).date() for bar in page["results"]} == {short.day}
        # A continuation after its last bar is answered in full: the fault is in the first answer only.
        rest = get(faulty, f"/v2/aggs/ticker/{short.ticker}/range/1/minute/{page['results'][-1]['t'] + 1}/{FRIDAY}",
                   adjusted="false", limit=50_000)
        served = [bar["t"] for bar in page["results"] + rest["results"]]
        assert served == range_bars(short.ticker, short.day, FRIDAY, finish=with_minute_faults)["t"].tolist()

        # The daily bars describe the true market, as a provider's corrected daily bar would.
        assert get(faulty, f"/v2/aggs/ticker/{bad.ticker}/range/1/day/{bad.day}/{bad.day}",
                   adjusted="false")["results"] == [official_daily_bar(bad.ticker, bad.day)]


def test_faulted_minutes_page_without_losing_a_bar():
    """Missing minutes change a page's count of bars; pagination still serves every remaining bar once."""
    gap = demo_week_faults()["missing_minutes"][0]
    tuesday = MONDAY + dt.timedelta(days=1)  # short answers fall on a week's first session: not this range's
    expected = range_bars(gap.ticker, tuesday, FRIDAY, finish=with_minute_faults)["t"].tolist()
    with SampleApiServer(faults=True) as faulty:
        results, pages = follow(faulty, f"/v2/aggs/ticker/{gap.ticker}/range/1/minute/{tuesday}/{FRIDAY}",
                                adjusted="false", limit=700)
    assert [bar["t"] for bar in results] == expected and pages > 3


@pytest.mark.slow
def test_the_sample_server_in_a_process_of_its_own_serves_the_same_bars_and_stops_with_the_run():
    from stockpipe.sample import SampleApiServer
    from stockpipe.sample.process import sample_server_process

    path = "/v2/aggs/ticker/NVDA/range/1/minute/2024-06-07/2024-06-10?adjusted=false&sort=asc&limit=50000"
    with SampleApiServer() as here:
        expected = requests.get(here.base_url + path, timeout=30).json()
    with sample_server_process(["NVDA"], faults=False) as url:
        assert url.startswith("http://127.0.0.1:")
        answer = requests.get(url + path, timeout=30).json()
    assert answer["results"] == expected["results"] and len(answer["results"]) > 100
    with pytest.raises(requests.ConnectionError):  # stopped when the run's block ended
        requests.get(url + path, timeout=5)


def test_a_sample_server_process_that_cannot_start_is_one_clear_error(monkeypatch):
    import sys

    from stockpipe.errors import PipelineError
    from stockpipe.sample.process import sample_server_process

    monkeypatch.setattr(sys, "executable", "/bin/false")  # a child that exits at once, printing nothing
    with pytest.raises(PipelineError, match="sample server did not start"), sample_server_process(["AAPL"], False):
        pass

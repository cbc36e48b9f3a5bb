"""The sample source's realism and determinism, and the sample server's answers."""

from __future__ import annotations

import datetime as dt

import numpy as np

from stockpipe.market_calendar import NEW_YORK, trading_days
from stockpipe.sample import day_bars, range_bars
from stockpipe.testing import ApiBehaviour, FakeMassiveServer


def ny(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, NEW_YORK)


def test_only_nyse_trading_days_have_bars():
    # 2024-01-13/14 weekend, 2024-01-15 Martin Luther King Jr. Day, 2024-03-29 Good Friday.
    assert trading_days(dt.date(2024, 1, 12), dt.date(2024, 1, 16)) == [dt.date(2024, 1, 12), dt.date(2024, 1, 16)]
    assert range_bars("AAPL", dt.date(2024, 3, 29), dt.date(2024, 3, 29))["t"].size == 0


def test_regular_session_starts_at_0930_new_york_in_winter_and_summer():
    for day in (dt.date(2024, 1, 8), dt.date(2024, 7, 8)):
        times = [ny(int(t)) for t in day_bars("MSFT", day)["t"]]
        regular = [t for t in times if dt.time(9, 30) <= t.time() < dt.time(16, 0)]
        assert len(regular) == 390 and regular[0].time() == dt.time(9, 30)
        assert min(times).time() >= dt.time(4, 0) and max(times).time() < dt.time(20, 0)


def test_early_close_day_ends_regular_trading_at_1300():
    times = [ny(int(t)) for t in day_bars("MSFT", dt.date(2024, 11, 29))["t"]]
    regular = [t for t in times if dt.time(9, 30) <= t.time() < dt.time(13, 0)]
    assert len(regular) == 210 and max(times).time() < dt.time(17, 0)


def test_a_day_is_identical_whatever_range_was_asked():
    wide = range_bars("NVDA", dt.date(2024, 1, 8), dt.date(2024, 1, 12))
    day = day_bars.__wrapped__("NVDA", dt.date(2024, 1, 10))
    mask = np.isin(wide["t"], day["t"])
    assert mask.sum() == day["t"].size
    assert np.array_equal(wide["c"][mask], day["c"]) and np.array_equal(wide["v"][mask], day["v"])


def test_bars_are_sane_and_volumes_mix_whole_and_fractional():
    bars = range_bars("TSLA", dt.date(2024, 1, 8), dt.date(2024, 1, 12))
    assert (bars["l"] <= np.minimum(bars["o"], bars["c"])).all()
    assert (bars["h"] >= np.maximum(bars["o"], bars["c"])).all()
    whole = np.mod(bars["v"], 1) == 0
    assert 0.5 < whole.mean() < 0.95
    assert (np.diff(bars["t"]) > 0).all()


def test_server_rolling_window_answers_429_with_retry_after():
    import requests

    with FakeMassiveServer(ApiBehaviour(calls_per_window=2, window_seconds=30, rate_limit_retry_after=True)) as server:
        url = f"{server.base_url}/v2/aggs/ticker/AAPL/range/1/minute/2024-01-08/2024-01-08"
        codes = [requests.get(url, timeout=5) for _ in range(3)]
    assert [r.status_code for r in codes] == [200, 200, 429]
    assert 1 <= int(codes[2].headers["Retry-After"]) <= 30

"""The client against the loopback server, with an injected clock: pacing, retries, pagination, errors, secrets."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import pytest

from stockpipe.errors import ApiUnreachableError, FetchFailedError, KeyRejectedError, PlanRefusedError
from stockpipe.massive import ClientConfig, FetchStats, MassiveClient, RollingWindowLimiter, parse_retry_after
from stockpipe.sample import range_bars
from stockpipe.testing import ApiBehaviour, FakeMassiveServer, Fault, http_date
from tests.helpers import closed_port_url

MONDAY, FRIDAY = dt.date(2024, 1, 8), dt.date(2024, 1, 12)
KEY = "test-key-5d41402abc4b2a76"
FIXTURES = Path(__file__).parent / "fixtures" / "massive"


def client_for(server, clock, **overrides) -> MassiveClient:
    config = ClientConfig(base_url=server.base_url, api_key=KEY, calls_per_minute=overrides.pop("cpm", None),
                          **overrides)
    return MassiveClient(config, clock=clock, sleep=clock.sleep)


def fetch(client, ticker="AAPL", date_from=MONDAY, date_to=FRIDAY):
    stats = FetchStats(ticker)
    pages = list(client.iter_pages(ticker, date_from, date_to, stats))
    bars = [bar for page in pages for bar in json.loads(page.body).get("results") or []]
    return pages, bars, stats


# -- limiter ---------------------------------------------------------------------------------------------------------
def test_limiter_bursts_up_to_the_limit_then_waits_for_the_oldest_call(clock):
    limiter = RollingWindowLimiter(5, 60.0, clock=clock, margin=0.0)
    for _ in range(5):
        assert limiter.delay() == 0.0
        limiter.record()
    assert limiter.delay() == pytest.approx(60.0)
    clock.sleep(59.0)
    assert limiter.delay() == pytest.approx(1.0)
    clock.sleep(1.0)
    assert limiter.delay() == 0.0


def test_limiter_window_rolls_call_by_call(clock):
    limiter = RollingWindowLimiter(2, 10.0, clock=clock, margin=0.0)
    limiter.record()
    clock.sleep(4.0)
    limiter.record()
    assert limiter.delay() == pytest.approx(6.0)
    clock.sleep(6.0)
    limiter.record()
    assert limiter.delay() == pytest.approx(4.0)  # now the second call is the oldest


def test_limiter_eta_counts_whole_windows(clock):
    limiter = RollingWindowLimiter(5, 60.0, clock=clock, margin=0.0)
    assert limiter.eta(5) == 0.0
    assert limiter.eta(8) == pytest.approx(60.0)
    assert limiter.eta(11) == pytest.approx(120.0)


def test_a_slot_is_in_the_window_only_where_the_calls_before_left_one(clock):
    """Eight calls at 5 a minute: five, then three a window later; two more fit in that window, an eleventh would wait
    for the next. A first burst whose answers came half a second apart leaves its slots half a second apart: still
    slots of the window under way."""
    for gap in (0.0, 0.5):
        limiter = RollingWindowLimiter(5, 60.0, clock=clock)
        for n in range(10):
            if n < 8:
                clock.sleep(limiter.delay() + (gap if n < 5 else 0.0))
            else:
                assert limiter.slot_in_window()
                clock.sleep(limiter.delay())
                assert limiter.delay() == 0.0
            limiter.record()
        assert not limiter.slot_in_window() and limiter.delay() > 55.0


def test_eight_single_page_tickers_at_five_per_minute_take_one_window(sample_server, clock):
    client = client_for(sample_server, clock, cpm=5)
    start = clock.now
    for ticker in ("AAPL", "MSFT", "GOOGL", "AMZN", "TSLA", "META", "NVDA", "JPM"):
        fetch(client, ticker)
    elapsed = clock.now - start
    assert 60.0 <= elapsed <= 60.0 * 1.05
    assert sample_server.data_calls == 8
    assert all(entry.status == 200 for entry in sample_server.log)


# -- pagination and data ---------------------------------------------------------------------------------------------
def test_multi_page_range_lands_every_bar_once(sample_server, clock):
    """Pages of 700 bars put together are exactly the one-page answer, bar for bar and field for field: nothing the
    cursor skips or repeats. (Compared with the server's own answer, not with the generator the server uses.)"""
    _, whole, _ = fetch(client_for(sample_server, clock))
    pages, bars, stats = fetch(client_for(sample_server, clock, page_limit=700))
    assert len(pages) == -(-len(whole) // 700) and len(pages) > 1
    assert bars == whole
    assert stats.pages == len(pages) and stats.bars == len(whole)
    # and the answer is the trading week it asked for: every regular minute of the five days, in order
    times = [bar["t"] for bar in bars]
    assert times == sorted(set(times))
    regular = [t for t in times if (t // 60_000 - 14 * 60 - 30) % (24 * 60) < 390]  # 09:30-15:59 EST = 14:30 UTC
    assert len(regular) >= 5 * 390


def test_next_url_is_followed_as_given_with_its_cursor(sample_server, clock):
    client = client_for(sample_server, clock, page_limit=1000)
    fetch(client)
    follow_ups = [entry for entry in sample_server.log[1:]]
    assert follow_ups and all("cursor=" in entry.query for entry in follow_ups)
    assert all(entry.path.split("/")[-2].isdigit() for entry in follow_ups)  # millisecond `from`


def test_fractional_volume_is_kept_exactly(sample_server, clock):
    _, bars, _ = fetch(client_for(sample_server, clock))
    fractional = [bar["v"] for bar in bars if isinstance(bar["v"], float) and not bar["v"].is_integer()]
    assert fractional, "the sample must contain fractional volumes"
    columns = range_bars("AAPL", MONDAY, FRIDAY)
    assert sorted(fractional) == sorted(v for v in columns["v"].tolist() if not float(v).is_integer())


def test_empty_range_is_zero_bars_not_an_error(sample_server, clock):
    pages, bars, stats = fetch(client_for(sample_server, clock), date_from=dt.date(2024, 1, 13),
                               date_to=dt.date(2024, 1, 14))
    assert len(pages) == 1 and bars == [] and stats.bars == 0


def test_delayed_status_is_data(clock):
    """DELAYED carries the same bars as OK (a delayed plan's data): every bar, not just some."""
    with FakeMassiveServer(ApiBehaviour(status="DELAYED")) as server:
        delayed_pages, delayed, _ = fetch(client_for(server, clock))
    with FakeMassiveServer() as server:
        _, on_time, _ = fetch(client_for(server, clock))
    assert [p.status for p in delayed_pages] == ["DELAYED"]
    assert delayed == on_time and len(delayed) > 1000


def test_status_error_in_a_200_fails_naming_the_ticker(clock):
    with FakeMassiveServer(ApiBehaviour(faults=[Fault("status_error")])) as server:
        with pytest.raises(FetchFailedError, match="^MSFT: API status ERROR"):
            fetch(client_for(server, clock), "MSFT")


# -- retries ---------------------------------------------------------------------------------------------------------
def test_429_with_retry_after_seconds_waits_that_long(clock):
    with FakeMassiveServer(ApiBehaviour(faults=[Fault("429", retry_after="7")])) as server:
        _, bars, stats = fetch(client_for(server, clock))
    assert bars and stats.http_429 == 1 and stats.retries == 1
    assert clock.sleeps == [pytest.approx(7.0)]


def test_429_with_retry_after_http_date_is_understood():
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now) == pytest.approx(30.0)
    assert parse_retry_after(http_date(-5)) == 0.0
    assert parse_retry_after("soon") is None


def test_429_without_retry_after_backs_off_from_the_pacing_interval(clock):
    with FakeMassiveServer(ApiBehaviour(faults=[Fault("429", times=3)])) as server:
        _, bars, stats = fetch(client_for(server, clock, cpm=5))
    assert bars and stats.http_429 == 3
    # Steps of 12, 24, 48 s (60 / 5 calls, doubling), each jittered into its upper half.
    for wait, step in zip(clock.sleeps, (12.0, 24.0, 48.0), strict=True):
        assert step / 2 <= wait <= step + 0.06


def test_backoff_is_capped_at_a_minute(clock):
    from stockpipe.massive import _RetryableError

    client = MassiveClient(ClientConfig(base_url="http://127.0.0.1:9", calls_per_minute=5), clock=clock)
    waits = [client._backoff(attempt, _RetryableError("x", rate_limited=True)) for attempt in range(1, 12)]
    assert max(waits) <= 60.0 and waits[-1] >= 30.0


def test_5xx_then_success(clock):
    with FakeMassiveServer(ApiBehaviour(faults=[Fault("500"), Fault("502"), Fault("503")])) as server:
        _, bars, stats = fetch(client_for(server, clock))
    assert bars and stats.retries == 3 and stats.calls == 4


def test_read_timeout_is_retried(clock):
    with FakeMassiveServer(ApiBehaviour(faults=[Fault("delay", seconds=0.6)])) as server:
        _, bars, stats = fetch(client_for(server, clock, read_timeout=0.2))
    assert bars and stats.retries == 1


def test_connection_reset_is_retried(clock):
    with FakeMassiveServer(ApiBehaviour(faults=[Fault("reset")])) as server:
        _, bars, stats = fetch(client_for(server, clock))
    assert bars and stats.retries == 1


def test_retries_are_bounded_and_then_fail_naming_the_ticker(clock):
    with FakeMassiveServer(ApiBehaviour(faults=[Fault("503", times=100)])) as server:
        with pytest.raises(FetchFailedError, match="^NVDA: HTTP 503 .gave up after 3 retries"):
            fetch(client_for(server, clock, max_attempts=4), "NVDA")
        assert len(server.log) == 4


def test_401_fails_in_one_call_with_the_servers_reason(clock):
    with FakeMassiveServer(ApiBehaviour(api_key="the-right-key")) as server:
        with pytest.raises(KeyRejectedError, match="API key rejected .HTTP 401.*Unknown API Key"):
            fetch(client_for(server, clock))
        assert len(server.log) == 1


def test_403_plan_refusal_fails_that_request_only(clock):
    with FakeMassiveServer(ApiBehaviour(faults=[Fault("403", ticker="AAPL")])) as server:
        client = client_for(server, clock)
        with pytest.raises(PlanRefusedError, match="^AAPL: not in your plan .HTTP 403.: You are not entitled"):
            fetch(client)
        _, bars, _ = fetch(client, "MSFT")  # the key still works: the next request succeeds
    assert len(bars) == range_bars("MSFT", MONDAY, FRIDAY)["t"].size
    assert [entry.status for entry in server.log] == [403, 200]


def test_malformed_json_fails_naming_the_ticker_after_retries(clock):
    with FakeMassiveServer(ApiBehaviour(faults=[Fault("truncate", times=10)])) as server:
        with pytest.raises(FetchFailedError, match="^TSLA: malformed JSON"):
            fetch(client_for(server, clock, max_attempts=3), "TSLA")


def test_cut_off_json_once_is_recovered(clock):
    with FakeMassiveServer(ApiBehaviour(faults=[Fault("truncate")])) as server:
        _, bars, stats = fetch(client_for(server, clock))
    assert len(bars) == range_bars("AAPL", MONDAY, FRIDAY)["t"].size and stats.retries == 1


def test_a_body_that_is_not_utf8_is_a_malformed_page_to_retry():
    """Bytes that are not text are a damaged transfer like a cut-off one: retried, named in one line. (The error
    message used to read JSONDecodeError's fields off the UnicodeDecodeError and raise AttributeError instead.)"""
    from stockpipe.massive import _RetryableError, validate_page

    with pytest.raises(_RetryableError, match=r"^malformed JSON \(not UTF-8 text\)$"):
        validate_page("AAPL", b'{"status": "OK", "ticker": "\xff"}')
    with pytest.raises(_RetryableError, match=r"^malformed JSON \(Expecting value at byte 29\)$"):
        validate_page("AAPL", b'{"status": "OK", "results": [')


def test_a_bar_missing_a_field_is_data_landed_in_one_call_not_retried(clock):
    """A bar without its close is what the API sent: landed as sent (the quarantine judges it downstream), in one
    call. It used to be retried up to eight times, burning calls on a free key."""
    with FakeMassiveServer(ApiBehaviour(faults=[Fault("missing_field", times=10)])) as server:
        pages, bars, stats = fetch(client_for(server, clock), "META")
        assert [entry.status for entry in server.log] == [200]
    assert (stats.calls, stats.retries, len(pages)) == (1, 0, 1)
    assert "c" not in bars[0] and all("c" in bar for bar in bars[1:])


def test_an_envelope_that_is_not_the_apis_fails_in_one_call_naming_the_ticker(clock):
    """Only transport failures, 429s and 5xx are retried: a 200 whose results are not a list is an answer."""
    body = b'{"status": "OK", "results": {"t": 1}}'
    with FakeMassiveServer(ApiBehaviour(canned=[(200, body)] * 3)) as server:
        with pytest.raises(FetchFailedError, match="^AAPL: the response's 'results' is not a list"):
            fetch(client_for(server, clock))
        assert len(server.log) == 1


def test_the_last_usable_bar_time_skips_malformed_bars_at_the_end():
    from stockpipe.massive import last_bar_ms

    assert last_bar_ms([{"t": 60_000}, {"t": "120000"}, {"t": 180_000.5}, None]) == 60_000
    assert last_bar_ms([{"t": 60_000}, {"t": 120_000.0}]) == 120_000
    assert last_bar_ms([{"t": True}, {"o": 1}]) is None and last_bar_ms([]) is None


def test_next_url_on_another_origin_is_followed_on_the_base_url(clock):
    """Recorded next_urls name https://api.polygon.io:443 whatever base was called: their path and query go to the
    configured base, so every page arrives and the key reaches no other host."""
    with FakeMassiveServer(ApiBehaviour(foreign_next_url=True)) as server:
        pages, bars, _ = fetch(client_for(server, clock, page_limit=1000))
        assert len(pages) > 2 and pages[-1].next_url is None
        assert all(p.next_url.startswith("https://api.polygon.io:443/v2/aggs/") for p in pages[:-1])
        assert [entry.status for entry in server.log] == [200] * len(pages)
        assert all(entry.authorization == f"Bearer {KEY}" for entry in server.log)
    assert [b["t"] for b in bars] == range_bars("AAPL", MONDAY, FRIDAY)["t"].tolist()


def test_resume_url_on_another_origin_is_rebased_too(clock):
    with FakeMassiveServer() as server:
        client = client_for(server, clock, page_limit=1000)
        first = next(client.iter_pages("AAPL", MONDAY, FRIDAY, FetchStats("AAPL")))
        foreign = "https://api.polygon.io:443" + first.next_url.removeprefix(server.base_url)
        rest = list(client.iter_pages("AAPL", MONDAY, FRIDAY, FetchStats("AAPL"), start_url=foreign))
    bars = [b for p in [first, *rest] for b in json.loads(p.body)["results"]]
    assert [b["t"] for b in bars] == range_bars("AAPL", MONDAY, FRIDAY)["t"].tolist()


def test_localhost_and_loopback_address_name_the_same_base(clock):
    with FakeMassiveServer() as server:
        port = server.base_url.rsplit(":", 1)[1]
        client = MassiveClient(ClientConfig(base_url=f"http://localhost:{port}", api_key=KEY, calls_per_minute=None,
                                            page_limit=1000), clock=clock, sleep=clock.sleep)
        pages, _, _ = fetch(client)
    assert len(pages) > 2


@pytest.mark.parametrize("shape", ["absent", "null"])
def test_empty_range_in_either_shape_is_zero_bars(clock, shape):
    with FakeMassiveServer(ApiBehaviour(empty_tickers=frozenset({"XYZ"}), empty_results=shape)) as server:
        pages, bars, stats = fetch(client_for(server, clock), "XYZ")
    assert (len(pages), bars, stats.retries) == (1, [], 0)


def canned(*names: str, code: int = 200) -> list[tuple[int, bytes]]:
    return [(code, (FIXTURES / name).read_bytes()) for name in names]


def test_real_shaped_pages_parse_and_paginate_on_the_base(clock):
    pages_served = canned("aggs_page1_polygon_next_url.json", "aggs_page2_last.json")
    with FakeMassiveServer(ApiBehaviour(canned=pages_served)) as server:
        pages, bars, stats = fetch(client_for(server, clock))
        assert [entry.path for entry in server.log] == [
            "/v2/aggs/ticker/AAPL/range/1/minute/2024-01-08/2024-01-12",
            "/v2/aggs/ticker/AAPL/range/1/minute/1704704640000/2024-01-12",
        ]
        assert server.log[1].query == "cursor=bLltaXQ9MyZzb3J0PWFzYw".replace("bL", "bG")
    assert [p.status for p in pages] == ["OK", "DELAYED"] and stats.bars == 4
    assert [b["v"] for b in bars] == [1205.0, 9099.618093, 300, 512.5]
    assert "n" not in bars[1] and bars[2]["otc"] is True


@pytest.mark.parametrize("name", ["aggs_empty_no_results.json", "aggs_empty_results_null.json"])
def test_real_shaped_empty_bodies_are_zero_bars(clock, name):
    with FakeMassiveServer(ApiBehaviour(canned=canned(name))) as server:
        pages, bars, _ = fetch(client_for(server, clock))
    assert len(pages) == 1 and bars == []


def test_real_shaped_error_bodies_are_read(clock):
    bodies = canned("error_429_rate_limit.json", code=429) + canned("aggs_page2_last.json")
    with FakeMassiveServer(ApiBehaviour(canned=bodies)) as server:
        _, bars, stats = fetch(client_for(server, clock, cpm=5))
    assert stats.http_429 == 1 and len(bars) == 1
    with FakeMassiveServer(ApiBehaviour(canned=canned("error_401_unknown_key.json", code=401))) as server:
        with pytest.raises(KeyRejectedError, match="Unknown API Key"):
            fetch(client_for(server, clock))
    with FakeMassiveServer(ApiBehaviour(canned=canned("error_403_timeframe.json", code=403))) as server:
        with pytest.raises(PlanRefusedError, match="doesn't include this data timeframe"):
            fetch(client_for(server, clock))


# -- an API that cannot be reached -----------------------------------------------------------------------------------
def test_unreachable_base_url_fails_fast_naming_it(clock):
    base = closed_port_url()
    client = MassiveClient(ClientConfig(base_url=base, api_key=KEY, calls_per_minute=5), clock=clock,
                           sleep=clock.sleep)
    stats = FetchStats("AAPL")
    with pytest.raises(ApiUnreachableError, match=f"cannot reach {base}: could not connect .*refused"):
        list(client.iter_pages("AAPL", MONDAY, FRIDAY, stats))
    assert stats.calls == ClientConfig().connect_attempts == 4
    assert sum(clock.sleeps) < 8  # three short backoffs, not eight retries of up to a minute


def test_a_reset_after_the_host_answered_keeps_the_full_retry_budget(clock):
    with FakeMassiveServer(ApiBehaviour(faults=[Fault("reset", times=5)])) as server:
        _, bars, stats = fetch(client_for(server, clock))
    assert stats.retries == 5 and bars


# -- secrets ---------------------------------------------------------------------------------------------------------
def test_key_travels_only_in_the_authorization_header(sample_server, clock):
    fetch(client_for(sample_server, clock, page_limit=1000))
    assert sample_server.log and all(entry.authorization == f"Bearer {KEY}" for entry in sample_server.log)
    assert all(KEY not in entry.path + entry.query for entry in sample_server.log)


def test_key_is_in_no_log_record_or_exception(clock, caplog):
    caplog.set_level(logging.DEBUG)
    faults = [Fault("500"), Fault("reset"), Fault("401")]
    with FakeMassiveServer(ApiBehaviour(faults=faults)) as server:
        client = client_for(server, clock)
        with pytest.raises(KeyRejectedError) as caught:
            fetch(client)
    assert KEY not in str(caught.value) and KEY not in repr(caught.value)
    assert KEY not in caplog.text
    assert KEY not in repr(client.config)


# -- concurrency -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("concurrency", [1, 4])
@pytest.mark.slow
def test_concurrent_fetches_share_one_window_and_cause_no_429(tmp_path, concurrency):
    """Real time, short window: 7 tickers, then the reference calls in the slots the bars left free in the window
    under way (splits, dividends, then official bars: a prefix of them, the rest deferred), a server allowing 3 calls
    a second. Every call goes through the one limiter, so however many are in flight the server never refuses one,
    and every ticker lands."""
    from stockpipe.config import HarvestConfig
    from stockpipe.fetching import fetch_all
    from stockpipe.landing import LandingZone

    tickers = ("AAPL", "MSFT", "GOOGL", "AMZN", "TSLA", "META", "NVDA")
    with FakeMassiveServer(ApiBehaviour(api_key=KEY, calls_per_window=3, window_seconds=1.0)) as server:
        cfg = HarvestConfig(tickers=tickers, date_from=MONDAY, date_to=MONDAY, table_path=str(tmp_path / "t"),
                            landing_path=str(tmp_path / "landing"), source="api", base_url=server.base_url,
                            api_key=KEY, calls_per_minute=3, window_seconds=1.0, show_progress=False,
                            concurrency=concurrency)
        result = fetch_all(cfg, LandingZone(tmp_path / "landing"), [MONDAY])
        statuses = [entry.status for entry in server.log]
        paths = [entry.path for entry in server.log]
    fetched = result.tickers
    assert result.stopped is None and not [t for t, item in fetched.items() if item.failed]
    assert list(fetched) == list(tickers)  # results in the order asked, whatever order they finished in
    # not one 429 with the reference calls counted: never overrun. Seven bars at 3 a window leave two slots in the
    # third: splits and dividends, in that order; the one grouped call of the official bars waits for a later run
    made = [f for f in result.references if not f.deferred]
    assert statuses == [200] * (len(tickers) + len(made))
    assert [f.kind for f in result.references] == ["splits", "dividends", "official_daily"]
    assert result.references[:len(made)] == made and [f.stats.calls for f in made] == [1] * len(made)
    assert paths[len(tickers):] == ["/v3/reference/splits", "/v3/reference/dividends",
                                    f"/v2/aggs/grouped/locale/us/market/stocks/{MONDAY}"][:len(made)]
    assert [(f.kind, f.deferred) for f in result.references[len(made):]] == [
        ("splits", 1), ("dividends", 1), ("official_daily", 1)][len(made):]
    assert len(made) == 2  # splits and dividends: the two slots the third window had free

"""Trust every stored bar, end to end on both engines: bad bars quarantined and never stored, every check of every
stored day recorded in quality_checks, a rerun from the landing zone judged the same, the refetch guard, and the source
on record (commits, refusal of mixed sources, Databricks without a key)."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter
from typing import Any

import pytest

import databricks_utils
import fixed_stock_harvester
from stockpipe.market_calendar import NEW_YORK
from stockpipe.quality.checks import CHECK_NAMES, DAY_CHECKS
from stockpipe.quality.rules import RULE_NAMES
from stockpipe.testing import ApiBehaviour, FakeMassiveServer
from tests.helpers import KEY, WEEK, FakeClock, aggs_calls, days, expected_rows, harvest, run_door, table_rows
from tests.test_quality_rules import BREAKS, GOOD, ny_ms, oracle

pytestmark = pytest.mark.slow

# -- end to end, on both engines -----------------------------------------------------------------------------------
MON, TUE, WED, THU, FRI = days("2024-01-08", "2024-01-12")


def _regular(bars: list[Any], day: dt.date) -> list[int]:
    """Positions of the day's regular-session bars (09:30-15:59 New York) on the page."""
    start, end = ny_ms(day, 9, 30), ny_ms(day, 16, 0)
    return [i for i, b in enumerate(bars)
            if isinstance(b, dict) and isinstance(b.get("t"), int) and start <= b["t"] < end]


# Each rule's breaking shape moved onto a minute of the sample week, but for the bar from the future: moved onto a
# past day it is no longer from the future (its own test is below).
SHAPED = [name for name in BREAKS if name not in ("readable", "ended_before_fetch")]
MALFORMED = [BREAKS[name] for name in SHAPED]


def _malformed_at(t: int, shape: dict[str, Any]) -> dict[str, Any]:
    """One of the malformed shapes, moved to minute `t` (a shape that shifts `t` keeps its shift)."""
    moved = dict(shape)
    if isinstance(shape.get("t"), int | float):
        moved["t"] = t + (shape["t"] - GOOD["t"])
    return moved


def _day(b: dict) -> dt.date:
    return dt.datetime.fromtimestamp(b["t"] / 1000, NEW_YORK).date()


def feed(ticker: str, bars: list[dict]) -> list[Any]:
    """What the test API sends: the sample week, with the faults real feeds have, at fixed places.

    AAPL: Tuesday's 10:00-10:08 bars replaced by the nine malformed shapes of the rules' test (each at its own
    minute), plus one element that is not a bar at all; Wednesday repeats three minutes later on the page with closes
    a cent higher. MSFT: a bad print Monday (a low 15% under the previous close), 40 regular minutes missing Tuesday,
    250 missing Wednesday, two zero-volume bars Thursday, 35 minutes at one price Friday. JPM: no bar on Thursday."""
    out = list(bars)
    if ticker == "AAPL":
        for shape, index in zip(MALFORMED, _regular(out, TUE)[30:], strict=False):
            out[index] = _malformed_at(out[index]["t"], shape)
        out.insert(_regular(out, TUE)[40], "not a bar")
        repeated = _regular(out, WED)[100:103]
        later = [{**out[i], "c": out[i]["c"] + 0.01, "h": max(out[i]["h"], out[i]["c"] + 0.01)} for i in repeated]
        out[repeated[-1] + 1:repeated[-1] + 1] = later
    if ticker == "MSFT":
        spike = _regular(out, MON)[200]
        out[spike] = {**out[spike], "l": round(out[spike - 1]["c"] * 0.85, 2)}
        gone = set(_regular(out, TUE)[100:140]) | set(_regular(out, WED)[50:300])
        out = [b for k, b in enumerate(out) if k not in gone]
        for k in _regular(out, THU)[10:12]:
            out[k] = {**out[k], "v": 0}
        flat = _regular(out, FRI)[60:95]
        level = out[flat[0] - 1]["c"]
        for k in flat:
            out[k] = {**out[k], "o": level, "h": level, "l": level, "c": level}
    if ticker == "JPM":
        out = [b for b in out if _day(b) != THU]
    return out


EXPECTED_PROBLEMS = {
    ("AAPL", TUE, "quarantined"): "warn", ("AAPL", WED, "duplicates"): "warn",
    ("MSFT", MON, "price_spike"): "warn", ("MSFT", TUE, "completeness"): "warn", ("MSFT", WED, "completeness"): "fail",
    ("MSFT", THU, "zero_volume"): "warn", ("MSFT", FRI, "stale_price"): "warn",
    ("JPM", THU, "no_bars"): "fail", ("JPM", THU, "completeness"): "fail",
}


@pytest.fixture(scope="module")
def faulty(tmp_path_factory, storage):
    """One harvest of AAPL, MSFT and JPM's week from a feed with every fault above, then a rerun from the landing
    zone (no call, the same pages judged again)."""
    path = tmp_path_factory.mktemp("q") / "stocks_fixed"
    with FakeMassiveServer(ApiBehaviour(api_key="k", rewrite=feed)) as server:
        first = harvest(storage, path, server, FakeClock(), tickers=("AAPL", "MSFT", "JPM"))
        calls = len(aggs_calls(server))
        again = harvest(storage, path, server, FakeClock(), tickers=("AAPL", "MSFT", "JPM"))
        # the rerun made no minute-bar call: every page came from the landing zone (its only calls are the official
        # bars the free key's window had no slot for in the first run)
        assert len(aggs_calls(server)) == calls
    return path, first, again


def test_bad_bars_never_reach_the_table_and_everything_else_does(storage, faulty):
    """The stored minutes are exactly the good ones the feed sent (worked out here with the rules' oracle), one row
    each, and a repeated minute holds the later page position's bar."""
    path, first, _ = faulty
    stored = {(r[0], r[1]): r for r in table_rows(storage, path)}
    clean = expected_rows(["AAPL", "MSFT", "JPM"], MON, FRI)
    sent = {ticker: feed(ticker, [{"t": r[1], "o": r[5], "h": r[6], "l": r[7], "c": r[8], "v": r[9]}
                                  for r in clean if r[0] == ticker]) for ticker in ("AAPL", "MSFT", "JPM")}
    now_ms = time.time() * 1000  # every bar of the sample week had ended long before it was fetched
    good = {(ticker, b["t"]): b for ticker, page in sent.items() for b in page if oracle(b, now_ms) is None}
    assert set(stored) == set(good)
    assert all(stored[key][8] == bar_sent["c"] for key, bar_sent in good.items())  # later copies won the repeats
    repeated = [key for key, count in Counter((t, b["t"]) for t, page in sent.items() for b in page
                                              if isinstance(b, dict)).items() if count > 1]
    assert len(repeated) == 3
    aapl = {t.ticker: t for t in first.tickers}["AAPL"]
    assert (aapl.counts.quarantined, aapl.counts.duplicates) == (len(MALFORMED) + 1, 3)


def test_quarantine_holds_each_bad_bar_once_with_its_rule_and_raw_text(storage, faulty):
    path, _, again = faulty
    rows = storage.read(str(path.parent / "stocks_quarantine")).collect()
    assert Counter(r.reason for r in rows) == Counter([*SHAPED, "readable"])
    assert set(RULE_NAMES) - set(SHAPED) == {"readable", "ended_before_fetch"}
    assert {r.ticker for r in rows} == {"AAPL"} and {r.trade_date for r in rows} <= {TUE, None}
    assert all(r.run_id and r.source == "api" and r.landed_page.startswith("ticker=AAPL/fetch=") for r in rows)
    quoted = next(r for r in rows if r.reason == "fields_are_numbers")
    assert json.loads(quoted.raw)["c"] == "10.2"  # the raw text, a quoted price kept as sent
    assert next(r for r in rows if r.reason == "readable").raw == "not a bar"
    assert sum(t.counts.quarantined for t in again.tickers) == len(rows)  # the rerun met them all again, added none


def test_every_check_of_every_stored_day_is_recorded_with_the_expected_status(storage, faulty):
    path, first, again = faulty
    rows = storage.read(str(path.parent / "quality_checks")).collect()
    by_run: dict[str, dict] = {}
    for r in sorted(rows, key=lambda r: r.checked_at):
        by_run.setdefault(r.run_id, {})[(r.ticker, r.trade_date, r.check)] = r.status
    assert len(by_run) == 2  # the rerun records its own
    expected = {(t, d, c.name): "pass" for t in ("AAPL", "MSFT", "JPM") for d in (MON, TUE, WED, THU, FRI)
                for c in DAY_CHECKS}
    expected.update(EXPECTED_PROBLEMS)
    # the rerun replaces what the first run stored: each of those days is also checked for shrinking
    replaced = {(t, d, "refetch_shrink"): "pass" for (t, d, c) in expected if c == "no_bars" and (t, d) != ("JPM", THU)}
    for statuses, wanted in zip(by_run.values(), (expected, {**expected, **replaced}), strict=True):
        assert {k: v for k, v in statuses.items() if k[1] is not None} == wanted
        assert statuses[("AAPL", None, "quarantined")] == "warn"  # the two bad bars without a readable time
    assert {r.check for r in rows} <= set(CHECK_NAMES)
    # 105 day checks, and one row for AAPL's two quarantined bars whose time could not be read (no day known)
    assert first.checks.counts == {"pass": 105 - len(EXPECTED_PROBLEMS), "warn": 6 + 1, "fail": 3}
    spike = next(r for r in rows if (r.ticker, r.trade_date, r.check) == ("MSFT", MON, "price_spike"))
    assert spike.observed == pytest.approx(0.15, abs=0.01) and "15." in spike.message
    gap = next(r for r in rows if (r.ticker, r.trade_date, r.check) == ("MSFT", TUE, "completeness"))
    assert gap.observed == pytest.approx((391 - 40) / 391) and gap.threshold == 0.95  # 09:30 through the 16:00 print
    flat = next(r for r in rows if (r.ticker, r.trade_date, r.check) == ("MSFT", FRI, "stale_price"))
    assert flat.observed >= 35


def test_the_end_summary_prints_the_checks_and_the_quarantine(faulty):
    from stockpipe.reports import render_fixed

    text = render_fixed(faulty[1])
    assert "Quality checks (" in text and "96 pass, 7 warn, 3 fail" in text
    assert "fail JPM 2024-01-11 no_bars: no bar at all on a trading day" in text
    assert f"Quarantined: {len(MALFORMED) + 1} bar(s)" in text


def test_every_commit_of_the_run_carries_its_run_id_and_source(storage, faulty):
    path, _, _ = faulty
    for table in ("stocks_fixed", "quality_checks", "stocks_quarantine", "stocks_splits"):
        writes = [h for h in storage.history(str(path.parent / table)) if h.operation not in ("OPTIMIZE", "VACUUM")]
        assert writes and all(h.run_id and h.source == "api" for h in writes), table


# -- the refetch guard -----------------------------------------------------------------------------------------------
def shrinking(ticker: str, bars: list[dict]) -> list[dict]:
    """Tuesday answered with nothing, Wednesday with 100 bars."""
    wednesday = [b for b in bars if _day(b) == WED][:100]
    return sorted([b for b in bars if _day(b) not in (TUE, WED)] + wednesday, key=lambda b: b["t"])


def test_a_bar_stamped_after_the_moment_it_was_fetched_is_quarantined_not_stored(storage, tmp_path, clock):
    """A feed whose clock runs days ahead serves the next trading day's whole session: every bar of it is from the
    future when its page lands, so each goes to stocks_quarantine (ended_before_fetch) and none to the table."""
    from stockpipe.market_calendar import new_york_today, trading_days

    today = new_york_today()
    ahead = trading_days(today + dt.timedelta(days=1), today + dt.timedelta(days=10))[0]
    later = time.time() + ((ahead - today).days + 1) * 86_400
    with FakeMassiveServer(ApiBehaviour(api_key=KEY, clock=lambda: later)) as server:
        report = harvest(storage, tmp_path / "t", server, clock, tickers=("AAPL",), date_from=ahead.isoformat(),
                         date_to=ahead.isoformat(), today=ahead)
    counts = report.tickers[0].counts
    served = counts.bars_landed
    assert served > 300 and counts.quarantined == served and counts.rows_written == 0
    quarantined = storage.read(str(tmp_path / "stocks_quarantine")).collect()
    assert len(quarantined) == served and {r.reason for r in quarantined} == {"ended_before_fetch"}
    assert storage.count(str(tmp_path / "t")) == 0


def test_a_refetch_that_would_shrink_stored_days_keeps_them_and_says_so(storage, tmp_path, clock):

    path = tmp_path / "stocks_fixed"
    with FakeMassiveServer(ApiBehaviour(api_key="k")) as server:
        harvest(storage, path, server, clock, tickers=("AAPL",))
    before = table_rows(storage, path)
    with FakeMassiveServer(ApiBehaviour(api_key="k", rewrite=shrinking)) as server:
        report = harvest(storage, path, server, clock, tickers=("AAPL",), refetch=True)
    assert table_rows(storage, path) == before  # Tuesday and Wednesday as stored, the other days the same bars
    errors = report.errors()
    assert errors and "AAPL 2024-01-09" in errors[0] and "AAPL 2024-01-10" in errors[0]
    assert [str(d) for d in report.tickers[0].counts.kept_back] == ["2024-01-09", "2024-01-10"]
    checks = {(r.trade_date, r.status) for r in storage.read(str(tmp_path / "quality_checks"))
              .filter("check = 'refetch_shrink'").collect()}
    assert checks == {(MON, "pass"), (TUE, "fail"), (WED, "fail"), (THU, "pass"), (FRI, "pass")}


def test_allow_shrink_replaces_the_days_and_records_a_warning(storage, tmp_path, clock):
    path = tmp_path / "stocks_fixed"
    with FakeMassiveServer(ApiBehaviour(api_key="k")) as server:
        harvest(storage, path, server, clock, tickers=("AAPL",))
    with FakeMassiveServer(ApiBehaviour(api_key="k", rewrite=shrinking)) as server:
        from stockpipe.config import HarvestConfig
        from stockpipe.harvest import run_fixed
        from stockpipe.landing import default_landing_path

        cfg = HarvestConfig(tickers=("AAPL",), date_from=MON, date_to=FRI, table_path=str(path),
                            landing_path=default_landing_path(str(path)), source="api", base_url=server.base_url,
                            api_key="k", refetch=True, allow_shrink=True, show_progress=False, clock=clock,
                            sleep=clock.sleep)
        report = run_fixed(cfg, lambda: (storage.spark, storage))
    counts = Counter(r[3] for r in table_rows(storage, path))
    monday = len(expected_rows(["AAPL"], MON, MON))
    assert (counts[MON], counts[TUE], counts[WED]) == (monday, 0, 100)
    assert report.shrinks and not report.errors()
    statuses = {r.trade_date: r.status for r in storage.read(str(tmp_path / "quality_checks"))
                .filter("check = 'refetch_shrink'").collect() if r.status != "pass"}
    assert statuses == {TUE: "warn", WED: "warn"}


def test_the_guard_at_the_door_names_the_days_and_exits_1(storage, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MASSIVE_API_KEY", KEY)
    argv = ["--tickers", "MSFT", *WEEK, "--table-path", str(tmp_path / "stocks_fixed"), "--engine", storage.name]
    with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:
        assert run_door(fixed_stock_harvester, [*argv, "--base-url", server.base_url], capsys)[0] == 0
    with FakeMassiveServer(ApiBehaviour(api_key=KEY, empty_tickers=frozenset({"MSFT"}))) as server:
        code, out, err = run_door(fixed_stock_harvester, [*argv, "--base-url", server.base_url, "--refetch"], capsys)
    assert code == 1
    assert "KEPT MSFT 2024-01-08: the answer has 0 bar(s) where" in out
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors and errors[0].startswith("error: refetch would shrink 5 stored day(s), kept as stored: MSFT "
                                           "2024-01-08")


# -- the source on record ------------------------------------------------------------------------------------------
def test_a_sample_run_into_a_table_the_api_filled_is_refused(storage, tmp_path, capsys, monkeypatch):
    path = tmp_path / "stocks_fixed"
    argv = ["--tickers", "JPM", "--from", "2024-01-08", "--to", "2024-01-09", "--table-path", str(path),
            "--engine", storage.name]
    monkeypatch.setenv("MASSIVE_API_KEY", KEY)
    with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:
        assert run_door(fixed_stock_harvester, [*argv, "--base-url", server.base_url], capsys)[0] == 0
    version = storage.detail(str(path)).version
    code, _, err = run_door(fixed_stock_harvester, [*argv, "--source", "sample", "--refetch"], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "holds bars from the Massive API" in errors[0]
    assert "Traceback" not in err
    assert storage.detail(str(path)).version == version
    code, _, _ = run_door(fixed_stock_harvester, [*argv, "--source", "sample", "--refetch", "--allow-mixed-source"],
                          capsys)
    assert code == 0
    assert [h.source for h in storage.history(str(path)) if h.operation == "WRITE"][-2:] == ["api", "sample"]


def test_on_databricks_a_harvest_without_a_key_names_where_it_looked_and_writes_nothing(tmp_path, capsys,
                                                                                      monkeypatch):
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")
    monkeypatch.setattr(databricks_utils, "get_secret", lambda scope, key: None)  # the scope holds no such key
    path = tmp_path / "stocks_fixed"
    code, out, err = run_door(fixed_stock_harvester, ["--table-path", str(path), "--secret-scope", "massive",
                                                      "--secret-key", "api_key"], capsys)
    assert code == 1 and out == ""
    assert err.startswith("error: no Massive API key found (secret scope 'massive', key 'api_key')")
    code, _, err = run_door(fixed_stock_harvester, ["--table-path", str(path)], capsys)
    assert code == 1 and "no --secret-scope given, and neither MASSIVE_API_KEY nor POLYGON_API_KEY is set" in err
    assert not tmp_path.joinpath("stocks_fixed").exists() and list(tmp_path.iterdir()) == []


def test_on_databricks_source_sample_still_runs_the_demo(monkeypatch, tmp_path):
    from stockpipe import cli

    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")
    args = fixed_stock_harvester.build_parser().parse_args(["--source", "sample", "--table-path", str(tmp_path)])
    cfg = cli.build_config(args, default_table_path=lambda: str(tmp_path), secret=lambda scope, key: None)
    assert (cfg.source, cfg.api_key) == ("sample", "")

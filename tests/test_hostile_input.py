"""Hostile command lines (paths, symbols, dates, flags) refused in one line before anything is fetched or
written, and the key's secrecy in everything a run writes or prints."""

from __future__ import annotations

import datetime as dt
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import fixed_stock_harvester
from stockpipe.errors import UsageError
from stockpipe.testing import ApiBehaviour, FakeMassiveServer, Fault
from tests.helpers import (
    KEY,
    ROOT,
)

pytestmark = pytest.mark.slow


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
@example(ticker="@\r")  # a file name with a carriage return was said back raw, on two lines
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


@pytest.mark.parametrize("where", ["/proc/x", "a_file/x", "a_file/x/y"])
@pytest.mark.parametrize("script", ["fixed_stock_harvester", "broken_stock_harvester"])
def test_a_table_path_that_cannot_be_a_folder_is_one_line_exit_2_before_any_call(script, where, tmp_path, capsys,
                                                                                 monkeypatch):
    """The most common mistake: a path under /proc, or under a file. One `error:` naming the path and why, exit 2,
    nothing written (not even the run log beside it), checked before any call."""
    if where.startswith("/proc") and not Path("/proc/self").is_dir():
        pytest.skip("no /proc on this system")
    monkeypatch.setenv("MASSIVE_API_KEY", KEY)
    (tmp_path / "a_file").write_text("not a folder")
    path = where if where.startswith("/") else str(tmp_path / where)
    with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:
        code = importlib.import_module(script).main(["--tickers", "AAPL", "--from", "2024-01-08", "--to", "2024-01-08",
                                                     "--base-url", server.base_url, "--table-path", path])
        assert server.log == []
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("error: --table-path: cannot ") and path in err and len(err.strip().splitlines()) == 1
    assert ("is a file, not a folder" in err) if "a_file" in where else ("does not take new folders" in err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


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

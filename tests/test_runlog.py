"""The run log: a row in pipeline_runs written as each door run starts (`running`) and replaced as it ends (`success`,
`partial`, `failed`), per-ticker outcomes in it, exit codes that tell a plan refusal from a failure, a killed run
marked `abandoned` by the next, a table from before the lifecycle kept readable, the run id on every data commit, and
the key in no cell."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pytest
from pyspark.sql.pandas.types import from_arrow_schema

import fixed_stock_harvester
import maintenance
from stockpipe import readers
from stockpipe.landing import LandingZone, default_landing_path
from stockpipe.quality.checks import DAY_CHECKS
from stockpipe.runlog import (
    RUNS_SCHEMA,
    Run,
    RunRecord,
    abandon_gone_runs,
    end_run,
    last_runs,
    process_started_at,
    start_run,
)
from stockpipe.storage.log_table import ArrowLogTable, EngineLogTable
from stockpipe.testing import ApiBehaviour, FakeMassiveServer, Fault
from tests.helpers import BOTH_ENGINES, FRIDAY, KEY, MONDAY, ROOT, WEEK, expected_rows, run_door, table_rows

pytestmark = pytest.mark.slow
HERE = socket.gethostname()


def runs(storage, base) -> list[dict]:
    frame = storage.read(str(base / "pipeline_runs"))
    return [r.asDict(recursive=True) for r in frame.orderBy("started_at").collect()]


def harvest_argv(storage, base, base_url: str, *extra: str, tickers: str = "AAPL,MSFT") -> list[str]:
    """Unpaced, one call at a time: two tickers make seven calls, and the free tier's five a minute would make the
    test wait a minute for nothing it checks (pacing has its own tests, on a fake clock); one in flight keeps the
    calls in the order the assertions name (the first call is the one a fault hits)."""
    return ["--tickers", tickers, *WEEK, "--base-url", base_url, "--table-path", str(base / "stocks_fixed"),
            "--engine", storage.name, "--calls-per-minute", "100000", "--concurrency", "1", *extra]


def harvest_door(storage, base, server, capsys, *extra: str) -> tuple[int, str, str]:
    return run_door(fixed_stock_harvester, harvest_argv(storage, base, server.base_url, *extra), capsys)


def by_ticker(row: dict) -> dict[str, dict]:
    return {o["ticker"]: o for o in row["ticker_outcomes"]}


def test_success_and_failed_runs_each_leave_one_row_with_their_tickers(storage, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MASSIVE_API_KEY", KEY)
    with FakeMassiveServer(ApiBehaviour(api_key=KEY, faults=[Fault("429")])) as server:
        assert harvest_door(storage, tmp_path, server, capsys)[0] == 0
        host = f"127.0.0.1:{server.base_url.rsplit(':', 1)[1]}"
    with FakeMassiveServer(ApiBehaviour(api_key=KEY, faults=[Fault("403", ticker="MSFT")])) as server:
        code, out, err = harvest_door(storage, tmp_path, server, capsys, "--refetch")
    assert code == 1 and "warning:" not in err  # a past range refused is a real failure, not a plan's today
    monkeypatch.setenv("MASSIVE_API_KEY", "wrong-" + KEY)
    with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:
        assert harvest_door(storage, tmp_path, server, capsys, "--refetch")[0] == 1
    ok, one_failed, failed = runs(storage, tmp_path)
    assert (ok["status"], ok["exit_code"], ok["script"]) == ("success", 0, "fixed_stock_harvester")
    assert ok["tickers"] == "AAPL,MSFT" and str(ok["date_from"]) == "2024-01-08" and str(ok["date_to"]) == "2024-01-12"
    # 2 tickers, the splits and dividends lists, one ranged official-bars call a ticker, and the 429's retry
    assert ok["calls"] == 2 + 2 + 2 + 1 and ok["rate_limited"] == 1 and ok["retries"] == 1
    assert ok["rows_written"] > 0 and ok["partitions_written"] == 10 and ok["files_written"] == 10
    assert ok["engine"] == storage.name and ok["spark_mode"] in ("classic", "connect") and ok["message"] is None
    assert ok["finished_at"] >= ok["started_at"] and 0 < ok["duration_s"] < 600
    assert (ok["source"], ok["api_host"], ok["host"], ok["pid"]) == ("api", host, HERE, os.getpid())
    assert ok["arguments"].startswith("--tickers AAPL,MSFT --from 2024-01-08 --to 2024-01-12 --base-url http://")
    aapl, msft = by_ticker(ok)["AAPL"], by_ticker(ok)["MSFT"]
    assert aapl == {"ticker": "AAPL", "status": "success", "days_stored": 5, "days_refused": [], "calls": 2,
                    "rate_limited": 1, "retries": 1, "quarantined": 0, "error": None}
    assert (msft["status"], msft["days_stored"], msft["calls"]) == ("success", 5, 1)
    assert one_failed["status"] == "failed" and one_failed["exit_code"] == 1 and one_failed["rows_written"] > 0
    assert one_failed["message"].startswith("1 ticker(s) failed: MSFT")
    assert by_ticker(one_failed)["MSFT"]["status"] == "failed" and "not in your plan" in by_ticker(
        one_failed)["MSFT"]["error"]
    assert by_ticker(one_failed)["AAPL"]["status"] == "success"
    assert failed["status"] == "failed" and failed["exit_code"] == 1 and failed["rows_written"] in (None, 0)
    assert failed["message"].startswith("API key rejected") and failed["engine"] is None
    assert len({ok["run_id"], one_failed["run_id"], failed["run_id"]}) == 3
    every_cell = " ".join(str(value) for row in (ok, one_failed, failed) for value in row.values())
    assert KEY not in every_cell


def test_a_plan_refusal_is_partial_and_exit_0_and_exit_1_with_strict(storage, tmp_path, capsys, monkeypatch):
    """The free tier refuses the current day: the other days are stored, one warning names the day, status
    partial, exit 0; --strict makes the same run exit 1 (still partial: nothing else went wrong)."""
    monkeypatch.setenv("MASSIVE_API_KEY", KEY)
    monkeypatch.setattr("stockpipe.cli.new_york_today", lambda: FRIDAY)
    monkeypatch.setattr("stockpipe.fetching.new_york_today", lambda: FRIDAY)
    with FakeMassiveServer(ApiBehaviour(api_key=KEY, plan_refuses_from=FRIDAY)) as server:
        code, out, err = harvest_door(storage, tmp_path, server, capsys)
        strict_code, _, strict_err = harvest_door(storage, tmp_path, server, capsys, "--strict")
    assert code == 0 and "error:" not in err
    warnings = [line for line in err.splitlines() if line.startswith("warning: your plan refused")]
    assert warnings == ["warning: your plan refused 2024-01-12 for 2 ticker(s) (AAPL, MSFT); the other days are "
                        "stored (--strict makes this exit 1)"]
    assert "not in your plan: AAPL 2024-01-12" in out
    assert strict_code == 1 and "error: your plan refused 2024-01-12" in strict_err
    lenient, strict = runs(storage, tmp_path)
    assert (lenient["status"], lenient["exit_code"]) == ("partial", 0)
    assert lenient["message"].startswith("your plan refused 2024-01-12")
    assert (strict["status"], strict["exit_code"]) == ("partial", 1)
    for outcome in lenient["ticker_outcomes"]:
        assert (outcome["status"], outcome["days_stored"], outcome["days_refused"]) == ("partial", 4, [FRIDAY])


def test_a_run_killed_mid_fetch_leaves_running_and_the_next_run_marks_it_abandoned(storage, tmp_path, capsys,
                                                                                  monkeypatch):
    """SIGKILL while a call hangs: the row written at the start says `running`; the rerun finds its process gone,
    marks it `abandoned` with the reason, and logs its own run."""
    path = tmp_path / "stocks_fixed"
    with FakeMassiveServer(ApiBehaviour(api_key=KEY, faults=[Fault("delay", seconds=30)])) as server:
        process = subprocess.Popen([sys.executable, str(ROOT / "fixed_stock_harvester.py"),
                                    *harvest_argv(storage, tmp_path, server.base_url, tickers="AAPL")],
                                   cwd=ROOT, env={**os.environ, "MASSIVE_API_KEY": KEY}, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            landing = LandingZone(default_landing_path(str(path)))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not landing.fetches("AAPL"):  # bounded: the call comes in seconds
                time.sleep(0.1)
            assert landing.fetches("AAPL"), "the harvester never started its fetch"
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
    (killed,) = readers.read(tmp_path / "pipeline_runs").to_pylist()
    assert (killed["status"], killed["pid"], killed["host"], killed["finished_at"]) == ("running", process.pid, HERE,
                                                                                          None)
    assert killed["process_started_at"] is not None and KEY not in str(killed)
    monkeypatch.setenv("MASSIVE_API_KEY", KEY)
    with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:
        code, _, err = run_door(fixed_stock_harvester, harvest_argv(storage, tmp_path, server.base_url,
                                                                    tickers="AAPL"), capsys)
    assert code == 0 and f"run {killed['run_id'][:8]} marked abandoned" in err
    abandoned, rerun = runs(storage, tmp_path)
    assert abandoned["run_id"] == killed["run_id"] and abandoned["status"] == "abandoned"
    assert abandoned["message"] == f"its process {process.pid} on {HERE} is gone"
    assert rerun["status"] == "success" and path.is_dir()


def log_of(storage, path: str):
    """The run log's writer on the engine under test: delta-rs's Arrow writer (what a laptop with `deltalake`
    uses), or the storage port on delta-spark (what Databricks, which has no `deltalake`, uses)."""
    if storage.name == "delta-rs":
        return ArrowLogTable(path)
    return EngineLogTable(path, lambda: storage, ("run_id",))


def record(run_id: str, started_at: dt.datetime, **values) -> RunRecord:
    return RunRecord(run_id, "fixed_stock_harvester", started_at, **values)


@BOTH_ENGINES  # delta-rs where it is installed, the run's engine (Databricks) otherwise
def test_which_running_rows_are_abandoned(spark, storage, tmp_path):
    """On this machine the process decides (gone, or its pid reused by a later process); from another machine the
    age does, against the longest a run may last; a finished row is never touched."""
    path = str(tmp_path / "pipeline_runs")
    now = dt.datetime.now(dt.UTC)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=30)
    me, born = os.getpid(), process_started_at(os.getpid())
    assert born is not None
    rows = [
        record("dead", now, host=HERE, pid=gone.pid),
        record("reused", now, host=HERE, pid=me, process_started_at=born - dt.timedelta(days=3)),
        record("alive", now - dt.timedelta(days=2), host=HERE, pid=me, process_started_at=born),
        record("far-old", now - dt.timedelta(hours=2), host="elsewhere", pid=me),
        record("far-young", now - dt.timedelta(minutes=10), host="elsewhere", pid=1),
        record("done", now - dt.timedelta(days=2), host="elsewhere", status="success", exit_code=0),
    ]
    frame = spark.createDataFrame([row.as_row() for row in rows], from_arrow_schema(RUNS_SCHEMA))
    storage.upsert(frame, path, ["run_id"])  # the rows in one commit; what is under test is what comes next
    marked = dict(abandon_gone_runs(log_of(storage, path), now=now))
    assert set(marked) == {"dead", "reused", "far-old"}
    assert marked["dead"] == f"its process {gone.pid} on {HERE} is gone"
    assert marked["reused"].startswith(f"pid {me} on {HERE} belongs to another process now")
    assert marked["far-old"] == (f"started 2 h 00 min ago on elsewhere, longer than any run lasts (1 h 00 min, the "
                                 f"job's task timeout); its process cannot be checked from {HERE}")
    statuses = {r["run_id"]: (r["status"], r["message"]) for r in runs(storage, tmp_path)}
    assert statuses == {"dead": ("abandoned", marked["dead"]), "reused": ("abandoned", marked["reused"]),
                        "alive": ("running", None), "far-old": ("abandoned", marked["far-old"]),
                        "far-young": ("running", None), "done": ("success", None)}
    assert abandon_gone_runs(log_of(storage, path), now=now) == []


@BOTH_ENGINES
def test_a_log_from_before_the_lifecycle_gains_its_columns_and_stays_readable(spark, storage, tmp_path):
    """A pipeline_runs written by the previous version (20 columns, status `ok`): a run's start evolves it, the end
    replaces the row, and the old row reads with nulls in the new columns, through Spark and through the dashboard's
    reader alike; `ok` reads as `success`."""
    path = str(tmp_path / "pipeline_runs")
    old_schema = from_arrow_schema(pa.schema(list(RUNS_SCHEMA)[:20]))  # up to `message`, as it was
    old = record("old", dt.datetime(2024, 1, 8, 21, tzinfo=dt.UTC), status="ok", exit_code=0)
    storage.write(spark.createDataFrame([old.as_row()[:20]], old_schema), path)
    new = Run("daily_bars")
    new.log_path, new.record.tickers = path, "AAPL"
    start_run(log_of(storage, path), new.record)
    new.record.status, new.record.exit_code, new.record.rows_written = "success", 0, 5
    end_run(log_of(storage, path), new.record)
    newest, oldest = last_runs(storage, path)
    assert (newest.run_id, newest.status, newest.rows_written, newest.host) == (new.run_id, "success", 5, HERE)
    assert (oldest.run_id, oldest.status, oldest.host, oldest.ticker_outcomes) == ("old", "success", None, None)
    read_back = {row["run_id"]: row for row in readers.read(path).to_pylist()}
    assert read_back["old"]["status"] == "ok" and read_back["old"]["pid"] is None
    assert read_back[new.run_id]["pid"] == os.getpid() and len(read_back) == 2


@BOTH_ENGINES
def test_concurrent_runs_keep_each_others_rows(storage, tmp_path):
    """Runs starting and ending at once: their commits race on one table, each lost race is retried, and every row
    ends in its final state."""
    path = str(tmp_path / "pipeline_runs")
    count = 4 if storage.name == "delta-rs" else 2
    barrier = threading.Barrier(count, timeout=60)
    errors: list[Exception] = []

    def one_run(number: int) -> None:
        row = record(f"run-{number}", dt.datetime.now(dt.UTC), host=HERE, pid=os.getpid())
        try:
            barrier.wait()
            start_run(log_of(storage, path), row)
            row.status, row.exit_code = "success", 0
            end_run(log_of(storage, path), row)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one_run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors and not any(thread.is_alive() for thread in threads)
    assert sorted((r["run_id"], r["status"]) for r in runs(storage, tmp_path)) == [
        (f"run-{n}", "success") for n in range(count)]


def test_every_data_commit_carries_its_run_id(storage, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MASSIVE_API_KEY", KEY)
    with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:
        assert harvest_door(storage, tmp_path, server, capsys)[0] == 0
    code, out, _ = run_door(maintenance, ["--table-path", str(tmp_path / "stocks_fixed"), "--engine", storage.name],
                            capsys)
    assert code == 0
    harvest_run, maintenance_run = runs(storage, tmp_path)
    writes = [h for h in storage.history(str(tmp_path / "stocks_fixed")) if h.operation != "OPTIMIZE"]
    assert writes and {h.run_id for h in writes if h.operation in ("WRITE", "CREATE TABLE")} == {
        harvest_run["run_id"]}
    assert all(h.run_id == harvest_run["run_id"] for h in storage.history(str(tmp_path / "stocks_splits")))
    vacuums = [h for h in storage.history(str(tmp_path / "stocks_fixed")) if h.operation.startswith("VACUUM")]
    assert all(h.run_id == maintenance_run["run_id"] for h in vacuums)
    assert f"Last runs ({tmp_path / 'pipeline_runs'}" in out and harvest_run["run_id"][:8] in out


def test_a_run_log_that_cannot_be_written_changes_nothing_about_the_run(storage, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MASSIVE_API_KEY", KEY)
    (tmp_path / "pipeline_runs").write_text("a file where the log's folder should be")
    with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:
        code, out, err = harvest_door(storage, tmp_path, server, capsys)
    assert code == 0 and "Traceback" not in err
    assert len([line for line in err.splitlines() if "run log not written" in line]) == 1
    # and the run did all it does without a log: every bar of both tickers stored, the checks recorded
    assert table_rows(storage, tmp_path / "stocks_fixed") == expected_rows(["AAPL", "MSFT"], MONDAY, FRIDAY)
    assert storage.read(str(tmp_path / "quality_checks")).count() == 2 * 5 * len(DAY_CHECKS)
    assert (tmp_path / "pipeline_runs").read_text() == "a file where the log's folder should be"


def test_secrets_are_masked_in_what_a_run_logs():
    run = Run("fixed_stock_harvester", ["--base-url", "https://api.example/?apiKey=abc123&x=1", "--tickers", "AAPL"],
              secrets=["s3cret"])
    run.calls_api("api", "https://user:pw@api.example:8443/v2", "k-from-a-secret-scope")
    assert run.record.api_host == "api.example:8443"
    assert run.masked("key k-from-a-secret-scope and s3cret") == "key *** and ***"
    run.log_path = None
    run.finish(1, "failed with k-from-a-secret-scope")
    assert run.record.message == "failed with ***" and run.record.status == "failed"
    assert run.masked(" ".join(run.arguments)) == "--base-url https://api.example/?apiKey=***&x=1 --tickers AAPL"

"""The run log: one row in pipeline_runs per door run, whatever its outcome (ok, partial, failed, a rejected key
among them), the run id on every data commit it made, the key nowhere, and the last runs in maintenance's report."""

from __future__ import annotations

import pytest

import fixed_stock_harvester
import maintenance
from stockpipe.testing import ApiBehaviour, FakeMassiveServer, Fault
from tests.helpers import KEY, WEEK, run_door

pytestmark = pytest.mark.slow


def runs(storage, base) -> list[dict]:
    frame = storage.read(str(base / "pipeline_runs"))
    return [r.asDict() for r in frame.orderBy("started_at").collect()]


def harvest_door(storage, base, server, capsys, *extra: str) -> tuple[int, str, str]:
    return run_door(fixed_stock_harvester, ["--tickers", "AAPL,MSFT", *WEEK, "--base-url", server.base_url,
                                            "--table-path", str(base / "stocks_fixed"), "--engine", storage.name,
                                            *extra], capsys)


def test_ok_partial_and_failed_runs_each_leave_one_row(storage, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MASSIVE_API_KEY", KEY)
    with FakeMassiveServer(ApiBehaviour(api_key=KEY, faults=[Fault("429")])) as server:
        assert harvest_door(storage, tmp_path, server, capsys)[0] == 0
    with FakeMassiveServer(ApiBehaviour(api_key=KEY, faults=[Fault("403", ticker="MSFT")])) as server:
        assert harvest_door(storage, tmp_path, server, capsys, "--refetch")[0] == 1
    monkeypatch.setenv("MASSIVE_API_KEY", "wrong-" + KEY)
    with FakeMassiveServer(ApiBehaviour(api_key=KEY)) as server:
        assert harvest_door(storage, tmp_path, server, capsys, "--refetch")[0] == 1
    ok, partial, failed = runs(storage, tmp_path)
    assert (ok["status"], ok["exit_code"], ok["script"]) == ("ok", 0, "fixed_stock_harvester")
    assert ok["tickers"] == "AAPL,MSFT" and str(ok["date_from"]) == "2024-01-08" and str(ok["date_to"]) == "2024-01-12"
    assert ok["calls"] == 4 and ok["rate_limited"] == 1 and ok["retries"] == 1  # 2 tickers, splits, one 429
    assert ok["rows_written"] > 0 and ok["partitions_written"] == 10 and ok["files_written"] == 10
    assert ok["engine"] == storage.name and ok["spark_mode"] in ("classic", "connect") and ok["message"] is None
    assert ok["finished_at"] >= ok["started_at"]
    assert partial["status"] == "partial" and partial["exit_code"] == 1
    assert partial["message"].startswith("1 ticker(s) failed: MSFT") and partial["rows_written"] > 0
    assert failed["status"] == "failed" and failed["exit_code"] == 1 and failed["rows_written"] in (None, 0)
    assert failed["message"].startswith("API key rejected") and failed["engine"] is None
    assert len({ok["run_id"], partial["run_id"], failed["run_id"]}) == 3
    every_cell = " ".join(str(value) for row in (ok, partial, failed) for value in row.values())
    assert KEY not in every_cell


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


def test_the_log_appends_through_either_engine_into_one_table(storage, tmp_path):
    """Where `deltalake` is missing (Databricks) the run's own engine appends the row: the same table, read back."""
    import datetime as dt

    from stockpipe.runlog import RunRecord, append_run, last_runs

    path = str(tmp_path / "pipeline_runs")
    first = RunRecord("a" * 32, "daily_bars", dt.datetime(2024, 1, 8, 21, tzinfo=dt.UTC), status="ok", exit_code=0)
    second = RunRecord("b" * 32, "maintenance", dt.datetime(2024, 1, 9, 21, tzinfo=dt.UTC), message="boom")
    append_run(path, first, storage, delta_rs_first=False)
    append_run(path, second, None)  # delta-rs, as a run that never started Spark
    newest, oldest = last_runs(storage, path)
    assert (newest.run_id, newest.status, newest.message) == ("b" * 32, "failed", "boom")
    assert (oldest.run_id, oldest.exit_code) == ("a" * 32, 0)

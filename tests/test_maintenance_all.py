"""maintenance.py --all: every pipeline table beside the given one compacted and vacuumed on either engine, one
before/after health table for all, tables not created yet skipped, one failing table reported without stopping the
others."""

from __future__ import annotations

import json

import pytest

import fixed_stock_harvester
import maintenance
from stockpipe import health
from stockpipe.errors import PipelineError
from tests.helpers import BOTH_ENGINES, WEEK, run_door
from tests.ops_tables import check_row, write_quality

pytestmark = [pytest.mark.slow, BOTH_ENGINES]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, storage, spark):
    """One harvest (minute bars, splits, dividends, official daily bars, the run log) and quality_checks in two small
    files; stocks_daily is never built and stocks_quarantine never created (the sample answers hold no bad bar)."""
    base = tmp_path_factory.mktemp(f"all-{storage.name}")
    assert fixed_stock_harvester.main(["--source", "sample", "--tickers", "AAPL", *WEEK, "--table-path",
                                       str(base / "stocks_fixed"), "--engine", storage.name]) == 0
    write_quality(spark, storage, base, [check_row("r1", "AAPL", "completeness", "pass"),
                                         check_row("r1", "AAPL", "spike", "fail")], [])
    return base


def test_all_maintains_every_pipeline_table_and_skips_the_missing(pipeline, storage, tmp_path, capsys):
    code, out, err = run_door(maintenance, ["--table-path", str(pipeline / "stocks_fixed"), "--all", "--engine",
                                            storage.name, "--json", str(tmp_path / "all.json")], capsys)
    assert code == 0 and "error" not in err
    assert "Health check of every pipeline table: before -> after OPTIMIZE and VACUUM RETAIN 0 HOURS" in out
    for name in ("stocks_daily", "stocks_quarantine"):
        assert any(line.startswith(name) and "skipped: not created yet" in line for line in out.splitlines())
    report = {t["table"]: t for t in json.loads((tmp_path / "all.json").read_text())["tables"]}
    assert list(report) == list(health.PIPELINE_TABLES)
    maintained = {name for name, t in report.items() if t["report"] is not None}
    assert maintained == {"stocks_fixed", "stocks_splits", "stocks_dividends", "stocks_official_daily", "pipeline_runs",
                          "quality_checks"}
    before, after = report["quality_checks"]["report"]["before"], report["quality_checks"]["report"]["after"]
    # the harvest's own checks and the two rows written above, in several files before (how many is the engine's
    # business) and one after
    assert before["live_files"] > after["live_files"] == 1 and before["rows"] == after["rows"] > 2
    for name in maintained:
        after = report[name]["report"]["after"]
        assert after["files_on_disk"] == after["live_files"], name  # VACUUM left only the live files
        assert any("vacuum" in call.lower() for call in report[name]["report"]["calls"]), name
    runs = storage.read(str(pipeline / "pipeline_runs")).orderBy("started_at").collect()
    assert runs[-1]["script"] == "maintenance" and runs[-1]["status"] == "success"
    assert runs[-1]["arguments"].endswith("--all --engine " + storage.name + " --json " + str(tmp_path / "all.json"))


def test_one_failing_table_is_an_error_line_and_the_others_are_still_maintained(pipeline, storage, monkeypatch):
    done: list[str] = []

    def maintain(storage_, path, **kwargs):
        if path.endswith("quality_checks"):
            raise PipelineError("row count changed during maintenance: 2 before, 1 after")
        done.append(path.rpartition("/")[2])
        return None

    monkeypatch.setattr(health, "run_maintenance", maintain)
    results = health.maintain_all(storage, str(pipeline / "stocks_fixed"))
    failed = [r for r in results if r.error]
    assert [(r.name, r.error) for r in failed] == [("quality_checks", "row count changed during maintenance: 2 "
                                                                      "before, 1 after")]
    assert done == ["stocks_fixed", "stocks_splits", "stocks_dividends", "stocks_official_daily", "pipeline_runs"]
    assert [r.name for r in results if r.skipped] == ["stocks_daily", "stocks_quarantine"]

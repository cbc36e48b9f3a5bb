"""The notebook a student runs instead of deploying the bundle: its cells executed here in order, with stand-ins
for Databricks' widgets and display, against the sample source."""

from __future__ import annotations

import datetime as dt

import pytest

from stockpipe.market_calendar import new_york_today, trading_days
from tests.conftest import DELTA_SPARK_SKIP
from tests.helpers import ROOT

NOTEBOOK = ROOT / "notebooks" / "run_pipeline.py"
# Databricks serverless runs the notebook through Spark Connect.
pytestmark = [pytest.mark.slow, pytest.mark.connect]


class Widgets:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.declared: list[str] = []

    def text(self, name: str, default: str, label: str = "") -> None:
        self.declared.append(name)
        self.values.setdefault(name, default)

    def get(self, name: str) -> str:
        return self.values[name]


class DbUtils:
    def __init__(self, values: dict[str, str]) -> None:
        self.widgets = Widgets(values)


def cells() -> list[str]:
    text = NOTEBOOK.read_text()
    assert text.startswith("# Databricks notebook source\n")
    return [cell.strip() for cell in text.split("# COMMAND ----------")]


def test_the_notebook_is_in_databricks_source_format_and_installs_only_what_the_runtime_lacks():
    found = cells()
    assert len(found) >= 5
    magic = [c for c in found if c.startswith("# MAGIC %pip")]
    assert magic == ["# MAGIC %pip install -r ../requirements-databricks.txt"]


def test_the_notebooks_cells_run_the_pipeline_in_order_on_the_sample_source(spark_info, tmp_path, monkeypatch):
    if not spark_info.has_delta_spark:  # the notebook reads its tables through Spark's delta format, as on Databricks
        pytest.skip(DELTA_SPARK_SKIP)
    spark = spark_info.spark
    monkeypatch.setenv("STOCKS_BASE_PATH", str(tmp_path))
    monkeypatch.chdir(NOTEBOOK.parent)  # Databricks runs a notebook in its own folder
    shown = []
    dbutils = DbUtils({"volume_path": str(tmp_path), "catalog": "workspace"})
    namespace = {"dbutils": dbutils, "spark": spark, "display": shown.append}
    for cell in cells():
        if cell.startswith(("# Databricks notebook source", "# MAGIC")):
            continue  # markdown and %pip: Databricks' own
        exec(compile(cell, str(NOTEBOOK), "exec"), namespace)  # the notebook under test, cell by cell
    assert dbutils.widgets.declared == ["volume_path", "secret_scope", "secret_key", "catalog"]
    assert namespace["exit_codes"] == {"fixed harvester": 0, "daily table": 0, "maintenance": 0, "external table": 0}
    daily, runs, outcomes = shown
    today = new_york_today()
    days = len(trading_days(today - dt.timedelta(days=4), today))  # the default range
    assert daily.count() == 8 * days
    assert {(r["script"], r["status"]) for r in runs.collect()} == {
        ("fixed_stock_harvester", "success"), ("daily_bars", "success"), ("maintenance", "success"),
        ("external_table", "success")}
    assert sorted((r["ticker"], r["status"], r["days_stored"]) for r in outcomes.collect()) == sorted(
        (ticker, "success", days) for ticker in ("AAPL", "MSFT", "GOOGL", "AMZN", "TSLA", "META", "NVDA", "JPM"))


def test_a_failing_step_stops_the_notebook_before_the_next(spark, tmp_path, monkeypatch):
    """A harvest that fails (exit 1) must not be followed by the daily table built on what it did not store."""
    import daily_bars
    import fixed_stock_harvester

    monkeypatch.setattr(fixed_stock_harvester, "main", lambda argv: 1)
    monkeypatch.setattr(daily_bars, "main", lambda argv: pytest.fail("the daily table ran after a failed harvest"))
    monkeypatch.chdir(NOTEBOOK.parent)
    namespace = {"dbutils": DbUtils({"volume_path": str(tmp_path), "catalog": "workspace"}), "spark": spark,
                 "display": lambda frame: None}
    steps = [c for c in cells() if not c.startswith(("# Databricks notebook source", "# MAGIC"))]
    with pytest.raises(RuntimeError, match=r"the pipeline stopped at the fixed harvester \(exit 1\)"):
        for cell in steps:
            exec(compile(cell, str(NOTEBOOK), "exec"), namespace)
    assert namespace["exit_codes"] == {"fixed harvester": 1}

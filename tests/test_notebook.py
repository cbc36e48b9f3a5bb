"""The notebook a student runs instead of deploying the bundle: its cells executed here in order, with stand-ins
for Databricks' widgets and display, against the sample source."""

from __future__ import annotations

import datetime as dt

import pytest

from stockpipe.market_calendar import new_york_today, trading_days
from tests.helpers import ROOT

NOTEBOOK = ROOT / "notebooks" / "run_pipeline.py"
pytestmark = pytest.mark.slow


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


def test_the_notebooks_cells_run_the_pipeline_in_order_on_the_sample_source(spark, tmp_path, monkeypatch):
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
    daily, runs = shown
    today = new_york_today()
    assert daily.count() == 8 * len(trading_days(today - dt.timedelta(days=4), today))  # the default range
    assert {r["script"] for r in runs.collect()} == {"fixed_stock_harvester", "daily_bars", "maintenance",
                                                      "external_table"}

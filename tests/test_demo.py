"""`make demo` (stockpipe/demo.py): the five scripts in the assignment's order, in one process, stopping at the first
failure; and the write shape that keeps the starter's thousands of one-bar files on every core."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from stockpipe import demo
from stockpipe.storage.port import shape_for_write
from tests.helpers import BOTH_ENGINES, table_rows

SCRIPTS = ["broken_stock_harvester", "fixed_stock_harvester", "daily_bars", "maintenance", "external_table"]


@BOTH_ENGINES
@pytest.mark.connect
def test_the_demo_runs_the_five_scripts_in_order_into_one_base_path(storage, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STOCKS_BASE_PATH", str(tmp_path))
    code = demo.main(["--from", "2024-01-08", "--to", "2024-01-08", "--tickers", "AAPL,MSFT", "--engine",
                      storage.name])
    out, err = capsys.readouterr()
    assert code == 0, err
    commands = [line for line in out.splitlines() if line.startswith("$ python ")]
    assert [c.split()[2].removesuffix(".py") for c in commands] == SCRIPTS
    assert commands[0] == ("$ python broken_stock_harvester.py --source sample --tickers AAPL,MSFT --from 2024-01-08 "
                           f"--to 2024-01-08 --engine {storage.name}")
    # Each script did its own work where a user running it alone would find it.
    fixed = table_rows(storage, tmp_path / "stocks_fixed")
    assert {(r[0], str(r[3])) for r in fixed} == {("AAPL", "2024-01-08"), ("MSFT", "2024-01-08")}
    broken = {r["ticker"] for r in storage.read(str(tmp_path / "stocks_raw")).select("ticker").distinct().collect()}
    assert broken == {"MSFT"}  # the starter's bug 1: the last ticker overwrote the first
    assert storage.read(str(tmp_path / "stocks_daily")).count() == 2  # a row per ticker and day
    runs = storage.read(str(tmp_path / "pipeline_runs")).select("script", "status").collect()
    assert sorted((r["script"], r["status"]) for r in runs) == sorted((s, "success") for s in SCRIPTS)
    assert "Row count check" in out and "stocks_external" in out


def test_the_first_failing_step_stops_the_demo_with_its_exit_code(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STOCKS_BASE_PATH", str(tmp_path))
    ran: list[str] = []

    def door(script: str):
        def main(argv: list[str]) -> int:
            ran.append(script)
            return 2 if script == "daily_bars" else 0
        return main

    assert demo.main([], door=door) == 2
    assert ran == SCRIPTS[:3]
    assert "demo: daily_bars.py exited 2; the steps after it did not run" in capsys.readouterr().err


def test_bad_input_is_one_line_and_exit_2_before_any_step(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STOCKS_BASE_PATH", str(tmp_path))
    assert demo.main(["--from", "2024-13-01"]) == 2
    out, err = capsys.readouterr()
    assert [line for line in out.splitlines() if line.startswith("$ ")] == ["$ python broken_stock_harvester.py "
                                                                             "--source sample --from 2024-13-01 --to "
                                                                             "2024-01-12"]
    assert err.strip().startswith("error:") and len(err.strip().splitlines()) == 2  # the door's line and the demo's
    assert not any(tmp_path.iterdir())


def test_a_small_partitioned_write_keeps_every_task_the_session_allows(spark):
    """Adaptive execution coalesces a small shuffle by column into one task, which would write all of the starter's
    one-bar files alone; a shuffle by number keeps the session's shuffle partitions."""
    bars = spark.range(3_000).select(F.lit("AAPL").alias("ticker"), F.col("id").cast("string").alias("minute"))
    shaped = shape_for_write(bars, ["ticker", "minute"], ())
    spread = shaped.select(F.spark_partition_id().alias("task")).distinct().count()
    assert spread > 1
    assert spread <= int(spark.conf.get("spark.sql.shuffle.partitions"))

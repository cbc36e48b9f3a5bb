"""`make demo` (stockpipe/demo.py): the scripts in the assignment's order, two nights of the fixed harvester, in one
process, a short story of each step with its whole output in a file, stopping at the first failure; and the write
shape that keeps the starter's thousands of one-bar files on every core."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from stockpipe import demo
from stockpipe.storage.port import shape_for_write
from tests.helpers import BOTH_ENGINES, table_rows

SCRIPTS = ["broken_stock_harvester", "fixed_stock_harvester", "fixed_stock_harvester", "daily_bars", "maintenance",
           "external_table"]


@BOTH_ENGINES
@pytest.mark.connect
@pytest.mark.slow  # six doors end to end (26 s on delta-rs): make test runs it, the fast loop leaves it out
def test_the_demo_runs_the_scripts_in_order_into_one_base_path_and_tells_their_story(storage, tmp_path, monkeypatch,
                                                                                     capsys):
    monkeypatch.setenv("STOCKS_BASE_PATH", str(tmp_path))
    code = demo.main(["--from", "2024-01-08", "--to", "2024-01-10", "--tickers", "AAPL,MSFT", "--engine",
                      storage.name])
    out, err = capsys.readouterr()
    assert code == 0, err
    commands = [line for line in out.splitlines() if line.startswith("$ python ")]
    assert [c.split()[2].removesuffix(".py") for c in commands] == SCRIPTS
    harvest = f"--source sample --tickers AAPL,MSFT --from 2024-01-08 --to 2024-01-10 --engine {storage.name}"
    assert commands[0] == f"$ python broken_stock_harvester.py {harvest}"
    # Two nights, the second reaching back over the first's last day; then maintenance of every table.
    assert commands[1].endswith("--from 2024-01-08 --to 2024-01-09 --engine " + storage.name)
    assert commands[2].endswith("--from 2024-01-09 --to 2024-01-10 --engine " + storage.name)
    assert commands[4] == f"$ python maintenance.py --all --engine {storage.name}"
    # Each script did its own work where a user running it alone would find it.
    fixed = table_rows(storage, tmp_path / "stocks_fixed")
    assert {(r[0], str(r[3])) for r in fixed} == {(t, d) for t in ("AAPL", "MSFT")
                                                   for d in ("2024-01-08", "2024-01-09", "2024-01-10")}
    broken = {r["ticker"] for r in storage.read(str(tmp_path / "stocks_raw")).select("ticker").distinct().collect()}
    assert broken == {"MSFT"}  # the starter's bug 1: the last ticker overwrote the first
    assert storage.read(str(tmp_path / "stocks_daily")).count() == 6  # a row per ticker and day
    runs = storage.read(str(tmp_path / "pipeline_runs")).select("script", "status").collect()
    assert sorted((r["script"], r["status"]) for r in runs) == sorted((s, "success") for s in SCRIPTS)
    # Maintenance did work a reader can see: the day night 2 replaced is vacuumed, the run log compacted, and the
    # minute table's OPTIMIZE says why it had nothing to do.
    assert "stocks_fixed: OPTIMIZE nothing to compact (each of the 6 partitions holds one file); VACUUM deleted 2 " \
           "file(s)" in out
    assert "OPTIMIZE" in [entry.operation for entry in storage.history(str(tmp_path / "pipeline_runs"))]
    # A short story: each step's few lines, then what to do next; the whole output of each step is in its file.
    assert "Tickers expected: 2, present: 1 (MSFT)" in out and "Partition pruning:" in out
    assert len(out.strip().splitlines()) <= 60 and "Next: make dashboard" in out
    files = sorted(p.name for p in (tmp_path / "demo").iterdir())
    assert files == [f"{n:02d}_{s}.txt" for n, s in enumerate(SCRIPTS, start=1)]
    assert "Summary" in (tmp_path / "demo" / "02_fixed_stock_harvester.txt").read_text()
    assert "Table history" not in out and "Row count check" not in out  # the detail stays in the files


def test_the_first_failing_step_stops_the_demo_with_its_exit_code(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STOCKS_BASE_PATH", str(tmp_path))
    ran: list[str] = []

    def door(script: str):
        def main(argv: list[str]) -> int:
            ran.append(script)
            return 2 if script == "daily_bars" else 0
        return main

    assert demo.main([], door=door) == 2
    assert ran == SCRIPTS[:4]
    assert "demo: daily_bars.py exited 2; the steps after it did not run" in capsys.readouterr().err


def test_bad_input_is_one_line_and_exit_2_before_any_step(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STOCKS_BASE_PATH", str(tmp_path))
    assert demo.main(["--from", "2024-13-01"]) == 2
    out, err = capsys.readouterr()
    assert [line for line in out.splitlines() if line.startswith("$ ")] == ["$ python broken_stock_harvester.py "
                                                                             "--source sample --from 2024-13-01 --to "
                                                                             "2024-01-12"]
    assert err.strip().startswith("error:") and len(err.strip().splitlines()) == 2  # the door's line and the demo's
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # its output file only: no table, no run log


def test_verbose_shows_each_steps_whole_output(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STOCKS_BASE_PATH", str(tmp_path))

    def door(script: str):
        def main(argv: list[str]) -> int:
            print(f"the whole output of {script}")
            return 0
        return main

    assert demo.main(["-v"], door=door) == 0
    out = capsys.readouterr().out
    assert all(f"the whole output of {s}" in out for s in SCRIPTS)
    assert demo.main([], door=door) == 0
    assert "the whole output of" not in capsys.readouterr().out
    assert (tmp_path / "demo" / "01_broken_stock_harvester.txt").read_text().startswith("the whole output of")


def test_a_small_partitioned_write_keeps_every_task_the_session_allows(spark):
    """Adaptive execution coalesces a small shuffle by column into one task, which would write all of the starter's
    one-bar files alone; a shuffle by number keeps the session's shuffle partitions."""
    bars = spark.range(3_000).select(F.lit("AAPL").alias("ticker"), F.col("id").cast("string").alias("minute"))
    shaped = shape_for_write(bars, ["ticker", "minute"], ())
    spread = shaped.select(F.spark_partition_id().alias("task")).distinct().count()
    assert spread > 1
    assert spread <= int(spark.conf.get("spark.sql.shuffle.partitions"))

"""Parts 3 and 4: maintenance keeps every row and cleans the disk; the name answers the assignment's query."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

import external_table
import fixed_stock_harvester
import maintenance
from stockpipe.compat import is_connect
from stockpipe.errors import DataLossError, UsageError
from stockpipe.external import (
    DAILY_QUERY,
    identifier,
    location_literal,
    pruning_demo,
    register_temp_view,
    register_unity_catalog,
)
from stockpipe.health import run_maintenance
from stockpipe.market_calendar import NEW_YORK
from stockpipe.paths import parquet_files_on_disk
from stockpipe.reports import render_maintenance
from stockpipe.sample import range_bars
from tests.helpers import BOTH_ENGINES, DELTA_SPARK_ONLY, WEEK, run_door

# Maintenance and registering a name branch by engine, and by mode: Delta's Python API needs Delta Connect, so
# through Spark Connect the same calls go through SQL.
pytestmark = [pytest.mark.slow, BOTH_ENGINES, pytest.mark.connect]


@pytest.fixture(scope="module")
def harvested(tmp_path_factory, storage):
    """A fixed table written by two runs (the second --refetch), so it has tombstoned files to vacuum."""
    path = tmp_path_factory.mktemp("m") / "stocks_fixed"
    argv = ["--source", "sample", "--tickers", "AAPL,MSFT", *WEEK, "--table-path", str(path), "--engine",
            storage.name]
    assert fixed_stock_harvester.main(argv) == 0
    assert fixed_stock_harvester.main([*argv, "--refetch"]) == 0
    return path


def fragmented_table(spark, path, storage):
    """Three appends of one day each into the same partitions: compaction has real work to do."""
    for hour in (14, 15, 16):
        rows = [("AAPL", dt.date(2024, 1, 8), dt.datetime(2024, 1, 8, hour, m), float(m)) for m in range(30)]
        frame = spark.createDataFrame(rows, "ticker string, trade_date date, trade_ts timestamp, close double")
        storage.write(frame, str(path), mode="append", partition_by=["ticker", "trade_date"])


def test_maintenance_compacts_vacuums_and_keeps_every_row(spark, storage, tmp_path):
    fragmented_table(spark, tmp_path / "t", storage)
    report = run_maintenance(storage, str(tmp_path / "t"), retain_hours=0)
    assert (report.before.live_files, report.after.live_files) == (3, 1)
    assert report.before.rows == report.after.rows == 90
    assert report.after.files_on_disk == report.after.live_files == len(parquet_files_on_disk(str(tmp_path / "t")))
    assert report.vacuumed.files_removed == 3
    assert "OPTIMIZE" in [h.operation for h in report.history]
    assert report.after.score > report.before.score
    assert any(r.startswith("OPTIMIZE:") for r in report.before.recommendations)


def test_report_fields_match_the_disk_and_the_source(storage, harvested):
    """The health report against facts it did not compute: the parquet files on disk after VACUUM (their count,
    sizes and partition folders, by listing the folder), their rows (read from each file's own footer), and the
    bars the sample source served for the two tickers' week."""
    import pyarrow.parquet as pq

    report = run_maintenance(storage, str(harvested), retain_hours=0)
    after = report.after
    on_disk = sorted(harvested.glob("ticker=*/trade_date=*/*.parquet"))
    sizes = sorted(f.stat().st_size for f in on_disk)
    served = sum(range_bars(t, dt.date(2024, 1, 8), dt.date(2024, 1, 12))["t"].size for t in ("AAPL", "MSFT"))
    assert after.live_files == len(on_disk) == 10 and after.partitions == len({f.parent for f in on_disk}) == 10
    assert after.file_sizes == sizes and after.total_bytes == sum(sizes)
    assert (after.min_file_bytes, after.max_file_bytes) == (sizes[0], sizes[-1])
    assert after.rows == report.before.rows == served == sum(pq.ParquetFile(f).metadata.num_rows for f in on_disk)
    assert report.before.files_on_disk == 20 and after.files_on_disk == 10  # the first run's files are gone


def test_row_count_change_fails_loudly(spark, storage, tmp_path):
    class LosingStorage(type(storage)):  # the engine under test, losing a row between the two counts
        calls = 0

        def count(self, path):
            self.calls += 1
            return super().count(path) - (self.calls > 1)

    losing = LosingStorage(spark)
    fragmented_table(spark, tmp_path / "t", losing)
    with pytest.raises(DataLossError, match="row count changed"):
        run_maintenance(losing, str(tmp_path / "t"))


def test_door_prints_side_by_side_and_writes_json_and_chart(harvested, tmp_path, capsys, storage):
    code, out, _ = run_door(maintenance, ["--table-path", str(harvested), "--json", str(tmp_path / "r.json"),
                                          "--chart", str(tmp_path / "c.png"), "--engine", storage.name], capsys)
    assert code == 0
    assert "Health check: before and after maintenance" in out and "Table history" in out
    assert "Production keeps at least 168 h" in out
    if storage.name == "delta-spark" and is_connect(storage.spark):  # DeltaTable's Python API needs Delta Connect
        assert f'spark.sql("OPTIMIZE delta.`{harvested}`")' in out and "DeltaTable" not in out
        assert f'spark.sql("VACUUM delta.`{harvested}` RETAIN 0 HOURS")' in out
    elif storage.name == "delta-spark":  # the course's calls, verbatim
        assert f'DeltaTable.forPath(spark, "{harvested}").optimize().executeCompaction()' in out
        assert f'spark.sql("VACUUM delta.`{harvested}` RETAIN 0 HOURS")' in out
    else:
        assert f"DeltaTable('{harvested}').optimize.compact()" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["before"]["rows"] == report["after"]["rows"] > 0
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_zorder_on_a_partition_column_is_refused_with_the_reason(harvested, capsys, storage):
    code, _, err = run_door(maintenance, ["--table-path", str(harvested), "--zorder-by", "ticker", "--engine",
                                          storage.name], capsys)
    assert code == 2 and "partition column" in err and "does nothing" in err


def test_zorder_inside_partitions_runs(harvested, capsys, storage):
    code, out, _ = run_door(maintenance, ["--table-path", str(harvested), "--zorder-by", "timestamp_ms", "--engine",
                                          storage.name], capsys)
    assert code == 0 and "Z-ORDER BY (timestamp_ms)" in out


def test_not_a_delta_table_is_one_line_and_exit_1(tmp_path, capsys, spark):
    (tmp_path / "plain").mkdir()
    code, _, err = run_door(maintenance, ["--table-path", str(tmp_path / "plain")], capsys)
    assert code == 1 and err.strip() == f"error: {tmp_path / 'plain'} is not a Delta table (no _delta_log): run " \
                                        "the fixed harvester first"


# -- external table --------------------------------------------------------------------------------------------------
def independent_daily(tickers: list[str]) -> list[tuple]:
    """bar_count, day_low, day_high per (ticker, New York day), straight from the sample generator."""
    out = []
    for ticker in tickers:
        columns = range_bars(ticker, dt.date(2024, 1, 8), dt.date(2024, 1, 12))
        days = np.array([dt.datetime.fromtimestamp(t / 1000, NEW_YORK).date() for t in columns["t"]])
        for day in sorted(set(days)):
            mask = days == day
            out.append((ticker, day, int(mask.sum()), float(columns["l"][mask].min()),
                        float(columns["h"][mask].max())))
    return out


def test_daily_query_through_the_name_matches_an_independent_computation(spark, storage, harvested):
    registration = register_temp_view(storage, "stocks_external_test", str(harvested))
    rows = [tuple(r) for r in spark.sql(DAILY_QUERY.format(name=registration.name)).collect()]
    assert rows == independent_daily(["AAPL", "MSFT"])


def test_pruning_reads_one_file_of_the_table(spark, storage, harvested):
    register_temp_view(storage, "stocks_prune_test", str(harvested))
    result = pruning_demo(spark, "stocks_prune_test", "MSFT", "2024-01-10", files_in_table=10)
    assert result.files_read == 1 and result.files_in_table == 10
    assert result.rows == sum(1 for r in independent_daily(["MSFT"]) if r[1] == dt.date(2024, 1, 10)
                              for _ in range(r[2]))


def test_a_catalog_refusing_the_external_table_still_answers_by_name(spark, storage, harvested, caplog):
    # Unity Catalog refuses LOCATION inside a volume (Free Edition has nothing else); here the catalog is missing.
    with caplog.at_level("WARNING"):
        registration = register_unity_catalog(spark, storage, "no_such_catalog", "dataexpert", "uc_refused",
                                              str(harvested))
    assert registration.kind == "temporary view"
    assert spark.sql(f"SELECT COUNT(*) FROM {registration.name}").collect()[0][0] == storage.count(str(harvested))
    assert "refused the external table" in caplog.text


def test_external_table_door_locally(harvested, capsys, storage):
    code, out, _ = run_door(external_table, ["--table-path", str(harvested), "--engine", storage.name], capsys)
    assert code == 0
    if storage.supports_catalog_tables:  # delta-spark: a real external table, and DROP TABLE keeps the data
        assert "Registered external table (local catalog) `dataexpert`.`stocks_external`" in out
        assert "DROP TABLE" in out and "EXTERNAL" in out
    else:
        assert "Registered temporary view stocks_external" in out
    assert "|ticker|trade_date|bar_count|day_low|day_high|" in out
    assert "files read 1 of 10 in the table" in out


@pytest.mark.parametrize("bad", ["stocks; DROP TABLE x", "a-b", "1abc", "", "`x`", "x y"])
def test_identifiers_are_validated(bad):
    with pytest.raises(UsageError, match="not an identifier"):
        identifier(bad, "--name")


def test_identifiers_are_backquoted_and_locations_quoted():
    assert identifier("stocks_external", "--name") == "`stocks_external`"
    assert location_literal("s3://bucket/stocks_fixed") == "'s3://bucket/stocks_fixed'"
    with pytest.raises(UsageError):
        location_literal("s3://bucket/x' OR '1'='1")


def test_bad_name_at_the_door_is_exit_2(capsys, harvested, storage):
    code, _, err = run_door(external_table, ["--table-path", str(harvested), "--name", "x;y"], capsys)
    assert code == 2 and "--name" in err


@DELTA_SPARK_ONLY
def test_local_catalog_external_table_survives_drop(spark, storage, tmp_path):
    from stockpipe.external import register_local_catalog

    fragmented_table(spark, tmp_path / "t", storage)
    registration = register_local_catalog(spark, storage, "test_schema", "stocks_ext", str(tmp_path / "t"))
    demo = registration.drop_demo
    assert registration.table_type == "EXTERNAL"
    assert demo["name_exists_after_drop"] == 0
    assert demo["rows_before_drop"] == demo["rows_at_path_after_drop"] == demo["rows_after_reregister"] == 90


def test_a_fractional_retention_is_printed_as_it_ran(spark, storage, tmp_path):
    """--retain-hours 1.5: delta-spark runs RETAIN 1.5 HOURS; delta-rs counts whole hours and keeps 2 (rounded up,
    so no file younger than asked is deleted). Either way the report shows the call that ran, not a truncated 1."""
    path = str(tmp_path / "t")
    storage.write(spark.createDataFrame([(1, "a")], "id long, p string"), path, mode="overwrite", partition_by=["p"])
    out = render_maintenance(run_maintenance(storage, path, retain_hours=1.5))
    if storage.name == "delta-spark":
        assert "VACUUM RETAIN 1.5 HOURS:" in out and f"VACUUM delta.`{path}` RETAIN 1.5 HOURS" in out
    else:
        assert "VACUUM RETAIN 2 HOURS:" in out and "vacuum(retention_hours=2," in out
    assert "RETAIN 1 HOURS" not in out and "retention_hours=1," not in out

"""The whole market from the provider's daily flat files, end to end against moto's S3 server on loopback (as the
provider's endpoint) and against the sample's own stand-in: days listed not guessed, files landed raw with their
ETag and never downloaded twice, a killed download resumed, a republished file landed again, a day the endpoint
lacks partial or failed by its age, the bar rules and the quarantine as for the REST path, the universe and the
symbols' shapes, the by-date layout, the secret nowhere, and both engines storing the same table."""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

import fixed_stock_harvester
from stockpipe import readers
from stockpipe.flatfiles.store import BUCKET, day_key
from stockpipe.market_calendar import NEW_YORK
from stockpipe.sample.flatfiles import csv_bytes, day_table
from stockpipe.sample.s3 import SampleFlatFilesServer
from stockpipe.sample.universe import market_symbols
from tests.helpers import BOTH_ENGINES, run_door

pytestmark = pytest.mark.slow
ACCESS_KEY, SECRET = "AKIAFLATFILESTEST", "flat-files-secret-for-tests-5a1f0c"
MON, TUE, WED, THU, FRI = (dt.date(2024, 1, d) for d in (8, 9, 10, 11, 12))
# A small market: the eight, a few class and preferred shares, and the most active synthetic names: 60 tickers.
SHAPED = [s for s in market_symbols() if "." in s][:2] + [s for s in market_symbols() if s[-2:-1] == "p"][:2]
MARKET = tuple(sorted({*market_symbols()[:56], *SHAPED}))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1, started for this module and stopped after."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def s3(url: str):
    import boto3

    return boto3.client("s3", endpoint_url=url, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET,
                        region_name="us-east-1")


def day_bytes(day: dt.date, edit=None) -> bytes:
    table = day_table(day, MARKET)
    data = csv_bytes(table)
    if edit is None:
        return data
    lines = gzip.decompress(data).decode().splitlines()
    return gzip.compress(("\n".join(edit(lines)) + "\n").encode(), mtime=0)


@contextlib.contextmanager
def bucket(url: str, days: dict[dt.date, bytes]) -> Iterator[str]:
    """A bucket of its own (moto keeps state per server), holding these days' files."""
    client = s3(url)
    name = f"{BUCKET}"
    with contextlib.suppress(Exception):
        client.create_bucket(Bucket=name)
    for old in client.list_objects_v2(Bucket=name).get("Contents", []):
        client.delete_object(Bucket=name, Key=old["Key"])
    for day, data in days.items():
        client.put_object(Bucket=name, Key=day_key(day), Body=data)
    yield name


@pytest.fixture
def credentials(monkeypatch):
    monkeypatch.setenv("MASSIVE_S3_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("MASSIVE_S3_SECRET_ACCESS_KEY", SECRET)


def harvest_argv(url: str, base: Path, *extra: str, days=(MON, TUE)) -> list[str]:
    return ["--source", "flatfiles", "--flatfiles-url", url, "--universe", "market", "--layout", "by-date",
            "--from", days[0].isoformat(), "--to", days[-1].isoformat(), "--table-path", str(base / "stocks_fixed"),
            *extra]


def expected_market_rows(days) -> set[tuple]:
    rows = set()
    for day in days:
        table = day_table(day, MARKET)
        for ticker, ns, close in zip(table.column("ticker").to_pylist(), table.column("window_start").to_pylist(),
                                     table.column("close").to_pylist(), strict=True):
            rows.add((ticker, ns // 1_000_000, close))
    return rows


def stored_rows(base: Path) -> set[tuple]:
    found = readers.read(base / "stocks_fixed", columns=["ticker", "timestamp_ms", "close"])
    return set(zip(*(found.column(c).to_pylist() for c in ("ticker", "timestamp_ms", "close")), strict=True))


# -- a market day, end to end ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def market(moto, tmp_path_factory, storage):
    """Two market days of 60 tickers landed from moto and stored by-date, once per engine."""
    base = tmp_path_factory.mktemp(f"market-{storage.name}")
    with pytest.MonkeyPatch.context() as patch, bucket(moto, {MON: day_bytes(MON), TUE: day_bytes(TUE)}):
        patch.setenv("MASSIVE_S3_ACCESS_KEY_ID", ACCESS_KEY)
        patch.setenv("MASSIVE_S3_SECRET_ACCESS_KEY", SECRET)
        import io
        from contextlib import redirect_stderr, redirect_stdout

        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = fixed_stock_harvester.main(harvest_argv(moto, base, "--engine", storage.name))
    return base, code, out.getvalue(), err.getvalue()


@BOTH_ENGINES
def test_a_market_day_stores_every_bar_of_every_ticker_by_date(market, storage):
    base, code, out, err = market
    assert code == 0, err
    assert stored_rows(base) == expected_market_rows((MON, TUE))
    detail = storage.detail(str(base / "stocks_fixed"))
    assert detail.partition_columns == ["trade_date"] and detail.num_files == 2  # one file a day
    # The summary counts tickers by status, above ~50 of them; the file table says what each day was.
    assert f"Summary: {len(MARKET)} tickers: {len(MARKET)} success" in out
    assert "2024-01-08  landed" in out and "2024-01-09  landed" in out


@BOTH_ENGINES
def test_each_days_file_is_sorted_by_ticker_then_time(market, storage):
    import pyarrow.parquet as pq

    from stockpipe.paths import local_path

    base = market[0]
    for info in storage.detail(str(base / "stocks_fixed")).files:
        found = local_path(info.path)  # delta-spark names a file by its URI, delta-rs relative to the table
        assert found is not None
        table = pq.read_table(found if found.is_absolute() else base / "stocks_fixed" / found,
                              columns=["ticker", "timestamp_ms"])
        keys = list(zip(table.column("ticker").to_pylist(), table.column("timestamp_ms").to_pylist(), strict=True))
        assert keys == sorted(keys)


@BOTH_ENGINES
def test_the_checks_keep_a_row_for_each_problem_and_one_a_day_and_check_for_the_rest(market, storage):
    base = market[0]
    rows = readers.read(base / "quality_checks").to_pylist()
    passes = [r for r in rows if r["status"] == "pass"]
    assert passes and all(r["ticker"] == "" for r in passes)
    assert {(r["trade_date"], r["check"]) for r in passes} == {(d, c) for d in (MON, TUE) for c in
                                                                {r["check"] for r in passes}}
    assert len(rows) < len(MARKET) * 2 * 7  # not a row per ticker, day and check
    assert all(r["ticker"] for r in rows if r["status"] != "pass")


@BOTH_ENGINES
def test_the_run_records_every_tickers_outcome(market, storage):
    base = market[0]
    run = readers.read(base / "pipeline_runs").to_pylist()[-1]
    assert run["status"] == "success" and run["source"] == "flatfiles"
    assert {o["ticker"] for o in run["ticker_outcomes"]} == set(MARKET)
    assert SECRET not in json.dumps(run, default=str) and ACCESS_KEY not in json.dumps(run, default=str)


@BOTH_ENGINES
def test_the_other_doors_work_on_a_by_date_table_and_maintenance_z_orders_its_crowded_days(market, storage, tmp_path,
                                                                                           capsys, monkeypatch):
    """Monday's rows of a ticker in the middle of the alphabet rewritten apart (as a later run for a few tickers
    leaves a day: two files whose ticker ranges overlap, so a one-ticker query opens both); maintenance Z-orders that
    day by ticker, and only it (Tuesday, one file sorted by ticker, is left as it is); the daily
    table, the external table and the dashboard read the by-date table as they read the partitioned one."""
    import shutil

    import daily_bars
    import external_table
    import maintenance
    from stockpipe.compat import to_arrow
    from stockpipe.storage import ReplacePredicate

    base = tmp_path / "m"
    shutil.copytree(market[0], base)
    table = str(base / "stocks_fixed")
    middle = MARKET[len(MARKET) // 2]
    apart = ReplacePredicate.of(ticker=[middle], trade_date=[MON])
    kept = to_arrow(storage.read(table).filter(apart.column()))
    assert kept.num_rows > 0
    spark = storage.spark
    storage.write(spark.createDataFrame(kept.to_pandas().iloc[:0], storage.read(table).schema), table,
                  mode="overwrite", replace=apart, partition_by=["trade_date"])
    storage.write(spark.createDataFrame(kept.to_pandas(), storage.read(table).schema), table, mode="append",
                  partition_by=["trade_date"])

    def files_a_day() -> dict[str, int]:
        found: dict[str, int] = {}
        for info in storage.detail(table).files:
            found[info.partition["trade_date"]] = found.get(info.partition["trade_date"], 0) + 1
        return found

    assert files_a_day()["2024-01-08"] >= 2 and files_a_day()["2024-01-09"] == 1
    code, out, err = run_door(maintenance, ["--table-path", table, "--engine", storage.name], capsys)
    assert code == 0, err
    assert "OPTIMIZE (Z-ORDER BY (ticker))" in out and "2024-01-08" in out and "2024-01-09" not in out.split(
        "Calls run")[1].split("VACUUM")[0]
    assert files_a_day() == {"2024-01-08": 1, "2024-01-09": 1}
    assert stored_rows(base) == expected_market_rows((MON, TUE))
    assert run_door(daily_bars, ["--table-path", table, "--engine", storage.name], capsys)[0] == 0
    assert readers.read(base / "stocks_daily", columns=["ticker"]).num_rows == 2 * len(MARKET)
    code, out, _ = run_door(external_table, ["--table-path", table, "--engine", storage.name, "--no-drop-demo",
                                             "--ticker", "AAPL", "--day", "2024-01-09"], capsys)
    assert code == 0 and "Partition pruning: AAPL on 2024-01-09" in out
    from tests.test_dashboard import app

    page = app(base, monkeypatch)
    assert not page.exception and "AAPL" in page.selectbox[0].options


@pytest.mark.connect  # Spark Connect ships the package to its workers another way (addArtifacts)
def test_both_engines_store_the_same_table(moto, tmp_path, spark_info, credentials):
    """Arrow and delta-rs on one side, Spark and delta-spark on the other: the same rows, every column."""
    if not spark_info.has_delta_spark:
        pytest.skip("delta-spark's jars cannot be loaded here")
    with bucket(moto, {WED: day_bytes(WED, _with_faults)}):
        for engine in ("delta-rs", "delta-spark"):
            # One landing zone: the second run reuses the file the first landed, so the landing time (the rows'
            # ingested_at) is the same too.
            argv = harvest_argv(moto, tmp_path / engine, "--engine", engine, "--landing-path",
                                str(tmp_path / "landing"), days=(WED,))
            assert fixed_stock_harvester.main(argv) == 0
    tables = {engine: readers.read(tmp_path / engine / "stocks_fixed").sort_by([("ticker", "ascending"),
                                                                                ("timestamp_ms", "ascending")])
              for engine in ("delta-rs", "delta-spark")}
    rs, spark = tables["delta-rs"], tables["delta-spark"]
    assert rs.num_rows == spark.num_rows > 0
    for name in rs.column_names:
        assert rs.column(name).to_pylist() == spark.column(name).to_pylist(), name
    quarantine = {engine: sorted((r["landed_page"], r["position"], r["reason"], r["raw"]) for r in
                                 readers.read(tmp_path / engine / "stocks_quarantine").to_pylist())
                  for engine in ("delta-rs", "delta-spark")}
    assert quarantine["delta-rs"] == quarantine["delta-spark"] and len(quarantine["delta-rs"]) == 3
    # One day on several cores: Spark's tasks share the day's file, each a run of its tickers, so the day is a file a
    # task, their ticker ranges one after another: in order already, nothing for maintenance to Z-order.
    from stockpipe.compat import default_parallelism
    from stockpipe.flatfiles.tasks import parts_a_file
    from stockpipe.health import crowded_days
    from stockpipe.storage import choose_engine

    for engine in ("delta-rs", "delta-spark"):
        storage, _ = choose_engine(spark_info.spark, engine)
        path = str(tmp_path / engine / "stocks_fixed")
        detail = storage.detail(path)
        expected = 1 if engine == "delta-rs" else parts_a_file(1, default_parallelism(spark_info.spark))
        assert detail.num_files == expected and crowded_days(path, detail) == []


def _with_faults(lines: list[str]) -> list[str]:
    """A day file as a careless feed sends it: a row cut short, a price that is text, a window_start that is not a
    whole millisecond, and one negative window_start (polygon-io/issues #334)."""
    out = list(lines)
    out[10] = ",".join(out[10].split(",")[:5])  # too few fields: not a bar
    fields = out[20].split(",")
    fields[3] = "12.x"
    out[20] = ",".join(fields)
    fields = out[30].split(",")
    fields[6] = str(int(fields[6]) + 123)
    out[30] = ",".join(fields)
    fields = out[40].split(",")
    fields[6] = "-" + fields[6]
    out[40] = ",".join(fields)
    return out


def test_a_malformed_row_is_quarantined_and_the_rest_of_the_file_stored(moto, tmp_path, credentials, capsys):
    with bucket(moto, {WED: day_bytes(WED, _with_faults)}):
        code, out, err = run_door(fixed_stock_harvester, harvest_argv(moto, tmp_path, days=(WED,)), capsys)
    assert code == 0, err
    quarantined = readers.read(tmp_path / "stocks_quarantine").to_pylist()
    assert sorted(r["reason"] for r in quarantined) == ["fields_are_numbers", "readable", "t_integer_ms"]
    assert {r["landed_page"] for r in quarantined} == {f"flatfiles/{day_key(WED)}"}
    lines = gzip.decompress(day_bytes(WED, _with_faults)).decode().splitlines()
    assert {r["raw"] for r in quarantined} == {lines[10], lines[20], lines[30]}
    assert sorted(r["position"] for r in quarantined) == [9, 19, 29]  # rows after the header, from 0
    good = expected_market_rows((WED,))
    stored = stored_rows(tmp_path)
    assert len(good) - len(stored) == 4  # three quarantined, one stamped in 1969: outside the day, not stored


# -- landing: what exists, what is landed, what is landed again -------------------------------------------------------
def test_a_rerun_downloads_nothing_and_a_republished_file_is_landed_again_and_replaces_its_day(moto, tmp_path,
                                                                                           credentials, capsys):
    argv = harvest_argv(moto, tmp_path, days=(MON,))
    with bucket(moto, {MON: day_bytes(MON)}):
        assert run_door(fixed_stock_harvester, argv, capsys)[0] == 0
        code, out, _ = run_door(fixed_stock_harvester, argv, capsys)
    assert code == 0 and "2024-01-08  reused" in out
    assert len(DeltaTable(str(tmp_path / "stocks_fixed")).history()) == 2  # created, written once: not rewritten
    # The provider republishes Monday with one bar corrected: a new ETag, landed again, the day replaced.
    def corrected(lines: list[str]) -> list[str]:
        fields = lines[1].split(",")
        fields[3] = fields[5]  # the first bar's close corrected down to its low
        return [lines[0], ",".join(fields), *lines[2:]]

    with bucket(moto, {MON: day_bytes(MON, corrected)}):
        code, out, _ = run_door(fixed_stock_harvester, argv, capsys)
    assert code == 0 and "2024-01-08  relanded" in out
    first = gzip.decompress(day_bytes(MON, corrected)).decode().splitlines()[1].split(",")
    stored = readers.read(tmp_path / "stocks_fixed", where={"trade_date": "2024-01-08"},
                          columns=["ticker", "timestamp_ms", "close"]).to_pylist()
    assert {"ticker": first[0], "timestamp_ms": int(first[6]) // 1_000_000, "close": float(first[5])} in stored
    assert len(stored) == len(expected_market_rows((MON,)))  # the day replaced, not added to


def test_a_republished_file_cut_short_keeps_the_stored_day_unless_allowed(moto, tmp_path, credentials, capsys):
    """The refetch guard, a day at a time: a republished Monday with a third of its lines would shrink the stored
    day; it is kept as stored, the check fails and the run exits 1 naming the day; --allow-shrink replaces it and
    warns. Tuesday, whole, is stored either way."""
    argv = harvest_argv(moto, tmp_path, days=(MON, TUE))
    with bucket(moto, {MON: day_bytes(MON), TUE: day_bytes(TUE)}):
        assert run_door(fixed_stock_harvester, argv, capsys)[0] == 0
    whole = stored_rows(tmp_path)
    with bucket(moto, {MON: day_bytes(MON, lambda lines: lines[: len(lines) // 3]), TUE: day_bytes(TUE)}):
        code, out, err = run_door(fixed_stock_harvester, argv, capsys)
        assert code == 1 and "2024-01-08  relanded" in out
        assert "refetch would shrink 1 stored day(s), kept as stored: 2024-01-08" in err
        assert stored_rows(tmp_path) == whole
        checks = [r for r in readers.read(tmp_path / "quality_checks").to_pylist() if r["check"] == "refetch_shrink"]
        # Tuesday's stored rows came from the very file landed: not written again, so not judged again.
        assert {(r["trade_date"], r["status"]) for r in checks} == {(MON, "fail")}
        code, out, err = run_door(fixed_stock_harvester, [*argv, "--allow-shrink"], capsys)
    assert code == 0, err
    whole_monday = expected_market_rows((MON,))
    monday = stored_rows(tmp_path) & whole_monday
    assert 0 < len(monday) < len(whole_monday) // 2
    checks = [r for r in readers.read(tmp_path / "quality_checks").to_pylist() if r["check"] == "refetch_shrink"]
    assert (MON, "warn") in {(r["trade_date"], r["status"]) for r in checks}


def test_a_day_the_endpoint_lacks_is_partial_when_latest_and_a_failure_when_older(moto, tmp_path, credentials,
                                                                                   capsys, monkeypatch):
    """Friday's file is not out yet on the Monday after (published about 11:00 New York): partial, exit 0; Tuesday's
    is missing days later: a failure of that day, exit 1, named; the other days are stored."""
    monkeypatch.setattr("stockpipe.harvest.flat.new_york_today", lambda: dt.date(2024, 1, 15))
    with bucket(moto, {MON: day_bytes(MON), WED: day_bytes(WED), THU: day_bytes(THU)}):
        code, out, err = run_door(fixed_stock_harvester, harvest_argv(moto, tmp_path, days=(MON, FRI)), capsys)
    assert code == 1
    assert "error: 2024-01-09: no flat file (not in the endpoint's listing, though a day this old should be there)" \
        in err
    assert "warning: 2024-01-12: not in the endpoint's listing: not published yet" in err
    days = {r["trade_date"] for r in readers.read(tmp_path / "stocks_fixed", columns=["trade_date"]).to_pylist()}
    assert days == {MON, WED, THU}


def test_only_the_latest_day_missing_is_partial_and_exit_0(moto, tmp_path, credentials, capsys, monkeypatch):
    monkeypatch.setattr("stockpipe.harvest.flat.new_york_today", lambda: dt.date(2024, 1, 10))
    with bucket(moto, {MON: day_bytes(MON)}):
        code, out, err = run_door(fixed_stock_harvester, harvest_argv(moto, tmp_path, days=(MON, TUE)), capsys)
    assert code == 0 and err.count("warning:") == 1 and "2024-01-09" in err
    run = readers.read(tmp_path / "pipeline_runs").to_pylist()[-1]
    assert run["status"] == "partial"


def test_a_download_killed_half_way_resumes_from_its_bytes(tmp_path, monkeypatch, capsys):
    """The sample's stand-in, which records each request's range: a part left by a killed run is continued with a
    Range request for the rest, under If-Match of the file's ETag, and the file lands whole."""
    symbols = MARKET[:20]
    with SampleFlatFilesServer(symbols, cache=tmp_path / "cache",
                               now=lambda: dt.datetime(2024, 1, 10, 12, tzinfo=NEW_YORK).timestamp()) as server:
        from stockpipe.flatfiles.zone import FlatFileZone

        whole = (tmp_path / "cache").glob("*")  # nothing made yet
        assert not list(whole)
        zone = FlatFileZone(tmp_path / "stocks_fixed_landing")
        data = Path(__import__("stockpipe.sample.flatfiles", fromlist=["day_file"]).day_file(
            MON, symbols, tmp_path / "cache")).read_bytes()
        part = zone.part(MON, server.etag(MON))
        part.write_bytes(data[: len(data) // 3])
        monkeypatch.setenv("MASSIVE_S3_ACCESS_KEY_ID", ACCESS_KEY)
        monkeypatch.setenv("MASSIVE_S3_SECRET_ACCESS_KEY", SECRET)
        code, _, err = run_door(fixed_stock_harvester, ["--source", "flatfiles", "--flatfiles-url", server.url,
                                                        "--tickers", ",".join(symbols), "--from", "2024-01-08",
                                                        "--to", "2024-01-08", "--table-path",
                                                        str(tmp_path / "stocks_fixed")], capsys)
        ranges = [r for r in server.ranges if r]
    assert code == 0, err
    assert ranges == [f"bytes={len(data) // 3}-"]
    assert zone.landed(MON).path.read_bytes() == data


def test_credentials_the_endpoint_refuses_stop_the_run_with_one_line(moto, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MASSIVE_S3_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("MASSIVE_S3_SECRET_ACCESS_KEY", SECRET)
    code, out, err = run_door(fixed_stock_harvester, harvest_argv("http://127.0.0.1:9", tmp_path, days=(MON,)),
                              capsys)
    assert code == 1 and "cannot reach the flat-file endpoint http://127.0.0.1:9" in err
    assert SECRET not in out + err


# -- the universe, the symbols ---------------------------------------------------------------------------------------
def test_tickers_from_a_file_with_the_providers_symbol_shapes(moto, tmp_path, credentials, capsys):
    listed = tmp_path / "tickers.txt"
    listed.write_text("# my watch list\nAAPL\n" + "\n".join(f"{s}   # shaped" for s in SHAPED) + "\n\nNVDA\n")
    argv = [a for a in harvest_argv(moto, tmp_path, days=(MON,)) if a not in ("--universe", "market")]
    with bucket(moto, {MON: day_bytes(MON)}):
        code, out, err = run_door(fixed_stock_harvester, [*argv, "--tickers", f"@{listed}"], capsys)
    assert code == 0, err
    stored = {r["ticker"] for r in readers.read(tmp_path / "stocks_fixed", columns=["ticker"]).to_pylist()}
    assert stored == {"AAPL", "NVDA", *SHAPED}
    assert any(s.endswith(("pA", "pB", "pC", "pD", "pE", "pF")) for s in stored)  # the case kept as the provider's


def test_the_market_universe_needs_the_flat_files(capsys, tmp_path):
    code, _, err = run_door(fixed_stock_harvester, ["--source", "sample", "--universe", "market", "--table-path",
                                                    str(tmp_path / "t")], capsys)
    assert code == 2 and "--universe market needs --source flatfiles" in err


# -- offline: the sample's files -------------------------------------------------------------------------------------
def test_offline_the_sample_markets_files_are_served_without_credentials(tmp_path, capsys, monkeypatch):
    """No credentials, no URL: the sample market's flat files from a loopback stand-in, as the REST path's sample."""
    for name in ("MASSIVE_S3_ACCESS_KEY_ID", "MASSIVE_S3_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    from stockpipe.sample.source import SampleFlatFiles

    monkeypatch.setattr("stockpipe.cli.SampleFlatFiles", lambda: SampleFlatFiles(MARKET))  # a day of 60, not 11,000
    code, out, err = run_door(fixed_stock_harvester, ["--source", "flatfiles", "--tickers", "AAPL,MSFT", "--from",
                                                      "2024-01-08", "--to", "2024-01-08", "--table-path",
                                                      str(tmp_path / "t")], capsys)
    assert code == 0, err
    stored = readers.read(tmp_path / "t", columns=["ticker"]).column("ticker").to_pylist()
    assert set(stored) == {"AAPL", "MSFT"}
    assert readers.read(tmp_path / "pipeline_runs").to_pylist()[-1]["source"] == "sample"


def test_the_sample_stand_in_lists_only_published_days_and_refuses_a_changed_etag(tmp_path):
    import requests

    monday_noon = dt.datetime(2024, 1, 9, 10, 59, tzinfo=NEW_YORK).timestamp()
    with SampleFlatFilesServer(MARKET[:5], cache=tmp_path, now=lambda: monday_noon) as server:
        listing = requests.get(f"{server.url}/{BUCKET}", params={"list-type": "2",
                                                                  "prefix": "us_stocks_sip/minute_aggs_v1/2024/01/"},
                               timeout=30).text
        assert "2024-01-05.csv.gz" in listing and "2024-01-08.csv.gz" not in listing  # Monday's not out before 11:00
        got = requests.get(f"{server.url}/{BUCKET}/{day_key(dt.date(2024, 1, 5))}",
                           headers={"If-Match": '"another"'}, timeout=30)
        assert got.status_code == 412
        assert requests.get(f"{server.url}/{BUCKET}/{day_key(MON)}", timeout=30).status_code == 404


def test_a_day_table_holds_the_same_eight_as_the_rest_answers():
    from stockpipe.sample import range_bars

    table = day_table(MON, ("AAPL", *MARKET[8:12]))
    aapl = table.filter(pa.compute.equal(table.column("ticker"), "AAPL"))
    assert (aapl.column("window_start").to_numpy() // 1_000_000).tolist() == range_bars("AAPL", MON, MON)["t"].tolist()
    assert table.column("ticker").to_pylist() == sorted(table.column("ticker").to_pylist())


def test_a_flat_file_run_ends_by_default_on_the_session_before_today(monkeypatch, tmp_path):
    """Today's file is published tomorrow: the default --to is the previous session (over a holiday weekend too),
    so a nightly run is not partial every night; --to still says otherwise when given."""
    from stockpipe import cli

    monkeypatch.setattr(cli, "new_york_today", lambda: dt.date(2024, 1, 16))  # Tuesday after MLK day
    parser = fixed_stock_harvester.build_parser()
    cfg = cli.build_config(parser.parse_args(["--source", "flatfiles", "--table-path", str(tmp_path / "t")]),
                           default_table_path=lambda: str(tmp_path / "t"), secret=lambda scope, key: None)
    assert (cfg.date_from, cfg.date_to) == (dt.date(2024, 1, 8), FRI)
    assert cli.previous_session(dt.date(2024, 1, 8)) == dt.date(2024, 1, 5)


def test_a_day_is_crowded_only_when_its_files_ticker_ranges_overlap(tmp_path):
    """Spark's tasks sharing a day write runs of tickers one after another: a one-ticker query opens one file, so the
    day is left alone; a later run's file for a ticker inside another file's range makes the day crowded; a file the
    footer cannot be read from (not on a local disk) counts as crowding, as maintenance cannot tell."""
    import pyarrow.parquet as pq

    from stockpipe.health import crowded_days
    from stockpipe.storage.port import FileInfo, TableDetail

    day = tmp_path / "stocks_fixed" / "trade_date=2024-01-08"
    day.mkdir(parents=True)

    def piece(name: str, tickers: list[str]) -> FileInfo:
        pq.write_table(pa.table({"ticker": tickers}), day / name)
        return FileInfo(f"trade_date=2024-01-08/{name}", 1, {"trade_date": "2024-01-08"})

    def crowded(*files: FileInfo) -> list[str]:
        detail = TableDetail(str(tmp_path / "stocks_fixed"), "delta-rs", 1, ["trade_date"], [], list(files))
        return crowded_days(detail.path, detail)

    first, second = piece("a.parquet", ["AAPL", "MSFT"]), piece("b.parquet", ["NVDA", "TSLA"])
    assert crowded(first) == [] and crowded(first, second) == []
    assert crowded(first, second, piece("c.parquet", ["GOOGL"])) == ["2024-01-08"]
    assert crowded(first, FileInfo("s3://bucket/t/x.parquet", 1, {"trade_date": "2024-01-08"})) == ["2024-01-08"]

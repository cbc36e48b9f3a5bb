"""The Databricks bundle, checked offline: every file against the CLI's published schema, every task's parameters
through that door's own parser, the schedule and the environment; then the job's tasks run in their order on this
machine against the sample source, with the variables resolved to local values. Nothing here reaches a workspace."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT

SCHEMA = ROOT.parent / "shared" / "reference" / "databricks-bundle-schema.json"
BUNDLE_FILES = [ROOT / "databricks.yml", *sorted((ROOT / "resources").glob("*.yml"))]
VARIABLE = re.compile(r"\$\{var\.([a-z_]+)\}")


def schema_validator():
    """The CLI's schema, its `pattern`s read as the Go regular expressions they are (\\p{L}: `regex`, not `re`)."""
    import jsonschema
    import regex

    def pattern(validator, expected, instance, schema):
        if validator.is_type(instance, "string") and not regex.search(expected, instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {expected!r}")

    go_patterns = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": pattern})
    return go_patterns(json.loads(SCHEMA.read_text()))


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def job(name: str = "stock_pipeline") -> dict:
    return load(ROOT / "resources" / f"{name}.yml")["resources"]["jobs"][name]


JOBS = ("stock_pipeline", "market_pipeline", "market_daily")


def resolve(text: str, values: dict[str, str]) -> str:
    return VARIABLE.sub(lambda m: values[m.group(1)], text)


def defaults() -> dict[str, str]:
    return {name: spec["default"] for name, spec in load(ROOT / "databricks.yml")["variables"].items()}


def tasks_in_order(name: str = "stock_pipeline") -> list[dict]:
    """The job's tasks, each after the tasks it depends on (and the file's order among the rest)."""
    pending, done, ordered = list(job(name)["tasks"]), set(), []
    for _ in range(len(pending) ** 2 + 1):  # bounded: a cycle would leave tasks pending
        if not pending:
            break
        task = next(t for t in pending if all(d["task_key"] in done for d in t.get("depends_on", [])))
        pending.remove(task)
        done.add(task["task_key"])
        ordered.append(task)
    assert not pending, "the job's dependencies form a cycle"
    return ordered


def door_of(task: dict):
    python_file = task["spark_python_task"]["python_file"]
    return importlib.import_module(Path(python_file).stem)


@pytest.mark.skipif(not SCHEMA.is_file(), reason=f"the bundle schema is not here ({SCHEMA}): it ships in ../shared")
@pytest.mark.parametrize("path", BUNDLE_FILES, ids=lambda p: p.name)
def test_every_bundle_file_validates_against_the_published_schema(path):
    errors = sorted(schema_validator().iter_errors(load(path)), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message[:200]}" for e in errors)


def test_the_schema_check_would_catch_a_misspelt_key():
    """The check can fail: a task with a key the schema does not know is refused."""
    if not SCHEMA.is_file():
        pytest.skip(f"the bundle schema is not here ({SCHEMA})")
    broken = load(ROOT / "resources" / "stock_pipeline.yml")
    broken["resources"]["jobs"]["stock_pipeline"]["tasks"][0]["spark_pyhton_task"] = {"python_file": "x.py"}
    assert list(schema_validator().iter_errors(broken))


@pytest.mark.parametrize("task", [t for name in JOBS for t in job(name)["tasks"]], ids=lambda t: t["task_key"])
def test_every_task_parameter_is_a_flag_its_door_knows(task):
    """Parsed by the door's own parser (whose errors are UsageError): an unknown or misspelt flag fails here."""
    door = door_of(task)
    assert (ROOT / Path(task["spark_python_task"]["python_file"]).name).is_file()
    params = [resolve(p, defaults()) for p in task["spark_python_task"].get("parameters", [])]
    door.build_parser().parse_args(params)
    assert task.get("environment_key") == "pipeline"


def test_the_job_runs_after_the_close_on_weekdays_on_serverless_with_only_what_the_runtime_lacks():
    spec = job()
    assert spec["schedule"] == {"quartz_cron_expression": "0 30 20 ? * MON-FRI", "timezone_id": "America/New_York",
                                "pause_status": "UNPAUSED"}
    assert [t["task_key"] for t in tasks_in_order()] == ["harvest", "daily_bars", "maintenance", "external_table"]
    assert not any("new_cluster" in t or "existing_cluster_id" in t or "job_cluster_key" in t for t in spec["tasks"])
    (environment,) = spec["environments"]
    assert environment["spec"]["dependencies"] == ["-r ${workspace.file_path}/requirements-databricks.txt"]
    installs = [line.split("==")[0].strip().lower() for line in (ROOT / "requirements-databricks.txt").read_text()
                .splitlines() if line.strip() and not line.startswith("#")]
    assert installs and not {"pyspark", "delta-spark", "pyspark[connect]"} & set(installs)
    targets = load(ROOT / "databricks.yml")["targets"]
    assert targets["dev"]["mode"] == "development" and targets["prod"]["mode"] == "production"
    assert set(defaults()) == {"catalog", "schema", "volume_path", "market_volume_path", "market_pause_status",
                               "secret_scope", "secret_key", "tickers", "alert_email"}


def test_the_job_can_be_operated_timeouts_alerts_a_retried_harvest_and_no_failure_workaround():
    """Every task times out within the run log's abandon rule, so a task killed by its timeout is marked abandoned by
    the next run; a failure or a long night emails someone; the harvest retries once (it resumes from the landing
    zone) on the real API; no task runs after a failure (a plan refusal is exit 0 now, not a failure to step over);
    maintenance keeps every pipeline table."""
    from stockpipe.runlog import ABANDONED_AFTER

    spec = job()
    tasks = {t["task_key"]: t for t in spec["tasks"]}
    assert all(0 < t["timeout_seconds"] <= ABANDONED_AFTER.total_seconds() for t in tasks.values())
    assert not any("run_if" in t for t in tasks.values())
    assert spec["email_notifications"]["on_failure"] == ["${var.alert_email}"]
    assert spec["email_notifications"]["on_duration_warning_threshold_exceeded"] == ["${var.alert_email}"]
    (rule,) = spec["health"]["rules"]
    assert rule["metric"] == "RUN_DURATION_SECONDS" and rule["op"] == "GREATER_THAN" and 0 < rule["value"] < sum(
        t["timeout_seconds"] for t in tasks.values())
    assert defaults()["alert_email"] == "${workspace.current_user.userName}"
    harvest = tasks["harvest"]
    assert (harvest["max_retries"], harvest["retry_on_timeout"]) == (1, True)
    assert harvest["min_retry_interval_millis"] >= 60_000  # the rate limit's window has passed
    params = harvest["spark_python_task"]["parameters"]
    assert params[params.index("--source") + 1] == "api"
    assert "--all" in tasks["maintenance"]["spark_python_task"]["parameters"]


@pytest.mark.slow
def test_a_local_dry_run_executes_the_tasks_in_order_against_a_loopback_api(spark, tmp_path, monkeypatch):
    """The job as Databricks would run it, here: each task's door main() with its parameters, the variables
    resolved to local values (a temporary folder for the volume, the key from the environment as no secret scope is
    here), the harvest's `--source api` served by a loopback fake whose plan refuses the current day as the free
    tier does: the harvest is partial and exits 0, so the tasks after it run without a `run_if`."""
    from stockpipe.market_calendar import new_york_today, trading_days
    from stockpipe.testing import ApiBehaviour, FakeMassiveServer
    from tests.helpers import KEY

    today = new_york_today()
    monkeypatch.setenv("STOCKS_BASE_PATH", str(tmp_path))
    monkeypatch.setenv("MASSIVE_API_KEY", KEY)
    # The job keeps the free tier's pace against the real API; against this loopback fake it would only make the
    # test wait out the rate-limit window (pacing has its own tests, on a fake clock).
    monkeypatch.setattr("stockpipe.config.FREE_TIER_CALLS_PER_MINUTE", 100_000)
    # What is under test is the job (its tasks, their order and parameters), not the engine: `auto` takes delta-rs
    # here, as on a laptop without Delta's jars (the doors on delta-spark run end to end in tests/test_demo.py).
    monkeypatch.setattr("stockpipe.storage.engines.session_has_delta", lambda spark: False)
    values = {**defaults(), "volume_path": str(tmp_path), "tickers": "AAPL,NVDA"}
    codes = {}
    with FakeMassiveServer(ApiBehaviour(api_key=KEY, plan_refuses_from=today)) as server:
        api = server.base_url
        monkeypatch.setenv("MASSIVE_BASE_URL", api)
        for task in tasks_in_order():
            params = [resolve(p, values) for p in task["spark_python_task"].get("parameters", [])]
            codes[task["task_key"]] = door_of(task).main([*params, "--no-drop-demo"] if task["task_key"] ==
                                                          "external_table" else params)
    assert codes == {"harvest": 0, "daily_bars": 0, "maintenance": 0, "external_table": 0}
    for table in ("stocks_fixed", "stocks_splits", "stocks_daily", "pipeline_runs"):
        assert (tmp_path / table / "_delta_log").is_dir(), table
    from stockpipe.storage import choose_engine

    storage, _ = choose_engine(spark, "auto")
    rows = storage.read(str(tmp_path / "pipeline_runs")).orderBy("started_at").collect()
    assert [r["script"] for r in rows] == ["fixed_stock_harvester", "daily_bars", "maintenance", "external_table"]
    harvest = rows[0]
    assert (harvest["source"], harvest["api_host"]) == ("api", api.removeprefix("http://"))
    # The plan refuses a range reaching today, which it does when today is a trading day.
    assert harvest["status"] == ("partial" if today in trading_days(today, today) else "success")
    assert all(r["status"] in ("success", "partial") and r["exit_code"] == 0 for r in rows)


def test_the_market_job_takes_every_ticker_from_the_flat_files_once_published_then_the_daily_table_and_upkeep():
    """Trading days at 11:30 New York (the previous session's file is out about 11:00), paused until the plan has
    flat files; the S3 keys from the secret scope; by-date under a volume of its own; then the daily table and
    maintenance; a late file is retried, resuming what was landed."""
    from stockpipe.runlog import ABANDONED_AFTER

    spec = job("market_pipeline")
    assert spec["schedule"] == {"quartz_cron_expression": "0 30 11 ? * MON-FRI", "timezone_id": "America/New_York",
                                "pause_status": "${var.market_pause_status}"}
    assert defaults()["market_pause_status"] == "PAUSED"
    assert defaults()["market_volume_path"] != defaults()["volume_path"]
    ordered = tasks_in_order("market_pipeline")
    assert [t["task_key"] for t in ordered] == ["harvest_market", "market_daily_bars", "market_maintenance"]
    params = ordered[0]["spark_python_task"]["parameters"]
    flags = dict(zip(params[::2], params[1::2], strict=True))
    assert flags["--source"] == "flatfiles" and flags["--universe"] == "market" and flags["--layout"] == "by-date"
    assert flags["--secret-scope"] == "${var.secret_scope}"
    assert all("${var.market_volume_path}/stocks_fixed" in t["spark_python_task"]["parameters"] for t in ordered)
    assert "--all" in ordered[2]["spark_python_task"]["parameters"]
    assert all(0 < t["timeout_seconds"] <= ABANDONED_AFTER.total_seconds() for t in ordered)
    assert (ordered[0]["max_retries"], ordered[0]["retry_on_timeout"]) == (1, True)
    assert spec["email_notifications"]["on_failure"] == ["${var.alert_email}"]


def test_the_free_key_market_job_fetches_the_previous_session_before_the_open_beside_the_eights_tables():
    spec = job("market_daily")
    assert spec["schedule"]["quartz_cron_expression"] == "0 30 6 ? * TUE-SAT"
    assert spec["schedule"]["timezone_id"] == "America/New_York"
    (task,) = spec["tasks"]
    params = task["spark_python_task"]["parameters"]
    assert door_of(task).__name__ == "market_daily" and "${var.volume_path}/stocks_fixed" in params
    assert params[params.index("--secret-scope") + 1] == "${var.secret_scope}" and "--from" not in params
    args = door_of(task).build_parser().parse_args([resolve(p, defaults()) for p in params])
    assert args.date_to is None and args.date_from is None  # the previous session, and the four days before it


@pytest.mark.slow
def test_a_local_dry_run_of_the_market_job_stores_the_sample_markets_days(spark, tmp_path, monkeypatch):
    """The market job's tasks in order, here: no S3 keys in the (absent) secret scope and not on Databricks, so the
    harvest takes the sample market's files from the loopback stand-in (a market of 12 tickers, to be quick), by
    default up to the session before today; then the daily table and maintenance over the by-date table."""
    from stockpipe.sample.source import SampleFlatFiles
    from stockpipe.sample.universe import market_symbols

    small = tuple(sorted(market_symbols()[:12]))
    monkeypatch.setattr("stockpipe.cli.SampleFlatFiles", lambda: SampleFlatFiles(small))
    monkeypatch.setattr("stockpipe.storage.engines.session_has_delta", lambda spark: False)
    for name in ("MASSIVE_S3_ACCESS_KEY_ID", "MASSIVE_S3_SECRET_ACCESS_KEY", "MASSIVE_API_KEY", "POLYGON_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    values = {**defaults(), "market_volume_path": str(tmp_path)}
    codes = {}
    for task in tasks_in_order("market_pipeline"):
        params = [resolve(p, values) for p in task["spark_python_task"].get("parameters", [])]
        codes[task["task_key"]] = door_of(task).main(params)
    assert codes == {"harvest_market": 0, "market_daily_bars": 0, "market_maintenance": 0}
    from stockpipe import readers

    stored = readers.read(tmp_path / "stocks_fixed", columns=["ticker", "trade_date"])
    assert set(stored.column("ticker").to_pylist()) == set(small)
    daily = readers.read(tmp_path / "stocks_daily", columns=["ticker"])
    assert set(daily.column("ticker").to_pylist()) == set(small)
    runs = readers.read(tmp_path / "pipeline_runs").to_pylist()
    assert [r["script"] for r in sorted(runs, key=lambda r: r["started_at"])] == [
        "fixed_stock_harvester", "daily_bars", "maintenance"]

"""One Spark session per test run; loopback servers only; engines parametrized for the contract tests."""

from __future__ import annotations

import os

import pytest

# Tests talk only to loopback servers they start: never probe Maven for delta-spark's jars.
os.environ["STOCKS_DELTA_DOWNLOAD"] = "0"
for name in ("MASSIVE_API_KEY", "POLYGON_API_KEY", "MASSIVE_BASE_URL", "STOCKS_BASE_PATH"):
    os.environ.pop(name, None)

from tests.helpers import FakeClock  # noqa: E402 - after the environment above is set

ENGINES = ("delta-rs", "delta-spark")
DELTA_SPARK_SKIP = (
    "delta-spark's jars cannot be loaded here (no Maven; set DELTA_JARS_DIR or fill ~/.ivy2/jars to run this case)"
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The engine a test gets. The engines are proved where the code branches by engine: the storage contract and the
    scenarios marked `@pytest.mark.engines("delta-rs", "delta-spark")` (maintenance, registering a name, clustering,
    table history, commit conflicts, cross-engine reads). Behaviour that never touches the engine (fetch, pacing,
    retries, quality rules, the run log, resume) runs once, on delta-rs: a second engine adds time there, not proof.
    A scenario of one engine's own names it alone (`@pytest.mark.engines("delta-spark")`) instead of skipping."""
    if "storage" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("engines")
    engines = marker.args if marker is not None else ("delta-rs",)
    unknown = set(engines) - set(ENGINES)
    if unknown:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: unknown engine(s) {sorted(unknown)}")
    metafunc.parametrize("storage", engines, indirect=True, scope="module")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each delta-spark case is marked delta_spark and slow: its commits go through the JVM (1-5 s each, where
    delta-rs takes a fraction), so `make test-fast` leaves them to `make test`."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("storage") == "delta-spark":
            item.add_marker(pytest.mark.delta_spark)
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def spark_info():
    from stockpipe.session import build_session

    info = build_session("stockpipe-tests", master="local[2]")
    if os.environ.get("STOCKS_REQUIRE_DELTA_SPARK") == "1" and not info.has_delta_spark:
        info.spark.stop()
        pytest.exit(f"STOCKS_REQUIRE_DELTA_SPARK=1 but delta-spark did not load ({info.reason})", returncode=3)
    yield info
    info.spark.stop()


@pytest.fixture(scope="session")
def spark(spark_info):
    return spark_info.spark


@pytest.fixture(scope="module")
def storage(request, spark_info):
    """The engine under test (see pytest_generate_tests). Module-scoped, so each module's end-to-end fixtures run once
    per engine and pytest groups a module's tests by engine."""
    from stockpipe.storage.delta_rs import DeltaRsStorage
    from stockpipe.storage.delta_spark import DeltaSparkStorage

    if request.param == "delta-spark":
        if not spark_info.has_delta_spark:
            pytest.skip(DELTA_SPARK_SKIP)
        return DeltaSparkStorage(spark_info.spark)
    return DeltaRsStorage(spark_info.spark)


@pytest.fixture
def session_time_zone(spark):
    """Set the session time zone for one test (as a Databricks cluster may have it), restored afterwards."""
    key = "spark.sql.session.timeZone"
    previous = spark.conf.get(key)

    def use(zone: str) -> None:
        spark.conf.set(key, zone)

    yield use
    spark.conf.set(key, previous)


@pytest.fixture
def sample_server():
    from stockpipe.testing import FakeMassiveServer

    server = FakeMassiveServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()

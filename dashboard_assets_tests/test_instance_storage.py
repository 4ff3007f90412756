"""The instance as `dagster.yaml` ships it keeps its PostgreSQL connections
open (a run's events do not each open a connection, counted by the server)
and batches its events in every process."""

import os
import subprocess
import sys
import time

import dagster as dg
import psycopg

from dashboard_assets import DAGSTER_BATCHING_ENV
from dashboard_assets.demo import psycopg2_url
from dashboard_assets.instance_storage import PooledPostgresStorage
from dashboard_assets_tests.conftest import PROJECT_ROOT


@dg.asset
def first() -> None:
    """A step of a run."""


@dg.asset(deps=[first])
def second() -> None:
    """Another."""


def test_a_run_writes_its_events_on_few_connections(postgres_server, tmp_path, monkeypatch):
    url = postgres_server.create_database("dagster_pooled")
    (tmp_path / "dagster.yaml").symlink_to(PROJECT_ROOT / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", psycopg2_url(url))
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.get_ref().storage, PooledPostgresStorage)
        before = _sessions(url)
        result = dg.materialize([first, second], instance=instance)
        assert result.success
        events = len(instance.all_logs(result.run_id))
    opened = _sessions(url) - before
    assert events >= 15
    assert opened <= 8, f"{opened} connections for {events} events"


def _sessions(url: str) -> int:
    """Connections ever opened to the database (the counter reaches the view
    when each connection ends, so wait until it stops moving), not counting
    the one asking."""
    with psycopg.connect(url, autocommit=True) as conn:
        last, stable_since = None, time.monotonic()
        while time.monotonic() - stable_since < 1.5:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            (now,) = conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()").fetchone()
            if now != last:
                last, stable_since = now, time.monotonic()
            time.sleep(0.1)
    return last + 1


def test_every_process_on_the_shipped_instance_batches_its_events(postgres_server, tmp_path):
    """A Dagster process that loads the instance as `dagster.yaml` ships it
    (the webserver, the daemon) batches its events without anyone exporting
    the variables; one that sets them keeps its own values."""
    (tmp_path / "dagster.yaml").symlink_to(PROJECT_ROOT / "dagster.yaml")
    url = psycopg2_url(postgres_server.create_database("dagster_batching"))
    load_instance = ("import os, dagster as dg; dg.DagsterInstance.from_config(os.environ['DAGSTER_HOME']).dispose();"
                     " print(os.environ['DAGSTER_EVENT_BATCH_SIZE'],"
                     " os.environ['DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS'])")
    clean = {k: v for k, v in os.environ.items() if k not in DAGSTER_BATCHING_ENV}
    clean |= {"DAGSTER_HOME": str(tmp_path), "DAGSTER_POSTGRES_URL": url}

    def printed(env: dict) -> str:
        return subprocess.run([sys.executable, "-c", load_instance], env=env, capture_output=True, text=True,
                              check=True).stdout.strip()

    assert printed(clean) == "1000 true"
    assert printed(clean | {"DAGSTER_EVENT_BATCH_SIZE": "50"}) == "50 true"

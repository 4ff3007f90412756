"""The instance as `dagster.yaml` ships it keeps its PostgreSQL connections
open: a run's events do not each open a connection (counted by the server)."""

import time

import dagster as dg
import psycopg

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
        assert instance.get_ref().storage_data.class_name == PooledPostgresStorage.__name__
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

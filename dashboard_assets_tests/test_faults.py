"""Faults a production deployment meets, each provoked for real: a Redis that
goes away in the middle of a run, a Redis Cluster that cannot be reached, a
run killed in the middle of a ranged backfill, and a sensor that dies after
requesting runs but before its cursor was stored. (A PostgreSQL connection killed mid-refresh and readers hammering
a day while it is replaced are in rollups/test_refresh_safety.py.)"""

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import dagster as dg
import psycopg
import redis

from dashboard_assets import serving
from dashboard_assets.analytics.assets import analytics_assets, dashboard_cache
from dashboard_assets.cache import DashboardCache
from dashboard_assets.db import libpq_url
from dashboard_assets.demo import DG
from dashboard_assets.local_servers import LocalRedis, free_port
from dashboard_assets.monitoring import dashboard_health
from dashboard_assets.resources import PostgresResource, RedisResource
from dashboard_assets.rollups.assets import current_state_asset, daily_rollup_assets
from dashboard_assets_tests.conftest import PROJECT_ROOT
from dashboard_assets_tests.helpers import (
    assert_rollups_match_reference,
    materialize_days,
    read_table,
    refresh_what_the_sensor_requests,
    retry_events,
    tick,
    wait_for,
    without_computed_at,
)

MARCH = (dt.date(2025, 3, 1), dt.date(2025, 3, 31))
MARCH_ARGS = ["--from", MARCH[0].isoformat(), "--to", MARCH[1].isoformat()]
REVENUE_TREND = next(a for a in analytics_assets if a.key.to_user_string() == "revenue_trend_12m")
# The rollups the cache warming reads.
WARMING_INPUTS = {"daily_metrics", "daily_pipeline", "daily_warranty"}


def test_redis_stopped_during_a_run(database_url, tmp_path):
    """Rollups commit without Redis; the Redis steps fail visibly, are retried,
    and publish once Redis is back; reads meanwhile come from PostgreSQL."""
    cache_server = LocalRedis(tmp_path / "redis")
    port, url = cache_server.port, cache_server.url
    cache_server.stop()
    resources = {"postgres": PostgresResource(database_url=database_url), "redis": RedisResource(url=url)}
    tags = {"dagster/asset_partition_range_start": MARCH[0].isoformat(),
            "dagster/asset_partition_range_end": MARCH[1].isoformat()}
    outcome = {}
    rollups = [a for a in daily_rollup_assets if a.key.to_user_string() in WARMING_INPUTS]
    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:
        run = threading.Thread(target=lambda: outcome.update(result=dg.materialize(
            [*rollups, current_state_asset, REVENUE_TREND, dashboard_cache],
            resources=resources, tags=tags, instance=instance, raise_on_error=False)))
        run.start()
        first_failure = wait_for(lambda: retry_events(instance), 60, "a Redis step up for retry")[0]

        # While Redis is down: what the failed step read is committed, and the read path answers from it.
        assert_rollups_match_reference(database_url, *MARCH, {"daily_metrics"})
        org = read_table(database_url, "SELECT id AS organization_id FROM organizations ORDER BY id LIMIT 1").iloc[0, 0]
        unreachable = DashboardCache(redis.Redis.from_url(url, socket_connect_timeout=0.5))
        during = serving.dashboard_metrics(org, *MARCH, database_url=database_url, dashboard_cache=unreachable)

        restarted = LocalRedis(tmp_path / "redis", port=port)  # within the retries' pauses (5, 10, 20 s)
        try:
            run.join(timeout=120)
            result = outcome["result"]
            assert result.success
            assert "ConnectionError" in first_failure.dagster_event.event_specific_data.error.to_string()
            assert {e.step_key for e in retry_events(instance)} <= {"revenue_trend_12m", "dashboard_cache"}
            assert_rollups_match_reference(database_url, *MARCH, WARMING_INPUTS)
            assert {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()} == {
                *WARMING_INPUTS, "current_state", "revenue_trend_12m", "dashboard_cache"}
            store = DashboardCache(redis.Redis.from_url(url))
            assert store.get(store.keys.chart(org, "revenue_trend:12m")) is not None
            after = serving.dashboard_metrics(org, *MARCH, database_url=database_url, dashboard_cache=store)
            assert without_computed_at(during) == without_computed_at(after)
        finally:
            restarted.stop()


def _blocked_delete(database_url: str, table: str):
    with psycopg.connect(libpq_url(database_url)) as conn:
        return conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            " AND query LIKE %s", (f"DELETE FROM \"dashboard\".\"{table}\"%",)).fetchone()


def _backend_alive(database_url: str, pid: int) -> bool:
    with psycopg.connect(libpq_url(database_url)) as conn:
        return bool(conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone())


def march_metrics(database_url: str):
    return read_table(database_url, "SELECT * FROM dashboard.daily_metrics WHERE metric_date BETWEEN :s AND :e"
                      " ORDER BY organization_id, metric_date", s=MARCH[0], e=MARCH[1])


def test_a_run_killed_in_the_middle_of_a_ranged_backfill(database_url, redis_url, tmp_path):
    """SIGKILL while the run's transaction has deleted part of the range: the
    previous days stay whole, and the next run converges."""
    assert materialize_days(database_url, *MARCH).success
    before = march_metrics(database_url)
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute("UPDATE orders SET total_amount = total_amount + 1 WHERE created_at >= '2025-03-01'"
                     " AND created_at < '2025-04-01'")
    environment = {**os.environ, "DAGSTER_HOME": str(tmp_path), "DASHBOARD_DATABASE_URL": database_url,
                   "DASHBOARD_REDIS_URL": redis_url}
    with psycopg.connect(libpq_url(database_url)) as blocker:
        # Hold one row of the 20th: the run's DELETE of the range stops there, half done.
        blocker.execute("SELECT 1 FROM dashboard.daily_metrics WHERE metric_date = '2025-03-20' LIMIT 1 FOR UPDATE")
        backfill = subprocess.Popen(
            [str(DG), "launch", "--assets", "daily_metrics", "--partition-range", f"{MARCH[0]}...{MARCH[1]}"],
            cwd=PROJECT_ROOT, env=environment, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            (pid,) = wait_for(lambda: _blocked_delete(database_url, "daily_metrics"), 120, "the run's DELETE blocked")
        finally:
            os.killpg(backfill.pid, signal.SIGKILL)
            backfill.wait()
        blocker.rollback()
    wait_for(lambda: not _backend_alive(database_url, pid), 30, "the killed run's backend gone")

    assert march_metrics(database_url).equals(before)  # every day whole, and the previous numbers
    assert materialize_days(database_url, *MARCH).success
    assert not march_metrics(database_url).equals(before)
    assert_rollups_match_reference(database_url, *MARCH)


def test_a_sensor_that_dies_before_storing_its_cursor(database_url, redis_url):
    """The daemon stores the cursor after the tick: a process that dies in
    between ticks again from the old cursor. Its runs then cover the same
    changes twice, which changes no number."""
    assert materialize_days(database_url, *MARCH).success
    stored = tick(database_url, redis_url, None).cursor
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute("DELETE FROM warranty_claims WHERE id IN (SELECT id FROM warranty_claims"
                     " WHERE created_at BETWEEN '2025-03-05' AND '2025-03-25' ORDER BY id LIMIT 3)")
        lost = refresh_what_the_sensor_requests(database_url, redis_url, stored)  # its cursor is never stored
        conn.execute("UPDATE orders SET status = 'cancelled' WHERE id IN (SELECT id FROM orders"
                     " WHERE created_at BETWEEN '2025-03-05' AND '2025-03-25' AND status = 'delivered' ORDER BY id LIMIT 3)")
    assert lost != stored
    restarted = refresh_what_the_sensor_requests(database_url, redis_url, stored)
    assert_rollups_match_reference(database_url, *MARCH)
    assert not tick(database_url, redis_url, restarted).run_requests


def test_an_unreachable_redis_cluster_breaks_no_tick_report_or_read(database_url):
    """No node of the cluster answers: the cluster client then raises an error
    of its own (not a RedisError), as soon as it is made. The sensor still
    requests the runs of the changed days, without the activity feed; the
    health asset still reports, without read figures; `dashboard-assets
    metrics` answers from PostgreSQL."""
    unreachable = f"redis+cluster://127.0.0.1:{free_port()}/0"
    cursor = tick(database_url, unreachable, None).cursor
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute("UPDATE orders SET status = 'cancelled' WHERE id = (SELECT id FROM orders"
                     " WHERE created_at BETWEEN '2025-03-05' AND '2025-03-25' AND status = 'delivered' ORDER BY id LIMIT 1)")
    assert tick(database_url, unreachable, cursor).run_requests
    resources = {"postgres": PostgresResource(database_url=database_url), "redis": RedisResource(url=unreachable)}
    health = dg.materialize([dashboard_health], resources=resources)
    assert health.success
    [materialization] = health.get_asset_materialization_events()
    assert materialization.materialization.metadata["reads"].value == 0

    org = read_table(database_url, "SELECT id AS organization_id FROM organizations ORDER BY id LIMIT 1").iloc[0, 0]
    env = {"PATH": str(Path(sys.executable).parent), "DASHBOARD_DATABASE_URL": database_url,
           "DASHBOARD_REDIS_URL": unreachable}
    printed = subprocess.run([sys.executable, "-m", "dashboard_assets.cli", "metrics", "--org", org, *MARCH_ARGS],
                             env=env, capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)
    assert printed.returncode == 0, printed.stderr
    expected = serving.dashboard_metrics(org, *MARCH, database_url=database_url, dashboard_cache=None)
    assert without_computed_at(json.loads(printed.stdout)) == without_computed_at(expected)

"""The change sensor's own cost, and one change-driven run end to end:
- a tick when nothing changed, and a tick after one change (an
  organization's newest order delivered or not, one commit): median of
  repeated ticks, the tick's own work (the deployed sensor then waits up to
  4 s for changes);
- the change refresh run that tick requests, executed in a process of its
  own as a run worker does, ending after its pass over what the ticks left
  pending: wall time, peak memory and PostgreSQL's temporary files.
"""

import statistics
import time

import dagster as dg
import psycopg

from bench.common import in_child_process, sensor_contexts, temp_file_bytes
from dashboard_assets.automation import capture
from dashboard_assets.automation.change_refresh import change_refresh_job, pending_work
from dashboard_assets.automation.changes import CAPTURED_COLUMNS
from dashboard_assets.automation.sensors import build_source_changes_sensor
from dashboard_assets.db import libpq_url
from dashboard_assets.resources import PostgresResource, RedisResource

# One pass over what is pending, then the run ends; warnings only on the console.
ONE_PASS_QUIET_RUN = {"ops": {"refresh_pending_changes": {"config": {"idle_seconds": 0}}},
                      "loggers": {"console": {"config": {"log_level": "WARNING"}}}}

# The newest order of the first organization, delivered or not in turn.
_FLIP_ONE_ORDER = """
    UPDATE orders SET status = CASE WHEN status = 'delivered' THEN 'confirmed' ELSE 'delivered' END
    WHERE id = (SELECT id FROM orders WHERE organization_id = (SELECT id FROM organizations ORDER BY id LIMIT 1)
                ORDER BY created_at DESC LIMIT 1)
"""


def measure(url: str, redis_url: str, repeat: int) -> dict:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        capture.install(conn, list(CAPTURED_COLUMNS))
        try:
            idle, changed = _ticks(conn, url, redis_url, repeat)
        finally:
            capture.drop_slot(conn)
        work = pending_work(conn)
    temp_before = temp_file_bytes(url)
    run_seconds, run_peak_mb = in_child_process(run_change_refresh, url, redis_url)
    return {
        "sensor_tick_without_changes_ms_median": round(statistics.median(idle) * 1000, 1),
        "sensor_tick_with_one_change_ms_median": round(statistics.median(changed) * 1000, 1),
        "change_run_pending_pairs": work.pairs,
        "change_run_organizations": len(set().union(*work.organizations.values())),
        "change_run_wall_seconds": round(run_seconds, 3),
        "change_run_worker_peak_mb": run_peak_mb,
        "change_run_postgres_temp_mb": round((temp_file_bytes(url) - temp_before) / 2**20, 1),
    }


def _ticks(conn: psycopg.Connection, url: str, redis_url: str, repeat: int):
    sensor = build_source_changes_sensor(wait_seconds=0)
    idle, changed = [], []
    with sensor_contexts(url, redis_url) as context_for:
        cursor = sensor(context_for(None)).cursor
        for _ in range(repeat):
            began = time.perf_counter()
            cursor = sensor(context_for(cursor)).cursor
            idle.append(time.perf_counter() - began)
        for _ in range(repeat):
            conn.execute(_FLIP_ONE_ORDER)
            began = time.perf_counter()
            result = sensor(context_for(cursor))
            changed.append(time.perf_counter() - began)
            cursor = result.cursor
            (request,) = result.run_requests
            assert request.job_name == change_refresh_job.name
    return idle, changed


def run_change_refresh(url: str, redis_url: str) -> float:
    """The change refresh run in this process, on the instance of
    DAGSTER_HOME, for one pass; returns its wall time."""
    with dg.DagsterInstance.get() as instance:
        began = time.perf_counter()
        result = change_refresh_job.execute_in_process(
            instance=instance, run_config=ONE_PASS_QUIET_RUN,
            resources={"postgres": PostgresResource(database_url=url), "redis": RedisResource(url=redis_url)})
        assert result.success
        return time.perf_counter() - began

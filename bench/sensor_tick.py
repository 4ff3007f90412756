"""The change sensor's own cost, and one change-driven run end to end:
- a tick when nothing changed, and a tick after one change (an
  organization's newest order delivered or not, one commit): median of
  repeated ticks, the tick's own work (the deployed sensor then waits up to
  4 s for changes);
- the run that tick requests, executed in a process of its own as a run
  worker does: wall time, peak memory and PostgreSQL's temporary files.
"""

import statistics
import time

import dagster as dg
import psycopg

from bench.common import in_child_process, sensor_contexts, temp_file_bytes
from dashboard_assets.analytics.assets import analytics_assets, dashboard_cache
from dashboard_assets.automation import capture
from dashboard_assets.automation.changes import CAPTURED_COLUMNS
from dashboard_assets.automation.sensors import build_source_changes_sensor
from dashboard_assets.db import libpq_url
from dashboard_assets.resources import PostgresResource, RedisResource
from dashboard_assets.rollups.assets import current_state_asset, daily_rollup_assets

QUIET_RUN = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

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
            idle, changed, request = _ticks(conn, url, redis_url, repeat)
        finally:
            capture.drop_slot(conn)
    temp_before = temp_file_bytes(url)
    run_seconds, run_peak_mb = in_child_process(
        run_requested, url, redis_url, [k.to_user_string() for k in request.asset_selection],
        [(k.asset_key.to_user_string(), k.name) for k in request.asset_check_keys], dict(request.tags))
    return {
        "sensor_tick_without_changes_ms_median": round(statistics.median(idle) * 1000, 1),
        "sensor_tick_with_one_change_ms_median": round(statistics.median(changed) * 1000, 1),
        "change_run_assets": len(request.asset_selection),
        "change_run_organizations": len(request.tags.get("dashboard/organizations", "").split(",")),
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
    return idle, changed, request


def run_requested(url: str, redis_url: str, assets: list[str], checks: list[tuple[str, str]], tags: dict) -> float:
    """The requested run (its assets and checks) in this process, on the
    instance of DAGSTER_HOME; returns its wall time."""
    everything = [*daily_rollup_assets, current_state_asset, *analytics_assets, dashboard_cache]
    selection = (dg.AssetSelection.assets(*assets).without_checks()
                 | dg.AssetSelection.checks(*(dg.AssetCheckKey(dg.AssetKey(a), name) for a, name in checks)))
    with dg.DagsterInstance.get() as instance:
        began = time.perf_counter()
        result = dg.materialize(
            everything, selection=selection, tags=tags, instance=instance,
            resources={"postgres": PostgresResource(database_url=url), "redis": RedisResource(url=redis_url)},
            run_config=QUIET_RUN,
        )
        assert result.success
        return time.perf_counter() - began

"""The read path's counters and the health asset, against real servers."""

import datetime as dt

import dagster as dg
import psycopg

from dashboard_assets import serving
from dashboard_assets.cache import DashboardCache
from dashboard_assets.db import libpq_url
from dashboard_assets.automation import capture
from dashboard_assets.automation.changes import CAPTURED_COLUMNS
from dashboard_assets.monitoring import CAPTURE, HIT_RATE, LATENCY, ROLLUPS_FRESH, dashboard_health
from dashboard_assets.read_stats import read_window, record_read
from dashboard_assets.resources import PostgresResource, RedisResource, redis_client
from dashboard_assets_tests.conftest import on_a_server_and_a_cluster
from dashboard_assets_tests.helpers import materialize_days, materialize_snapshot

# Tuesday 11 March 2025, 10:00 in Sydney: business hours.
TUESDAY_MORNING = dt.datetime(2025, 3, 10, 23, 0, tzinfo=dt.UTC)
SUNDAY_NIGHT = dt.datetime(2025, 3, 16, 12, 0, tzinfo=dt.UTC)  # 23:00 in Sydney


def _health(database_url: str, redis_url: str, at: dt.datetime) -> dict:
    result = dg.materialize(
        [dashboard_health],
        resources={"postgres": PostgresResource(database_url=database_url), "redis": RedisResource(url=redis_url)},
        run_config={"ops": {"dashboard_health": {"config": {"as_of": at.isoformat()}}}},
    )
    [materialization] = result.get_asset_materialization_events()
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    return {"metadata": materialization.materialization.metadata, "checks": checks}


@on_a_server_and_a_cluster
def test_the_read_path_counts_misses_and_hits(database_url, redis_url):
    day = dt.date(2025, 3, 3)
    assert materialize_days(database_url, day, day).success and materialize_snapshot(database_url).success
    with psycopg.connect(libpq_url(database_url)) as conn:
        org = str(conn.execute("SELECT id FROM organizations ORDER BY id LIMIT 1").fetchone()[0])
    store = DashboardCache(redis_client(redis_url))
    for _ in range(3):
        serving.dashboard_metrics(org, day, day, database_url=database_url, dashboard_cache=store)
    window = read_window(store, dt.datetime.now(dt.UTC))
    assert window["reads"] == 3 and window["cache_hit_rate"] == round(2 / 3, 4)
    assert 0 < window["read_p50_ms"] <= window["read_p99_ms"]


@on_a_server_and_a_cluster
def test_health_reports_figures_and_warns_on_a_low_hit_rate_in_business_hours(database_url, redis_url):
    store = DashboardCache(redis_client(redis_url))
    for outcome, count, ms in [("hit", 14, 1.0), ("miss", 16, 900.0)]:
        for _ in range(count):
            record_read(store, outcome, ms / 1000, now=TUESDAY_MORNING)
    health = _health(database_url, redis_url, TUESDAY_MORNING)
    assert health["metadata"]["reads"].value == 30
    assert health["metadata"]["cache_hit_rate"].value == round(14 / 30, 4)
    assert health["metadata"]["read_p99_ms"].value == 900.0
    assert health["checks"] == {HIT_RATE: False, LATENCY: False, ROLLUPS_FRESH: False,  # never refreshed
                                CAPTURE: True}


def test_health_passes_outside_business_hours_with_fresh_rollups(database_url, redis_url):
    store = DashboardCache(redis_client(redis_url))
    for _ in range(30):
        record_read(store, "miss", 0.005, now=SUNDAY_NIGHT)
    with psycopg.connect(libpq_url(database_url)) as conn:
        for rollup in ("daily_metrics", "daily_pipeline", "daily_warranty", "daily_jobs", "current_state"):
            conn.execute("INSERT INTO dashboard.refresh_log (rollup, rows_written, seconds, refreshed_at)"
                         " VALUES (%s, 1, 0.1, %s)", (rollup, SUNDAY_NIGHT - dt.timedelta(minutes=3)))
    health = _health(database_url, redis_url, SUNDAY_NIGHT)
    assert health["checks"] == {HIT_RATE: True, LATENCY: True, ROLLUPS_FRESH: True, CAPTURE: True}
    assert health["metadata"]["seconds_since_refresh_daily_metrics"].value == 180.0
    assert health["metadata"]["change_capture_lag_bytes"].value >= 0


def test_health_warns_while_capture_is_down_and_for_a_day_after_it_restarted(database_url, redis_url):
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        capture.drop_slot(conn)
        assert not _health(database_url, redis_url, SUNDAY_NIGHT)["checks"][CAPTURE]
        restarted = capture.read_changes(conn, "0/1", CAPTURED_COLUMNS)  # the sensor's next tick
    assert restarted.restart_reason
    assert not _health(database_url, redis_url, SUNDAY_NIGHT)["checks"][CAPTURE]

"""The rollups equal the independent pandas computation, for single days,
for a ranged single-run backfill, and for the current-state snapshot."""

import datetime as dt

import psycopg
import pytest

from dashboard_assets.db import libpq_url
from dashboard_assets_tests import reference
from dashboard_assets_tests.conftest import HISTORY_END, HISTORY_START
from dashboard_assets_tests.helpers import (
    assert_frames_equal,
    assert_rollups_match_reference,
    materialize_days,
    materialize_snapshot,
    read_table,
    sources,
)


def test_generated_data_contains_the_ugly_cases(database_url):
    """Guards the comparisons below: the data they run on has every hard case."""
    with psycopg.connect(libpq_url(database_url)) as conn:
        def count(query: str) -> int:
            return conn.execute(query).fetchone()[0]

        assert count("SELECT count(DISTINCT timezone) FROM organizations") >= 3
        assert count("SELECT count(*) FROM organizations WHERE timezone IS NULL") >= 1
        assert count("SELECT count(*) FROM products WHERE category = 'battery' AND specifications->>'capacity_kwh' = '13.5kWh'") >= 1
        assert count("SELECT count(*) FROM products WHERE category = 'battery' AND specifications->>'capacity_kwh' = 'n/a'") >= 1
        assert count("SELECT count(*) FROM products WHERE category = 'battery' AND NOT specifications ? 'capacity_kwh'") >= 1
        assert count("SELECT count(*) FROM products WHERE category = 'battery' AND specifications->'capacity_kwh' = 'null'::jsonb") >= 1
        jobs_per_order = """
            SELECT count(*) FROM (
                SELECT o.id, count(j.id) AS jobs FROM orders o LEFT JOIN jobs j ON j.order_id = o.id GROUP BY o.id
            ) t WHERE jobs = {}
        """
        for jobs in (0, 1, 2):
            assert count(jobs_per_order.format(jobs)) >= 1
        assert count("""
            SELECT count(*) FROM orders o JOIN organizations g ON g.id = o.organization_id
            WHERE (o.created_at AT TIME ZONE COALESCE(g.timezone, 'Australia/Sydney'))::time = '00:00'
        """) >= 5
        assert count("SELECT count(*) FROM jobs WHERE status = 'completed' AND completed_at IS NULL") >= 1
        assert count("SELECT count(*) FROM orders WHERE updated_at > created_at + interval '2 days'") >= 1


@pytest.mark.parametrize("day", [dt.date(2025, 4, 6), HISTORY_START, HISTORY_END])
def test_single_partition_equals_reference(database_url, day):
    """One day (a DST change day, the first and the last) equals the reference."""
    result = materialize_days(database_url, day, day)
    assert result.success
    assert_rollups_match_reference(database_url, day, day)


def test_ranged_backfill_equals_reference_in_one_run(database_url):
    """The whole history in ONE run, every day equal to the reference."""
    result = materialize_days(database_url, HISTORY_START, HISTORY_END)
    assert result.success
    materializations = result.get_asset_materialization_events()
    days = (HISTORY_END - HISTORY_START).days + 1
    assert len(materializations) == 4 * days  # one event per partition and rollup, from one run
    assert_rollups_match_reference(database_url, HISTORY_START, HISTORY_END)
    for check in result.get_asset_check_evaluations():
        assert check.passed, check


def test_current_state_equals_reference(database_url):
    assert materialize_snapshot(database_url).success
    actual = read_table(database_url, "SELECT * FROM dashboard.current_state").drop(columns=["snapshot_at", "refreshed_at"])
    assert_frames_equal(actual, reference.current_state(sources(database_url)), ["organization_id"])


def test_views_under_the_design_documents_names(database_url):
    day = dt.date(2025, 3, 1)
    assert materialize_days(database_url, day, day).success
    assert materialize_snapshot(database_url).success
    for view, table in [
        ("mv_daily_metrics", "daily_metrics"),
        ("mv_daily_pipeline", "daily_pipeline"),
        ("mv_daily_warranty", "daily_warranty"),
        ("mv_daily_jobs", "daily_jobs"),
        ("mv_current_state", "current_state"),
    ]:
        rows = read_table(database_url, f"SELECT count(*) AS n FROM dashboard.{view}")["n"][0]
        assert rows == read_table(database_url, f"SELECT count(*) AS n FROM dashboard.{table}")["n"][0] > 0

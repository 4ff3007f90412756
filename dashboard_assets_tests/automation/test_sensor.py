"""The change sensor with a real instance, a real replication slot and real
PostgreSQL: the stored position, the exact partitions and organizations
requested, deletes and updates, restarts, long transactions, waiting."""

import datetime as dt
import threading
import time
from zoneinfo import ZoneInfo

import psycopg
import pytest

from dashboard_assets.automation.pgoutput import lsn_value
from dashboard_assets.automation.sensors import build_source_changes_sensor
from dashboard_assets.db import libpq_url
from dashboard_assets.rollups.assets import RECONCILES_WITH_SOURCE, VALUES_ARE_POSSIBLE
from dashboard_assets.scope import ORGANIZATIONS_TAG
from dashboard_assets_tests.helpers import ranges, tick


def execute(conn_url: str, statement: str, params=()) -> None:
    with psycopg.connect(libpq_url(conn_url), autocommit=True) as conn:
        conn.execute(statement, params)


def fetch_one(conn_url: str, query: str, params=()) -> tuple:
    with psycopg.connect(libpq_url(conn_url)) as conn:
        return conn.execute(query, params).fetchone()


@pytest.fixture
def organization(database_url) -> tuple[str, ZoneInfo]:
    org, tz = fetch_one(database_url, "SELECT id::text, timezone FROM organizations WHERE timezone = 'Australia/Perth'")
    return org, ZoneInfo(tz)


def covered_days(requested: list[tuple[str, str, list[str]]]) -> set[dt.date]:
    return {dt.date.fromisoformat(start) + dt.timedelta(days=i)
            for start, end, _ in requested
            for i in range((dt.date.fromisoformat(end) - dt.date.fromisoformat(start)).days + 1)}


def test_no_changes_requests_nothing_and_moves_the_position(database_url, redis_url):
    first = tick(database_url, redis_url, None)
    assert not first.run_requests and first.skip_reason.skip_message == "no source changes"
    execute(database_url, "CREATE TABLE unrelated (a int); INSERT INTO unrelated VALUES (1)")  # WAL, no change
    second = tick(database_url, redis_url, first.cursor)
    assert not second.run_requests and lsn_value(second.cursor) > lsn_value(first.cursor)


def test_changes_become_ranged_runs_of_exactly_the_changed_days_and_organization(database_url, redis_url,
                                                                                organization):
    org, tz = organization
    cursor = tick(database_url, redis_url, None).cursor
    order_created, order_first_completion = fetch_one(
        database_url,
        "SELECT o.created_at, (SELECT min(completed_at) FROM jobs j WHERE j.organization_id = o.organization_id"
        " AND j.order_id = o.id AND j.status = 'completed') FROM orders o WHERE o.organization_id = %s"
        " AND o.status <> 'delivered' ORDER BY o.id LIMIT 1", (org,))
    claim_created = fetch_one(database_url, "SELECT created_at FROM warranty_claims WHERE organization_id = %s"
                              " ORDER BY id LIMIT 1", (org,))[0]
    opportunity_created = fetch_one(database_url, "SELECT created_at FROM opportunities WHERE organization_id = %s"
                                    " AND stage NOT IN ('won', 'lost') ORDER BY id LIMIT 1", (org,))[0]
    first_of = "(SELECT id FROM {} WHERE organization_id = %s {} ORDER BY id LIMIT 1)"
    execute(database_url, "UPDATE orders SET status = 'delivered' WHERE id = "
            + first_of.format("orders", "AND status <> 'delivered'"), (org,))
    execute(database_url, f"DELETE FROM warranty_claims WHERE id = {first_of.format('warranty_claims', '')}", (org,))
    execute(database_url, "UPDATE opportunities SET stage = 'won', probability = 100 WHERE id = "
            + first_of.format("opportunities", "AND stage NOT IN ('won', 'lost')"), (org,))
    result = tick(database_url, redis_url, cursor)
    requested = ranges(result)

    def assets_on(day: dt.date) -> list[str]:
        return next(assets for start, end, assets in requested if start <= day.isoformat() <= end)

    expected = {"daily_metrics": {order_created.astimezone(tz).date()},
                "daily_warranty": {claim_created.astimezone(tz).date()},
                "daily_pipeline": {opportunity_created.astimezone(tz).date()}}
    if order_first_completion:  # the order's kWh day, recomputed with it
        expected["daily_metrics"].add(order_first_completion.astimezone(tz).date())
    assert covered_days(requested) == set().union(*expected.values())  # exactly the affected days, no more
    for rollup, days in expected.items():
        for day in days:
            assert rollup in assets_on(day), (rollup, day)
    for _, _, assets in requested:  # the snapshot, the warming, and what follows orders and opportunities
        assert {"current_state", "dashboard_cache", "product_mix_30d", "conversion_funnel_90d"} <= set(assets)
    for request in result.run_requests:
        assert request.tags[ORGANIZATIONS_TAG] == org
        assert request.run_key.startswith(f"changes:{cursor}:{result.cursor}:")
        # the rollups' own checks ride along; the partition freshness checks keep their schedule
        assert {k.name for k in request.asset_check_keys} == {RECONCILES_WITH_SOURCE, VALUES_ARE_POSSIBLE}
        assert {k.asset_key.to_user_string() for k in request.asset_check_keys} == {
            a for a in (k.to_user_string() for k in request.asset_selection)
            if a in {"current_state", "daily_metrics", "daily_pipeline", "daily_warranty", "daily_jobs"}}
    # the next tick sees nothing new: each change is processed once
    assert not tick(database_url, redis_url, result.cursor).run_requests


def test_a_restart_between_ticks_loses_nothing(database_url, redis_url, organization):
    org, _ = organization
    cursor = tick(database_url, redis_url, None).cursor
    execute(database_url, "DELETE FROM job_time_entries WHERE id IN (SELECT id FROM job_time_entries"
            " WHERE organization_id = %s ORDER BY id LIMIT 3)", (org,))
    # A new process starts from the stored position alone.
    result = tick(database_url, redis_url, cursor)
    assert result.run_requests
    assert all("daily_jobs" in assets for _, _, assets in ranges(result))


def test_a_long_transaction_holds_back_no_other_change_and_is_seen_when_it_commits(database_url, redis_url,
                                                                                  organization):
    org, _ = organization
    cursor = tick(database_url, redis_url, None).cursor
    with psycopg.connect(libpq_url(database_url)) as slow:
        slow.execute("DELETE FROM warranty_claims WHERE id IN (SELECT id FROM warranty_claims"
                     " WHERE organization_id = %s ORDER BY id LIMIT 1)", (org,))
        execute(database_url, "DELETE FROM opportunities WHERE id IN (SELECT id FROM opportunities"
                " WHERE organization_id = %s ORDER BY id LIMIT 1)", (org,))
        while_open = tick(database_url, redis_url, cursor)
        assert {a for _, _, assets in ranges(while_open) for a in assets} >= {"daily_pipeline"}
        assert not any("daily_warranty" in assets for _, _, assets in ranges(while_open))
        slow.commit()  # began first, commits last
    after = tick(database_url, redis_url, while_open.cursor)
    assets = {a for _, _, a_list in ranges(after) for a in a_list}
    assert "daily_warranty" in assets and "daily_pipeline" not in assets


WAIT = 20.0


def test_a_tick_waits_for_the_first_change_and_returns_with_it(database_url, redis_url, organization):
    org, _ = organization
    cursor = tick(database_url, redis_url, None).cursor
    change = threading.Timer(0.5, execute, (database_url, "DELETE FROM opportunities WHERE id IN (SELECT id FROM"
                                            " opportunities WHERE organization_id = %s ORDER BY id LIMIT 1)", (org,)))
    began = time.monotonic()
    change.start()
    result = tick(database_url, redis_url, cursor, sensor=build_source_changes_sensor(wait_seconds=WAIT))
    waited = time.monotonic() - began
    change.join()
    assert any("daily_pipeline" in assets for _, _, assets in ranges(result))
    assert waited < WAIT  # back with the change, not at the end of its wait

"""The change sensor with a real instance, a real replication slot and real
PostgreSQL: the stored position, the exact days and organizations marked
pending, the one change refresh run requested, deletes and updates,
restarts, long transactions, waiting."""

import threading
import time
from zoneinfo import ZoneInfo

import psycopg
import pytest

from dashboard_assets.automation.pgoutput import lsn_value
from dashboard_assets.automation.sensors import build_source_changes_sensor
from dashboard_assets.db import libpq_url
from dashboard_assets_tests.helpers import pending_days, pending_organizations, refresh_pending_now, tick


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


def test_no_changes_requests_nothing_and_moves_the_position(database_url, redis_url):
    first = tick(database_url, redis_url, None)
    assert not first.run_requests and first.skip_reason.skip_message == "no source changes"
    execute(database_url, "CREATE TABLE unrelated (a int); INSERT INTO unrelated VALUES (1)")  # WAL, no change
    second = tick(database_url, redis_url, first.cursor)
    assert not second.run_requests and lsn_value(second.cursor) > lsn_value(first.cursor)


def test_changes_are_marked_pending_on_exactly_the_changed_days_and_organization(database_url, redis_url,
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

    expected = {"daily_metrics": {order_created.astimezone(tz).date()},
                "daily_warranty": {claim_created.astimezone(tz).date()},
                "daily_pipeline": {opportunity_created.astimezone(tz).date()}}
    if order_first_completion:  # the order's kWh day, recomputed with it
        expected["daily_metrics"].add(order_first_completion.astimezone(tz).date())
    pending = pending_days(database_url)
    assert {rollup: set(days) for rollup, days in pending.items()} == expected  # exactly the affected days
    assert all(orgs == {org} for days in pending.values() for orgs in days.values())
    # the snapshot, the warming, and what follows orders and opportunities, for that organization only
    assert pending_organizations(database_url) == {
        asset: {org} for asset in ("current_state", "dashboard_cache", "product_mix_30d", "conversion_funnel_90d")}
    (request,) = result.run_requests  # one change refresh run, whatever the days
    assert request.job_name == "change_refresh" and request.run_key == f"pending:{result.cursor}"
    # the next tick marks nothing new (each change is processed once) and, work still pending, asks again
    again = tick(database_url, redis_url, result.cursor)
    assert pending_days(database_url) == pending
    assert [r.job_name for r in again.run_requests] == ["change_refresh"]
    refresh_pending_now(database_url, redis_url)
    assert not pending_days(database_url) and not pending_organizations(database_url)
    assert not tick(database_url, redis_url, again.cursor).run_requests  # nothing pending, nothing requested


def test_a_restart_between_ticks_loses_nothing(database_url, redis_url, organization):
    org, _ = organization
    cursor = tick(database_url, redis_url, None).cursor
    execute(database_url, "DELETE FROM job_time_entries WHERE id IN (SELECT id FROM job_time_entries"
            " WHERE organization_id = %s ORDER BY id LIMIT 3)", (org,))
    # A new process starts from the stored position alone.
    result = tick(database_url, redis_url, cursor)
    assert result.run_requests
    assert set(pending_days(database_url)) == {"daily_jobs"}


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
        assert set(pending_days(database_url)) == {"daily_pipeline"}
        refresh_pending_now(database_url)
        slow.commit()  # began first, commits last
    tick(database_url, redis_url, while_open.cursor)
    assert set(pending_days(database_url)) == {"daily_warranty"}


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
    assert result.run_requests and "daily_pipeline" in pending_days(database_url)
    assert waited < WAIT  # back with the change, not at the end of its wait

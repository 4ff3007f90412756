"""The change sensor with a real instance and real PostgreSQL: the cursor,
the exact partitions requested, deletes and updates, restarts."""

import datetime as dt

import psycopg
import pytest

from dashboard_assets.scope import ORGANIZATIONS_TAG
from dashboard_assets.db import libpq_url
from dashboard_assets_tests.helpers import ranges, tick


def execute(conn_url: str, statement: str, params=()) -> None:
    with psycopg.connect(libpq_url(conn_url), autocommit=True) as conn:
        conn.execute(statement, params)


@pytest.fixture
def organization(database_url) -> tuple[str, str]:
    with psycopg.connect(libpq_url(database_url)) as conn:
        org, tz = conn.execute("SELECT id::text, timezone FROM organizations WHERE timezone = 'Australia/Perth'").fetchone()
    return org, tz


def test_no_changes_requests_nothing_and_moves_the_cursor(database_url, redis_url):
    first = tick(database_url, redis_url, None)
    assert not first.run_requests and first.skip_reason.skip_message == "no source changes"
    second = tick(database_url, redis_url, first.cursor)
    assert not second.run_requests and int(second.cursor) >= int(first.cursor)


def _recorded_days(database_url: str, table: str) -> set[dt.date]:
    with psycopg.connect(libpq_url(database_url)) as conn:
        return {d for (d,) in conn.execute(
            "SELECT DISTINCT unnest(affected_days) FROM dashboard.change_log WHERE source_table = %s", (table,))}


def test_changes_become_ranged_runs_of_exactly_the_changed_days(database_url, redis_url, organization):
    org, _ = organization
    cursor = tick(database_url, redis_url, None).cursor
    first_of = "(SELECT id FROM {} WHERE organization_id = %s {} ORDER BY id LIMIT 1)"
    execute(database_url, f"UPDATE orders SET status = 'delivered' WHERE id = {first_of.format('orders', '')}", (org,))
    execute(database_url, f"DELETE FROM warranty_claims WHERE id = {first_of.format('warranty_claims', '')}", (org,))
    execute(database_url, "UPDATE opportunities SET stage = 'won', probability = 100 WHERE id = "
            + first_of.format("opportunities", "AND stage NOT IN ('won', 'lost')"), (org,))
    result = tick(database_url, redis_url, cursor)
    requested = ranges(result)

    def assets_on(day: dt.date) -> list[str]:
        return next(assets for start, end, assets in requested if start <= day.isoformat() <= end)

    covered = {dt.date.fromisoformat(start) + dt.timedelta(days=i)
               for start, end, _ in requested
               for i in range((dt.date.fromisoformat(end) - dt.date.fromisoformat(start)).days + 1)}
    changed = {table: _recorded_days(database_url, table) for table in ("orders", "warranty_claims", "opportunities")}
    assert all(changed.values())
    assert covered == set().union(*changed.values())  # exactly the affected days, no more
    for table, rollup in [("orders", "daily_metrics"), ("warranty_claims", "daily_warranty"),
                          ("opportunities", "daily_pipeline")]:
        for day in changed[table]:
            assert rollup in assets_on(day), (table, day)
    for _, _, assets in requested:  # the snapshot, the warming, and what follows orders and opportunities
        assert {"current_state", "dashboard_cache", "product_mix_30d", "conversion_funnel_90d"} <= set(assets)
    for request in result.run_requests:
        assert request.tags[ORGANIZATIONS_TAG] == org
        assert request.run_key.startswith(f"changes:{cursor}:{result.cursor}:")
    # the next tick sees nothing new: each change is processed once
    assert not tick(database_url, redis_url, result.cursor).run_requests


def test_a_restart_between_ticks_loses_nothing(database_url, redis_url, organization):
    org, _ = organization
    cursor = tick(database_url, redis_url, None).cursor
    execute(database_url, "DELETE FROM job_time_entries WHERE id IN (SELECT id FROM job_time_entries"
            " WHERE organization_id = %s ORDER BY id LIMIT 3)", (org,))
    # A new process starts from the stored cursor alone.
    result = tick(database_url, redis_url, cursor)
    assert result.run_requests
    assert all("daily_jobs" in assets for _, _, assets in ranges(result))


def test_an_open_transaction_holds_the_horizon_until_it_commits(database_url, redis_url, organization):
    org, _ = organization
    cursor = tick(database_url, redis_url, None).cursor
    with psycopg.connect(libpq_url(database_url)) as slow:
        slow.execute("DELETE FROM warranty_claims WHERE id IN (SELECT id FROM warranty_claims"
                     " WHERE organization_id = %s ORDER BY id LIMIT 1)", (org,))
        execute(database_url, "DELETE FROM opportunities WHERE id IN (SELECT id FROM opportunities"
                " WHERE organization_id = %s ORDER BY id LIMIT 1)", (org,))
        while_open = tick(database_url, redis_url, cursor)
        assert not while_open.run_requests  # the later commit waits behind the open transaction
        slow.commit()
    after = tick(database_url, redis_url, while_open.cursor)
    assets = {a for _, _, a_list in ranges(after) for a in a_list}
    assert {"daily_warranty", "daily_pipeline"} <= assets

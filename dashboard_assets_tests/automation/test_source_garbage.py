"""Garbage in the source tables goes through change capture, the sensor and
real runs without failing a run or losing a row: the rollups still equal the
pandas computation, days outside the partitions are never requested, and
numbers no real business produces are flagged by the values_are_possible
check instead of stopping the refresh."""

import datetime as dt
import uuid

import psycopg

from dashboard_assets.db import libpq_url
from dashboard_assets.partitions import daily_partitions_def
from dashboard_assets.rollups.assets import VALUES_ARE_POSSIBLE
from dashboard_assets_tests.conftest import HISTORY_END, HISTORY_START
from dashboard_assets_tests.helpers import (
    assert_rollups_match_reference,
    materialize_days,
    pending_days,
    pending_organizations,
    run_change_refresh,
    tick,
)

GARBAGE_DAY = dt.date(2025, 3, 10)


def at(day: dt.date, hour: int = 3) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), dt.UTC)


def insert_garbage(database_url: str) -> dict[str, uuid.UUID]:
    """Inserts and updates that no validating application would let through."""
    ids = {name: uuid.uuid4() for name in ("order", "ancient", "future", "job", "opportunity", "claim")}
    with psycopg.connect(libpq_url(database_url)) as conn:
        org, customer = conn.execute("SELECT organization_id, id FROM customers ORDER BY id LIMIT 1").fetchone()
        garbage_battery, good_battery = (
            conn.execute(
                "SELECT id FROM products WHERE organization_id = %s AND category = 'battery'"
                " AND specifications->>'capacity_kwh' " + condition + " ORDER BY id LIMIT 1", (org,)
            ).fetchone()[0]
            for condition in ("= '13.5kWh'", "~ '^[0-9.]+$'")
        )
        orders = "INSERT INTO orders (id, organization_id, customer_id, status, total_amount, created_at, updated_at)" \
                 " VALUES (%s, %s, %s, %s, %s, %s, %s)"
        conn.execute(orders, (ids["order"], org, customer, "refunded??", None, at(GARBAGE_DAY), at(GARBAGE_DAY)))
        conn.execute(orders, (ids["ancient"], org, customer, "delivered", 100, at(dt.date(2019, 6, 1)), at(GARBAGE_DAY)))
        conn.execute(orders, (ids["future"], org, customer, "delivered", 100, at(dt.date(2099, 1, 1)), at(GARBAGE_DAY)))
        items = "INSERT INTO order_items (id, organization_id, order_id, product_id, quantity, unit_price, line_total)" \
                " VALUES (%s, %s, %s, %s, %s, %s, %s)"
        conn.execute(items, (uuid.uuid4(), org, ids["order"], garbage_battery, 3, 9000, 27000))
        conn.execute(items, (uuid.uuid4(), org, ids["order"], good_battery, -2, 9000, None))
        conn.execute("INSERT INTO jobs (id, organization_id, order_id, customer_id, status, completed_at, created_at,"
                     " updated_at) VALUES (%s, %s, %s, %s, 'completed', %s, %s, %s)",
                     (ids["job"], org, ids["order"], customer, at(GARBAGE_DAY, 20), at(GARBAGE_DAY), at(GARBAGE_DAY)))
        conn.execute("INSERT INTO jobs (id, organization_id, order_id, customer_id, status, completed_at, created_at,"
                     " updated_at) VALUES (%s, %s, NULL, %s, 'on_hold', NULL, %s, %s)",
                     (uuid.uuid4(), org, customer, at(GARBAGE_DAY), at(GARBAGE_DAY)))
        conn.execute("INSERT INTO job_time_entries (id, organization_id, job_id, hours, entry_date, created_at)"
                     " VALUES (%s, %s, %s, NULL, %s, now())", (uuid.uuid4(), org, ids["job"], GARBAGE_DAY))
        conn.execute("INSERT INTO opportunities (id, organization_id, customer_id, stage, value, probability,"
                     " created_at, updated_at) VALUES (%s, %s, %s, 'zombie', NULL, 150, %s, %s)",
                     (ids["opportunity"], org, customer, at(GARBAGE_DAY), at(GARBAGE_DAY)))
        conn.execute("UPDATE opportunities SET probability = -20, value = -5000 WHERE id = (SELECT id FROM opportunities"
                     " WHERE organization_id = %s AND stage = 'proposal' ORDER BY id LIMIT 1)", (org,))
        conn.execute("INSERT INTO warranty_claims (id, organization_id, customer_id, order_id, status, claim_type,"
                     " created_at, updated_at, resolved_at) VALUES (%s, %s, %s, %s, 'escalated', 'other', %s, %s, %s)",
                     (ids["claim"], org, customer, ids["order"], at(GARBAGE_DAY), at(GARBAGE_DAY),
                      at(GARBAGE_DAY - dt.timedelta(days=3))))  # resolved before it was raised
    return ids


def test_garbage_rows_are_refreshed_flagged_and_nothing_is_lost(database_url, redis_url):
    assert materialize_days(database_url, HISTORY_START, HISTORY_END).success
    cursor = tick(database_url, redis_url, None).cursor
    ids = insert_garbage(database_url)
    result = tick(database_url, redis_url, cursor)

    first_partition = dt.date.fromisoformat(daily_partitions_def.get_first_partition_key())
    last_partition = dt.date.fromisoformat(daily_partitions_def.get_last_partition_key())
    pending = pending_days(database_url)
    assert pending and result.run_requests
    for days in pending.values():  # 2019 and 2099 are changes too, but no partition exists for them
        assert all(first_partition <= day <= last_partition for day in days)

    run = run_change_refresh(database_url, redis_url)
    assert run.success
    flagged = {e.asset_key.to_user_string() for e in run.get_asset_check_evaluations()
               if e.check_name == VALUES_ARE_POSSIBLE and not e.passed}
    assert "daily_metrics" in flagged  # negative kWh from a negative quantity
    for rollup, days in pending.items():
        for day in days:
            assert_rollups_match_reference(database_url, day, day, [rollup])
    assert not pending_days(database_url) and not pending_organizations(database_url)  # all of it done

    with psycopg.connect(libpq_url(database_url)) as conn:  # nothing was dropped on the way
        for table, key in [("orders", "order"), ("orders", "ancient"), ("orders", "future"), ("jobs", "job"),
                           ("opportunities", "opportunity"), ("warranty_claims", "claim")]:
            assert conn.execute(f"SELECT count(*) FROM {table} WHERE id = %s", (ids[key],)).fetchone()[0] == 1
    assert not tick(database_url, redis_url, result.cursor).run_requests  # every change consumed, once
    assert not pending_days(database_url)

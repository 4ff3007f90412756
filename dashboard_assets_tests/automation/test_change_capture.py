"""The triggers record every change with the organization and every local
day it affects, for inserts, updates and deletes, in bulk too."""

import datetime as dt
import uuid
from zoneinfo import ZoneInfo

import psycopg
import pytest

from dashboard_assets.db import libpq_url

ORG = "00000000-0000-4000-8000-0000000000a1"  # Pacific/Auckland
CUSTOMER = "00000000-0000-4000-8000-0000000000c1"
# 10:00 UTC on 3 March is 23:00 local in Auckland (NZDT, +13): 3 March;
# 11:30 UTC is 00:30 local on 4 March.
LATE_3_MARCH = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)
EARLY_4_MARCH = dt.datetime(2025, 3, 3, 11, 30, tzinfo=dt.UTC)


@pytest.fixture
def conn(empty_database_url):
    with psycopg.connect(libpq_url(empty_database_url), autocommit=True) as connection:
        connection.execute("INSERT INTO organizations (id, name, timezone) VALUES (%s, 'NZ', 'Pacific/Auckland')", (ORG,))
        yield connection


def _log(conn) -> list[tuple]:
    return conn.execute(
        "SELECT source_table, operation, row_id::text, affected_days FROM dashboard.change_log ORDER BY id"
    ).fetchall()


def _order(conn, created_at: dt.datetime) -> str:
    order = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO orders (id, organization_id, customer_id, status, total_amount, created_at, updated_at)"
        " VALUES (%s, %s, %s, 'confirmed', 10, %s, %s)",
        (order, ORG, CUSTOMER, created_at, created_at),
    )
    return order


def test_insert_update_delete_record_old_and_new_days(conn):
    order = _order(conn, LATE_3_MARCH)
    conn.execute("UPDATE orders SET created_at = %s WHERE id = %s", (EARLY_4_MARCH, order))
    conn.execute("DELETE FROM orders WHERE id = %s", (order,))
    assert _log(conn) == [
        ("orders", "INSERT", order, [dt.date(2025, 3, 3)]),
        ("orders", "UPDATE", order, [dt.date(2025, 3, 3), dt.date(2025, 3, 4)]),
        ("orders", "DELETE", order, [dt.date(2025, 3, 4)]),
    ]


def test_a_job_completed_later_affects_the_order_day_and_the_completion_day(conn):
    order = _order(conn, LATE_3_MARCH)
    job = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO jobs (id, organization_id, order_id, customer_id, status, created_at, updated_at)"
        " VALUES (%s, %s, %s, %s, 'scheduled', %s, %s)",
        (job, ORG, order, CUSTOMER, LATE_3_MARCH, LATE_3_MARCH),
    )
    completed = dt.datetime(2025, 4, 20, 1, 0, tzinfo=dt.UTC)  # 13:00 local, 20 April (NZST, +12)
    conn.execute("UPDATE jobs SET status = 'completed', completed_at = %s WHERE id = %s", (completed, job))
    conn.execute(
        "INSERT INTO order_items (id, organization_id, order_id, product_id, quantity, unit_price, line_total)"
        " VALUES (%s, %s, %s, %s, 1, 5, 5)",
        (str(uuid.uuid4()), ORG, order, str(uuid.uuid4())),
    )
    log = _log(conn)
    assert log[2][:2] == ("jobs", "UPDATE") and log[2][3] == [dt.date(2025, 3, 3), dt.date(2025, 4, 20)]
    # an item counts in revenue on its order's day and in kWh on the first completion day
    assert log[3][:2] == ("order_items", "INSERT") and log[3][3] == [dt.date(2025, 3, 3), dt.date(2025, 4, 20)]


def test_a_bulk_statement_records_every_row_at_once(conn):
    conn.execute(
        """
        INSERT INTO opportunities (id, organization_id, customer_id, stage, value, probability, created_at, updated_at)
        SELECT gen_random_uuid(), %s, %s, 'new', 100, 10, %s + n * interval '1 hour', now()
        FROM generate_series(0, 999) AS n
        """,
        (ORG, CUSTOMER, LATE_3_MARCH),
    )
    count, days = conn.execute(
        "SELECT count(*), count(DISTINCT d) FROM dashboard.change_log, unnest(affected_days) d"
        " WHERE source_table = 'opportunities'"
    ).fetchone()
    local = ZoneInfo("Pacific/Auckland")
    expected = {(LATE_3_MARCH + dt.timedelta(hours=n)).astimezone(local).date() for n in range(1000)}
    assert count == 1000 and days == len(expected)


def test_pruning_deletes_only_processed_old_changes(conn):
    _order(conn, LATE_3_MARCH)
    horizon = conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text").fetchone()[0]
    _order(conn, EARLY_4_MARCH)  # after the horizon: not processed yet
    conn.execute("UPDATE dashboard.change_log SET changed_at = now() - interval '8 days'")
    assert conn.execute("SELECT dashboard.prune_change_log(%s::xid8, interval '7 days')", (horizon,)).fetchone()[0] == 1
    assert conn.execute("SELECT dashboard.prune_change_log(%s::xid8, interval '7 days')", (horizon,)).fetchone()[0] == 0
    assert len(_log(conn)) == 1

"""Change capture by logical decoding: every committed change reaches the
(rollup, organization, day) it affects, old and new values alike, in bulk
too; and a capture outage (slot dropped, lost or moved, a table out of the
publication, a replica identity changed) is detected, never silent."""

import datetime as dt
import uuid

import psycopg
import pytest
from psycopg import sql

from dashboard_assets.automation import capture
from dashboard_assets.automation.change_refresh import day_groups, pending_work
from dashboard_assets.automation.changes import CAPTURED_COLUMNS, FULL_REFRESH, full_refresh, record
from dashboard_assets.db import libpq_url
from dashboard_assets.generate import generate
from dashboard_assets.migrations import migrate

AUCKLAND = "00000000-0000-4000-8000-0000000000a1"
PERTH = "00000000-0000-4000-8000-0000000000a2"
CUSTOMER = "00000000-0000-4000-8000-0000000000c1"
# 10:00 UTC on 3 March is 23:00 local in Auckland (NZDT, +13): 3 March;
# 11:30 UTC is 00:30 local on 4 March. In Perth (+8) both are 3 March.
LATE_3_MARCH = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)
EARLY_4_MARCH = dt.datetime(2025, 3, 3, 11, 30, tzinfo=dt.UTC)
MARCH_3, MARCH_4 = dt.date(2025, 3, 3), dt.date(2025, 3, 4)
PARTITIONS = (dt.date(2025, 1, 1), dt.date(2025, 12, 31))


@pytest.fixture
def conn(empty_database_url):
    with psycopg.connect(libpq_url(empty_database_url), autocommit=True) as connection:
        connection.execute("INSERT INTO organizations (id, name, timezone) VALUES (%s, 'NZ', 'Pacific/Auckland'),"
                           " (%s, 'WA', 'Australia/Perth')", (AUCKLAND, PERTH))
        yield connection


def read(conn, cursor: str | None = None) -> tuple[capture.CapturedChanges, set]:
    """One read of the stream after `cursor`, and the (rollup, organization,
    day) it marks pending (its activity kept, as a sensor tick does)."""
    changes = capture.read_changes(conn, cursor, CAPTURED_COLUMNS)
    conn.execute("DELETE FROM dashboard.pending_days")
    marked = record(conn, changes, *PARTITIONS)
    affected = {(rollup, org, day) for rollup, org, day in conn.execute(
        "SELECT rollup, organization_id::text, day FROM dashboard.pending_days")}
    assert marked == len(affected)
    return changes, affected


def position(conn) -> str:
    """The stream's position after everything committed so far."""
    return read(conn, None)[0].position


def order(conn, created_at: dt.datetime, org: str = AUCKLAND) -> str:
    order_id = str(uuid.uuid4())
    conn.execute("INSERT INTO orders (id, organization_id, customer_id, status, total_amount, created_at, updated_at)"
                 " VALUES (%s, %s, %s, 'confirmed', 10, %s, %s)", (order_id, org, CUSTOMER, created_at, created_at))
    return order_id


def test_insert_update_delete_affect_the_old_and_the_new_days(conn):
    start = position(conn)
    order_id = order(conn, LATE_3_MARCH)
    inserted, affected = read(conn, start)
    assert affected == {("daily_metrics", AUCKLAND, MARCH_3)}
    conn.execute("UPDATE orders SET created_at = %s WHERE id = %s", (EARLY_4_MARCH, order_id))
    updated, affected = read(conn, inserted.position)
    assert affected == {("daily_metrics", AUCKLAND, MARCH_3), ("daily_metrics", AUCKLAND, MARCH_4)}
    conn.execute("DELETE FROM orders WHERE id = %s", (order_id,))
    assert read(conn, updated.position)[1] == {("daily_metrics", AUCKLAND, MARCH_4)}


def test_a_later_job_completion_and_a_later_item_affect_the_order_day_and_the_kwh_day(conn):
    order_id = order(conn, LATE_3_MARCH)
    job = str(uuid.uuid4())
    conn.execute("INSERT INTO jobs (id, organization_id, order_id, customer_id, status, created_at, updated_at)"
                 " VALUES (%s, %s, %s, %s, 'scheduled', %s, %s)", (job, AUCKLAND, order_id, CUSTOMER, LATE_3_MARCH,
                                                                   LATE_3_MARCH))
    start = position(conn)
    completed = dt.datetime(2025, 4, 20, 1, 0, tzinfo=dt.UTC)  # 13:00 local, 20 April (NZST, +12)
    conn.execute("UPDATE jobs SET status = 'completed', completed_at = %s WHERE id = %s", (completed, job))
    job_changes, affected = read(conn, start)
    assert affected == {("daily_jobs", AUCKLAND, MARCH_3), ("daily_metrics", AUCKLAND, dt.date(2025, 4, 20))}
    conn.execute("INSERT INTO order_items (id, organization_id, order_id, product_id, quantity, unit_price, line_total)"
                 " VALUES (%s, %s, %s, %s, 1, 5, 5)", (str(uuid.uuid4()), AUCKLAND, order_id, str(uuid.uuid4())))
    # an item counts in revenue on its order's day and in kWh on the first completion day
    assert read(conn, job_changes.position)[1] == {("daily_metrics", AUCKLAND, MARCH_3),
                                                   ("daily_metrics", AUCKLAND, dt.date(2025, 4, 20))}


def test_one_bulk_statement_is_read_at_once(conn):
    start = position(conn)
    conn.execute(
        "INSERT INTO opportunities (id, organization_id, customer_id, stage, value, probability, created_at, updated_at)"
        " SELECT gen_random_uuid(), %s, %s, 'new', 100, 10, %s + n * interval '1 hour', now()"
        " FROM generate_series(0, 999) AS n", (AUCKLAND, CUSTOMER, LATE_3_MARCH))
    changes, affected = read(conn, start)
    first, last = dt.date(2025, 3, 3), dt.date(2025, 4, 14)  # 1,000 hours from 23:00 on 3 March, local
    assert affected == {("daily_pipeline", AUCKLAND, first + dt.timedelta(days=n))
                        for n in range((last - first).days + 1)}
    assert len(changes.activity[AUCKLAND]) == capture.ACTIVITY_DEPTH  # the newest ones, for the feed


def test_once_a_bulk_statement_is_confirmed_it_is_not_decoded_again(conn):
    """The slot's restart position (where each peek starts decoding) follows
    the confirmed position past a bulk statement: later ticks do not decode
    its WAL again."""
    if conn.info.server_version < 160000:
        pytest.skip("PostgreSQL before 16 has no pg_log_standby_snapshot(): there a read after a bulk statement "
                    "may decode it again, up to PostgreSQL's own record 15 s later (docs/deploy.md)")
    start = position(conn)
    conn.execute(
        "INSERT INTO opportunities (id, organization_id, customer_id, stage, value, probability, created_at, updated_at)"
        " SELECT gen_random_uuid(), %s, %s, 'new', 100, 10, %s, now() FROM generate_series(1, 20000)",
        (AUCKLAND, CUSTOMER, LATE_3_MARCH))
    (after_bulk,) = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    bulk = read(conn, start)[0]
    read(conn, bulk.position)  # confirms the bulk statement
    slot = conn.execute("SELECT restart_lsn >= %s::pg_lsn FROM pg_replication_slots WHERE slot_name = %s",
                        (after_bulk, capture.slot_name(conn))).fetchone()
    assert slot == (True,)


def test_a_peek_holds_no_snapshot_while_its_messages_are_read(conn, empty_database_url):
    """Python reads a large peek in batches, and meanwhile the peek holds back
    no row removal (VACUUM, page pruning) on the server."""
    start = position(conn)
    conn.execute(
        "INSERT INTO opportunities (id, organization_id, customer_id, stage, value, probability, created_at, updated_at)"
        " SELECT gen_random_uuid(), %s, %s, 'new', 100, 10, %s, now() FROM generate_series(1, 30000)",
        (AUCKLAND, CUSTOMER, LATE_3_MARCH))
    slot = capture.slot_name(conn)
    conn.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (slot, start))
    (upto,) = conn.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()
    messages = capture.peeked_messages(conn, slot, upto)
    first = next(messages)  # the first batch fetched, the rest still on the server
    with psycopg.connect(libpq_url(empty_database_url)) as other:
        held = other.execute("SELECT backend_xmin FROM pg_stat_activity WHERE pid = %s", (conn.info.backend_pid,))
        assert held.fetchone() == (None,)
    assert 1 + sum(1 for _ in messages) >= 30000 and first


def test_one_transaction_changing_two_organizations_affects_each_in_its_own_timezone(conn):
    start = position(conn)
    with conn.transaction():
        order(conn, EARLY_4_MARCH, AUCKLAND)
        order(conn, EARLY_4_MARCH, PERTH)
    changes, affected = read(conn, start)
    assert affected == {("daily_metrics", AUCKLAND, MARCH_4), ("daily_metrics", PERTH, MARCH_3)}
    # refreshed as exactly those pairs: each day for its own organization
    assert day_groups(pending_work(conn).days["daily_metrics"]) == [(MARCH_3, MARCH_3, [PERTH]),
                                                                    (MARCH_4, MARCH_4, [AUCKLAND])]


def test_a_row_moved_to_another_organization_and_across_midnight_affects_both(conn):
    order_id = order(conn, LATE_3_MARCH, AUCKLAND)
    start = position(conn)
    perth_morning_4_march = EARLY_4_MARCH + dt.timedelta(hours=12)
    conn.execute("UPDATE orders SET organization_id = %s, created_at = %s WHERE id = %s",
                 (PERTH, perth_morning_4_march, order_id))
    assert read(conn, start)[1] == {("daily_metrics", AUCKLAND, MARCH_3), ("daily_metrics", PERTH, MARCH_4)}


def test_an_organization_change_affects_every_day_of_that_organization(conn):
    start = position(conn)
    conn.execute("UPDATE organizations SET timezone = 'Pacific/Chatham' WHERE id = %s", (AUCKLAND,))
    _, affected = read(conn, start)
    days = (PARTITIONS[1] - PARTITIONS[0]).days + 1
    assert len(affected) == 4 * days and {org for _, org, _ in affected} == {AUCKLAND}


def test_a_truncate_refreshes_every_day_of_every_organization(conn):
    order(conn, LATE_3_MARCH)
    start = position(conn)
    conn.execute("TRUNCATE order_items")
    changes, _ = read(conn, start)
    assert changes.truncated == {"order_items"}
    assert "daily_metrics" in full_refresh(changes).assets


def test_changes_are_read_once_and_changes_read_twice_are_kept_once_in_the_activity_feed(conn):
    start = position(conn)
    order(conn, LATE_3_MARCH)
    read(conn, start)
    # the sensor and a change refresh run reading the same changes at once: the second has not seen the
    # position the first stored with what it marked
    conn.execute("TRUNCATE dashboard.capture_progress")
    assert read(conn, start)[1] == {("daily_metrics", AUCKLAND, MARCH_3)}
    assert conn.execute("SELECT count(*) FROM dashboard.recent_changes WHERE source_table = 'orders'").fetchone()[0] == 1
    # once stored, the position is where the next read starts, whatever cursor it is given
    assert read(conn, start)[1] == set()


def restarts(conn) -> list[str]:
    return [reason for (reason,) in conn.execute("SELECT reason FROM dashboard.capture_restarts ORDER BY id")]


def assert_capture_restarted(conn, cursor: str, because: str) -> None:
    """The next read restarts capture, says why, and asks for everything."""
    changes, _ = read(conn, cursor)
    assert because in changes.restart_reason and because in restarts(conn)[-1]
    assert full_refresh(changes).assets == FULL_REFRESH
    order(conn, LATE_3_MARCH)  # and then it goes on from the new slot
    assert read(conn, changes.position)[1] == {("daily_metrics", AUCKLAND, MARCH_3)}


def test_a_dropped_slot_restarts_capture_and_refreshes_everything(conn):
    cursor = position(conn)
    capture.drop_slot(conn)
    order(conn, LATE_3_MARCH)  # a change while nothing captured
    assert_capture_restarted(conn, cursor, "missing")


def test_a_slot_moved_past_the_stored_position_restarts_capture(conn):
    cursor = position(conn)
    order(conn, LATE_3_MARCH)
    conn.execute("SELECT pg_replication_slot_advance(%s, pg_current_wal_lsn())", (capture.slot_name(conn),))
    assert_capture_restarted(conn, cursor, "past the stored position")


def test_a_position_from_another_capture_restarts_capture(conn):
    assert_capture_restarted(conn, "123456", "not a WAL position")


def test_a_lost_slot_restarts_capture(conn, postgres_server):
    cursor = position(conn)
    (kept,) = conn.execute("SELECT current_setting('max_slot_wal_keep_size')").fetchone()
    conn.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
    conn.execute("SELECT pg_reload_conf()")
    try:
        for _ in range(3):  # more WAL than the slot may keep, then a checkpoint invalidates it
            order(conn, LATE_3_MARCH)
            conn.execute("SELECT pg_switch_wal()")
        conn.execute("CHECKPOINT")
        wal_status = conn.execute("SELECT wal_status FROM pg_replication_slots WHERE slot_name = %s",
                                  (capture.slot_name(conn),)).fetchone()[0]
        assert wal_status == "lost"
    finally:
        conn.execute(sql.SQL("ALTER SYSTEM SET max_slot_wal_keep_size = {}").format(sql.Literal(kept)))
        conn.execute("SELECT pg_reload_conf()")
    assert_capture_restarted(conn, cursor, "lost")


@pytest.mark.parametrize("outage, problem", [
    ("ALTER PUBLICATION dashboard_source_changes DROP TABLE orders", "not in publication dashboard_source_changes: orders"),
    ("ALTER TABLE jobs REPLICA IDENTITY DEFAULT", "not REPLICA IDENTITY FULL: jobs"),
])
def test_broken_capture_fails_loudly_until_migrated_then_refreshes_everything(conn, empty_database_url, outage, problem):
    cursor = position(conn)
    conn.execute(outage)
    order(conn, LATE_3_MARCH)  # possibly missed
    with pytest.raises(capture.CaptureError, match=problem):
        read(conn, cursor)
    assert conn.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
                        (capture.slot_name(conn),)).fetchone()[0] == 0  # no WAL kept for a stream nobody trusts
    migrate(empty_database_url)
    assert_capture_restarted(conn, cursor, "past the stored position")


def test_loading_synthetic_history_restarts_capture_after_the_rows(conn, empty_database_url):
    cursor = position(conn)
    with psycopg.connect(libpq_url(empty_database_url)) as loader:
        generate(loader, orgs=1, days=3, seed=5, end_date=dt.date(2025, 3, 3), scale=0.1)
    changes, _ = read(conn, cursor)
    assert changes.restart_reason and not changes.versions  # nothing of the load is decoded

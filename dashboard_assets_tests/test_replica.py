"""The source on a real hot standby of the test server: refreshes read the
standby and never the primary's source tables, a change-driven run waits for
the standby to replay its change, a standby still behind after the timeout
and a query cancelled by a conflict with recovery are retried, and change
capture stays on the primary."""

import datetime as dt
import threading
import time

import dagster as dg
import psycopg
import pytest

from dashboard_assets.automation.pgoutput import lsn_value
from dashboard_assets.db import engine, libpq_url
from dashboard_assets.replica import SOURCE_POSITION_TAG, wait_for_source
from dashboard_assets.resources import PostgresResource
from dashboard_assets.rollups.assets import daily_rollup_assets
from dashboard_assets.sources import SOURCE_TABLES
from dashboard_assets_tests import reference
from dashboard_assets_tests.helpers import (
    DAILY_KEYS,
    assert_frames_equal,
    assert_rollups_match_reference,
    before_insert_on_daily_metrics,
    execute,
    materialize_days,
    rollup_rows,
    run_change_refresh,
    sources,
    tick,
)

MARCH = (dt.date(2025, 3, 1), dt.date(2025, 3, 31))
DAY = dt.date(2025, 3, 14)
# Long enough for any wait below; short enough that a test stuck on it fails fast.
TIMEOUT_SECONDS = 30
RESUME_AFTER_SECONDS = 2.0


def reading(standby_url: str, target_url: str, timeout_seconds: int = TIMEOUT_SECONDS) -> PostgresResource:
    """The target, with its source on the standby."""
    return PostgresResource(database_url=target_url, source_database_url=standby_url,
                            source_replay_timeout_seconds=timeout_seconds)


def fetch_value(url: str, query: str, params=()):
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        return conn.execute(query, params).fetchone()[0]


def source_table_scans(url: str) -> int:
    """Sequential and index scans of the source tables counted by this server."""
    return fetch_value(url, "SELECT coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0) FROM pg_stat_user_tables"
                            " WHERE schemaname = 'public' AND relname = ANY(%s)", (list(SOURCE_TABLES),))


def pause_replay(standby_url: str) -> None:
    execute(standby_url, "SELECT pg_wal_replay_pause()")
    while fetch_value(standby_url, "SELECT pg_get_wal_replay_pause_state()") != "paused":
        time.sleep(0.05)


def resume_replay_later(standby_url: str) -> threading.Timer:
    resume = threading.Timer(RESUME_AFTER_SECONDS, execute, (standby_url, "SELECT pg_wal_replay_resume()"))
    resume.start()
    return resume


def cancel_one_delivered_order_on(database_url: str, day: dt.date) -> None:
    """Cancel a delivered order created between 02:00 and 10:00 UTC on `day`:
    `day` in every organization's timezone."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        cancelled = conn.execute(
            "UPDATE orders SET status = 'cancelled' WHERE id = (SELECT id FROM orders WHERE status = 'delivered'"
            " AND created_at BETWEEN timezone('UTC', %(day)s::date + time '02:00')"
            " AND timezone('UTC', %(day)s::date + time '10:00') ORDER BY id LIMIT 1)", {"day": day}).rowcount
    assert cancelled == 1


def retries(result: dg.ExecuteInProcessResult) -> list[str]:
    """The error behind each retry of a step in the run, with its causes."""
    return [event.event_specific_data.error.to_string() for event in result.all_events
            if event.event_type_value == "STEP_UP_FOR_RETRY"]


def test_refreshes_read_the_standby_never_the_primary(database_url, standby_url):
    primary_scans = source_table_scans(database_url)
    assert materialize_days(database_url, *MARCH, postgres=reading(standby_url, database_url)).success
    for url in (database_url, standby_url):
        engine(url).dispose()  # the pooled sessions end, and report their counters
    deadline = time.monotonic() + TIMEOUT_SECONDS
    inserted = "SELECT n_tup_ins FROM pg_stat_user_tables WHERE relid = 'dashboard.daily_metrics'::regclass"
    while not (fetch_value(database_url, inserted) and (source_table_scans(standby_url)
                                                         or source_table_scans(database_url) != primary_scans)):
        assert time.monotonic() < deadline, "the sessions' counters never arrived"
        time.sleep(0.1)
    assert source_table_scans(database_url) == primary_scans  # the refresh read no source table on the primary
    assert source_table_scans(standby_url) and fetch_value(standby_url, "SELECT pg_is_in_recovery()")
    assert_rollups_match_reference(database_url, *MARCH)


def test_no_change_is_lost_while_the_standby_lags(database_url, standby_url, redis_url):
    assert materialize_days(database_url, *MARCH).success
    cursor = tick(database_url, redis_url, None, source_url=standby_url).cursor
    pause_replay(standby_url)
    cancel_one_delivered_order_on(database_url, DAY)
    committed_at = fetch_value(database_url, "SELECT pg_current_wal_flush_lsn()::text")

    # Change capture reads the primary: the tick sees the change the paused standby has not replayed.
    assert tick(database_url, redis_url, cursor, source_url=standby_url).run_requests
    assert not fetch_value(standby_url, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (committed_at,))
    assert fetch_value(standby_url, "SELECT count(*) FROM pg_replication_slots") == 0
    # the pending work carries the position its refresh must see
    assert lsn_value(fetch_value(database_url, "SELECT max(source_lsn)::text FROM dashboard.pending_days")) \
        >= lsn_value(committed_at)

    began = time.monotonic()
    resume = resume_replay_later(standby_url)
    run = run_change_refresh(database_url, redis_url, postgres=reading(standby_url, database_url))
    assert run.success and not retries(run)
    resume.join()
    assert time.monotonic() - began >= RESUME_AFTER_SECONDS  # the run waited for the standby
    assert_rollups_match_reference(database_url, *MARCH)


def test_a_standby_behind_past_the_timeout_fails_the_step_which_is_retried(database_url, standby_url):
    assert materialize_days(database_url, DAY, DAY).success
    pause_replay(standby_url)
    cancel_one_delivered_order_on(database_url, DAY)
    position = fetch_value(database_url, "SELECT pg_current_wal_flush_lsn()::text")
    resume = resume_replay_later(standby_url)
    result = materialize_days(database_url, DAY, DAY, assets=daily_rollup_assets[:1],
                              postgres=reading(standby_url, database_url, timeout_seconds=1),  # shorter than the pause
                              tags={SOURCE_POSITION_TAG: position})
    resume.join()
    assert result.success
    (retry,) = retries(result)
    assert f"not yet {position}" in retry
    assert_rollups_match_reference(database_url, DAY, DAY, rollups={"daily_metrics"})


def test_a_refresh_cancelled_by_a_conflict_with_recovery_is_retried(database_url, empty_database_url, standby_url):
    """The refresh's snapshot on the standby needs row versions that a VACUUM
    on the primary removes while the refresh holds it (its first row waits on
    the target until the standby has cancelled it); the standby, which gives
    way to replay after 100 ms, ends the refresh's session. Its target is
    another database, so that its own transaction holds back no VACUUM."""
    execute(empty_database_url, "CREATE SEQUENCE first_row; CREATE TABLE vacuumed ()")  # both survive a rollback
    before_insert_on_daily_metrics(
        empty_database_url, "wait_for_vacuum",
        "IF nextval('first_row') = 1 THEN WHILE NOT EXISTS (SELECT FROM vacuumed) LOOP PERFORM pg_sleep(0.05);"
        " END LOOP; END IF; RETURN NEW;")
    conflicts = "SELECT confl_snapshot FROM pg_stat_database_conflicts WHERE datname = current_database()"
    before = fetch_value(standby_url, conflicts)

    def vacuum_what_the_snapshot_needs() -> None:
        deadline = time.monotonic() + TIMEOUT_SECONDS
        try:
            while not fetch_value(empty_database_url, "SELECT count(*) FROM pg_stat_activity"
                                                      " WHERE wait_event = 'PgSleep' AND datname = current_database()"):
                assert time.monotonic() < deadline, "the refresh never reached its first row"
                time.sleep(0.05)
            cancel_one_delivered_order_on(database_url, DAY)
            execute(database_url, "VACUUM orders")
            while fetch_value(standby_url, conflicts) == before and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            execute(empty_database_url, "INSERT INTO vacuumed DEFAULT VALUES")

    vacuum = threading.Thread(target=vacuum_what_the_snapshot_needs)
    vacuum.start()
    result = materialize_days(empty_database_url, DAY, DAY, assets=daily_rollup_assets[:1],
                              postgres=reading(standby_url, empty_database_url))
    vacuum.join()
    assert result.success
    (retry,) = retries(result)
    assert "conflict with recovery" in retry
    assert fetch_value(standby_url, conflicts) > before
    assert_frames_equal(rollup_rows(empty_database_url, "daily_metrics", DAY, DAY),
                        reference.daily_metrics(sources(database_url), DAY, DAY), DAILY_KEYS)


def test_a_position_tag_that_is_no_wal_position_is_refused():
    with pytest.raises(ValueError, match=f"{SOURCE_POSITION_TAG}='yesterday' is not a WAL position"):
        wait_for_source("postgresql:///replica", "postgresql:///primary", {SOURCE_POSITION_TAG: "yesterday"}, 1)

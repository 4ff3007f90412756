"""A refresh is idempotent, atomic, and leaves the previous days in place when
it fails; its checks fail when the written rows do not reconcile."""

import datetime as dt
import threading

import psycopg
import pytest

from dashboard_assets.db import libpq_url
from dashboard_assets.rollups.assets import DAILY_ROLLUPS, RECONCILES_WITH_SOURCE, daily_rollup_assets
from dashboard_assets.rollups.refresh import day_locks, refresh
from dashboard_assets_tests import reference
from dashboard_assets_tests.helpers import (
    DAILY_KEYS,
    assert_frames_equal,
    assert_rollups_match_reference,
    before_insert_on_daily_metrics,
    execute,
    materialize_days,
    rollup_rows,
    sources,
)

DAY = dt.date(2025, 3, 14)
DAILY_METRICS = DAILY_ROLLUPS[0]
DAILY_METRICS_ASSET = daily_rollup_assets[0]


def _refresh_then_delete_orders(database_url: str):
    """Refresh DAY, then change the source under it; returns DAY's rows as refreshed."""
    assert materialize_days(database_url, DAY, DAY).success
    before = rollup_rows(database_url, "daily_metrics", DAY, DAY)
    execute(database_url, "DELETE FROM orders WHERE id IN (SELECT id FROM orders ORDER BY id LIMIT 300)")
    return before


def test_rerunning_a_partition_is_idempotent(database_url):
    assert materialize_days(database_url, DAY, DAY).success
    first = rollup_rows(database_url, "daily_metrics", DAY, DAY)
    assert materialize_days(database_url, DAY, DAY).success
    second = rollup_rows(database_url, "daily_metrics", DAY, DAY)
    assert first.sort_values("organization_id").reset_index(drop=True).equals(
        second.sort_values("organization_id").reset_index(drop=True)
    )


def test_a_later_source_change_is_picked_up_by_the_rerun(database_url):
    assert materialize_days(database_url, DAY, DAY).success
    execute(
        database_url,
        """
        UPDATE orders o SET status = 'delivered', updated_at = now()
        FROM organizations g
        WHERE g.id = o.organization_id AND o.status <> 'delivered'
          AND (o.created_at AT TIME ZONE COALESCE(g.timezone, 'Australia/Sydney'))::date = %s
        """,
        (DAY,),
    )
    execute(database_url, "DELETE FROM order_items WHERE id IN (SELECT id FROM order_items ORDER BY id LIMIT 500)")
    assert materialize_days(database_url, DAY, DAY).success
    assert_rollups_match_reference(database_url, DAY, DAY)


def test_a_failed_refresh_leaves_the_previous_day_intact(database_url):
    before = _refresh_then_delete_orders(database_url)
    # A real failure inside the write: the table refuses the third new row.
    before_insert_on_daily_metrics(
        database_url,
        "fail_third_row",
        """
        IF (SELECT count(*) FROM dashboard.daily_metrics WHERE metric_date = NEW.metric_date) >= 2 THEN
            RAISE EXCEPTION 'disk full (simulated inside PostgreSQL)';
        END IF;
        RETURN NEW;
        """,
    )
    result = materialize_days(database_url, DAY, DAY, raise_on_error=False)
    assert not result.success
    after = rollup_rows(database_url, "daily_metrics", DAY, DAY)
    assert before.sort_values("organization_id").reset_index(drop=True).equals(
        after.sort_values("organization_id").reset_index(drop=True)
    )
    execute(database_url, "DROP TRIGGER fail_third_row ON dashboard.daily_metrics")
    assert materialize_days(database_url, DAY, DAY).success
    assert_rollups_match_reference(database_url, DAY, DAY)


def test_rows_that_do_not_reconcile_fail_the_check_and_are_rolled_back(database_url):
    before = _refresh_then_delete_orders(database_url)
    before_insert_on_daily_metrics(database_url, "inflate_revenue", "NEW.revenue := NEW.revenue + 1; RETURN NEW;")
    result = materialize_days(database_url, DAY, DAY, raise_on_error=False)
    checks = {(c.asset_key.to_user_string(), c.check_name): c for c in result.get_asset_check_evaluations()}
    failed = checks[("daily_metrics", RECONCILES_WITH_SOURCE)]
    assert not failed.passed
    assert set(failed.metadata["mismatches"].value) == {"revenue"}
    assert failed.metadata["committed"].value is False
    assert checks[("daily_pipeline", RECONCILES_WITH_SOURCE)].passed
    assert not result.success  # a failed blocking check fails the run
    assert rollup_rows(database_url, "daily_metrics", DAY, DAY).equals(before)


def test_readers_never_see_a_day_empty_or_half_written(database_url):
    with psycopg.connect(libpq_url(database_url)) as conn:
        organizations = conn.execute("SELECT count(*) FROM organizations").fetchone()[0]
    refresh(DAILY_METRICS, source_url=database_url, target_url=database_url, start=DAY, end=DAY)
    seen: list[int] = []
    stop = threading.Event()

    def read_day() -> None:
        with psycopg.connect(libpq_url(database_url), autocommit=True) as reader:
            while not stop.is_set():
                seen.append(
                    reader.execute("SELECT count(*) FROM dashboard.daily_metrics WHERE metric_date = %s", (DAY,)).fetchone()[0]
                )

    reader = threading.Thread(target=read_day)
    reader.start()
    try:
        for _ in range(20):
            refresh(DAILY_METRICS, source_url=database_url, target_url=database_url, start=DAY, end=DAY)
    finally:
        stop.set()
        reader.join()
    assert len(seen) > 20
    assert set(seen) == {organizations}


def test_reads_can_come_from_a_separate_source_database(database_url, empty_database_url):
    """Source = a database holding the data (as a replica would); target = another."""
    result = refresh(DAILY_METRICS, source_url=database_url, target_url=empty_database_url, start=DAY, end=DAY)
    assert not result.mismatches
    assert_frames_equal(
        rollup_rows(empty_database_url, "daily_metrics", DAY, DAY),
        reference.daily_metrics(sources(database_url), DAY, DAY),
        DAILY_KEYS,
    )
    assert rollup_rows(database_url, "daily_metrics", DAY, DAY).empty  # nothing written to the source


def test_an_inverted_range_is_refused(database_url):
    with pytest.raises(ValueError, match="start <= end"):
        refresh(DAILY_METRICS, source_url=database_url, target_url=database_url, start=DAY, end=DAY - dt.timedelta(days=1))


def test_a_dropped_connection_is_retried_and_converges(database_url):
    before = _refresh_then_delete_orders(database_url)
    # The server drops the refreshing connection on its first insert, once (a
    # sequence survives the rollback that follows).
    execute(database_url, "CREATE SEQUENCE drop_once")
    before_insert_on_daily_metrics(
        database_url,
        "drop_connection_once",
        "IF nextval('drop_once') = 1 THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF; RETURN NEW;",
    )
    result = materialize_days(database_url, DAY, DAY, assets=[DAILY_METRICS_ASSET])
    assert result.success
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retries) == 1
    assert_rollups_match_reference(database_url, DAY, DAY)
    assert not rollup_rows(database_url, "daily_metrics", DAY, DAY).equals(before)


def test_a_refresh_waiting_for_another_writer_of_its_rollup_starts_after_it(database_url):
    """A refresh takes its snapshot only once no other writer of the rollup's
    tables is left (another refresh, here one holding the lock and
    rewriting the day): it then replaces the day, instead of failing to
    serialize with what the other committed."""
    refresh(DAILY_METRICS, source_url=database_url, target_url=database_url, start=DAY, end=DAY)
    outcome: list = []
    with day_locks(database_url, DAILY_METRICS, DAY, DAY), psycopg.connect(libpq_url(database_url)) as other:
        other.execute("UPDATE dashboard.daily_metrics SET revenue = revenue + 1 WHERE metric_date = %s", (DAY,))
        waiting = threading.Thread(target=lambda: outcome.append(
            refresh(DAILY_METRICS, source_url=database_url, target_url=database_url, start=DAY, end=DAY)))
        waiting.start()
        waiting.join(timeout=2)
        assert waiting.is_alive()  # blocked behind the other writer
        other.commit()
    waiting.join(timeout=60)
    assert outcome and outcome[0].committed
    assert_frames_equal(rollup_rows(database_url, "daily_metrics", DAY, DAY),
                        reference.daily_metrics(sources(database_url), DAY, DAY), DAILY_KEYS)

"""The change refresh on real servers: one run refreshes exactly the pending
(rollup, organization, day), however scattered, and shows each refreshed
partition in the instance; a run killed mid-refresh leaves its work pending
for the next; a change made while a pass works stays pending for the next
pass; one run works at a time."""

import datetime as dt
import logging
import subprocess
import sys
import threading
import uuid

import dagster as dg
import psycopg
import pytest

from dashboard_assets import settings
from dashboard_assets.automation import capture, change_refresh
from dashboard_assets.automation.change_refresh import day_groups, worker_lock, worker_running
from dashboard_assets.automation.changes import capture_and_mark
from dashboard_assets.automation.sensors import RANGE_START, RESTART_TAG
from dashboard_assets.db import libpq_url
from dashboard_assets.definitions import defs
from dashboard_assets.resources import RedisResource
from dashboard_assets_tests.conftest import HISTORY_END, HISTORY_START
from dashboard_assets_tests.helpers import (
    assert_rollups_match_reference,
    backends_alive,
    backends_sleeping_in_a_trigger,
    before_insert_on_daily_metrics,
    execute,
    materialize_days,
    pending_days,
    pending_organizations,
    refresh_pending_now,
    rollup_rows,
    run_change_refresh,
    tick,
    wait_for,
)

MARCH_3, MARCH_20, APRIL_8 = dt.date(2025, 3, 3), dt.date(2025, 3, 20), dt.date(2025, 4, 8)


def cancel_a_delivered_order_of(database_url: str, day: dt.date, timezone: str = "Australia/Perth") -> None:
    """Cancel the first delivered order created on or after `day` of the organization in `timezone`."""
    execute(database_url, "UPDATE orders SET status = 'cancelled' WHERE id = (SELECT o.id FROM orders o"
            " JOIN organizations g ON g.id = o.organization_id AND g.timezone = %(timezone)s"
            " WHERE o.status = 'delivered' AND o.created_at >= %(day)s ORDER BY o.created_at LIMIT 1)",
            {"day": day, "timezone": timezone})


def organization_in(database_url: str, timezone: str) -> str:
    with psycopg.connect(libpq_url(database_url)) as conn:
        return str(conn.execute("SELECT id FROM organizations WHERE timezone = %s", (timezone,)).fetchone()[0])


@pytest.fixture
def backfilled(database_url, redis_url) -> str:
    """Every day refreshed, capture running from here; the sensor's cursor."""
    assert materialize_days(database_url, HISTORY_START, HISTORY_END).success
    return tick(database_url, redis_url, None).cursor


def test_one_run_refreshes_exactly_the_scattered_changed_days_and_shows_each(database_url, redis_url, backfilled):
    for day in (MARCH_3, MARCH_20, APRIL_8):
        cancel_a_delivered_order_of(database_url, day)
    tick(database_url, redis_url, backfilled)
    pending = pending_days(database_url)
    assert len(day_groups(pending["daily_metrics"])) >= 3  # three days apart: three refreshes, in one run

    with dg.instance_for_test() as instance:
        run = run_change_refresh(database_url, redis_url, instance=instance)
        assert run.success
        for rollup, days in pending.items():
            key = dg.AssetKey(rollup)
            # a materialization for each changed day, none for the days between them
            assert instance.get_materialized_partitions(key) == {day.isoformat() for day in days}
            for day, organizations in days.items():
                (materialization,) = [event.materialization for event in run.get_asset_materialization_events()
                                      if event.asset_key == key and event.partition == day.isoformat()]
                assert materialization.metadata["organizations"].value == len(organizations)
                assert materialization.metadata["organization_ids"].value == ", ".join(sorted(organizations))
        checks = {(e.asset_key.to_user_string(), e.check_name) for e in run.get_asset_check_evaluations()}
        assert {(rollup, "reconciles_with_source") for rollup in pending} <= checks
    assert not pending_days(database_url) and not pending_organizations(database_url)
    assert_rollups_match_reference(database_url, HISTORY_START, HISTORY_END)


KILLED_RUN = """
import sys
from dashboard_assets_tests.helpers import run_change_refresh
run_change_refresh(sys.argv[1], sys.argv[2])
"""


def test_a_run_killed_mid_refresh_leaves_its_work_pending_and_the_next_run_completes_it(database_url, redis_url,
                                                                                        backfilled):
    for day in (MARCH_3, MARCH_20):
        cancel_a_delivered_order_of(database_url, day)
    tick(database_url, redis_url, backfilled)
    pending = pending_days(database_url)
    before_insert_on_daily_metrics(database_url, "slow_rows", "PERFORM pg_sleep(0.5); RETURN NEW;")
    worker = subprocess.Popen([sys.executable, "-c", KILLED_RUN, database_url, redis_url])
    try:
        sleeping = wait_for(lambda: backends_sleeping_in_a_trigger(database_url), 120,
                            "the run's refresh inserting daily_metrics")
    finally:
        worker.kill()  # SIGKILL: no clean-up of any kind
    worker.wait()
    wait_for(lambda: not backends_alive(database_url, sleeping), 60, "the killed run's sessions gone")
    assert pending_days(database_url)["daily_metrics"] == pending["daily_metrics"]  # nothing of it dropped
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        assert not worker_running(conn)  # its lock went with its session

    execute(database_url, "DROP TRIGGER slow_rows ON dashboard.daily_metrics")
    assert run_change_refresh(database_url, redis_url).success
    assert not pending_days(database_url)
    assert_rollups_match_reference(database_url, HISTORY_START, HISTORY_END)


def test_a_change_made_while_a_pass_works_stays_pending_for_the_next_pass(database_url, redis_url, backfilled):
    cancel_a_delivered_order_of(database_url, MARCH_20)
    tick(database_url, redis_url, backfilled)
    before_insert_on_daily_metrics(database_url, "slow_rows", "PERFORM pg_sleep(0.2); RETURN NEW;")
    first_pass = threading.Thread(target=refresh_pending_now, args=(database_url, redis_url))
    first_pass.start()
    wait_for(lambda: backends_sleeping_in_a_trigger(database_url), 60, "the pass inserting daily_metrics")
    cancel_a_delivered_order_of(database_url, MARCH_20)  # the same day again, after the pass took its snapshot
    tick(database_url, redis_url, backfilled)
    first_pass.join()
    assert MARCH_20 in pending_days(database_url)["daily_metrics"]  # the newer version was not deleted

    execute(database_url, "DROP TRIGGER slow_rows ON dashboard.daily_metrics")
    refresh_pending_now(database_url, redis_url)
    assert not pending_days(database_url)
    assert_rollups_match_reference(database_url, HISTORY_START, HISTORY_END)


def test_one_run_works_at_a_time_and_the_sensor_leaves_the_changes_to_it(database_url, redis_url, backfilled):
    cancel_a_delivered_order_of(database_url, MARCH_20)
    with worker_lock(database_url, 1) as conn:
        assert worker_running(conn)
        with pytest.raises(TimeoutError):
            with worker_lock(database_url, 1):
                pass
        result = tick(database_url, redis_url, backfilled)
        assert not result.run_requests and not pending_days(database_url)  # the working run reads them
        _, marked = capture_and_mark(conn, None, 0, RedisResource(url=redis_url), logging.getLogger())
        pending = pending_days(database_url)
        assert marked and pending
    (request,) = tick(database_url, redis_url, result.cursor).run_requests  # the work is still pending
    assert request.job_name == "change_refresh"
    assert pending_days(database_url) == pending  # and the sensor read nothing twice


def test_a_run_waiting_to_start_is_left_to_work_and_a_run_whose_worker_is_gone_is_replaced(
        database_url, redis_url, backfilled):
    cancel_a_delivered_order_of(database_url, MARCH_20)
    with dg.instance_for_test() as instance:
        waiting = instance.add_run(dg.DagsterRun(job_name="change_refresh", run_id=str(uuid.uuid4()),
                                                status=dg.DagsterRunStatus.NOT_STARTED))
        cursor = tick(database_url, redis_url, backfilled, instance=instance).cursor
        assert pending_days(database_url)
        assert not tick(database_url, redis_url, cursor, instance=instance).run_requests  # it will see the work
        instance.delete_run(waiting.run_id)
        # started, without the worker lock, and silent: its process is gone
        gone = instance.add_run(dg.DagsterRun(job_name="change_refresh", run_id=str(uuid.uuid4()),
                                              status=dg.DagsterRunStatus.STARTED))
        (request,) = tick(database_url, redis_url, cursor, instance=instance).run_requests
        assert request.job_name == "change_refresh"
        assert instance.get_run_by_id(gone.run_id).status == dg.DagsterRunStatus.FAILURE


def test_a_day_that_does_not_reconcile_keeps_its_rows_and_stays_pending_while_the_rest_is_done(
        database_url, redis_url, backfilled):
    cancel_a_delivered_order_of(database_url, MARCH_20)
    execute(database_url, "DELETE FROM warranty_claims WHERE id = (SELECT id FROM warranty_claims"
            " WHERE created_at >= '2025-03-10' ORDER BY created_at LIMIT 1)")
    tick(database_url, redis_url, backfilled)
    pending = pending_days(database_url)
    before = rollup_rows(database_url, "daily_metrics", HISTORY_START, HISTORY_END)
    before_insert_on_daily_metrics(database_url, "inflate_revenue", "NEW.revenue := NEW.revenue + 1; RETURN NEW;")
    run = run_change_refresh(database_url, redis_url, raise_on_error=False)
    assert not run.success  # a failed blocking check fails the run
    checks = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in run.get_asset_check_evaluations()}
    assert checks[("daily_metrics", "reconciles_with_source")] is False
    assert checks[("daily_warranty", "reconciles_with_source")] is True
    assert rollup_rows(database_url, "daily_metrics", HISTORY_START, HISTORY_END).equals(before)
    left = pending_days(database_url)
    assert left["daily_metrics"] == pending["daily_metrics"] and "daily_warranty" not in left

    execute(database_url, "DROP TRIGGER inflate_revenue ON dashboard.daily_metrics")
    assert run_change_refresh(database_url, redis_url).success
    assert not pending_days(database_url)
    assert_rollups_match_reference(database_url, HISTORY_START, HISTORY_END)


def test_a_capture_restart_requests_a_full_refresh_run_that_refreshes_every_day(database_url, redis_url, backfilled,
                                                                                 monkeypatch):
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        capture.drop_slot(conn)
    cancel_a_delivered_order_of(database_url, MARCH_20)  # while nothing captured
    (request,) = tick(database_url, redis_url, backfilled).run_requests
    assert request.job_name == "capture_full_refresh" and "missing" in request.tags[RESTART_TAG]
    assert request.tags[RANGE_START] == HISTORY_START.isoformat()
    monkeypatch.setenv(settings.DATABASE_URL, database_url)
    monkeypatch.setenv(settings.REDIS_URL, redis_url)
    run = defs.resolve_job_def(request.job_name).execute_in_process(
        tags=request.tags, asset_selection=request.asset_selection, instance=dg.DagsterInstance.ephemeral())
    assert run.success
    assert_rollups_match_reference(database_url, HISTORY_START, HISTORY_END)


def test_a_chart_whose_table_another_run_replaces_stays_pending_and_holds_up_nothing(
        database_url, redis_url, backfilled):
    cancel_a_delivered_order_of(database_url, MARCH_20)
    tick(database_url, redis_url, backfilled)
    assert "product_mix_30d" in pending_organizations(database_url)
    with psycopg.connect(libpq_url(database_url)) as scheduled_run:  # a scheduled run replacing the whole table
        scheduled_run.execute("SELECT pg_advisory_xact_lock(hashtext('dashboard.product_mix_30d'))")
        first_pass = threading.Thread(target=refresh_pending_now, args=(database_url, redis_url), daemon=True)
        first_pass.start()
        first_pass.join(60)
        assert not first_pass.is_alive(), "the pass waited for the other run's table"
        assert not pending_days(database_url)  # the rollups, the snapshot and the cache went ahead
        assert set(pending_organizations(database_url)) == {"product_mix_30d"}
    refresh_pending_now(database_url, redis_url)  # the next pass after that run
    assert not pending_organizations(database_url)


def test_a_pass_refreshes_the_undated_assets_of_the_organizations_pending_longest_first(
        database_url, redis_url, backfilled, monkeypatch):
    monkeypatch.setattr(change_refresh, "ORGANIZATIONS_PER_PASS", 1)
    cursor = backfilled
    for timezone in ("Australia/Perth", "Australia/Sydney"):
        cancel_a_delivered_order_of(database_url, MARCH_20, timezone)
        cursor = tick(database_url, redis_url, cursor).cursor
    perth, sydney = organization_in(database_url, "Australia/Perth"), organization_in(database_url, "Australia/Sydney")
    assert set(pending_organizations(database_url)["dashboard_cache"]) == {perth, sydney}
    refresh_pending_now(database_url, redis_url)
    assert not pending_days(database_url)  # every changed day in one pass
    assert {asset: orgs for asset, orgs in pending_organizations(database_url).items() if orgs} == {
        asset: {sydney} for asset in ("current_state", "dashboard_cache", "product_mix_30d")}
    refresh_pending_now(database_url, redis_url)
    assert not pending_organizations(database_url)
    assert_rollups_match_reference(database_url, HISTORY_START, HISTORY_END)

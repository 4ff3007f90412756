"""Ranges refreshed in batches: one transaction per batch, a failed or killed
batch done again alone, and writers of other days of a rollup that never wait
for a backfill (only for the one batch that holds their day)."""

import datetime as dt
import subprocess
import sys
import threading
import time

import psycopg
import pytest

from dashboard_assets import settings
from dashboard_assets.db import libpq_url
from dashboard_assets.rollups.assets import DAILY_ROLLUPS, daily_rollup_assets
from dashboard_assets.rollups.refresh import day_batches, refresh
from dashboard_assets_tests.conftest import HISTORY_END, HISTORY_START
from dashboard_assets_tests.helpers import (
    assert_rollups_match_reference,
    backends_alive,
    backends_sleeping_in_a_trigger,
    before_insert_on_daily_metrics,
    execute,
    materialize_days,
    refresh_what_the_sensor_requests,
    rollup_rows,
    tick,
)

DAILY_METRICS = DAILY_ROLLUPS[0]
DAILY_METRICS_ASSET = daily_rollup_assets[0]
ORGANIZATIONS = 5  # in the generated data
TEN_DAYS = ORGANIZATIONS * 10  # organization-days of a batch of ten days
FAILING_DAY = dt.date(2025, 2, 15)


def _logged_batches(database_url: str, resume_key: str) -> list[tuple[dt.date, dt.date]]:
    with psycopg.connect(libpq_url(database_url)) as conn:
        return conn.execute("SELECT start_date, end_date FROM dashboard.refresh_log"
                            " WHERE rollup = 'daily_metrics' AND resume_key = %s ORDER BY start_date",
                            (resume_key,)).fetchall()


def _backfill(database_url: str, resume_key: str, **options):
    return refresh(DAILY_METRICS, source_url=database_url, target_url=database_url, start=HISTORY_START,
                   end=HISTORY_END, resume_key=resume_key, organization_days_per_batch=TEN_DAYS, **options)


def _on_inserts_of(database_url: str, day: dt.date, trigger: str, statement: str) -> None:
    """A real trigger on the rollup table that runs `statement` for every row of `day`."""
    before_insert_on_daily_metrics(database_url, trigger, f"""
        IF NEW.metric_date = DATE '{day.isoformat()}' THEN {statement}; END IF;
        RETURN NEW;""")


def _fail_inserts_of(database_url: str, day: dt.date) -> None:
    _on_inserts_of(database_url, day, "fail_day", "RAISE EXCEPTION 'injected failure'")


def _backfilled_then_changed(database_url: str):
    """Backfill daily_metrics, then change every order: the rows a later
    backfill must replace, as they were before it."""
    assert materialize_days(database_url, HISTORY_START, HISTORY_END, assets=[DAILY_METRICS_ASSET]).success
    execute(database_url, "UPDATE orders SET total_amount = total_amount + 7")
    return rollup_rows(database_url, "daily_metrics", HISTORY_START, HISTORY_END)


def _assert_resumed_after_the_committed_batches(database_url: str, before, resume_key: str, trigger: str) -> None:
    """After a backfill stopped at FAILING_DAY: the batches before it are
    committed, the days after them unchanged; without the trigger the same
    backfill skips the committed batches and every day equals the reference."""
    committed = _logged_batches(database_url, resume_key)
    assert committed and all(end < FAILING_DAY for _, end in committed)
    keys = ["organization_id", "metric_date"]
    kept = rollup_rows(database_url, "daily_metrics", committed[-1][1] + dt.timedelta(days=1), HISTORY_END)
    expected = before[before.metric_date > committed[-1][1]]
    assert kept.sort_values(keys).reset_index(drop=True).equals(expected.sort_values(keys).reset_index(drop=True))

    execute(database_url, f"DROP TRIGGER {trigger} ON dashboard.daily_metrics")
    result = _backfill(database_url, resume_key, concurrent_batches=1)
    assert result.committed and result.resumed_batches == len(committed)
    assert _logged_batches(database_url, resume_key) == day_batches(HISTORY_START, HISTORY_END, 10)
    assert_rollups_match_reference(database_url, HISTORY_START, HISTORY_END, rollups={"daily_metrics"})


# A backfill of daily_metrics in a process of its own, one batch at a time:
# python -c KILLED_BACKFILL <database url> <organization-days per batch>.
KILLED_BACKFILL = """
import sys
from dashboard_assets.rollups.assets import DAILY_ROLLUPS
from dashboard_assets.rollups.refresh import refresh
from dashboard_assets_tests.conftest import HISTORY_END, HISTORY_START
refresh(DAILY_ROLLUPS[0], source_url=sys.argv[1], target_url=sys.argv[1], start=HISTORY_START, end=HISTORY_END,
        resume_key="killed", organization_days_per_batch=int(sys.argv[2]), concurrent_batches=1)
"""


def test_a_range_is_cut_into_consecutive_batches_of_whole_days():
    assert day_batches(dt.date(2025, 1, 1), dt.date(2025, 1, 25), 10) == [
        (dt.date(2025, 1, 1), dt.date(2025, 1, 10)),
        (dt.date(2025, 1, 11), dt.date(2025, 1, 20)),
        (dt.date(2025, 1, 21), dt.date(2025, 1, 25)),
    ]
    assert day_batches(dt.date(2025, 1, 1), dt.date(2025, 1, 1), 10) == [(dt.date(2025, 1, 1),) * 2]


def test_a_range_larger_than_a_batch_commits_batch_by_batch_and_equals_the_reference(database_url):
    result = _backfill(database_url, "batched")
    days = (HISTORY_END - HISTORY_START).days + 1
    assert result.committed and result.batches == -(-days // 10)
    logged = _logged_batches(database_url, "batched")
    assert logged == day_batches(HISTORY_START, HISTORY_END, 10)  # one transaction per batch, none larger
    assert_rollups_match_reference(database_url, HISTORY_START, HISTORY_END, rollups={"daily_metrics"})


def test_a_failed_batch_is_done_again_alone_and_the_range_converges(database_url):
    """The batches before the failing one stay committed, the failing one
    and those after it keep their previous rows; the same run done again
    (same resume key) skips the committed batches."""
    before = _backfilled_then_changed(database_url)
    _fail_inserts_of(database_url, FAILING_DAY)
    with pytest.raises(psycopg.errors.RaiseException):
        _backfill(database_url, "attempt", concurrent_batches=1)
    _assert_resumed_after_the_committed_batches(database_url, before, "attempt", "fail_day")


def test_a_backfill_killed_inside_a_batch_keeps_that_batch_s_days_and_resumes_after_the_committed_ones(
        database_url):
    """The process is killed (SIGKILL) while its batch's INSERT runs: the
    server rolls that transaction back when it finds its client gone, so the
    batch's days keep their previous rows and the batches before it stay
    committed; the backfill done again skips those."""
    before = _backfilled_then_changed(database_url)
    _on_inserts_of(database_url, FAILING_DAY, "slow_day", "PERFORM pg_sleep(0.5)")
    worker = subprocess.Popen([sys.executable, "-c", KILLED_BACKFILL, database_url, str(TEN_DAYS)])
    try:
        deadline = time.monotonic() + 120
        while not (sleeping := backends_sleeping_in_a_trigger(database_url)):
            assert worker.poll() is None and time.monotonic() < deadline, "the backfill never reached its batch"
            time.sleep(0.05)
    finally:
        worker.kill()
    worker.wait()
    deadline = time.monotonic() + 60
    while backends_alive(database_url, sleeping):  # each ends when it finds its client gone
        assert time.monotonic() < deadline, "the killed backfill's session outlived its process"
        time.sleep(0.1)

    _assert_resumed_after_the_committed_batches(database_url, before, "killed", "slow_day")


def test_the_batch_size_comes_from_the_operating_contract(database_url, monkeypatch):
    monkeypatch.setenv(settings.BATCH_ORGANIZATION_DAYS, str(TEN_DAYS * 3))
    monkeypatch.setenv(settings.CONCURRENT_BATCHES, "3")
    result = materialize_days(database_url, HISTORY_START, HISTORY_END, assets=[DAILY_METRICS_ASSET])
    assert result.success
    (materialization,) = [m for m in result.asset_materializations_for_node("daily_metrics")][:1]
    assert materialization.metadata["batches"].value == -(-((HISTORY_END - HISTORY_START).days + 1) // 30)
    monkeypatch.setenv(settings.BATCH_ORGANIZATION_DAYS, "ten")
    with pytest.raises(settings.SettingsError, match=settings.BATCH_ORGANIZATION_DAYS):
        settings.batch_organization_days()


def test_a_change_is_refreshed_while_a_backfill_of_the_same_rollup_is_held_open(database_url, redis_url):
    """A backfill stuck in its first batch (a row of January held by another
    transaction) does not hold up the refresh of a change in April; both
    end, and every day equals the reference."""
    assert materialize_days(database_url, HISTORY_START, HISTORY_END, assets=[DAILY_METRICS_ASSET]).success
    cursor = tick(database_url, redis_url, None).cursor
    outcome: list = []
    with psycopg.connect(libpq_url(database_url)) as blocker:
        blocker.execute("SELECT 1 FROM dashboard.daily_metrics WHERE metric_date = '2025-01-05' LIMIT 1 FOR UPDATE")
        backfill = threading.Thread(target=lambda: outcome.append(_backfill(database_url, "held")))
        backfill.start()
        time.sleep(1)
        execute(database_url, "UPDATE orders SET status = 'delivered', total_amount = total_amount + 100"
                               " WHERE id = (SELECT id FROM orders WHERE created_at >= '2025-04-05'"
                               " AND created_at < '2025-04-06' AND status <> 'delivered' ORDER BY id LIMIT 1)")
        change = threading.Thread(target=refresh_what_the_sensor_requests, args=(database_url, redis_url, cursor))
        change.start()
        change.join(timeout=30)
        refreshed_while_held = not change.is_alive()
        assert backfill.is_alive()  # still held in January
        blocker.rollback()
    change.join()
    assert refreshed_while_held
    backfill.join(timeout=120)
    assert outcome and outcome[0].committed
    assert_rollups_match_reference(database_url, HISTORY_START, HISTORY_END, rollups={"daily_metrics"})


def test_a_re_executed_run_resumes_after_the_batches_its_first_attempt_committed(database_url, monkeypatch):
    """Dagster gives a run's re-executions and retries the first run's id as
    their root run id: the asset resumes under it."""
    monkeypatch.setenv(settings.BATCH_ORGANIZATION_DAYS, str(TEN_DAYS))
    monkeypatch.setenv(settings.CONCURRENT_BATCHES, "1")
    _fail_inserts_of(database_url, FAILING_DAY)
    first = materialize_days(database_url, HISTORY_START, HISTORY_END, assets=[DAILY_METRICS_ASSET],
                             raise_on_error=False)
    assert not first.success
    committed_by_first = len(_logged_batches(database_url, first.run_id))
    execute(database_url, "DROP TRIGGER fail_day ON dashboard.daily_metrics")
    again = materialize_days(database_url, HISTORY_START, HISTORY_END, assets=[DAILY_METRICS_ASSET],
                             tags={"dagster/root_run_id": first.run_id})
    (materialization, *_) = again.asset_materializations_for_node("daily_metrics")
    assert materialization.metadata["batches_resumed"].value == committed_by_first > 0
    assert_rollups_match_reference(database_url, HISTORY_START, HISTORY_END, rollups={"daily_metrics"})

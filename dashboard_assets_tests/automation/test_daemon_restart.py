"""The real daemon (`dagster-daemon run` on the instance as dagster.yaml ships
it) under a steady stream of writes, stopped in the middle of it and started
again: nothing is lost. Once the stream ends, the pipeline goes idle by itself
(nothing pending, no change refresh run queued or running) and every rollup
value equals the pandas reference."""

import datetime as dt
import os
import random
import subprocess
import threading
import time

import dagster as dg
import psycopg

from dashboard_assets.db import libpq_url
from dashboard_assets_tests.conftest import HISTORY_END, HISTORY_START, PROJECT_ROOT
from dashboard_assets_tests.helpers import (
    assert_rollups_match_reference,
    materialize_days,
    pending_days,
    pending_organizations,
    stop_process_group,
    wait_for,
)

STREAM_SECONDS, STOPPED_AT, STARTED_AGAIN_AT = 24, 8, 12
RATE = 5  # transactions a second, one commit each
IDLE_WITHIN_SECONDS = 180
# Small ERP transactions on the backfilled days, each on a random one.
STREAM = (
    "UPDATE orders SET status = CASE WHEN status = 'delivered' THEN 'confirmed' ELSE 'delivered' END,"
    " updated_at = now() WHERE id = (SELECT id FROM orders WHERE created_at >= %(day)s ORDER BY created_at LIMIT 1)",
    "INSERT INTO orders (id, organization_id, customer_id, status, total_amount, created_at, updated_at)"
    " SELECT gen_random_uuid(), organization_id, customer_id, 'delivered', 1200, %(day)s, %(day)s"
    " FROM orders WHERE created_at >= %(day)s ORDER BY created_at LIMIT 1",
    "DELETE FROM order_items WHERE id = (SELECT i.id FROM order_items i JOIN orders o"
    " ON o.organization_id = i.organization_id AND o.id = i.order_id WHERE o.created_at >= %(day)s"
    " ORDER BY o.created_at LIMIT 1)",
    "UPDATE opportunities SET stage = 'won', probability = 100, updated_at = now() WHERE id = (SELECT id"
    " FROM opportunities WHERE created_at >= %(day)s AND stage <> 'won' ORDER BY created_at LIMIT 1)",
    "DELETE FROM warranty_claims WHERE id = (SELECT id FROM warranty_claims WHERE created_at >= %(day)s"
    " ORDER BY created_at LIMIT 1)",
)


def _start_daemon(log) -> subprocess.Popen:
    return subprocess.Popen([str(PROJECT_ROOT / ".venv" / "bin" / "dagster-daemon"), "run", "-w", "workspace.yaml"],
                            cwd=PROJECT_ROOT, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stream(database_url: str, stop: threading.Event, committed: list[int]) -> None:
    rng = random.Random(5)
    days = (HISTORY_END - HISTORY_START).days
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        began = time.monotonic()
        while not stop.is_set():
            day = HISTORY_START + dt.timedelta(days=rng.randint(0, days - 1))
            conn.execute(rng.choice(STREAM), {"day": day})
            committed[0] += 1
            stop.wait(max(0.0, began + committed[0] / RATE - time.monotonic()))


def test_a_daemon_stopped_and_started_mid_stream_loses_nothing(database_url, dagster_home, tmp_path):
    assert materialize_days(database_url, HISTORY_START, HISTORY_END).success
    log = (tmp_path / "daemon.log").open("wb")
    daemon = _start_daemon(log)
    stop, committed = threading.Event(), [0]
    stream = threading.Thread(target=_stream, args=(database_url, stop, committed))
    try:
        wait_for(lambda: _ticked(dagster_home), 120, "the change sensor's first tick")
        began = time.monotonic()
        stream.start()
        time.sleep(STOPPED_AT)
        stop_process_group(daemon, timeout=30)  # in the middle of the stream
        time.sleep(STARTED_AGAIN_AT - STOPPED_AT)
        daemon = _start_daemon(log)
        time.sleep(max(0.0, STREAM_SECONDS - (time.monotonic() - began)))
        stop.set()
        stream.join()
        wait_for(lambda: _idle(database_url), IDLE_WITHIN_SECONDS, "the pipeline idle after the stream")
    finally:
        stop.set()
        stop_process_group(daemon, timeout=30)
        log.close()
    assert committed[0] >= RATE * (STREAM_SECONDS - 2)
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_run_records(dg.RunsFilter(job_name="change_refresh"))
    assert 1 <= len(runs) <= 6  # a few runs, not one per change
    assert_rollups_match_reference(database_url, HISTORY_START, HISTORY_END)


def _ticked(dagster_home) -> bool:
    with dg.DagsterInstance.get() as instance:
        return any(state.instigator_name == "source_changes_sensor" and
                   instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1)
                   for state in instance.all_instigator_state())


def _idle(database_url: str) -> bool:
    if pending_days(database_url) or pending_organizations(database_url):
        return False
    with dg.DagsterInstance.get() as instance:
        return not instance.get_run_records(dg.RunsFilter(job_name="change_refresh", statuses=[
            dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
            dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]))

"""The change sensor: committed source changes are marked pending for the
change refresh within a second, and the change refresh is kept running while
anything is pending; a capture restart or a TRUNCATE refreshes everything."""

import datetime as dt
import time

import dagster as dg

from dashboard_assets.automation.change_refresh import JOB_NAME, change_refresh_job, worker_running
from dashboard_assets.automation.changes import FULL_REFRESH, FullRefresh, capture_and_mark, full_refresh
from dashboard_assets.db import autocommit_connection
from dashboard_assets.partitions import partition_days
from dashboard_assets.replica import source_position_tag
from dashboard_assets.resources import PostgresResource, RedisResource
from dashboard_assets.rollups.assets import (
    CURRENT_STATE,
    DAILY_ROLLUPS,
    RECONCILES_WITH_SOURCE,
    VALUES_ARE_POSSIBLE,
)

# Dagster's sensor daemon looks at its sensors every 5 s, and starts a tick when
# the previous one has finished and began at least MINIMUM_INTERVAL_SECONDS
# before (just under the daemon's 5 s, so that no look is skipped). A tick
# that finds nothing looks again for WAIT_FOR_CHANGES_SECONDS, so that a
# change committed while it waits is seen within a tenth of a second instead
# of at the next tick.
MINIMUM_INTERVAL_SECONDS = 4
WAIT_FOR_CHANGES_SECONDS = 4.0
RESTART_TAG = "dashboard/capture_restart"
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
ROLLUP_NAMES = {rollup.name for rollup in (*DAILY_ROLLUPS, CURRENT_STATE)}
# A started change refresh run that does not hold the worker lock and has
# logged nothing for this long has lost its worker (a run takes the lock as
# its step begins, and logs its end as soon as it lets go of it).
SILENT_WORKER_SECONDS = 30
# After a change refresh run failed, the next one is requested this much later.
FAILED_RUN_BACKOFF_SECONDS = 30
_WAITING = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING]
_IN_FLIGHT = [*_WAITING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]

full_refresh_job = dg.define_asset_job(
    "capture_full_refresh",
    selection=dg.AssetSelection.assets(*FULL_REFRESH),
    description="Every day of every organization, requested by source_changes_sensor when change capture "
                "restarted or a source table was truncated.",
)


def build_source_changes_sensor(wait_seconds: float = WAIT_FOR_CHANGES_SECONDS) -> dg.SensorDefinition:
    """The change sensor, waiting up to `wait_seconds` for changes in a tick."""

    @dg.sensor(
        name="source_changes_sensor",
        minimum_interval_seconds=MINIMUM_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        jobs=[change_refresh_job, full_refresh_job],
    )
    def source_changes_sensor(
        context: dg.SensorEvaluationContext, postgres: PostgresResource, redis: RedisResource
    ) -> dg.SensorResult:
        """Reads the committed source changes from the replication slot after the stored WAL position and
        marks pending, in the same transaction, the (rollup, organization, day) they affect and the changed
        organizations' snapshot, warmed cache and, when their inputs changed, funnel and product mix. Then
        requests a change_refresh run when work is pending and none is running or waiting to start: at
        most one works and one waits, whatever the rate of changes. Pushes the changed organizations'
        activity feed. While a change_refresh run works, it reads the changes itself and the tick only
        skips. The slot is read on the primary only. When capture had to restart (slot missing, lost or
        moved) or a source table was truncated it requests a refresh of every day of every organization;
        when capture is broken the tick fails and says what to fix."""
        with autocommit_connection(postgres.database_url) as conn:
            if worker_running(conn):  # it reads the changes itself while it works
                return dg.SensorResult(skip_reason="a change_refresh run reads the changes", cursor=context.cursor)
            changes, marked = capture_and_mark(conn, context.cursor, wait_seconds, redis, context.log)
            pending = _anything_pending(conn)
        if changes.restart_reason:
            context.log.warning(f"change capture restarted: {changes.restart_reason}; "
                                "refreshing every day of every organization")
        run_requests = []
        if full := full_refresh(changes):
            first_day, last_day = partition_days()
            run_requests.append(_full_refresh_request(full, first_day, last_day, changes.position,
                                                      f"changes:{context.cursor or 'start'}:{changes.position}",
                                                      changes.restart_reason))
        if pending and (why_not := _change_refresh_waits(context.instance)) is None:
            run_requests.append(dg.RunRequest(job_name=JOB_NAME, run_key=f"pending:{changes.position}"))
        elif pending:
            context.log.debug(f"pending work left to the change refresh: {why_not}")
        if marked:
            context.log.info(f"{marked} (rollup, organization, day) marked pending for "
                             f"{len(changes.activity)} changed organizations")
        if not run_requests and not changes.activity:
            return dg.SensorResult(skip_reason="no source changes", cursor=changes.position)
        return dg.SensorResult(run_requests=run_requests, cursor=changes.position)

    return source_changes_sensor


def _anything_pending(conn) -> bool:
    return conn.execute("SELECT EXISTS (SELECT FROM dashboard.pending_days)"
                        " OR EXISTS (SELECT FROM dashboard.pending_organizations)").fetchone()[0]


def _change_refresh_waits(instance: dg.DagsterInstance) -> str | None:
    """Why no change refresh run is to be requested now, though work is
    pending and no run holds the worker lock (None: request one). A started
    run without the lock that has logged nothing for a while has lost its
    worker (killed): it is marked failed."""
    now = time.time()
    for run_record in instance.get_run_records(dg.RunsFilter(job_name=JOB_NAME, statuses=_IN_FLIGHT)):
        run = run_record.dagster_run
        if run.status in _WAITING:
            return f"run {run.run_id} waits to start"
        (last,) = instance.get_records_for_run(run.run_id, ascending=False, limit=1).records or (None,)
        if last is not None and now - last.event_log_entry.timestamp < SILENT_WORKER_SECONDS:
            return f"run {run.run_id} is starting or ending"
        instance.report_run_failed(run, f"its worker holds no change refresh lock and has logged nothing for "
                                        f"{SILENT_WORKER_SECONDS} s: its process is gone")
        return None  # replaced at once
    latest = instance.get_run_records(dg.RunsFilter(job_name=JOB_NAME), limit=1)
    if latest and latest[0].dagster_run.status == dg.DagsterRunStatus.FAILURE \
            and now - (latest[0].end_time or now) < FAILED_RUN_BACKOFF_SECONDS:
        return f"run {latest[0].dagster_run.run_id} failed less than {FAILED_RUN_BACKOFF_SECONDS} s ago"
    return None


def _full_refresh_request(full: FullRefresh, first_day: dt.date, last_day: dt.date, position: str, run_key: str,
                          restart_reason: str | None) -> dg.RunRequest:
    """The ranged run over every day of every organization (a replica source
    must replay `position` before the run reads), with the checks its rollups
    report (the partition freshness checks run on their own schedule)."""
    tags = source_position_tag(position) | {RANGE_START: first_day.isoformat(), RANGE_END: last_day.isoformat()}
    if restart_reason:
        tags[RESTART_TAG] = restart_reason
    return dg.RunRequest(
        run_key=run_key,
        job_name=full_refresh_job.name,
        asset_selection=[dg.AssetKey(name) for name in full.assets],
        asset_check_keys=[dg.AssetCheckKey(dg.AssetKey(name), check) for name in full.assets
                          if name in ROLLUP_NAMES for check in (RECONCILES_WITH_SOURCE, VALUES_ARE_POSSIBLE)],
        tags=tags,
    )


source_changes_sensor = build_source_changes_sensor()

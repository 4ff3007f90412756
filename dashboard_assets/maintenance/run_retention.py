"""Run retention: the Dagster instance keeps every run and its events, and a
change refresh under a steady stream of writes, with the schedules, would
grow it without end. Each night the finished runs older than
DASHBOARD_RUN_RETENTION_DAYS are deleted with their events, except a run
that still holds the latest materialization of an asset or a partition, or
the latest evaluation of a check: what the UI shows of every asset and
partition (materialized or not, its latest materialization, its checks)
stays as it was. Ticks are purged by the daemon (dagster.yaml's `retention:`).
"""

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

import dagster as dg

from dashboard_assets import settings

# Runs looked at by one retention run, oldest first (the rest wait for the next night).
RUNS_PER_PASS = 5_000
_FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


@dataclass
class RetentionResult:
    """Runs deleted, and runs kept because they hold a latest event."""

    deleted: list[str]
    kept: list[str]


def purge_runs(instance: dg.DagsterInstance, ended_before: dt.datetime, limit: int = RUNS_PER_PASS) -> RetentionResult:
    """Delete the finished runs created before `ended_before` that hold no
    latest materialization or check evaluation, with their events."""
    result = RetentionResult([], [])
    records = instance.get_run_records(dg.RunsFilter(statuses=_FINISHED, created_before=ended_before),
                                       limit=limit, ascending=True)
    for record in records:
        run_id = record.dagster_run.run_id
        if record.end_time is not None and record.end_time >= ended_before.timestamp():
            continue
        if _holds_a_latest_event(instance, run_id):
            result.kept.append(run_id)
        else:
            instance.delete_run(run_id)
            result.deleted.append(run_id)
    return result


def _holds_a_latest_event(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether a materialization or check evaluation of the run is still the
    latest of its asset, partition or check."""
    partitions: dict[dg.AssetKey, dict[str | None, set[int]]] = defaultdict(lambda: defaultdict(set))
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records:
        event = record.event_log_entry.dagster_event
        partitions[event.asset_key][event.partition].add(record.storage_id)
    for key, by_partition in partitions.items():
        named = {partition for partition in by_partition if partition is not None}
        if named:
            latest = instance.event_log_storage.get_latest_storage_id_by_partition(
                key, dg.DagsterEventType.ASSET_MATERIALIZATION, partitions=named)
            if any(latest.get(partition) in ids for partition, ids in by_partition.items()):
                return True
        if None in by_partition:
            (newest,) = instance.fetch_materializations(key, limit=1).records
            if newest.storage_id in by_partition[None]:
                return True
    checks = {dg.AssetCheckKey(event.dagster_event.asset_check_evaluation_data.asset_key,
                               event.dagster_event.asset_check_evaluation_data.check_name)
              for event in (r.event_log_entry for r in instance.get_records_for_run(
                  run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records)}
    latest_checks = instance.event_log_storage.get_latest_asset_check_execution_by_key(list(checks)) if checks else {}
    return any(execution.run_id == run_id for execution in latest_checks.values())


@dg.op
def purge_old_runs(context: dg.OpExecutionContext) -> None:
    """Deletes the finished runs older than DASHBOARD_RUN_RETENTION_DAYS with their events, keeping every
    run that holds an asset's, a partition's or a check's latest event."""
    days = settings.run_retention_days()
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    result = purge_runs(context.instance, cutoff)
    context.log.info(f"runs ended over {days} days ago: {len(result.deleted)} deleted, {len(result.kept)} kept "
                     "for the latest materializations or checks they hold")


@dg.job(
    name="run_retention",
    description="Deletes the finished runs older than DASHBOARD_RUN_RETENTION_DAYS (default "
                f"{settings.DEFAULT_RUN_RETENTION_DAYS}) with their events, except those that hold an asset's, a "
                "partition's or a check's latest event, so that the instance stays bounded.",
)
def run_retention_job():
    purge_old_runs()


run_retention_schedule = dg.ScheduleDefinition(
    name="run_retention_nightly",
    cron_schedule="45 3 * * *",
    job=run_retention_job,
    execution_timezone=settings.reporting_timezone(),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="03:45 every night: old runs and their events deleted (see the run_retention job).",
)

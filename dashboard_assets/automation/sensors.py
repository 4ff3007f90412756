"""The change sensor: committed source changes reach the rollups and Redis in
seconds, refreshing only the days and organizations that changed."""

import datetime as dt

import dagster as dg

from dashboard_assets import cache
from dashboard_assets.automation.capture import read_changes
from dashboard_assets.automation.changes import (
    CAPTURED_COLUMNS,
    FULL_REFRESH,
    Refresh,
    activity_pages,
    plan_refreshes,
    record,
)
from dashboard_assets.db import autocommit_connection
from dashboard_assets.partitions import daily_partitions_def
from dashboard_assets.replica import source_position_tag
from dashboard_assets.resources import PostgresResource, RedisResource
from dashboard_assets.rollups.assets import (
    CURRENT_STATE,
    DAILY_ROLLUPS,
    RECONCILES_WITH_SOURCE,
    VALUES_ARE_POSSIBLE,
)
from dashboard_assets.scope import organizations_tag

ACTIVITY_PAGE_SIZE = 20
ACTIVITY_PAGES = 5
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


def build_source_changes_sensor(wait_seconds: float = WAIT_FOR_CHANGES_SECONDS) -> dg.SensorDefinition:
    """The change sensor, waiting up to `wait_seconds` for changes in a tick."""

    @dg.sensor(
        name="source_changes_sensor",
        minimum_interval_seconds=MINIMUM_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        target=dg.AssetSelection.assets(*FULL_REFRESH),
    )
    def source_changes_sensor(
        context: dg.SensorEvaluationContext, postgres: PostgresResource, redis: RedisResource
    ) -> dg.SensorResult:
        """Reads the committed source changes from the replication slot after the stored WAL position,
        turns them into the (rollup, organization, day) they affect and requests one ranged run per
        contiguous range of days, narrowed to the organizations changed in it, with the snapshot, the
        cache warming of those organizations and, when their inputs changed, the funnel and the product
        mix. Each run carries the WAL position the changes were read up to (`dashboard/source_lsn`),
        which a replica source replays before the run reads it. Pushes those organizations' activity
        feed. The slot is read on the primary only. When capture had to restart (slot missing, lost
        or moved) it refreshes every day of every organization; when capture is broken the tick fails
        and says what to fix."""
        first_day = dt.date.fromisoformat(daily_partitions_def.get_first_partition_key())
        last_day = dt.date.fromisoformat(daily_partitions_def.get_last_partition_key())
        with autocommit_connection(postgres.database_url) as conn:
            changes = read_changes(conn, context.cursor, CAPTURED_COLUMNS, wait_seconds)
            affected = record(conn, changes, first_day, last_day)
        if changes.restart_reason:
            context.log.warning(f"change capture restarted: {changes.restart_reason}; "
                                "refreshing every day of every organization")
        refreshes = plan_refreshes(changes, affected, first_day, last_day)
        if not refreshes:
            return dg.SensorResult(skip_reason="no source changes", cursor=changes.position)
        after = context.cursor or "start"
        run_requests = [_run_request(refresh, changes.position, f"changes:{after}:{changes.position}",
                                     changes.restart_reason) for refresh in refreshes]
        organizations = sorted(changes.activity)
        context.log.info(f"{len(run_requests)} runs for {len(organizations)} changed organizations")
        if not organizations:
            return dg.SensorResult(run_requests=run_requests, cursor=changes.position)
        try:
            pushed = push_activity(postgres.database_url, redis.cache(), organizations)
            context.log.info(f"activity feed: {pushed} pages for {len(organizations)} organizations")
        except cache.UNAVAILABLE as error:
            context.log.warning(f"activity feed not pushed, Redis unavailable: {error}")
        return dg.SensorResult(run_requests=run_requests, cursor=changes.position)

    return source_changes_sensor


def _run_request(refresh: Refresh, position: str, run_key: str, restart_reason: str | None) -> dg.RunRequest:
    """The run of a refresh of the changes read up to `position` (a replica
    source must replay it before the run reads), with the checks its rollups
    report (the partition freshness checks run on their own schedule)."""
    tags = organizations_tag(refresh.organizations or ()) | source_position_tag(position)
    if refresh.days:
        tags |= {RANGE_START: refresh.days[0].isoformat(), RANGE_END: refresh.days[1].isoformat()}
        run_key += f":{refresh.days[0]}:{refresh.days[1]}"
    if restart_reason:
        tags[RESTART_TAG] = restart_reason
    return dg.RunRequest(
        run_key=run_key,
        asset_selection=[dg.AssetKey(name) for name in refresh.assets],
        asset_check_keys=[dg.AssetCheckKey(dg.AssetKey(name), check) for name in refresh.assets
                          if name in ROLLUP_NAMES for check in (RECONCILES_WITH_SOURCE, VALUES_ARE_POSSIBLE)],
        tags=tags,
    )


def push_activity(database_url: str, store: cache.DashboardCache, organizations: list[str]) -> int:
    """Write `dashboard:activity:{org}:{page}` for each organization; returns pages written."""
    entries = [
        cache.Entry(org, store.keys.activity(org, number), {"organization_id": org, "page": number, "items": items},
                    cache.TTL_SECONDS["activity"])
        for org, pages in activity_pages(database_url, organizations, ACTIVITY_PAGE_SIZE, ACTIVITY_PAGES).items()
        for number, items in enumerate(pages, start=1)
    ]
    return store.write(entries)


source_changes_sensor = build_source_changes_sensor()

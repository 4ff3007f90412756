"""The change sensor: source changes reach the rollups and Redis within a
minute, touching only the days and organizations that changed."""

import datetime as dt

import dagster as dg
import redis as redis_lib

from dashboard_assets import cache
from dashboard_assets.automation.changes import (
    ALWAYS_REFRESHED,
    DEPENDENTS_BY_TABLE,
    ROLLUPS_BY_TABLE,
    activity_pages,
    plan_refreshes,
    prune_consumed,
    read_pending,
)
from dashboard_assets.partitions import daily_partitions_def
from dashboard_assets.resources import PostgresResource, RedisResource
from dashboard_assets.scope import organizations_tag

ACTIVITY_PAGE_SIZE = 20
ACTIVITY_PAGES = 5
# Processed change-log rows are kept this long for the activity feed.
CHANGE_LOG_RETENTION = dt.timedelta(days=7)
_SENSOR_TARGETS = sorted(
    {r for rs in ROLLUPS_BY_TABLE.values() for r in rs}
    | {d for ds in DEPENDENTS_BY_TABLE.values() for d in ds}
    | set(ALWAYS_REFRESHED)
)


@dg.sensor(
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    target=dg.AssetSelection.assets(*_SENSOR_TARGETS),
)
def source_changes_sensor(
    context: dg.SensorEvaluationContext, postgres: PostgresResource, redis: RedisResource
) -> dg.SensorResult:
    """Reads dashboard.change_log from a durable cursor (a transaction horizon), coalesces the changed
    days into contiguous ranges and requests one ranged run per range for the rollups changed in it,
    with the snapshot, the cache warming of the changed organizations (invalidated first) and, when their
    inputs changed, the funnel and the product mix. Pushes the activity feed of those organizations and
    prunes change-log rows processed by earlier ticks once they are a week old."""
    after = context.cursor or "0"
    pending = read_pending(postgres.database_url, after)
    if not pending.tables:
        return dg.SensorResult(skip_reason="no source changes", cursor=pending.horizon)

    organizations = sorted(pending.organizations)
    tags = organizations_tag(organizations)
    first_day = dt.date.fromisoformat(daily_partitions_def.get_first_partition_key())
    last_day = dt.date.fromisoformat(daily_partitions_def.get_last_partition_key())
    refreshes = plan_refreshes(pending, first_day, last_day)
    run_requests = [
        dg.RunRequest(
            run_key=f"changes:{after}:{pending.horizon}:{refresh.start}:{refresh.end}",
            asset_selection=[dg.AssetKey(name) for name in refresh.assets],
            tags={
                **tags,
                "dagster/asset_partition_range_start": refresh.start.isoformat(),
                "dagster/asset_partition_range_end": refresh.end.isoformat(),
            },
        )
        for refresh in refreshes
    ] or [
        dg.RunRequest(
            run_key=f"changes:{after}:{pending.horizon}",
            asset_selection=[dg.AssetKey(name) for name in ALWAYS_REFRESHED],
            tags=tags,
        )
    ]
    pruned = prune_consumed(postgres.database_url, after, CHANGE_LOG_RETENTION)
    context.log.info(f"{len(run_requests)} runs for {len(organizations)} organizations; {pruned} old changes pruned")
    try:
        pushed = push_activity(postgres.database_url, redis.cache(), organizations)
        context.log.info(f"activity feed: {pushed} pages for {len(organizations)} organizations")
    except redis_lib.RedisError as error:
        context.log.warning(f"activity feed not pushed, Redis unavailable: {error}")
    return dg.SensorResult(run_requests=run_requests, cursor=pending.horizon)


def push_activity(database_url: str, store: cache.DashboardCache, organizations: list[str]) -> int:
    """Write `dashboard:activity:{org}:{page}` for each organization; returns pages written."""
    entries = [
        cache.Entry(org, store.keys.activity(org, number), {"organization_id": org, "page": number, "items": items},
                    cache.TTL_SECONDS["activity"])
        for org, pages in activity_pages(database_url, organizations, ACTIVITY_PAGE_SIZE, ACTIVITY_PAGES).items()
        for number, items in enumerate(pages, start=1)
    ]
    return store.write(entries)

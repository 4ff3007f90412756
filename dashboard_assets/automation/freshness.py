"""Freshness, set once for every asset: the schedules' intervals with slack,
and checks for what a time window cannot see on a partitioned asset (a
backfill of old days looks fresh): today's partition is recent, and
yesterday's partition was refreshed after yesterday ended."""

import datetime as dt

import dagster as dg
from psycopg import sql

from dashboard_assets.db import fetch_one, raw_connection
from dashboard_assets.resources import PostgresResource
from dashboard_assets.rollups.assets import DAILY_ROLLUPS

MINUTE, HOUR, DAY = dt.timedelta(minutes=1), dt.timedelta(hours=1), dt.timedelta(days=1)

# asset -> (warn after, fail after): each schedule's interval plus slack.
FRESHNESS_WINDOWS = {
    "current_state": (10 * MINUTE, 20 * MINUTE),
    "daily_metrics": (30 * MINUTE, HOUR),
    "daily_pipeline": (30 * MINUTE, HOUR),
    "daily_jobs": (30 * MINUTE, HOUR),
    "product_mix_30d": (30 * MINUTE, HOUR),
    "conversion_funnel_90d": (30 * MINUTE, HOUR),
    "target_progress": (30 * MINUTE, HOUR),
    "dashboard_cache": (30 * MINUTE, HOUR),
    "dashboard_health": (30 * MINUTE, HOUR),
    "daily_warranty": (2 * HOUR, 3 * HOUR),
    "revenue_trend_12m": (26 * HOUR, 30 * HOUR),
    "kwh_trend_12m": (26 * HOUR, 30 * HOUR),
    "yoy_comparison": (26 * HOUR, 30 * HOUR),
    "customer_acquisition_cost": (8 * DAY, 9 * DAY),
    "customer_lifetime_value": (8 * DAY, 9 * DAY),
    "table_maintenance": (8 * DAY, 9 * DAY),
}


def with_freshness(assets: list[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """The assets with their time-window freshness policy."""

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        warn, fail = FRESHNESS_WINDOWS[spec.key.to_user_string()]
        return spec.replace_attributes(freshness_policy=dg.FreshnessPolicy.time_window(fail_window=fail, warn_window=warn))

    return [asset.map_asset_specs(apply) for asset in assets]


_PARTITION_FRESHNESS = sql.SQL("""
    SELECT count(*) FILTER (WHERE r.organization_id IS NULL) AS missing_today,
           count(*) FILTER (WHERE r.refreshed_at < now() - %(fail_after)s) AS stale_today,
           count(*) FILTER (WHERE y.organization_id IS NULL
                              OR y.refreshed_at < (t.today::timestamp AT TIME ZONE t.tz)) AS incomplete_yesterday,
           count(*) AS organizations
    FROM dashboard.organization_today(NULL) t
    LEFT JOIN {table} r ON r.organization_id = t.organization_id AND r.metric_date = t.today
    LEFT JOIN {table} y ON y.organization_id = t.organization_id AND y.metric_date = t.today - 1
""")


def build_partition_freshness_check(rollup: str) -> dg.AssetChecksDefinition:
    """Per organization, in its own timezone: today's row refreshed within the
    fail window, and yesterday's row refreshed after yesterday ended."""
    fail_after = FRESHNESS_WINDOWS[rollup][1]

    @dg.asset_check(asset=rollup, name="recent_partitions_are_fresh",
                    description="Today's partition refreshed within the freshness window and yesterday's "
                                "refreshed after yesterday ended, for every organization in its own timezone.")
    def _check(postgres: PostgresResource) -> dg.AssetCheckResult:
        with raw_connection(postgres.database_url) as conn:
            found = fetch_one(conn, _PARTITION_FRESHNESS.format(table=sql.Identifier("dashboard", rollup)),
                              {"fail_after": fail_after})
            conn.rollback()
        problems = found["missing_today"] + found["stale_today"] + found["incomplete_yesterday"]
        return dg.AssetCheckResult(passed=problems == 0, severity=dg.AssetCheckSeverity.WARN,
                                   metadata={k: int(v) for k, v in found.items()})

    return _check


partition_freshness_checks = [build_partition_freshness_check(r.name) for r in DAILY_ROLLUPS]

partition_freshness_schedule = dg.ScheduleDefinition(
    name="partition_freshness_every_15_minutes",
    cron_schedule="7-59/15 * * * *",
    target=dg.AssetSelection.checks(*partition_freshness_checks),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Evaluates the partition freshness checks between refreshes.",
)

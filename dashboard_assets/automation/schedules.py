"""The refresh plan of the design document as cron schedules, in the
reporting timezone (DASHBOARD_TIMEZONE), running from the start."""

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg

from dashboard_assets import settings

TIMEZONE = settings.reporting_timezone()


def _schedule(name: str, cron: str, assets: list[str], description: str):
    """The decorator of a schedule of `assets` at `cron`, reporting time."""
    return dg.schedule(
        name=name,
        cron_schedule=cron,
        target=dg.AssetSelection.assets(*assets),
        execution_timezone=TIMEZONE,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=description,
    )


def _local_date(context: dg.ScheduleEvaluationContext) -> dt.date:
    return context.scheduled_execution_time.astimezone(ZoneInfo(TIMEZONE)).date()


def recent_days_schedule(name: str, cron: str, assets: list[str], description: str) -> dg.ScheduleDefinition:
    """Yesterday's and today's partitions of daily assets, in one run."""

    @_schedule(name, cron, assets, description)
    def _recent_days(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        today = _local_date(context)
        return dg.RunRequest(tags={"dagster/asset_partition_range_start": (today - dt.timedelta(days=1)).isoformat(),
                                   "dagster/asset_partition_range_end": today.isoformat()})

    return _recent_days


def plain_schedule(name: str, cron: str, assets: list[str], description: str) -> dg.ScheduleDefinition:
    """Unpartitioned assets."""

    @_schedule(name, cron, assets, description)
    def _plain(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        return dg.RunRequest()

    return _plain


@_schedule("customer_acquisition_weekly", "0 3 * * 0", ["customer_acquisition_cost"],
           "Sundays 03:00: the current week (Monday start) of customer acquisition cost.")
def customer_acquisition_weekly(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    today = _local_date(context)
    return dg.RunRequest(partition_key=(today - dt.timedelta(days=today.weekday())).isoformat())


schedules = [
    plain_schedule("current_state_every_5_minutes", "*/5 * * * *", ["current_state"],
                   "The current-state snapshot every 5 minutes."),
    recent_days_schedule("rollups_every_15_minutes", "*/15 * * * *",
                         ["daily_metrics", "daily_pipeline", "daily_jobs"],
                         "Yesterday's and today's partitions of the order, pipeline and job rollups."),
    plain_schedule("live_charts_every_15_minutes", "*/15 * * * *",
                   ["product_mix_30d", "conversion_funnel_90d", "target_progress", "dashboard_cache"],
                   "Product mix, funnel, target progress and the warmed read-path ranges."),
    plain_schedule("health_every_15_minutes", "*/15 * * * *", ["dashboard_health"],
                   "Cache hit rate, read latency and rollup refresh ages, with their checks."),
    recent_days_schedule("warranty_hourly", "0 * * * *", ["daily_warranty"],
                         "Yesterday's and today's partitions of the warranty rollup."),
    plain_schedule("nightly_charts_at_2am", "0 2 * * *",
                   ["revenue_trend_12m", "kwh_trend_12m", "yoy_comparison", "dashboard_cache"],
                   "Trend charts, year over year and the cache warming at 02:00."),
    plain_schedule("lifetime_value_weekly", "0 3 * * 0", ["customer_lifetime_value"],
                   "Customer lifetime value, Sundays 03:00."),
    customer_acquisition_weekly,
    plain_schedule("table_maintenance_weekly", "30 4 * * 0", ["table_maintenance"],
                   "Sundays 04:30, off-peak, after the weekly analytics: table sizes, VACUUM and REINDEX."),
]

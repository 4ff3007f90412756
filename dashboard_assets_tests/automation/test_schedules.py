"""Each schedule targets what the refresh plan says, at the right time, in
the reporting timezone."""

import datetime as dt

import dagster as dg

from dashboard_assets.automation.freshness import FRESHNESS_WINDOWS
from dashboard_assets.definitions import defs

EXPECTED = {  # name -> (cron, assets)
    "current_state_every_5_minutes": ("*/5 * * * *", {"current_state"}),
    "rollups_every_15_minutes": ("*/15 * * * *", {"daily_metrics", "daily_pipeline", "daily_jobs"}),
    "live_charts_every_15_minutes": ("*/15 * * * *",
                                     {"product_mix_30d", "conversion_funnel_90d", "target_progress", "dashboard_cache"}),
    "warranty_hourly": ("0 * * * *", {"daily_warranty"}),
    "health_every_15_minutes": ("*/15 * * * *", {"dashboard_health"}),
    "nightly_charts_at_2am": ("0 2 * * *", {"revenue_trend_12m", "kwh_trend_12m", "yoy_comparison", "dashboard_cache"}),
    "lifetime_value_weekly": ("0 3 * * 0", {"customer_lifetime_value"}),
    "customer_acquisition_weekly": ("0 3 * * 0", {"customer_acquisition_cost"}),
    "table_maintenance_weekly": ("30 4 * * 0", {"table_maintenance"}),
}


def _schedule(name: str) -> dg.ScheduleDefinition:
    return defs.resolve_schedule_def(name)


def _targets(schedule: dg.ScheduleDefinition) -> set[str]:
    graph = defs.resolve_asset_graph()
    return {key.to_user_string() for key in schedule.job.selection.resolve(graph)}


def test_every_schedule_runs_its_assets_at_its_time_in_sydney():
    for name, (cron, assets) in EXPECTED.items():
        schedule = _schedule(name)
        assert schedule.cron_schedule == cron, name
        assert schedule.execution_timezone == "Australia/Sydney", name
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING, name
        assert _targets(schedule) == assets, name


def test_every_asset_is_scheduled_and_has_a_freshness_policy():
    scheduled = set().union(*(assets for _, assets in EXPECTED.values()))
    computed = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys() if k.path[0] != "source"}
    assert computed == scheduled == set(FRESHNESS_WINDOWS)
    for spec in defs.resolve_all_asset_specs():
        if spec.key.path[0] != "source":
            assert spec.freshness_policy is not None, spec.key


def _requests(name: str, at: dt.datetime) -> list[dg.RunRequest]:
    # No instance: under a test instance Dagster would keep a load context
    # pointing at it for the rest of the process.
    context = dg.build_schedule_context(scheduled_execution_time=at, repository_def=defs.get_repository_def())
    return _schedule(name).evaluate_tick(context).run_requests


def test_rollup_schedules_refresh_yesterday_and_today_of_the_reporting_timezone():
    # 13:30 UTC on 10 March is 00:30 on 11 March in Sydney (AEDT, +11).
    at = dt.datetime(2025, 3, 10, 13, 30, tzinfo=dt.UTC)
    for name in ("rollups_every_15_minutes", "warranty_hourly"):
        [request] = _requests(name, at)
        assert request.tags["dagster/asset_partition_range_start"] == "2025-03-10"
        assert request.tags["dagster/asset_partition_range_end"] == "2025-03-11"


def test_the_weekly_schedule_refreshes_the_current_week():
    # Sunday 16 March, 03:00 in Sydney: the week that began on Monday 10 March.
    at = dt.datetime(2025, 3, 15, 16, 0, tzinfo=dt.UTC)
    [request] = _requests("customer_acquisition_weekly", at)
    assert request.partition_key == "2025-03-10"

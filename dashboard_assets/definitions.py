"""The code location: `dashboard_assets.definitions.defs`.

Every run executes its steps in the run worker's own process, one after the
other: each step is SQL that PostgreSQL runs, and a process per step (Dagster's
default) costs seconds of start-up against work of milliseconds to seconds.
Runs reach the database side by side as runs instead (the run queue, at most
two refresh steps at once in the `source_database` pool).
"""

import warnings

import dagster as dg

from dashboard_assets.analytics.assets import analytics_assets, customer_acquisition_cost, dashboard_cache
from dashboard_assets.automation.alerts import alerts_sensor
from dashboard_assets.automation.freshness import (
    partition_freshness_checks,
    partition_freshness_schedule,
    with_freshness,
)
from dashboard_assets.automation.schedules import schedules
from dashboard_assets.automation.change_refresh import change_refresh_job
from dashboard_assets.automation.sensors import full_refresh_job, source_changes_sensor
from dashboard_assets.maintenance.assets import table_maintenance
from dashboard_assets.maintenance.run_retention import run_retention_job, run_retention_schedule
from dashboard_assets.monitoring import dashboard_health
from dashboard_assets.resources import build_resources
from dashboard_assets.rollups.assets import current_state_asset, daily_rollup_assets
from dashboard_assets.sources import source_table_specs

# Dagster copies each sensor with its owners when it binds resources to jobs,
# and marks that parameter beta. Silence that one notice, not warnings in
# general (the demo's console and every process's log would repeat it).
warnings.filterwarnings("ignore", message="Parameter `owners` of initializer `SensorDefinition", category=dg.BetaWarning)

defs = dg.Definitions(
    assets=[
        *source_table_specs,
        *with_freshness(
            [
                *daily_rollup_assets,
                current_state_asset,
                *analytics_assets,
                customer_acquisition_cost,
                dashboard_cache,
                dashboard_health,
                table_maintenance,
            ]
        ),
    ],
    asset_checks=partition_freshness_checks,
    jobs=[change_refresh_job, full_refresh_job, run_retention_job],
    schedules=[*schedules, partition_freshness_schedule, run_retention_schedule],
    sensors=[source_changes_sensor, alerts_sensor],
    resources=build_resources(),
    executor=dg.in_process_executor,
)

"""The asset graph as the UI shows it: a change to lineage fails here."""

import json
import os
import subprocess
import sys

import dagster as dg

from dashboard_assets.definitions import defs
from dashboard_assets.demo import DG
from dashboard_assets.rollups.assets import RECONCILES_WITH_SOURCE, VALUES_ARE_POSSIBLE
from dashboard_assets.sources import SOURCE_TABLES
from dashboard_assets_tests.conftest import PROJECT_ROOT

EXPECTED_ROLLUP_DEPS = {
    "daily_metrics": {"organizations", "orders", "order_items", "jobs", "products"},
    "daily_pipeline": {"organizations", "opportunities"},
    "daily_warranty": {"organizations", "warranty_claims"},
    "daily_jobs": {"organizations", "jobs", "job_time_entries"},
    "current_state": {"organizations", "jobs", "warranty_claims", "opportunities", "customers"},
}
EXPECTED_ANALYTICS_DEPS = {
    "revenue_trend_12m": {"daily_metrics"},
    "kwh_trend_12m": {"daily_metrics"},
    "yoy_comparison": {"daily_metrics", "daily_pipeline", "daily_warranty"},
    "product_mix_30d": {"organizations", "orders", "order_items", "products"},
    "conversion_funnel_90d": {"daily_pipeline"},
    "target_progress": {"targets", "daily_metrics", "daily_pipeline", "daily_warranty"},
    "customer_lifetime_value": {"organizations", "customers", "orders", "order_items"},
    "customer_acquisition_cost": {"organizations", "marketing_spend", "customers"},
    "dashboard_cache": {"daily_metrics", "daily_pipeline", "daily_warranty", "current_state",
                        "orders", "order_items", "jobs", "opportunities", "warranty_claims"},
    "dashboard_health": {"daily_metrics", "daily_pipeline", "daily_warranty", "daily_jobs", "current_state"},
    "table_maintenance": {"daily_metrics", "daily_pipeline", "daily_warranty", "daily_jobs", "current_state"},
}


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


def test_lineage_from_source_tables_to_rollups_to_analytics():
    graph = defs.resolve_asset_graph()
    for rollup, tables in (EXPECTED_ROLLUP_DEPS | EXPECTED_ANALYTICS_DEPS).items():
        parents = {key.path[-1] for key in graph.get(dg.AssetKey(rollup)).parent_keys}
        assert parents == tables, rollup
    sources = {key.path[-1] for key in graph.get_all_asset_keys() if key.path[0] == "source"}
    assert sources == set(SOURCE_TABLES)
    computed = {key.path[-1] for key in graph.get_all_asset_keys() if key.path[0] != "source"}
    assert computed == set(EXPECTED_ROLLUP_DEPS) | set(EXPECTED_ANALYTICS_DEPS)


def test_every_asset_is_described_grouped_kinded_and_owned():
    for spec in defs.resolve_all_asset_specs():
        name = spec.key.to_user_string()
        assert spec.description, name
        assert spec.group_name in {"source_tables", "rollups", "analytics", "serving", "monitoring",
                                   "maintenance"}, name
        assert "postgres" in spec.kinds, name
        if spec.group_name in {"analytics", "serving", "monitoring"}:
            assert "redis" in spec.kinds, name
        assert spec.owners, name


def test_daily_rollups_are_partitioned_single_run_and_reconciliation_blocks():
    graph = defs.resolve_asset_graph()
    for rollup in EXPECTED_ROLLUP_DEPS:
        node = graph.get(dg.AssetKey(rollup))
        checks = {key.name for key in node.check_keys}
        if rollup == "current_state":
            assert checks == {RECONCILES_WITH_SOURCE, VALUES_ARE_POSSIBLE}
            assert node.partitions_def is None
        else:
            assert checks == {RECONCILES_WITH_SOURCE, VALUES_ARE_POSSIBLE, "recent_partitions_are_fresh"}, rollup
            assert isinstance(node.partitions_def, dg.DailyPartitionsDefinition)
            assert node.backfill_policy == dg.BackfillPolicy.single_run()
    for key in graph.asset_check_keys:
        assert graph.get_check_spec(key).blocking == (key.name == RECONCILES_WITH_SOURCE), key


def test_every_run_executes_its_steps_in_the_run_worker():
    """The README's backfill command, a UI backfill and the sensor's runs all
    execute with the code location's executor."""
    assert defs.resolve_implicit_global_asset_job_def().executor_def is dg.in_process_executor


def test_the_sensors_run_from_the_start():
    assert {sensor.name for sensor in defs.sensors} == {"source_changes_sensor", "alerts_sensor"}
    for sensor in defs.sensors:
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING, sensor.name
    [alerts] = [sensor for sensor in defs.sensors if sensor.name == "alerts_sensor"]
    assert "DASHBOARD_ALERT_WEBHOOK_URL" in alerts.description  # shown in the UI


def test_dg_checks_and_lists_the_definitions_from_a_fresh_environment(tmp_path):
    """`dg check defs` and `dg list defs` as the README gives them, with none
    of the project's variables set (the instance then keeps its runs in local
    SQLite files, with a warning)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DASHBOARD_", "DAGSTER_"))}
    env["VIRTUAL_ENV"] = sys.prefix
    checked = subprocess.run([str(DG), "check", "defs"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                             timeout=300)
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-2000:]
    assert "All definitions loaded successfully." in checked.stdout + checked.stderr
    listed = subprocess.run([str(DG), "list", "defs", "--json"], cwd=PROJECT_ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr[-2000:]
    keys = {asset["asset_key"] for asset in json.loads(listed.stdout)["assets"]}
    assert {"daily_metrics", "daily_pipeline", "daily_warranty", "daily_jobs", "dashboard_cache"} <= keys

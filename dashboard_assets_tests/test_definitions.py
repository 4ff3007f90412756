"""The asset graph as the UI shows it: a change to lineage fails here."""

import dagster as dg

from dashboard_assets.definitions import defs
from dashboard_assets.rollups.assets import RECONCILES_WITH_SOURCE, VALUES_ARE_POSSIBLE
from dashboard_assets.sources import SOURCE_TABLES

EXPECTED_ROLLUP_DEPS = {
    "daily_metrics": {"organizations", "orders", "order_items", "jobs", "products"},
    "daily_pipeline": {"organizations", "opportunities"},
    "daily_warranty": {"organizations", "warranty_claims"},
    "daily_jobs": {"organizations", "jobs", "job_time_entries"},
    "current_state": {"organizations", "jobs", "warranty_claims", "opportunities", "customers"},
}


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


def test_lineage_from_source_tables_to_rollups():
    graph = defs.resolve_asset_graph()
    for rollup, tables in EXPECTED_ROLLUP_DEPS.items():
        parents = {key.path[-1] for key in graph.get(dg.AssetKey(rollup)).parent_keys}
        assert parents == tables, rollup
    sources = {key.path[-1] for key in graph.get_all_asset_keys() if key.path[0] == "source"}
    assert sources == set(SOURCE_TABLES)


def test_every_asset_is_described_grouped_kinded_and_owned():
    for spec in defs.resolve_all_asset_specs():
        name = spec.key.to_user_string()
        assert spec.description, name
        assert spec.group_name in {"source_tables", "rollups"}, name
        assert "postgres" in spec.kinds, name
        assert spec.owners, name


def test_daily_rollups_are_partitioned_single_run_and_reconciliation_blocks():
    graph = defs.resolve_asset_graph()
    for rollup in EXPECTED_ROLLUP_DEPS:
        node = graph.get(dg.AssetKey(rollup))
        checks = {key.name for key in node.check_keys}
        assert checks == {RECONCILES_WITH_SOURCE, VALUES_ARE_POSSIBLE}, rollup
        if rollup == "current_state":
            assert node.partitions_def is None
        else:
            assert isinstance(node.partitions_def, dg.DailyPartitionsDefinition)
            assert node.backfill_policy == dg.BackfillPolicy.single_run()
    for key in graph.asset_check_keys:
        assert graph.get_check_spec(key).blocking == (key.name == RECONCILES_WITH_SOURCE), key

"""The `table_maintenance` asset: the weekly upkeep of the `dashboard` schema's
tables, with their sizes before and after as numbers the UI plots."""

import dagster as dg

from dashboard_assets.maintenance.tables import MaintenanceConfig, MaintenanceReport, maintain
from dashboard_assets.markdown import markdown_table
from dashboard_assets.resources import PostgresResource
from dashboard_assets.rollups.assets import CURRENT_STATE, DAILY_ROLLUPS
from dashboard_assets.sources import OWNER


@dg.asset(
    group_name="maintenance",
    kinds={"postgres"},
    owners=[OWNER],
    deps=[rollup.name for rollup in (*DAILY_ROLLUPS, CURRENT_STATE)],
)
def table_maintenance(
    context: dg.AssetExecutionContext, config: MaintenanceConfig, postgres: PostgresResource
) -> dg.MaterializeResult:
    """Weekly upkeep of every table of the `dashboard` schema (rollups, charts, the activity feed and
    the logs): size with and without indexes, dead-row share, and each index's size against an estimate
    of a fresh build. Tables with many dead rows get VACUUM (ANALYZE), bloated indexes REINDEX INDEX
    CONCURRENTLY; a statement that cannot go on within the lock timeout (a rebuild waits for every open
    snapshot, a refresh's among them) is postponed to the next run. Readers and refreshes go on, and no row changes."""
    report = maintain(postgres.database_url, config)
    for statement, reason in report.postponed.items():
        context.log.warning(f"postponed {statement}: {reason}")
    context.log.info(f"vacuumed {report.vacuumed}, reindexed {report.reindexed}")
    return dg.MaterializeResult(metadata=_metadata(report))


def _metadata(report: MaintenanceReport) -> dict:
    """Sizes before and after as plain numbers (the Plots tab draws them), and
    the tables and indexes with what was done to each as markdown."""
    metadata = {
        "total_bytes_before": _sum(report.tables_before, "total_bytes"),
        "total_bytes_after": _sum(report.tables_after, "total_bytes"),
        "index_bytes_before": _sum(report.indexes_before, "index_bytes"),
        "index_bytes_after": _sum(report.indexes_after, "index_bytes"),
        "tables_vacuumed": len(report.vacuumed),
        "indexes_reindexed": len(report.reindexed),
        "postponed": len(report.postponed),
    }
    for name, table in report.tables_before.items():
        metadata[f"{name}_bytes_before"] = int(table["total_bytes"])
        metadata[f"{name}_bytes_after"] = int(report.tables_after[name]["total_bytes"])
    metadata["tables"] = dg.MetadataValue.md(markdown_table([
        {"table": name, "live rows": int(table["live_rows"]), "dead share": f"{table['dead_share']:.1%}",
         "bytes before": f"{table['total_bytes']:,}", "bytes after": f"{report.tables_after[name]['total_bytes']:,}",
         "done": "VACUUM (ANALYZE)" if name in report.vacuumed else ""}
        for name, table in report.tables_before.items()]))
    metadata["indexes"] = dg.MetadataValue.md(markdown_table([
        {"index": name, "table": index["table_name"], "bytes before": f"{index['index_bytes']:,}",
         "fresh estimate": f"{index['estimated_bytes']:,}", "bloat share": f"{index['bloat_share']:.1%}",
         "bytes after": f"{report.indexes_after[name]['index_bytes']:,}" if name in report.indexes_after else "",
         "done": "REINDEX CONCURRENTLY" if name in report.reindexed else ""}
        for name, index in report.indexes_before.items()]))
    metadata["postponed_statements"] = dg.MetadataValue.json(report.postponed)
    metadata["dropped_leftover_indexes"] = dg.MetadataValue.json(report.dropped_leftovers)
    return metadata


def _sum(measured: dict[str, dict], column: str) -> int:
    return int(sum(row[column] for row in measured.values()))

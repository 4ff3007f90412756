"""The operational source tables, as external assets so that the UI shows the
lineage from each table to what is computed from it."""

import dagster as dg

OWNER = "team:data-engineering"

SOURCE_TABLES = {
    "organizations": "Tenants, each with the IANA timezone its days are counted in.",
    "customers": "Customers of each organization, with status active / inactive / prospect.",
    "products": "Products; batteries carry specifications->>'capacity_kwh'.",
    "orders": "Orders, with status from draft to delivered or cancelled.",
    "order_items": "Order lines: quantity, unit price, line total.",
    "opportunities": "Sales opportunities by stage, value and probability.",
    "jobs": "Installation jobs, 0..n per order, with completion time.",
    "job_time_entries": "Labour hours booked against jobs.",
    "warranty_claims": "Warranty claims by status and type.",
    "targets": "Per-metric targets for a period.",
    "marketing_spend": "Acquisition spend per day and channel.",
}


def source_key(table: str) -> dg.AssetKey:
    """The asset key of a source table."""
    return dg.AssetKey(["source", table])


source_table_specs = [
    dg.AssetSpec(
        key=source_key(table),
        description=f"Source table `{table}` of the operational database. {description}",
        group_name="source_tables",
        kinds={"postgres"},
        owners=[OWNER],
    )
    for table, description in SOURCE_TABLES.items()
]

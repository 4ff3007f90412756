"""The rollup assets: four daily-partitioned tables and the current-state
snapshot, built by one factory from a table of specs."""

import datetime as dt
import warnings

import dagster as dg

from dashboard_assets import settings
from dashboard_assets.partitions import daily_partitions_def
from dashboard_assets.resources import PostgresResource
from dashboard_assets.retries import POSTGRES_ERRORS, retried_on
from dashboard_assets.rollups.refresh import RefreshResult, Rollup, refresh
from dashboard_assets.scope import tagged_organizations
from dashboard_assets.sources import OWNER, source_key
from dashboard_assets.table_schemas import table_metadata

# Single-run backfills are the point of these assets; Dagster marks the
# parameter beta. Silence that one notice, not warnings in general.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)

RECONCILES_WITH_SOURCE = "reconciles_with_source"
# Refreshes that read the source share a concurrency pool (its limit is set in
# dagster.yaml), so that backfills cannot starve the operational database.
SOURCE_DATABASE_POOL = "source_database"
VALUES_ARE_POSSIBLE = "values_are_possible"
# Shared by a run, its retries and its re-executions.
ROOT_RUN_TAG = "dagster/root_run_id"

DAILY_ROLLUPS = (
    Rollup(
        name="daily_metrics",
        description=(
            "Orders per organization and local day (`dashboard.daily_metrics`): delivered revenue, kWh "
            "deployed (counted once per order, on its first job completion day), delivered and pending "
            "orders, total order value, distinct active customers; plus `dashboard.daily_customers`, "
            "one row per customer and day, so distinct customers over any range are exact."
        ),
        source_tables=("organizations", "orders", "order_items", "jobs", "products"),
        extra_tables=("daily_customers",),
    ),
    Rollup(
        name="daily_pipeline",
        description=(
            "Opportunities per organization and local creation day (`dashboard.daily_pipeline`): counts "
            "per stage, weighted and total open pipeline, closed and won counts and won value, so that "
            "win rate and average deal size over a range are ratios of sums."
        ),
        source_tables=("organizations", "opportunities"),
    ),
    Rollup(
        name="daily_warranty",
        description=(
            "Warranty claims per organization and local creation day (`dashboard.daily_warranty`): "
            "counts per status and type, resolved count and the sum of resolution days beside their mean."
        ),
        source_tables=("organizations", "warranty_claims"),
    ),
    Rollup(
        name="daily_jobs",
        description=(
            "Installation jobs per organization and local creation day (`dashboard.daily_jobs`): counts "
            "per status and the labour hours booked against those jobs."
        ),
        source_tables=("organizations", "jobs", "job_time_entries"),
    ),
)

CURRENT_STATE = Rollup(
    name="current_state",
    description=(
        "Snapshot per organization (`dashboard.current_state`): active installations, open warranty "
        "claims, weighted open pipeline and active customers, as of the refresh."
    ),
    source_tables=("organizations", "jobs", "warranty_claims", "opportunities", "customers"),
    daily=False,
)


def build_rollup_asset(rollup: Rollup) -> dg.AssetsDefinition:
    """A rollup asset: replaces its days (a whole partition range in one run and
    one transaction), for every organization or for those the run's tag names,
    and reports its two checks from the same snapshot. The change refresh
    refreshes its changed days itself (automation/change_refresh.py)."""

    @dg.asset(
        name=rollup.name,
        description=rollup.description,
        group_name="rollups",
        kinds={"postgres"},
        owners=[OWNER],
        deps=[source_key(table) for table in rollup.source_tables],
        partitions_def=daily_partitions_def if rollup.daily else None,
        metadata=table_metadata(rollup.name),
        pool=SOURCE_DATABASE_POOL,
        backfill_policy=dg.BackfillPolicy.single_run() if rollup.daily else None,
        check_specs=[
            dg.AssetCheckSpec(
                RECONCILES_WITH_SOURCE,
                asset=rollup.name,
                blocking=True,
                description=(
                    "The refreshed range's totals equal the source tables' totals, taken by another route in the "
                    "same snapshot. On a mismatch the refresh is rolled back and the previous days stay."
                ),
            ),
            dg.AssetCheckSpec(
                VALUES_ARE_POSSIBLE,
                asset=rollup.name,
                description=(
                    "No negative counts, no win rate outside 0..1, no part larger than its whole. Garbage in the "
                    "source (e.g. negative quantities) shows here without stopping the refresh."
                ),
            ),
        ],
    )
    @retried_on(*POSTGRES_ERRORS)
    def _rollup(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
        start = end = None
        if rollup.daily:
            key_range = context.partition_key_range
            start, end = dt.date.fromisoformat(key_range.start), dt.date.fromisoformat(key_range.end)
        organizations = tagged_organizations(context.run.tags)
        source_url = postgres.source_url_for_run(context.run.tags)
        result = refresh(rollup, source_url=source_url, target_url=postgres.database_url,
                         start=start, end=end, organizations=organizations,
                         resume_key=context.run.tags.get(ROOT_RUN_TAG, context.run.run_id),
                         organization_days_per_batch=settings.batch_organization_days(),
                         concurrent_batches=settings.concurrent_batches())
        days = f" for {start}..{end} in {result.batches} batches" if rollup.daily else ""
        if result.resumed_batches:
            days += f" ({result.resumed_batches} committed by an earlier attempt)"
        scope = f"{len(organizations)} changed organizations" if organizations else "every organization"
        context.log.info(f"{rollup.name}: {sum(result.rows_written.values())} rows{days}, {scope}, "
                         f"in {result.seconds:.2f} s")
        return dg.MaterializeResult(
            metadata=_materialization_metadata(result, start, end),
            check_results=check_results(rollup, result),
        )

    return _rollup


def _materialization_metadata(result: RefreshResult, start: dt.date | None, end: dt.date | None) -> dict:
    """What the refresh wrote, with the refreshed rows' totals (revenue, orders, ...)
    under their columns' names as plain numbers, so that the UI plots them over time."""
    metadata = {
        "dagster/row_count": sum(result.rows_written.values()),
        "rows_written": dg.MetadataValue.json(result.rows_written),
        "organizations": result.organizations,
        "duration_seconds": round(result.seconds, 3),
    }
    metadata |= {name: value if isinstance(value, int) else float(value or 0)
                 for name, value in result.rollup_totals.items() if name != "rows"}
    if start is not None and end is not None:
        metadata |= {"days": (end - start).days + 1, "first_day": start.isoformat(), "last_day": end.isoformat(),
                     "batches": result.batches, "batches_resumed": result.resumed_batches}
    return metadata


def check_results(rollup: Rollup, result: RefreshResult, *, as_evaluations: bool = False) -> list:
    """The rollup's two checks of a refresh: results of the asset's own step,
    or evaluations that a change refresh logs (the reconciliation blocking)."""
    mismatches = result.mismatches
    checks = [
        (RECONCILES_WITH_SOURCE, not mismatches, {
            "totals_compared": len(result.source_totals),
            "mismatches": dg.MetadataValue.json(mismatches),
            "committed": result.committed,
        }),
        (VALUES_ARE_POSSIBLE, not result.impossible_rows, {
            "impossible_rows": len(result.impossible_rows),
            "examples": dg.MetadataValue.json([f"{org} {day}" for org, day in result.impossible_rows[:10]]),
        }),
    ]
    if as_evaluations:
        return [dg.AssetCheckEvaluation(asset_key=dg.AssetKey(rollup.name), check_name=name, passed=passed,
                                        metadata=metadata, severity=dg.AssetCheckSeverity.ERROR,
                                        blocking=name == RECONCILES_WITH_SOURCE)
                for name, passed, metadata in checks]
    return [dg.AssetCheckResult(asset_key=rollup.name, check_name=name, passed=passed,
                                severity=dg.AssetCheckSeverity.ERROR, metadata=metadata)
            for name, passed, metadata in checks]


daily_rollup_assets = [build_rollup_asset(rollup) for rollup in DAILY_ROLLUPS]
current_state_asset = build_rollup_asset(CURRENT_STATE)

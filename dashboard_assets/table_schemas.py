"""The columns of every table an asset writes, declared once, with what each
column means (docs/metrics.md, docs/analytics.md). The assets carry them as
definition metadata, so that the UI's catalog shows each table's name and
columns; a test holds them equal to a migrated database's columns. Types are
spelled as PostgreSQL's `format_type()` spells them."""

import dagster as dg

SCHEMA = "dashboard"

UUID, DATE, INTEGER, NUMERIC, MONEY = "uuid", "date", "integer", "numeric", "numeric(16,2)"
TIMESTAMPTZ, JSONB = "timestamp with time zone", "jsonb"

_ORGANIZATION = ("organization_id", UUID, "The organization (tenant).")
_LOCAL_DAY = ("metric_date", DATE, "The organization's local day, [D 00:00, D+1 00:00) in its own timezone.")
_REFRESHED_AT = ("refreshed_at", TIMESTAMPTZ, "When the refresh that wrote the row ran.")


def _json_value(payload: str) -> tuple[tuple[str, str, str], ...]:
    """A chart or analytics table: one JSON value per organization, the one Redis holds."""
    return (
        ("organization_id", UUID, "The organization (tenant); one row each."),
        ("payload", JSONB, f"The value published to Redis: {payload}"),
        ("computed_at", TIMESTAMPTZ, "The instant the value was computed as of."),
    )


_COLUMNS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "daily_metrics": (
        _ORGANIZATION,
        _LOCAL_DAY,
        ("revenue", MONEY, "Sum of order_items.line_total of the day's orders with status delivered."),
        ("kwh_deployed", NUMERIC, "Battery kWh (quantity × capacity_kwh) of each order, counted once, on the local "
                                  "day of its first completed job."),
        ("delivered_orders", INTEGER, "Orders with status delivered."),
        ("pending_orders", INTEGER, "Orders with status draft, confirmed, picking, picked or shipped."),
        ("total_order_value", MONEY, "Sum of orders.total_amount of all the day's orders, any status."),
        ("active_customers", INTEGER, "Distinct customers over all the day's orders, any status."),
        _REFRESHED_AT,
    ),
    "daily_pipeline": (
        _ORGANIZATION,
        _LOCAL_DAY,
        *((f"{stage}_opportunities", INTEGER, f"Opportunities created that day now at stage {stage}.")
          for stage in ("new", "qualified", "proposal", "negotiation", "won", "lost")),
        ("weighted_pipeline", NUMERIC, "Sum of value × probability / 100 over open opportunities (not won, not "
                                       "lost), unrounded."),
        ("total_pipeline", MONEY, "Sum of value over open opportunities."),
        ("closed_opportunities", INTEGER, "Opportunities won or lost."),
        ("won_count", INTEGER, "Opportunities won; win rate over a range is Σ won_count / Σ closed_opportunities."),
        ("won_value", MONEY, "Sum of value of the opportunities won."),
        ("avg_won_deal_size", NUMERIC, "won_value / won_count, NULL when nothing was won."),
        _REFRESHED_AT,
    ),
    "daily_warranty": (
        _ORGANIZATION,
        _LOCAL_DAY,
        ("total_claims", INTEGER, "Warranty claims created that day."),
        *((f"{status}_claims", INTEGER, f"Claims with status {status}.")
          for status in ("pending", "approved", "rejected", "resolved")),
        *((f"{kind}_claims", INTEGER, f"Claims of type {kind}.") for kind in ("defect", "damage", "performance")),
        ("resolved_count", INTEGER, "Claims resolved with a resolved_at."),
        ("resolution_days_sum", NUMERIC, "Sum over those of resolved_at − created_at in fractional days."),
        ("avg_resolution_days", NUMERIC, "resolution_days_sum / resolved_count, NULL when none was resolved."),
        _REFRESHED_AT,
    ),
    "daily_jobs": (
        _ORGANIZATION,
        _LOCAL_DAY,
        ("total_jobs", INTEGER, "Installation jobs created that day."),
        *((f"{status}_jobs", INTEGER, f"Jobs with status {status}.")
          for status in ("scheduled", "in_progress", "completed", "cancelled")),
        ("total_labor_hours", NUMERIC, "Sum of job_time_entries.hours of the day's jobs."),
        ("avg_labor_hours_per_job", NUMERIC, "total_labor_hours / total_jobs, NULL when there are no jobs."),
        _REFRESHED_AT,
    ),
    "current_state": (
        ("organization_id", UUID, "The organization (tenant); one row each."),
        ("snapshot_at", TIMESTAMPTZ, "The instant of the snapshot."),
        ("active_installations", INTEGER, "Jobs with status scheduled or in_progress."),
        ("open_warranty_claims", INTEGER, "Claims with status pending."),
        ("current_pipeline", NUMERIC, "Weighted pipeline of all open opportunities."),
        ("active_customers", INTEGER, "Customers with status active."),
        _REFRESHED_AT,
    ),
    "revenue_trend_12m": _json_value("{organization_id, points: [{month: YYYY-MM, revenue}], computed_at}, the 12 "
                                     "months ending with the local today's month, oldest first."),
    "kwh_trend_12m": _json_value("{organization_id, points: [{month: YYYY-MM, kwh_deployed}], computed_at}, the 12 "
                                 "months ending with the local today's month, oldest first."),
    "yoy_comparison": _json_value("{organization_id, current_from, current_to, previous_from, previous_to, metrics: "
                                  "{name: {current, previous, change_percent}}, computed_at}."),
    "product_mix_30d": _json_value("{organization_id, date_from, date_to, categories: [{category, revenue, units}], "
                                   "computed_at}, delivered orders of the last 30 days."),
    "conversion_funnel_90d": _json_value("{organization_id, date_from, date_to, stages, reached, conversion: "
                                         "[{from, to, rate}], computed_at}, opportunities of the last 90 days."),
    "target_progress": _json_value("{organization_id, targets: [{metric, period_start, period_end, target, actual, "
                                   "percent}], computed_at}, the targets whose period contains the local today."),
    "customer_lifetime_value": _json_value("{organization_id, customers, mean_ltv, cohorts: [{cohort, customers, "
                                           "revenue, ltv}], computed_at}."),
    "weekly_customer_acquisition": (
        _ORGANIZATION,
        ("week_start", DATE, "The Monday the week starts on."),
        ("spend", MONEY, "Sum of marketing_spend.amount with spend_date in the week."),
        ("new_customers", INTEGER, "Customers created in the week."),
        ("cac", MONEY, "spend / new_customers, NULL when there were none."),
        _REFRESHED_AT,
    ),
}


def table_columns(table: str) -> list[tuple[str, str]]:
    """The declared (name, type) of each column of `dashboard.<table>`, in order."""
    return [(name, column_type) for name, column_type, _ in _COLUMNS[table]]


def declared_tables() -> list[str]:
    """Every table whose columns are declared here."""
    return list(_COLUMNS)


def table_metadata(table: str) -> dict[str, dg.MetadataValue]:
    """The definition metadata that names `dashboard.<table>` and lists its columns in the UI."""
    columns = [dg.TableColumn(name, column_type, description=description)
               for name, column_type, description in _COLUMNS[table]]
    return {
        "dagster/table_name": dg.MetadataValue.text(f"{SCHEMA}.{table}"),
        "dagster/column_schema": dg.MetadataValue.table_schema(dg.TableSchema(columns=columns)),
    }

"""An independent pandas implementation of every dashboard rollup.

Written from the metric definitions in ``docs/metrics.md`` (and the source
contract), never from the rollup SQL, so that the tests can hold the SQL equal
to it. Every fact is aggregated on its own table first (items per order, time
entries per job, first completion per order) and only then joined one-to-one,
so nothing is counted twice.

Conventions of the frames in :class:`Sources`: ids are lower-case uuid strings,
timestamps are timezone-aware (any offset), money and hours are
``decimal.Decimal`` (``None`` for NULL), ``products.specifications`` holds the
decoded jsonb (a ``dict``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import date, timedelta
from decimal import Decimal

import pandas as pd
from sqlalchemy import text

DEFAULT_TIMEZONE = "Australia/Sydney"
KEYS = ["organization_id", "metric_date"]
PENDING_ORDER_STATUSES = ["draft", "confirmed", "picking", "picked", "shipped"]
OPPORTUNITY_STAGES = ["new", "qualified", "proposal", "negotiation", "won", "lost"]
CLAIM_STATUSES = ["pending", "approved", "rejected", "resolved"]
CLAIM_TYPES = ["defect", "damage", "performance"]
JOB_STATUSES = ["scheduled", "in_progress", "completed", "cancelled"]
DECIMAL_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?")


@dataclass
class Sources:
    """The raw source tables the rollups read, one DataFrame per table."""

    organizations: pd.DataFrame
    customers: pd.DataFrame
    products: pd.DataFrame
    orders: pd.DataFrame
    order_items: pd.DataFrame
    opportunities: pd.DataFrame
    jobs: pd.DataFrame
    job_time_entries: pd.DataFrame
    warranty_claims: pd.DataFrame


def load_sources(conn) -> Sources:
    """Read every source table the metrics use, through a SQLAlchemy connection."""
    return load_tables(conn, Sources)


def load_tables(conn, tables):
    """An instance of the dataclass `tables`, each field a whole table (``SELECT *``).

    Numeric columns stay ``Decimal`` (``coerce_float=False``); uuid columns
    become lower-case strings.
    """
    frames = {}
    for field in fields(tables):
        frame = pd.read_sql(text(f"SELECT * FROM {field.name}"), conn, coerce_float=False)
        for column in frame.columns:
            if column == "id" or column.endswith("_id"):
                frame[column] = frame[column].map(lambda v: None if pd.isna(v) else str(v).lower())
        frames[field.name] = frame
    return tables(**frames)


# --- small helpers -----------------------------------------------------------


def _dec(value) -> Decimal:
    """A numeric value as an exact Decimal; NULL (None/NaN) counts 0."""
    return Decimal(0) if value is None or pd.isna(value) else Decimal(str(value))


def _dsum(values) -> Decimal:
    """Exact Decimal sum of a sequence of numeric values, NULLs counting 0."""
    return sum((_dec(v) for v in values), Decimal(0))


def _links(frame: pd.DataFrame, column: str) -> pd.MultiIndex:
    """(organization_id, ``column``) of each row: rows refer to one another only
    within their organization, so a reference into another tenant matches nothing."""
    return pd.MultiIndex.from_arrays([frame["organization_id"], frame[column]])


def _by_link(frame: pd.DataFrame, column: str, value: str) -> pd.Series:
    """Exact Decimal sum of ``value`` per (organization_id, ``column``)."""
    return frame.groupby(["organization_id", column])[value].agg(_dsum)


def _ratio(numerators: pd.Series, denominators: pd.Series) -> pd.Series:
    """Element-wise numerator / denominator, None (not NaN) where the denominator is 0."""
    values = [n / d if d else None for n, d in zip(numerators, denominators)]
    return pd.Series(values, index=numerators.index, dtype=object)


def _local_dates(src: Sources, organization_ids: pd.Series, timestamps: pd.Series) -> pd.Series:
    """The local calendar date of each timestamp in its organization's timezone.

    Converted one timezone at a time (vectorized). NULL timestamps and rows of
    unknown organizations give None.
    """
    zones = src.organizations.set_index("id")["timezone"].fillna(DEFAULT_TIMEZONE)
    row_zones = organization_ids.map(zones)
    utc = pd.to_datetime(timestamps, utc=True)
    dates = pd.Series(None, index=timestamps.index, dtype=object)
    for zone in row_zones.dropna().unique():
        rows = row_zones == zone
        dates[rows] = utc[rows].dt.tz_convert(zone).dt.date
    return dates


def _on_days(src: Sources, frame: pd.DataFrame, timestamp: str, start: date, end: date) -> pd.DataFrame:
    """The rows of ``frame`` whose ``timestamp`` falls on a local day in [start, end], with ``metric_date`` added."""
    dated = frame.assign(metric_date=_local_dates(src, frame["organization_id"], frame[timestamp]))
    dated = dated[dated["metric_date"].notna()]
    return dated[(dated["metric_date"] >= start) & (dated["metric_date"] <= end)]


def _grid(src: Sources, start: date, end: date) -> pd.MultiIndex:
    """Every (organization, day) of the range, sorted: the rollups are dense."""
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    return pd.MultiIndex.from_product([sorted(src.organizations["id"]), days], names=KEYS)


def _count(grid: pd.MultiIndex, rows: pd.DataFrame) -> pd.Series:
    """Number of rows per (organization, day) of the grid, 0 where none."""
    return rows.groupby(KEYS).size().reindex(grid, fill_value=0).astype("int64")


def _sum(grid: pd.MultiIndex, rows: pd.DataFrame, column: str) -> pd.Series:
    """Exact Decimal sum of ``column`` per (organization, day) of the grid, 0 where none."""
    sums = rows.groupby(KEYS)[column].agg(_dsum)
    return sums.reindex(grid, fill_value=Decimal(0)).astype(object)


def _frame(grid: pd.MultiIndex, columns: dict) -> pd.DataFrame:
    """A rollup frame: the grid's keys as columns, then ``columns`` in order."""
    return pd.DataFrame(columns, index=grid).reset_index()


def _capacity_kwh(specifications) -> Decimal:
    """``specifications->>'capacity_kwh'`` when that text is entirely a decimal number, else 0.

    A JSON string is its own text; a JSON number is written as Postgres
    prints a numeric (plain digits, never an exponent). JSON null, booleans,
    objects, arrays and a missing key count 0.
    """
    value = specifications.get("capacity_kwh") if isinstance(specifications, dict) else None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return Decimal(0)
    as_text = value if isinstance(value, str) else format(Decimal(repr(value)), "f")
    return Decimal(as_text) if DECIMAL_NUMBER.fullmatch(as_text) else Decimal(0)


def _weighted(opportunities: pd.DataFrame) -> pd.Series:
    """Each opportunity's value × probability / 100, exact, NULLs counting 0."""
    return pd.Series(
        [_dec(v) * _dec(p) / 100 for v, p in zip(opportunities["value"], opportunities["probability"])],
        index=opportunities.index,
        dtype=object,
    )


def _is_open(opportunities: pd.DataFrame) -> pd.Series:
    """Open opportunities: stage neither won nor lost."""
    return ~opportunities["stage"].isin(["won", "lost"])


# --- the rollups -------------------------------------------------------------


def _kwh_completions(src: Sources) -> pd.DataFrame:
    """One row per order with a completed job: its organization, first completion and kWh.

    kWh is the sum over the order's battery items of quantity × capacity_kwh.
    """
    batteries = src.products.loc[src.products["category"] == "battery"]
    capacity = pd.Series(batteries["specifications"].map(_capacity_kwh).values, index=_links(batteries, "id"))
    items = src.order_items[_links(src.order_items, "product_id").isin(capacity.index)]
    item_kwh = pd.Series(
        [int(q) * capacity[link] for q, link in zip(items["quantity"], _links(items, "product_id"))],
        index=_links(items, "order_id"),
        dtype=object,
    )
    kwh_by_order = item_kwh.groupby(level=[0, 1]).agg(_dsum)

    jobs = src.jobs
    completed = jobs[(jobs["status"] == "completed") & jobs["completed_at"].notna()]
    completed_at = pd.Series(pd.to_datetime(completed["completed_at"], utc=True).values, index=_links(completed, "order_id"))
    first_completion = completed_at.groupby(level=[0, 1]).min()

    orders = src.orders[_links(src.orders, "id").isin(first_completion.index)]
    order_links = _links(orders, "id")
    return pd.DataFrame(
        {
            "organization_id": orders["organization_id"],
            "first_completed_at": first_completion.reindex(order_links).values,
            "kwh": kwh_by_order.reindex(order_links).map(_dec).values,
        },
        index=orders.index,
    )


def daily_metrics(src: Sources, start: date, end: date) -> pd.DataFrame:
    """``dashboard.daily_metrics``: orders by created_at day; kWh by first completed job day."""
    grid = _grid(src, start, end)
    orders = _on_days(src, src.orders, "created_at", start, end)
    delivered = orders[orders["status"] == "delivered"]
    revenue_by_order = _by_link(src.order_items, "order_id", "line_total")
    delivered = delivered.assign(revenue=revenue_by_order.reindex(_links(delivered, "id")).values)
    completions = _on_days(src, _kwh_completions(src), "first_completed_at", start, end)
    active_customers = orders.groupby(KEYS)["customer_id"].nunique()
    return _frame(
        grid,
        {
            "revenue": _sum(grid, delivered, "revenue"),
            "delivered_orders": _count(grid, delivered),
            "pending_orders": _count(grid, orders[orders["status"].isin(PENDING_ORDER_STATUSES)]),
            "total_order_value": _sum(grid, orders, "total_amount"),
            "kwh_deployed": _sum(grid, completions, "kwh"),
            "active_customers": active_customers.reindex(grid, fill_value=0).astype("int64"),
        },
    )


def daily_customers(src: Sources, start: date, end: date) -> pd.DataFrame:
    """``dashboard.daily_customers``: one row per organization, day and customer with an order that day."""
    orders = _on_days(src, src.orders, "created_at", start, end)
    return (
        orders[["organization_id", "metric_date", "customer_id"]]
        .drop_duplicates()
        .sort_values(["organization_id", "metric_date", "customer_id"])
        .reset_index(drop=True)
    )


def daily_pipeline(src: Sources, start: date, end: date) -> pd.DataFrame:
    """``dashboard.daily_pipeline``: opportunities by created_at day."""
    grid = _grid(src, start, end)
    opps = _on_days(src, src.opportunities, "created_at", start, end)
    opps = opps.assign(weighted=_weighted(opps))
    open_opps = opps[_is_open(opps)]
    won = opps[opps["stage"] == "won"]
    columns = {f"{stage}_opportunities": _count(grid, opps[opps["stage"] == stage]) for stage in OPPORTUNITY_STAGES}
    won_count = _count(grid, won)
    won_value = _sum(grid, won, "value")
    columns |= {
        "weighted_pipeline": _sum(grid, open_opps, "weighted"),
        "total_pipeline": _sum(grid, open_opps, "value"),
        "closed_opportunities": _count(grid, opps[opps["stage"].isin(["won", "lost"])]),
        "won_count": won_count,
        "won_value": won_value,
        "avg_won_deal_size": _ratio(won_value, won_count),
    }
    return _frame(grid, columns)


def daily_warranty(src: Sources, start: date, end: date) -> pd.DataFrame:
    """``dashboard.daily_warranty``: warranty claims by created_at day."""
    grid = _grid(src, start, end)
    claims = _on_days(src, src.warranty_claims, "created_at", start, end)
    resolved = claims[(claims["status"] == "resolved") & claims["resolved_at"].notna()]
    elapsed = pd.to_datetime(resolved["resolved_at"], utc=True) - pd.to_datetime(resolved["created_at"], utc=True)
    resolved = resolved.assign(days=elapsed.dt.total_seconds() / 86400)
    resolved_count = _count(grid, resolved)
    days_sum = resolved.groupby(KEYS)["days"].sum().reindex(grid, fill_value=0.0).astype(float)
    columns = {"total_claims": _count(grid, claims)}
    columns |= {f"{s}_claims": _count(grid, claims[claims["status"] == s]) for s in CLAIM_STATUSES}
    columns |= {f"{t}_claims": _count(grid, claims[claims["claim_type"] == t]) for t in CLAIM_TYPES}
    columns |= {
        "resolved_count": resolved_count,
        "resolution_days_sum": days_sum,
        "avg_resolution_days": _ratio(days_sum, resolved_count),
    }
    return _frame(grid, columns)


def daily_jobs(src: Sources, start: date, end: date) -> pd.DataFrame:
    """``dashboard.daily_jobs``: jobs by created_at day, with their time entries' hours."""
    grid = _grid(src, start, end)
    jobs = _on_days(src, src.jobs, "created_at", start, end)
    hours_by_job = _by_link(src.job_time_entries, "job_id", "hours")
    jobs = jobs.assign(hours=hours_by_job.reindex(_links(jobs, "id")).values)
    total_jobs = _count(grid, jobs)
    total_hours = _sum(grid, jobs, "hours")
    columns = {"total_jobs": total_jobs}
    columns |= {f"{s}_jobs": _count(grid, jobs[jobs["status"] == s]) for s in JOB_STATUSES}
    columns |= {"total_labor_hours": total_hours, "avg_labor_hours_per_job": _ratio(total_hours, total_jobs)}
    return _frame(grid, columns)


def current_state(src: Sources) -> pd.DataFrame:
    """``dashboard.current_state`` without snapshot_at: one row per organization, now."""
    orgs = pd.Index(sorted(src.organizations["id"]), name="organization_id")

    def count(rows: pd.DataFrame) -> pd.Series:
        return rows.groupby("organization_id").size().reindex(orgs, fill_value=0).astype("int64")

    jobs, claims, opps, customers = src.jobs, src.warranty_claims, src.opportunities, src.customers
    open_opps = opps[_is_open(opps)]
    pipeline = _weighted(open_opps).groupby(open_opps["organization_id"]).agg(_dsum)
    return pd.DataFrame(
        {
            "active_installations": count(jobs[jobs["status"].isin(["scheduled", "in_progress"])]),
            "open_warranty_claims": count(claims[claims["status"] == "pending"]),
            "current_pipeline": pipeline.reindex(orgs, fill_value=Decimal(0)).astype(object),
            "active_customers": count(customers[customers["status"] == "active"]),
        },
        index=orgs,
    ).reset_index()

"""An independent pandas implementation of every chart, analytics value and read-path figure.

Written from ``docs/analytics.md`` (and ``docs/metrics.md``), never from the
project's SQL, so that the tests can hold the SQL equal to it. Daily figures
come from the tested daily references in :mod:`reference` (and its day-bucketing
helpers); this module only adds up days, applies the definitions and formats.

Every public function returns the JSON-ready value without ``computed_at``:
exact ``Decimal`` arithmetic throughout, rounded half away from zero once, on
the final figure, then given as a float (money 2 decimals, kWh 3, rates 4,
percentages 2). Counts are ints, dates ``YYYY-MM-DD``, months ``YYYY-MM``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd

from dashboard_assets_tests.reference import (
    DEFAULT_TIMEZONE,
    OPPORTUNITY_STAGES,
    Sources,
    _dec,
    _dsum,
    _local_dates,
    _on_days,
    current_state,
    daily_customers,
    daily_metrics,
    daily_pipeline,
    daily_warranty,
    load_tables,
)

MONEY = Decimal("0.01")
KWH = Decimal("0.001")
RATE = Decimal("0.0001")
PERCENT = Decimal("0.01")
FUNNEL = ["new", "qualified", "proposal", "negotiation", "won"]
# Target metric name -> (range total it reads, rounding step or int for counts).
TARGET_METRICS = {
    "revenue": ("revenue", MONEY),
    "kwh_deployed": ("kwh_deployed", KWH),
    "delivered_orders": ("delivered_orders", int),
    "warranty_claims": ("warranty_claims", int),
    "active_customers": ("customers", int),
    "quote_win_rate": ("quote_win_rate", RATE),
}
# The range figures of the full metrics (and of the YoY comparison), in order, with their rounding.
RANGE_FORMATS = {"revenue": MONEY, "kwh_deployed": KWH, "delivered_orders": int, "warranty_claims": int,
                 "quote_win_rate": RATE, "customers": int}


@dataclass
class Extra:
    """The source tables :class:`reference.Sources` lacks, one DataFrame per table."""

    targets: pd.DataFrame
    marketing_spend: pd.DataFrame


def load_extra(conn) -> Extra:
    """Read ``targets`` and ``marketing_spend`` whole, as :func:`reference.load_sources` reads the others."""
    return load_tables(conn, Extra)


# --- small helpers -----------------------------------------------------------


def _round(value, step: Decimal) -> float | None:
    """An exact value rounded half away from zero to ``step``, as a float; None stays None."""
    return None if value is None else float(Decimal(value).quantize(step, ROUND_HALF_UP))


def _format(value, step):
    """A final figure in its JSON form: ``int`` for counts, else rounded to ``step``; None stays None."""
    if value is None:
        return None
    return int(value) if step is int else _round(value, step)


def _ratio(numerator, denominator) -> Decimal | None:
    """numerator / denominator exactly; None when either is None or the divisor is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return Decimal(numerator) / Decimal(denominator)


def _percent(numerator, denominator) -> float | None:
    """numerator / denominator × 100 to 2 decimals; None when undefined."""
    ratio = _ratio(numerator, denominator)
    return None if ratio is None else _round(ratio * 100, PERCENT)


def _change_percent(current, previous) -> float | None:
    """(current − previous) / previous × 100 to 2 decimals; None when either is None or previous is 0."""
    return None if current is None or previous is None else _percent(current - previous, previous)


def _day(value) -> date:
    """A date from a ``date``, datetime-like or ISO string."""
    return pd.Timestamp(value).date()


def _one_org(src: Sources, organization_id: str) -> Sources:
    """The sources seen by one organization: the daily references then give only its rows."""
    orgs = src.organizations
    return replace(src, organizations=orgs[orgs["id"] == organization_id])


def _add_months(first_of_month: date, months: int) -> date:
    """The first day of the month ``months`` after (or before) ``first_of_month``."""
    index = first_of_month.year * 12 + first_of_month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _utc(as_of: datetime) -> pd.Timestamp:
    """``as_of`` as a UTC timestamp (a naive one is taken as UTC)."""
    stamp = pd.Timestamp(as_of)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _totals(src: Sources, organization_id: str, start: date, end: date) -> dict:
    """The exact range figures of one organization over the local days [start, end] (empty when end < start)."""
    one = _one_org(src, organization_id)
    metrics = daily_metrics(one, start, end)
    pipeline = daily_pipeline(one, start, end)
    return {
        "revenue": sum(metrics["revenue"], Decimal(0)),
        "kwh_deployed": sum(metrics["kwh_deployed"], Decimal(0)),
        "delivered_orders": int(metrics["delivered_orders"].sum()),
        "warranty_claims": int(daily_warranty(one, start, end)["total_claims"].sum()),
        "quote_win_rate": _ratio(int(pipeline["won_count"].sum()), int(pipeline["closed_opportunities"].sum())),
        "customers": int(daily_customers(one, start, end)["customer_id"].nunique()),
    }


# --- read path ---------------------------------------------------------------


def local_today(src: Sources, organization_id: str, as_of: datetime) -> date:
    """D: the local date of ``as_of`` in the organization's timezone (NULL means Australia/Sydney)."""
    (zone,) = src.organizations.loc[src.organizations["id"] == organization_id, "timezone"]
    return _utc(as_of).tz_convert(DEFAULT_TIMEZONE if pd.isna(zone) else zone).date()


def full_metrics(src: Sources, organization_id: str, date_from: date, date_to: date, as_of: datetime) -> dict:
    """The read path's value for [date_from, date_to]: days after D count nothing; snapshot figures are current."""
    today = local_today(src, organization_id, as_of)
    totals = _totals(src, organization_id, date_from, min(date_to, today))
    (state,) = current_state(_one_org(src, organization_id)).to_dict("records")
    return {
        "organization_id": organization_id,
        "date_from": date_from.isoformat(),
        "date_to": date_to.isoformat(),
        **{name: _format(totals[name], step) for name, step in RANGE_FORMATS.items()},
        "active_installations": int(state["active_installations"]),
        "pipeline": _round(state["current_pipeline"], MONEY),
    }


def summary(src: Sources, organization_id: str, as_of: datetime) -> dict:
    """Full metrics for D's month to date and for the whole previous calendar month."""
    today = local_today(src, organization_id, as_of)
    month_start = today.replace(day=1)
    previous_end = month_start - timedelta(days=1)
    return {
        "organization_id": organization_id,
        "month_to_date": full_metrics(src, organization_id, month_start, today, as_of),
        "previous_month": full_metrics(src, organization_id, previous_end.replace(day=1), previous_end, as_of),
    }


# --- charts ------------------------------------------------------------------


def _trend_12m(src: Sources, organization_id: str, as_of: datetime, column: str, step: Decimal) -> dict:
    """Σ of a daily_metrics column per month over the 12 months ending with D's month (up to D)."""
    today = local_today(src, organization_id, as_of)
    months = [_add_months(today.replace(day=1), -back) for back in range(11, -1, -1)]
    metrics = daily_metrics(_one_org(src, organization_id), months[0], today)
    by_month = metrics.groupby(metrics["metric_date"].map(lambda d: d.strftime("%Y-%m")))[column].agg(_dsum)
    points = [{"month": m.strftime("%Y-%m"), column: _round(by_month[m.strftime("%Y-%m")], step)} for m in months]
    return {"organization_id": organization_id, "points": points}


def revenue_trend_12m(src: Sources, organization_id: str, as_of: datetime) -> dict:
    """Monthly revenue, 12 calendar months ending with D's month (partial up to D), oldest first."""
    return _trend_12m(src, organization_id, as_of, "revenue", MONEY)


def kwh_trend_12m(src: Sources, organization_id: str, as_of: datetime) -> dict:
    """Monthly kWh deployed, 12 calendar months ending with D's month (partial up to D), oldest first."""
    return _trend_12m(src, organization_id, as_of, "kwh_deployed", KWH)


def yoy_comparison(src: Sources, organization_id: str, as_of: datetime) -> dict:
    """Year to D against the same span a year earlier (29 February maps to 28 February)."""
    today = local_today(src, organization_id, as_of)
    a_year_ago = today.replace(year=today.year - 1, day=28) if (today.month, today.day) == (2, 29) \
        else today.replace(year=today.year - 1)
    current_from, previous_from = date(today.year, 1, 1), date(today.year - 1, 1, 1)
    current = _totals(src, organization_id, current_from, today)
    previous = _totals(src, organization_id, previous_from, a_year_ago)
    metrics = {
        name: {
            "current": _format(current[name], step),
            "previous": _format(previous[name], step),
            "change_percent": _change_percent(current[name], previous[name]),
        }
        for name, step in RANGE_FORMATS.items()
    }
    return {
        "organization_id": organization_id,
        "current_from": current_from.isoformat(),
        "current_to": today.isoformat(),
        "previous_from": previous_from.isoformat(),
        "previous_to": a_year_ago.isoformat(),
        "metrics": metrics,
    }


def product_mix_30d(src: Sources, organization_id: str, as_of: datetime) -> dict:
    """Revenue and units per product category of the delivered orders created on D−29 … D."""
    today = local_today(src, organization_id, as_of)
    start = today - timedelta(days=29)
    orders = _on_days(_one_org(src, organization_id), src.orders, "created_at", start, today)
    delivered = orders.loc[orders["status"] == "delivered", "id"]
    items = src.order_items[src.order_items["order_id"].isin(delivered)].merge(
        src.products[["id", "category"]].rename(columns={"id": "product_id"}), on="product_id"
    )
    by_category = items.groupby("category").agg(revenue=("line_total", _dsum), units=("quantity", "sum"))
    categories = [
        {"category": category, "revenue": _round(row.revenue, MONEY), "units": int(row.units)}
        for category, row in by_category.sort_index().iterrows()
    ]
    return {"organization_id": organization_id, "date_from": start.isoformat(), "date_to": today.isoformat(),
            "categories": categories}


def conversion_funnel_90d(src: Sources, organization_id: str, as_of: datetime) -> dict:
    """Opportunities created on D−89 … D: count per current stage, stages reached, and step conversion."""
    today = local_today(src, organization_id, as_of)
    start = today - timedelta(days=89)
    pipeline = daily_pipeline(_one_org(src, organization_id), start, today)
    stages = {stage: int(pipeline[f"{stage}_opportunities"].sum()) for stage in OPPORTUNITY_STAGES}
    reached = {stage: sum(stages[later] for later in FUNNEL[i:]) for i, stage in enumerate(FUNNEL)}
    reached["new"] += stages["lost"]
    conversion = [
        {"from": a, "to": b, "rate": _round(_ratio(reached[b], reached[a]), RATE)} for a, b in zip(FUNNEL, FUNNEL[1:])
    ]
    return {"organization_id": organization_id, "date_from": start.isoformat(), "date_to": today.isoformat(),
            "stages": stages, "reached": reached, "conversion": conversion}


# --- analytics ---------------------------------------------------------------


def target_progress(src: Sources, extra: Extra, organization_id: str, as_of: datetime) -> dict:
    """Every target whose period contains D, with its metric over [period_start, D] and percent of target."""
    today = local_today(src, organization_id, as_of)
    targets = extra.targets.assign(
        period_start=extra.targets["period_start"].map(_day), period_end=extra.targets["period_end"].map(_day)
    )
    targets = targets[(targets["organization_id"] == organization_id)
                      & (targets["period_start"] <= today) & (targets["period_end"] >= today)]
    rows = []
    for target in targets.sort_values(["metric", "period_start"]).itertuples():
        actual, step = None, None
        if target.metric in TARGET_METRICS:
            total, step = TARGET_METRICS[target.metric]
            actual = _totals(src, organization_id, target.period_start, today)[total]
        rows.append({
            "metric": target.metric,
            "period_start": target.period_start.isoformat(),
            "period_end": target.period_end.isoformat(),
            "target": _round(target.target_value, MONEY),
            "actual": None if actual is None else _format(actual, step),
            "percent": _percent(actual, _dec(target.target_value)),
        })
    return {"organization_id": organization_id, "targets": rows}


def weekly_customer_acquisition(src: Sources, extra: Extra, week_start: date) -> pd.DataFrame:
    """``dashboard.weekly_customer_acquisition`` for the week [week_start, week_start + 6], one row per organization.

    spend is Σ marketing_spend.amount by spend_date; new_customers counts customers
    created on a local day of the week; cac is spend / new_customers to 2 decimals (None when 0).
    """
    week_end = week_start + timedelta(days=6)
    orgs = pd.Index(sorted(src.organizations["id"]), name="organization_id")
    spend = extra.marketing_spend
    spend = spend[spend["spend_date"].map(_day).between(week_start, week_end)]
    spend_by_org = spend.groupby("organization_id")["amount"].agg(_dsum).reindex(orgs, fill_value=Decimal(0))
    created = _on_days(src, src.customers, "created_at", week_start, week_end)
    new_by_org = created.groupby("organization_id").size().reindex(orgs, fill_value=0).astype("int64")
    cac = [None if n == 0 else (s / int(n)).quantize(MONEY, ROUND_HALF_UP) for s, n in zip(spend_by_org, new_by_org)]
    return pd.DataFrame({
        "organization_id": orgs,
        "week_start": week_start,
        "spend": spend_by_org.astype(object).to_numpy(),
        "new_customers": new_by_org.to_numpy(),
        "cac": pd.Series(cac, dtype=object).to_numpy(),
    })


def customer_acquisition_cost(
    src: Sources, extra: Extra, organization_id: str, as_of: datetime, materialized_weeks: list[date]
) -> dict:
    """The CAC Redis value: of the 12 weeks ending with D's (Monday-started) week, those materialized, oldest first."""
    today = local_today(src, organization_id, as_of)
    this_week = today - timedelta(days=today.weekday())
    materialized = set(materialized_weeks)
    one = _one_org(src, organization_id)
    weeks = []
    for back in range(11, -1, -1):
        week = this_week - timedelta(weeks=back)
        if week in materialized:
            (row,) = weekly_customer_acquisition(one, extra, week).to_dict("records")
            weeks.append({"week_start": week.isoformat(), "spend": _round(row["spend"], MONEY),
                          "new_customers": int(row["new_customers"]), "cac": _round(row["cac"], MONEY)})
    return {"organization_id": organization_id, "weeks": weeks}


def customer_lifetime_value(src: Sources, organization_id: str, as_of: datetime) -> dict:
    """Lifetime revenue (Σ line_total of delivered orders created up to ``as_of``) per customer, overall and per cohort.

    Customers are the organization's rows of ``customers`` with at least one such
    order; a cohort is the local month of the customer's ``created_at``.
    """
    orders = src.orders
    orders = orders[(orders["organization_id"] == organization_id) & (orders["status"] == "delivered")
                    & (pd.to_datetime(orders["created_at"], utc=True) <= _utc(as_of))]
    revenue_by_order = src.order_items.groupby("order_id")["line_total"].agg(_dsum)
    revenue = orders["id"].map(revenue_by_order).map(_dec).groupby(orders["customer_id"]).agg(_dsum)
    customers = src.customers[(src.customers["organization_id"] == organization_id)
                              & src.customers["id"].isin(revenue.index)]
    customers = customers.assign(
        revenue=customers["id"].map(revenue),
        cohort=_local_dates(src, customers["organization_id"], customers["created_at"]).map(lambda d: d.strftime("%Y-%m")),
    )
    by_cohort = customers.groupby("cohort").agg(customers=("id", "size"), revenue=("revenue", _dsum))
    cohorts = [
        {"cohort": cohort, "customers": int(row.customers), "revenue": _round(row.revenue, MONEY),
         "ltv": _round(_ratio(row.revenue, int(row.customers)), MONEY)}
        for cohort, row in by_cohort.sort_index().iterrows()
    ]
    total = _dsum(customers["revenue"])
    return {"organization_id": organization_id, "customers": len(customers),
            "mean_ltv": _round(_ratio(total, len(customers)), MONEY), "cohorts": cohorts}

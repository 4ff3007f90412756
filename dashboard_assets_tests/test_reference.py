"""Hand-checked cases for the pandas reference rollups (no database needed)."""

from datetime import date
from decimal import Decimal

import pandas as pd

from dashboard_assets_tests.reference import (
    Sources,
    current_state,
    daily_customers,
    daily_jobs,
    daily_metrics,
    daily_pipeline,
    daily_warranty,
)

COLUMNS = {
    "organizations": ["id", "name", "timezone", "created_at", "updated_at"],
    "customers": ["id", "organization_id", "name", "status", "created_at", "updated_at", "last_order_date"],
    "products": ["id", "organization_id", "sku", "name", "category", "specifications", "unit_price"],
    "orders": ["id", "organization_id", "customer_id", "status", "total_amount", "created_at", "updated_at", "delivered_at"],
    "order_items": ["id", "organization_id", "order_id", "product_id", "quantity", "unit_price", "line_total"],
    "opportunities": [
        "id", "organization_id", "customer_id", "stage", "value", "probability",
        "expected_close_date", "actual_close_date", "created_at", "updated_at",
    ],
    "jobs": ["id", "organization_id", "order_id", "customer_id", "status", "scheduled_date", "completed_at", "created_at", "updated_at"],
    "job_time_entries": ["id", "organization_id", "job_id", "hours", "entry_date", "created_at"],
    "warranty_claims": [
        "id", "organization_id", "customer_id", "order_id", "status", "claim_type",
        "created_at", "updated_at", "resolved_at",
    ],
}
ORG = "00000000-0000-0000-0000-000000000001"


def ts(text: str) -> pd.Timestamp:
    """A UTC timestamp."""
    return pd.Timestamp(text, tz="UTC")


def sources(organizations=None, **tables: list[dict]) -> Sources:
    """Sources from lists of row dicts (missing columns NULL, missing tables empty); one Sydney org by default."""
    tables["organizations"] = organizations or [{"id": ORG, "timezone": "Australia/Sydney"}]
    return Sources(**{name: pd.DataFrame(tables.get(name, []), columns=cols) for name, cols in COLUMNS.items()})


def row(frame: pd.DataFrame, day: date, org: str = ORG) -> pd.Series:
    """The rollup row of one organization and day."""
    (match,) = frame.index[(frame["organization_id"] == org) & (frame["metric_date"] == day)]
    return frame.loc[match]


def order(oid, created, status="delivered", customer="c1", total=None, org=ORG) -> dict:
    return {"id": oid, "organization_id": org, "customer_id": customer, "status": status,
            "total_amount": total, "created_at": ts(created)}


def job(jid, order_id, status, completed=None, created="2024-01-01T00:00Z") -> dict:
    return {"id": jid, "organization_id": ORG, "order_id": order_id, "customer_id": "c1", "status": status,
            "completed_at": ts(completed) if completed else None, "created_at": ts(created)}


def battery(pid, specifications) -> dict:
    return {"id": pid, "organization_id": ORG, "category": "battery", "specifications": specifications}


def item(iid, order_id, product_id, quantity, line_total=None) -> dict:
    return {"id": iid, "organization_id": ORG, "order_id": order_id, "product_id": product_id,
            "quantity": quantity, "line_total": line_total}


def test_kwh_counts_once_on_first_completion_day():
    # Sydney is UTC+11 in January: 2024-01-10T02:00Z is Jan 10, 2024-01-11T20:00Z is Jan 12 local.
    src = sources(
        products=[battery("p1", {"capacity_kwh": "13.5"}), battery("p2", {"capacity_kwh": 10}),
                  {"id": "p3", "organization_id": ORG, "category": "inverter", "specifications": {"capacity_kwh": 99}}],
        orders=[order("o1", "2024-01-01T00:00Z", status="confirmed")],
        order_items=[item("i1", "o1", "p1", 2), item("i2", "o1", "p2", 1), item("i3", "o1", "p3", 5)],
        jobs=[job("j1", "o1", "completed", "2024-01-11T20:00Z"), job("j2", "o1", "completed", "2024-01-10T02:00Z"),
              job("j3", "o1", "completed", None), job("j4", "o1", "scheduled")],
    )
    metrics = daily_metrics(src, date(2024, 1, 9), date(2024, 1, 13))
    assert row(metrics, date(2024, 1, 10))["kwh_deployed"] == Decimal("37")
    assert sum(metrics["kwh_deployed"]) == Decimal("37")


def test_garbage_capacities_count_zero():
    specs = [{"capacity_kwh": "13.5kWh"}, {"capacity_kwh": "n/a"}, {"capacity_kwh": None}, {}, {"capacity_kwh": ""},
             {"capacity_kwh": "-5"}, {"capacity_kwh": "1."}, {"capacity_kwh": ".5"}, {"capacity_kwh": " 5"},
             {"capacity_kwh": True}, {"capacity_kwh": [5]}, {"capacity_kwh": "5\n"}, {"capacity_kwh": -2.5},
             {"capacity_kwh": "2.25"}, {"capacity_kwh": 1e-2}]
    src = sources(
        products=[battery(f"p{i}", s) for i, s in enumerate(specs)],
        orders=[order("o1", "2024-01-01T00:00Z")],
        order_items=[item(f"i{i}", "o1", f"p{i}", 1) for i in range(len(specs))],
        jobs=[job("j1", "o1", "completed", "2024-01-05T01:00Z")],
    )
    metrics = daily_metrics(src, date(2024, 1, 5), date(2024, 1, 5))
    assert metrics["kwh_deployed"].tolist() == [Decimal("2.26")]


def test_local_midnight_in_auckland_starts_the_new_day():
    # Auckland is UTC+13 in March: 11:00Z on Mar 4 is exactly midnight of Mar 5.
    src = sources(
        organizations=[{"id": ORG, "timezone": "Pacific/Auckland"}],
        orders=[order("o1", "2024-03-04T11:00:00Z"), order("o2", "2024-03-04T10:59:59.999999Z")],
    )
    metrics = daily_metrics(src, date(2024, 3, 4), date(2024, 3, 5))
    assert row(metrics, date(2024, 3, 4))["delivered_orders"] == 1
    assert row(metrics, date(2024, 3, 5))["delivered_orders"] == 1


def test_null_timezone_means_sydney():
    # Sydney is UTC+10 in July: 14:00Z on Jun 30 is midnight of Jul 1.
    other = "00000000-0000-0000-0000-000000000002"
    src = sources(
        organizations=[{"id": ORG, "timezone": None}, {"id": other, "timezone": "UTC"}],
        orders=[order("o1", "2024-06-30T14:00Z"), order("o2", "2024-06-30T14:00Z", org=other)],
    )
    metrics = daily_metrics(src, date(2024, 6, 30), date(2024, 7, 1))
    assert row(metrics, date(2024, 7, 1))["delivered_orders"] == 1
    assert row(metrics, date(2024, 6, 30), other)["delivered_orders"] == 1


def test_weighted_pipeline_excludes_won_and_lost():
    def opp(oid, stage, value, probability):
        return {"id": oid, "organization_id": ORG, "customer_id": "c1", "stage": stage, "value": value,
                "probability": probability, "created_at": ts("2024-01-01T00:00Z")}

    src = sources(opportunities=[
        opp("a", "new", Decimal("1000.00"), 50), opp("b", "negotiation", Decimal("200.50"), 10),
        opp("c", "qualified", Decimal("300.00"), None), opp("d", "proposal", None, 90),
        opp("e", "won", Decimal("5000.00"), 100), opp("f", "won", Decimal("1000.00"), 100),
        opp("g", "lost", Decimal("3000.00"), 0),
    ])
    pipeline = row(daily_pipeline(src, date(2024, 1, 1), date(2024, 1, 1)), date(2024, 1, 1))
    assert pipeline["weighted_pipeline"] == Decimal("520.05")
    assert pipeline["total_pipeline"] == Decimal("1500.50")
    assert (pipeline["won_opportunities"], pipeline["lost_opportunities"], pipeline["closed_opportunities"]) == (2, 1, 3)
    assert (pipeline["won_value"], pipeline["avg_won_deal_size"]) == (Decimal("6000.00"), Decimal("3000"))
    assert current_state(src)["current_pipeline"].tolist() == [Decimal("520.05")]


def test_distinct_customers_per_day():
    src = sources(orders=[
        order("o1", "2024-01-01T00:00Z", customer="a"), order("o2", "2024-01-01T01:00Z", customer="a"),
        order("o3", "2024-01-01T02:00Z", customer="b", status="draft"), order("o4", "2024-01-02T00:00Z", customer="a"),
    ])
    metrics = daily_metrics(src, date(2024, 1, 1), date(2024, 1, 3))
    assert metrics["active_customers"].tolist() == [2, 1, 0]
    customers = daily_customers(src, date(2024, 1, 1), date(2024, 1, 3))
    assert customers.values.tolist() == [[ORG, date(2024, 1, 1), "a"], [ORG, date(2024, 1, 1), "b"],
                                         [ORG, date(2024, 1, 2), "a"]]


def test_revenue_and_hours_are_not_fanned_out():
    src = sources(
        orders=[order("o1", "2024-01-01T00:00Z", total=Decimal("30.00")),
                order("o2", "2024-01-01T00:00Z", status="shipped", total=None)],
        order_items=[item("i1", "o1", "p", 1, Decimal("10.00")), item("i2", "o1", "p", 1, Decimal("20.00")),
                     item("i3", "o1", "p", 1, None), item("i4", "o2", "p", 1, Decimal("99.00"))],
        jobs=[job("j1", "o1", "completed", "2024-01-02T00:00Z"), job("j2", "o1", "in_progress"), job("j3", None, "cancelled")],
        job_time_entries=[{"id": "t1", "organization_id": ORG, "job_id": "j1", "hours": Decimal("1.50")},
                          {"id": "t2", "organization_id": ORG, "job_id": "j1", "hours": Decimal("2.25")},
                          {"id": "t3", "organization_id": ORG, "job_id": "j2", "hours": None}],
    )
    metrics = row(daily_metrics(src, date(2024, 1, 1), date(2024, 1, 1)), date(2024, 1, 1))
    assert (metrics["revenue"], metrics["total_order_value"]) == (Decimal("30.00"), Decimal("30.00"))
    assert (metrics["delivered_orders"], metrics["pending_orders"]) == (1, 1)
    jobs = row(daily_jobs(src, date(2024, 1, 1), date(2024, 1, 1)), date(2024, 1, 1))
    assert (jobs["total_jobs"], jobs["completed_jobs"], jobs["in_progress_jobs"], jobs["cancelled_jobs"]) == (3, 1, 1, 1)
    assert (jobs["total_labor_hours"], jobs["avg_labor_hours_per_job"]) == (Decimal("3.75"), Decimal("1.25"))
    assert current_state(src)["active_installations"].tolist() == [1]


def test_warranty_resolution_days_and_dense_zero_rows():
    def claim(cid, status, claim_type, resolved=None):
        return {"id": cid, "organization_id": ORG, "customer_id": "c1", "status": status, "claim_type": claim_type,
                "created_at": ts("2024-01-01T00:00Z"), "resolved_at": ts(resolved) if resolved else None}

    src = sources(warranty_claims=[
        claim("a", "resolved", "defect", "2024-01-02T12:00Z"), claim("b", "resolved", "damage", "2024-01-01T06:00Z"),
        claim("c", "resolved", "other"), claim("d", "pending", "performance"),
    ])
    warranty = daily_warranty(src, date(2024, 1, 1), date(2024, 1, 2))
    first, second = warranty.iloc[0], warranty.iloc[1]
    assert (first["total_claims"], first["resolved_claims"], first["resolved_count"], first["pending_claims"]) == (4, 3, 2, 1)
    assert (first["defect_claims"], first["damage_claims"], first["performance_claims"]) == (1, 1, 1)
    assert (first["resolution_days_sum"], first["avg_resolution_days"]) == (1.75, 0.875)
    assert (second["total_claims"], second["resolution_days_sum"], second["avg_resolution_days"]) == (0, 0.0, None)
    assert current_state(src)["open_warranty_claims"].tolist() == [1]


def test_shapes_columns_and_order():
    orgs = [{"id": "00000000-0000-0000-0000-00000000000b"}, {"id": "00000000-0000-0000-0000-00000000000a"}]
    src = sources(organizations=orgs)
    metrics = daily_metrics(src, date(2024, 1, 1), date(2024, 1, 3))
    assert list(metrics.columns) == ["organization_id", "metric_date", "revenue", "delivered_orders", "pending_orders",
                                     "total_order_value", "kwh_deployed", "active_customers"]
    assert metrics[["organization_id", "metric_date"]].values.tolist() == [
        [o, date(2024, 1, d)] for o in sorted(r["id"] for r in orgs) for d in (1, 2, 3)
    ]
    assert set(metrics["revenue"]) == {Decimal(0)}
    assert list(current_state(src).columns) == ["organization_id", "active_installations", "open_warranty_claims",
                                                "current_pipeline", "active_customers"]

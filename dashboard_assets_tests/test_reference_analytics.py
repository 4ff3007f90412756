"""Hand-checked cases for the pandas reference analytics (no database needed)."""

from datetime import date, datetime, timezone
from decimal import Decimal

import pandas as pd

from dashboard_assets_tests.reference_analytics import (
    Extra,
    conversion_funnel_90d,
    customer_acquisition_cost,
    customer_lifetime_value,
    full_metrics,
    kwh_trend_12m,
    local_today,
    product_mix_30d,
    revenue_trend_12m,
    summary,
    target_progress,
    weekly_customer_acquisition,
    yoy_comparison,
)
from dashboard_assets_tests.test_reference import ORG, battery, item, job, order, sources, ts

UTC_ORG = [{"id": ORG, "timezone": "UTC"}]
OTHER = "00000000-0000-0000-0000-000000000002"


def at(text: str) -> datetime:
    """An aware UTC datetime (the as_of instant)."""
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def sold(oid: str, created: str, line_total: str | None, customer: str = "c1", status: str = "delivered") -> tuple:
    """An order with one item of ``line_total``: (order row, item row)."""
    total = None if line_total is None else Decimal(line_total)
    return order(oid, created, status=status, customer=customer), item(f"i-{oid}", oid, "p", 1, total)


def sales(*orders: tuple) -> dict:
    """``orders``/``order_items`` tables from :func:`sold` pairs."""
    return {"orders": [o for o, _ in orders], "order_items": [i for _, i in orders]}


def opp(oid: str, stage: str, created: str, value: str | None = None, probability: int | None = None) -> dict:
    return {"id": oid, "organization_id": ORG, "customer_id": "c1", "stage": stage,
            "value": None if value is None else Decimal(value), "probability": probability, "created_at": ts(created)}


def customer(cid: str, created: str, org: str = ORG) -> dict:
    return {"id": cid, "organization_id": org, "name": cid, "status": "active", "created_at": ts(created)}


def extra(targets=(), marketing_spend=()) -> Extra:
    return Extra(
        targets=pd.DataFrame(list(targets), columns=["id", "organization_id", "metric", "period_start", "period_end",
                                                     "target_value"]),
        marketing_spend=pd.DataFrame(list(marketing_spend), columns=["id", "organization_id", "spend_date", "channel",
                                                                     "amount"]),
    )


def test_local_today_uses_the_organization_timezone():
    # Sydney is UTC+11 in January: 13:00Z is already the next local day.
    src = sources(organizations=[{"id": ORG, "timezone": None}, {"id": OTHER, "timezone": "UTC"}])
    assert local_today(src, ORG, at("2024-01-09T13:00:00")) == date(2024, 1, 10)
    assert local_today(src, OTHER, at("2024-01-09T13:00:00")) == date(2024, 1, 9)


def test_trend_has_12_points_with_the_current_month_up_to_d():
    tables = sales(sold("o-old", "2023-03-31T23:59Z", "1000.00"), sold("o-first", "2023-04-01T00:00Z", "10.00"),
                   sold("o-mar", "2024-03-01T00:00Z", "20.00"), sold("o-late", "2024-03-16T00:00Z", "7.00"))
    # 2 × 13.5 kWh, counted on the day of its first completed job, whatever the order's status or creation day.
    tables["orders"].append(order("o-kwh", "2023-01-01T00:00Z", status="confirmed"))
    tables["order_items"].append(item("i-kwh", "o-kwh", "b", 2))
    src = sources(
        organizations=UTC_ORG,
        products=[battery("b", {"capacity_kwh": "13.5"})],
        jobs=[job("j1", "o-kwh", "completed", "2024-03-10T05:00Z")],
        **tables,
    )
    as_of = at("2024-03-15T12:00:00")
    points = revenue_trend_12m(src, ORG, as_of)["points"]
    assert [p["month"] for p in points] == [f"2023-{m:02}" for m in range(4, 13)] + ["2024-01", "2024-02", "2024-03"]
    assert [p["revenue"] for p in points] == [10.0] + [0.0] * 10 + [20.0]
    assert kwh_trend_12m(src, ORG, as_of)["points"][-1] == {"month": "2024-03", "kwh_deployed": 27.0}


def test_yoy_over_29_february():
    src = sources(
        organizations=UTC_ORG,
        opportunities=[opp("w1", "won", "2024-02-01T00:00Z"), opp("l1", "lost", "2024-02-01T00:00Z"),
                       opp("l2", "lost", "2024-02-29T23:00Z"), opp("w0", "won", "2023-02-28T00:00Z"),
                       opp("l0", "lost", "2023-03-01T00:00Z")],
        **sales(sold("a", "2024-01-05T00:00Z", "150.00", customer="x"), sold("b", "2024-02-29T10:00Z", "50.00", customer="y"),
                sold("c", "2023-02-28T23:59Z", "100.00", customer="x"), sold("d", "2023-03-01T00:00Z", "999.00")),
    )
    value = yoy_comparison(src, ORG, at("2024-02-29T12:00:00"))
    assert (value["current_from"], value["current_to"]) == ("2024-01-01", "2024-02-29")
    assert (value["previous_from"], value["previous_to"]) == ("2023-01-01", "2023-02-28")
    metrics = value["metrics"]
    assert metrics["revenue"] == {"current": 200.0, "previous": 100.0, "change_percent": 100.0}
    assert metrics["customers"] == {"current": 2, "previous": 1, "change_percent": 100.0}
    assert metrics["kwh_deployed"] == {"current": 0.0, "previous": 0.0, "change_percent": None}
    assert metrics["warranty_claims"] == {"current": 0, "previous": 0, "change_percent": None}
    # 1/3 against 1/1: -66.666…% rounds away from zero.
    assert metrics["quote_win_rate"] == {"current": 0.3333, "previous": 1.0, "change_percent": -66.67}


def test_funnel_counts_lost_only_as_reached_new():
    stages = ["new", "new", "qualified", "proposal", "won", "won", "lost"]
    src = sources(
        organizations=UTC_ORG,
        opportunities=[opp(f"o{i}", s, "2024-04-02T00:00Z") for i, s in enumerate(stages)]
        + [opp("outside", "won", "2024-04-01T23:59Z")],
    )
    value = conversion_funnel_90d(src, ORG, at("2024-06-30T12:00:00"))
    assert (value["date_from"], value["date_to"]) == ("2024-04-02", "2024-06-30")
    assert value["stages"] == {"new": 2, "qualified": 1, "proposal": 1, "negotiation": 0, "won": 2, "lost": 1}
    assert value["reached"] == {"new": 7, "qualified": 4, "proposal": 3, "negotiation": 2, "won": 2}
    assert value["conversion"] == [
        {"from": "new", "to": "qualified", "rate": 0.5714},
        {"from": "qualified", "to": "proposal", "rate": 0.75},
        {"from": "proposal", "to": "negotiation", "rate": 0.6667},
        {"from": "negotiation", "to": "won", "rate": 1.0},
    ]


def test_product_mix_sums_delivered_items_per_category():
    src = sources(
        organizations=UTC_ORG,
        products=[{"id": "p", "organization_id": ORG, "category": "solar"}, battery("b", {})],
        **sales(sold("a", "2024-06-01T00:00Z", "100.50"), sold("b", "2024-06-30T00:00Z", None),
                sold("c", "2024-05-31T23:59Z", "999.00"), sold("d", "2024-06-10T00:00Z", "5.00", status="shipped")),
    )
    src.order_items.loc[len(src.order_items)] = {"id": "i-b2", "organization_id": ORG, "order_id": "a",
                                                 "product_id": "b", "quantity": 3, "line_total": Decimal("30.00")}
    value = product_mix_30d(src, ORG, at("2024-06-30T12:00:00"))
    assert (value["date_from"], value["date_to"]) == ("2024-06-01", "2024-06-30")
    assert value["categories"] == [{"category": "battery", "revenue": 30.0, "units": 3},
                                   {"category": "solar", "revenue": 100.5, "units": 2}]


def test_full_metrics_quote_win_rate_is_none_when_nothing_closed():
    src = sources(
        organizations=UTC_ORG,
        opportunities=[opp("a", "new", "2024-06-02T00:00Z", "1000.00", 33), opp("b", "proposal", "2024-01-01T00:00Z", "10.01", 50),
                       opp("c", "won", "2024-06-20T00:00Z", "50.00", 100)],
        jobs=[job("j1", None, "scheduled"), job("j2", None, "in_progress"), job("j3", None, "completed")],
        **sales(sold("a", "2024-06-01T00:00Z", "12.34"), sold("b", "2024-06-20T00:00Z", "99.00")),
    )
    value = full_metrics(src, ORG, date(2024, 6, 1), date(2024, 6, 30), at("2024-06-15T12:00:00"))
    assert value == {
        "organization_id": ORG, "date_from": "2024-06-01", "date_to": "2024-06-30",
        "revenue": 12.34, "kwh_deployed": 0.0, "delivered_orders": 1, "warranty_claims": 0,
        "quote_win_rate": None, "customers": 1, "active_installations": 2,
        "pipeline": 335.01,  # 330 + 5.005, rounded half up once
    }
    both = summary(src, ORG, at("2024-06-15T12:00:00"))
    assert (both["month_to_date"]["date_from"], both["month_to_date"]["date_to"]) == ("2024-06-01", "2024-06-15")
    assert (both["previous_month"]["date_from"], both["previous_month"]["date_to"]) == ("2024-05-01", "2024-05-31")


def test_targets_cover_d_and_unknown_metrics_get_no_actual():
    src = sources(
        organizations=UTC_ORG,
        **sales(sold("a", "2024-01-05T00:00Z", "250.00", customer="x"), sold("b", "2024-06-03T00:00Z", "0.00", customer="y"),
                sold("c", "2024-06-04T00:00Z", None, customer="x", status="draft")),
    )

    def target(metric, start, end, value):
        return {"id": metric, "organization_id": ORG, "metric": metric, "period_start": date.fromisoformat(start),
                "period_end": date.fromisoformat(end), "target_value": Decimal(value)}

    targets = [target("revenue", "2024-01-01", "2024-12-31", "1000.00"), target("nps", "2024-06-01", "2024-06-30", "50.00"),
               target("quote_win_rate", "2024-06-01", "2024-06-30", "0.50"),
               target("active_customers", "2024-06-01", "2024-06-15", "3.00"),
               target("delivered_orders", "2023-01-01", "2023-12-31", "10.00")]
    value = target_progress(src, extra(targets=targets), ORG, at("2024-06-15T12:00:00"))
    assert value["targets"] == [
        {"metric": "active_customers", "period_start": "2024-06-01", "period_end": "2024-06-15", "target": 3.0,
         "actual": 2, "percent": 66.67},
        {"metric": "nps", "period_start": "2024-06-01", "period_end": "2024-06-30", "target": 50.0,
         "actual": None, "percent": None},
        {"metric": "quote_win_rate", "period_start": "2024-06-01", "period_end": "2024-06-30", "target": 0.5,
         "actual": None, "percent": None},
        {"metric": "revenue", "period_start": "2024-01-01", "period_end": "2024-12-31", "target": 1000.0,
         "actual": 250.0, "percent": 25.0},
    ]


def test_cac_is_none_without_new_customers():
    src = sources(
        organizations=[*UTC_ORG, {"id": OTHER, "timezone": "UTC"}],
        customers=[customer("a", "2024-01-08T00:00Z"), customer("b", "2024-01-10T00:00Z"),
                   customer("c", "2024-01-14T23:59Z"), customer("d", "2024-01-15T00:00Z")],
    )
    spend = [{"id": f"s{i}", "organization_id": ORG, "spend_date": date.fromisoformat(d), "channel": "web",
              "amount": Decimal(a)} for i, (d, a) in enumerate([("2024-01-01", "100.00"), ("2024-01-07", "50.50"),
                                                                 ("2024-01-08", "10.00")])]
    ext = extra(marketing_spend=spend)
    first = weekly_customer_acquisition(src, ext, date(2024, 1, 1))
    assert first.values.tolist() == [[ORG, date(2024, 1, 1), Decimal("150.50"), 0, None],
                                     [OTHER, date(2024, 1, 1), Decimal("0"), 0, None]]
    weeks = [date(2023, 10, 16), date(2024, 1, 1), date(2024, 1, 8), date(2024, 1, 15)]
    value = customer_acquisition_cost(src, ext, ORG, at("2024-01-10T12:00:00"), weeks)
    assert value["weeks"] == [
        {"week_start": "2024-01-01", "spend": 150.5, "new_customers": 0, "cac": None},
        {"week_start": "2024-01-08", "spend": 10.0, "new_customers": 3, "cac": 3.33},
    ]


def test_ltv_cohorts_by_local_month_of_customer_creation():
    # Sydney is UTC+11: 2024-01-31T14:00Z is 1 February local.
    src = sources(
        customers=[customer("a", "2024-01-10T00:00Z"), customer("b", "2024-01-31T14:00Z"),
                   customer("c", "2024-02-15T00:00Z"), customer("d", "2024-02-16T00:00Z")],
        **sales(sold("a1", "2024-01-11T00:00Z", "100.00", customer="a"), sold("a2", "2024-02-11T00:00Z", "50.00", customer="a"),
                sold("b1", "2024-02-01T00:00Z", "35.01", customer="b"), sold("c1", "2024-02-20T00:00Z", None, customer="c"),
                sold("c2", "2024-03-01T00:00:01Z", "70.00", customer="c"),
                sold("d1", "2024-02-20T00:00Z", "500.00", customer="d", status="shipped")),
    )
    value = customer_lifetime_value(src, ORG, at("2024-03-01T00:00:00"))
    assert value == {
        "organization_id": ORG, "customers": 3, "mean_ltv": 61.67,  # 185.01 / 3
        "cohorts": [{"cohort": "2024-01", "customers": 1, "revenue": 150.0, "ltv": 150.0},
                    {"cohort": "2024-02", "customers": 2, "revenue": 35.01, "ltv": 17.51}],  # 17.505 half up
    }

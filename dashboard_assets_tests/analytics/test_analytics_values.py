"""Every chart and analytics value equals the independent pandas computation,
and Redis holds every contract key with its TTL."""

import json

import pytest
import redis

from dashboard_assets.analytics.assets import warmed_ranges
from dashboard_assets.cache import TTL_SECONDS, Keys
from dashboard_assets_tests import reference_analytics as ref
from dashboard_assets_tests.analytics.conftest import AS_OF, FIRST_WEEK, LAST_WEEK
from dashboard_assets_tests.helpers import read_table, sources, without_computed_at

PER_ORGANIZATION = {  # table -> reference computation
    "revenue_trend_12m": lambda src, extra, org: ref.revenue_trend_12m(src, org, AS_OF),
    "kwh_trend_12m": lambda src, extra, org: ref.kwh_trend_12m(src, org, AS_OF),
    "yoy_comparison": lambda src, extra, org: ref.yoy_comparison(src, org, AS_OF),
    "product_mix_30d": lambda src, extra, org: ref.product_mix_30d(src, org, AS_OF),
    "conversion_funnel_90d": lambda src, extra, org: ref.conversion_funnel_90d(src, org, AS_OF),
    "target_progress": lambda src, extra, org: ref.target_progress(src, extra, org, AS_OF),
    "customer_lifetime_value": lambda src, extra, org: ref.customer_lifetime_value(src, org, AS_OF),
}


def _extra(database_url: str):
    from dashboard_assets.db import engine

    with engine(database_url).connect() as conn:
        return ref.load_extra(conn)


@pytest.mark.parametrize("table", sorted(PER_ORGANIZATION))
def test_stored_value_equals_reference(served, table):
    src, extra = sources(served.database_url), _extra(served.database_url)
    stored = read_table(served.database_url, f"SELECT organization_id, payload FROM dashboard.{table}")
    assert sorted(stored["organization_id"]) == sorted(served.organizations())
    for org, payload in zip(stored["organization_id"], stored["payload"], strict=True):
        assert without_computed_at(payload) == PER_ORGANIZATION[table](src, extra, org), (table, org)


def test_weekly_customer_acquisition_equals_reference(served):
    src, extra = sources(served.database_url), _extra(served.database_url)
    stored = read_table(served.database_url, "SELECT * FROM dashboard.weekly_customer_acquisition")
    weeks = sorted(set(stored["week_start"]))
    assert weeks[0] == FIRST_WEEK and weeks[-1] == LAST_WEEK and len(weeks) == 14
    for week in weeks:
        expected = ref.weekly_customer_acquisition(src, extra, week).sort_values("organization_id")
        actual = stored[stored["week_start"] == week].sort_values("organization_id")
        for column in ("organization_id", "spend", "new_customers", "cac"):
            assert actual[column].tolist() == expected[column].tolist(), (week, column)
    client = redis.Redis.from_url(served.redis_url)
    for org in served.organizations():
        cached = json.loads(client.get(Keys().analytics(org, "cac")))
        assert without_computed_at(cached) == ref.customer_acquisition_cost(src, extra, org, AS_OF, weeks)


def _contract_keys(served) -> dict[str, int]:
    """Every key the contract promises for every organization, with its TTL."""
    keys, src = Keys(), sources(served.database_url)
    expected = {}
    for org in served.organizations():
        expected |= {
            keys.chart(org, "revenue_trend:12m"): TTL_SECONDS["revenue_trend_12m"],
            keys.chart(org, "kwh_trend:12m"): TTL_SECONDS["kwh_trend_12m"],
            keys.chart(org, "yoy_comparison"): TTL_SECONDS["yoy_comparison"],
            keys.chart(org, "product_mix:30d"): TTL_SECONDS["product_mix_30d"],
            keys.chart(org, "conversion_funnel:90d"): TTL_SECONDS["conversion_funnel_90d"],
            keys.targets(org): TTL_SECONDS["target_progress"],
            keys.analytics(org, "cac"): TTL_SECONDS["customer_acquisition_cost"],
            keys.analytics(org, "ltv"): TTL_SECONDS["customer_lifetime_value"],
            keys.summary(org): TTL_SECONDS["summary"],
        }
        for date_from, date_to in warmed_ranges(ref.local_today(src, org, AS_OF)).values():
            expected[keys.metrics(org, date_from, date_to)] = TTL_SECONDS["metrics"]
    return expected


def test_every_contract_key_exists_with_its_ttl(served):
    client = redis.Redis.from_url(served.redis_url)
    for key, ttl in _contract_keys(served).items():
        assert ttl - 120 <= client.ttl(key) <= ttl, key


def test_flushall_then_materializing_restores_every_key(served):
    client = redis.Redis.from_url(served.redis_url)
    expected = _contract_keys(served)
    client.flushall()
    served.materialize_serving()
    assert all(client.exists(key) for key in expected)


def test_warmed_values_and_summary_equal_reference(served):
    client, keys, src = redis.Redis.from_url(served.redis_url), Keys(), sources(served.database_url)
    for org in served.organizations():
        for date_from, date_to in warmed_ranges(ref.local_today(src, org, AS_OF)).values():
            cached = json.loads(client.get(keys.metrics(org, date_from, date_to)))
            assert without_computed_at(cached) == ref.full_metrics(src, org, date_from, date_to, AS_OF)
        summary = json.loads(client.get(keys.summary(org)))
        expected = ref.summary(src, org, AS_OF)
        assert without_computed_at(summary["month_to_date"]) == without_computed_at(expected["month_to_date"])
        assert without_computed_at(summary["previous_month"]) == without_computed_at(expected["previous_month"])

"""dashboard.dashboard_metrics, the SQL function a dashboard in any language
calls on a cache miss: called as such a dashboard would (a plain connection,
the server's default settings), it equals the pandas reference and the value
the cache warmer wrote to Redis, and refuses bad input with its documented
SQLSTATE, at the same limits as the Python read path."""

import datetime as dt
import json

import psycopg
import pytest
import redis

from dashboard_assets import serving
from dashboard_assets.cache import DashboardCache
from dashboard_assets.db import libpq_url
from dashboard_assets_tests import reference_analytics as ref
from dashboard_assets_tests.analytics.conftest import AS_OF
from dashboard_assets_tests.helpers import sources, without_computed_at

SQL = "SELECT dashboard.dashboard_metrics(%s, %s, %s, %s)"
RANGES = [
    (dt.date(2023, 4, 11), dt.date(2025, 4, 10)),  # two years, most of it before the first order
    (dt.date(2024, 1, 1), dt.date(2024, 12, 31)),  # before the first order
    (dt.date(2025, 4, 6), dt.date(2025, 4, 6)),  # a single day, a DST change (Sydney and Auckland)
    (dt.date(2025, 4, 10), dt.date(2025, 4, 10)),  # today (and Auckland's yesterday)
    (dt.date(2025, 4, 11), dt.date(2025, 4, 11)),  # Auckland's today, the others' tomorrow
    (dt.date(2025, 3, 31), dt.date(2025, 4, 13)),  # running past today
]
UNKNOWN = "0f8fad5b-d9cb-469f-a165-70867728950e"


@pytest.fixture(scope="module")
def plain(served):
    """A connection as another language's driver opens it: no options of the project's."""
    with psycopg.connect(libpq_url(served.database_url), autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def organizations(served) -> list[str]:
    return served.organizations()


def call(conn, org, date_from, date_to, as_of=AS_OF) -> dict:
    return conn.execute(SQL, (org, date_from, date_to, as_of)).fetchone()[0]


@pytest.mark.parametrize(("date_from", "date_to"), RANGES)
def test_equals_the_reference_for_every_organization(served, plain, organizations, date_from, date_to):
    src = sources(served.database_url)
    for org in organizations:
        value = call(plain, org, date_from, date_to)
        assert without_computed_at(value) == ref.full_metrics(src, org, date_from, date_to, AS_OF), org
        assert dt.datetime.fromisoformat(value["computed_at"]).tzinfo == dt.UTC


def test_equals_the_warmed_redis_values_field_by_field(served, plain, organizations):
    store = DashboardCache(redis.Redis.from_url(served.redis_url))
    compared = 0
    for org in organizations:
        for key in store.client.scan_iter(f"{store.keys.metrics_prefix(org)}*"):
            cached = json.loads(store.client.get(key))
            value = call(plain, org, cached["date_from"], cached["date_to"])
            assert value.keys() == cached.keys()
            for field in value.keys() - {"computed_at"}:
                assert (value[field], type(value[field])) == (cached[field], type(cached[field])), (key, field)
            compared += 1
    assert compared >= 4 * len(organizations)


@pytest.mark.parametrize(
    ("date_from", "date_to", "message"),
    [
        ("2025-02-01", "2025-01-01", "after"),
        ("1999-12-31", "2025-01-01", "outside"),
        ("2020-01-01", "2025-01-04", "longer than 1830 days"),  # 1,831 days
    ],
)
def test_bad_ranges_are_refused_as_invalid_parameters_as_the_read_path_refuses_them(
        plain, organizations, date_from, date_to, message):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message) as refused:
        call(plain, organizations[0], date_from, date_to)
    assert refused.value.sqlstate == "22023"
    with pytest.raises(serving.InvalidRequest, match=message.split()[0]):
        serving.validate_request(organizations[0], date_from, date_to)


@pytest.mark.parametrize(("date_from", "date_to", "message"), [
    ("2025-01-01", "2026-04-12", "outside"),  # 367 days after as_of
    (None, "2025-01-01", "required"),
])
def test_a_range_past_next_year_or_a_missing_date_is_refused(plain, organizations, date_from, date_to, message):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        call(plain, organizations[0], date_from, date_to)


def test_the_limits_themselves_are_accepted(plain, organizations):
    call(plain, organizations[0], "2000-01-01", "2000-01-31")
    call(plain, organizations[0], "2020-01-01", "2025-01-03")  # 1,830 days
    call(plain, organizations[0], "2025-01-01", "2026-04-11")  # 366 days after as_of


def test_an_unknown_organization_is_refused_as_no_data_found(plain):
    with pytest.raises(psycopg.errors.NoDataFound, match=f"no organization {UNKNOWN}") as refused:
        call(plain, UNKNOWN, "2025-01-01", "2025-01-31")
    assert refused.value.sqlstate == "P0002"

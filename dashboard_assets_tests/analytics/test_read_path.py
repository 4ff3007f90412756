"""The hybrid read path: equal to the pandas computation on a miss, on a hit
(on a Redis server and on a Redis Cluster) and with Redis stopped; bad
requests refused with a clear error."""

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from dashboard_assets import serving
from dashboard_assets.cache import DashboardCache
from dashboard_assets.local_servers import LocalRedis
from dashboard_assets.resources import redis_client
from dashboard_assets_tests import reference_analytics as ref
from dashboard_assets_tests.analytics.conftest import AS_OF
from dashboard_assets_tests.conftest import HISTORY_END, HISTORY_START, PROJECT_ROOT, on_a_server_and_a_cluster
from dashboard_assets_tests.helpers import sources, without_computed_at

RANGES = [
    (HISTORY_START, HISTORY_END),  # the whole history, today included
    (dt.date(2025, 3, 1), dt.date(2025, 3, 31)),  # past days only
    (dt.date(2025, 4, 6), dt.date(2025, 4, 6)),  # one past day (a DST change)
    (dt.date(2025, 4, 10), dt.date(2025, 4, 11)),  # today (and Auckland's today)
    (dt.date(2025, 4, 1), dt.date(2025, 5, 31)),  # running past today
]


@pytest.mark.parametrize(("date_from", "date_to"), RANGES)
def test_cold_read_equals_reference(served, date_from, date_to):
    src = sources(served.database_url)
    for org in served.organizations():
        value = serving.dashboard_metrics(
            org, date_from, date_to, database_url=served.database_url, dashboard_cache=None, as_of=AS_OF
        )
        assert without_computed_at(value) == ref.full_metrics(src, org, date_from, date_to, AS_OF), org


@on_a_server_and_a_cluster
def test_hit_miss_and_redis_down_give_identical_answers(served, redis_url):
    org = served.organizations()[0]
    date_from, date_to = dt.date(2025, 2, 1), dt.date(2025, 4, 10)
    store = DashboardCache(redis_client(redis_url))
    key = store.keys.metrics(org, date_from, date_to)
    store.client.delete(key)

    def read(cache):
        return serving.dashboard_metrics(
            org, date_from.isoformat(), date_to.isoformat(),
            database_url=served.database_url, dashboard_cache=cache, as_of=AS_OF,
        )

    miss = read(store)
    assert 295 <= store.client.ttl(key) <= 300
    hit = read(store)
    assert hit == miss  # computed_at included: the hit is the cached value itself
    store.client.set(key, json.dumps({**miss, "revenue": -1}))
    assert read(store)["revenue"] == -1  # really read from Redis

    stopped = LocalRedis(PROJECT_ROOT / ".local" / f"stopped-redis-{id(store)}")
    stopped.stop()
    down = read(DashboardCache(redis.Redis.from_url(stopped.url, socket_connect_timeout=0.5)))
    assert without_computed_at(down) == without_computed_at(miss)


@pytest.mark.parametrize(
    ("org", "date_from", "date_to", "message"),
    [
        ("not-a-uuid", "2025-01-01", "2025-01-31", "canonical lower-case uuid"),
        ("0F8FAD5B-D9CB-469F-A165-70867728950E", "2025-01-01", "2025-01-31", "canonical lower-case uuid"),
        ("*", "2025-01-01", "2025-01-31", "canonical lower-case uuid"),
        ("0f8fad5b-d9cb-469f-a165-70867728950e", "2025-02-01", "2025-01-01", "after"),
        ("0f8fad5b-d9cb-469f-a165-70867728950e", "2025-01-01", "2025-13-01", "YYYY-MM-DD"),
        ("0f8fad5b-d9cb-469f-a165-70867728950e", "1900-01-01", "2025-01-01", "outside"),
        ("0f8fad5b-d9cb-469f-a165-70867728950e", "2020-01-01", "2027-06-01", "longer than"),
        ("0f8fad5b-d9cb-469f-a165-70867728950e", "2025-01-01", "9999-12-31", "outside"),
    ],
)
def test_malformed_requests_are_refused(served, org, date_from, date_to, message):
    store = DashboardCache(redis.Redis.from_url(served.redis_url))
    keys_before = set(store.client.keys())
    with pytest.raises(serving.InvalidRequest, match=message):
        serving.dashboard_metrics(org, date_from, date_to, database_url=served.database_url, dashboard_cache=store)
    assert set(store.client.keys()) == keys_before  # refused before touching Redis


def test_an_unknown_organization_is_refused(served):
    with pytest.raises(serving.UnknownOrganization):
        serving.dashboard_metrics(
            "0f8fad5b-d9cb-469f-a165-70867728950e", "2025-01-01", "2025-01-31",
            database_url=served.database_url, dashboard_cache=None,
        )


@on_a_server_and_a_cluster
def test_cli_prints_the_metrics_as_json(served, redis_url):
    org = served.organizations()[0]
    env = {"PATH": str(Path(sys.executable).parent), "DASHBOARD_DATABASE_URL": served.database_url,
           "DASHBOARD_REDIS_URL": redis_url}
    args = [sys.executable, "-m", "dashboard_assets.cli", "metrics", "--org", org, "--from", "2025-03-01", "--to", "2025-03-31"]
    printed = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)
    assert printed.returncode == 0, printed.stderr
    value = json.loads(printed.stdout)
    expected = ref.full_metrics(sources(served.database_url), org, dt.date(2025, 3, 1), dt.date(2025, 3, 31), AS_OF)
    assert without_computed_at(value) == expected
    store = DashboardCache(redis_client(redis_url))
    assert store.get(store.keys.metrics(org, "2025-03-01", "2025-03-31")) == value  # cached where the URL says
    refused = subprocess.run([*args[:5], "nope", *args[6:]], env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "canonical lower-case uuid" in refused.stderr

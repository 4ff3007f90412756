"""The Redis contract against a real Redis and a real Redis Cluster: keys,
TTLs, invalidation; and the URL forms that choose between them."""

import datetime as dt
import time
import uuid

import pytest
from redis.crc import key_slot

from dashboard_assets.cache import TTL_SECONDS, DashboardCache, Entry, InvalidKeyPart, Keys
from dashboard_assets.resources import redis_client
from dashboard_assets.settings import SettingsError
from dashboard_assets_tests.conftest import on_a_server_and_a_cluster

ORG_A = "0f8fad5b-d9cb-469f-a165-70867728950e"
ORG_B = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


@pytest.mark.parametrize(
    "bad",
    [
        ORG_A.upper(),
        ORG_A.replace("-", ""),
        "{" + ORG_A + "}",
        "*",
        f"{ORG_A}:*",
        f"{ORG_A} ",
        "a" * 10_000,
        "",
        None,
        uuid.UUID(ORG_A),
    ],
)
def test_anything_but_a_canonical_uuid_is_refused(bad):
    with pytest.raises(InvalidKeyPart):
        Keys().summary(bad)


@pytest.mark.parametrize("bad", ["2025-1-1", "2025-02-30", "20250101", "2025-01-01:*", "yesterday", dt.datetime(2025, 1, 1)])
def test_anything_but_an_iso_date_is_refused(bad):
    with pytest.raises(InvalidKeyPart):
        Keys().metrics(ORG_A, bad, "2025-01-31")


@pytest.mark.parametrize("bad", ["", "dash board", "a:b", "x*", "p" * 65])
def test_a_prefix_that_could_break_keys_is_refused(bad):
    with pytest.raises(InvalidKeyPart):
        Keys(bad)


def test_keys_follow_the_contract_under_a_configurable_prefix():
    keys = Keys("staging")
    assert keys.metrics(ORG_A, dt.date(2025, 1, 1), "2025-01-31") == f"staging:{ORG_A}:2025-01-01:2025-01-31"
    assert keys.summary(ORG_A) == f"staging:summary:{ORG_A}"
    assert keys.chart(ORG_A, "revenue_trend:12m") == f"staging:charts:{ORG_A}:revenue_trend:12m"
    assert keys.targets(ORG_A) == f"staging:targets:{ORG_A}"
    assert keys.analytics(ORG_A, "cac") == f"staging:analytics:{ORG_A}:cac"
    assert keys.activity(ORG_A, 2) == f"staging:activity:{ORG_A}:2"


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "127.0.0.1:6379", "redis+sentinel://:secret@host:26379"])
def test_a_redis_url_of_another_scheme_is_refused_without_echoing_it(url):
    with pytest.raises(SettingsError, match="redis://, rediss://, unix://, redis\\+cluster://, rediss\\+cluster://") as refused:
        redis_client(url)
    assert "secret" not in str(refused.value)


@on_a_server_and_a_cluster
def test_writes_carry_their_ttl_and_read_back(redis_url):
    store = DashboardCache(redis_client(redis_url))
    key = store.keys.summary(ORG_A)
    assert store.write([Entry(ORG_A, key, {"revenue": 12.5}, TTL_SECONDS["summary"])]) == 1
    assert store.get(key) == {"revenue": 12.5}
    assert 295 <= store.client.ttl(key) <= 300


@on_a_server_and_a_cluster
def test_invalidating_one_organization_leaves_the_others_untouched(redis_url):
    client = redis_client(redis_url)
    store = DashboardCache(client)
    entries = [
        Entry(org, key, {"n": i}, 300)
        for org in (ORG_A, ORG_B)
        for i, key in enumerate(
            [store.keys.summary(org), store.keys.targets(org), *(store.keys.activity(org, p) for p in (1, 2, 3))]
        )
    ]
    store.write(entries)
    client.set("unrelated", "1")
    keys_of_b = {e.key for e in entries if e.organization_id == ORG_B}
    assert len({key_slot(e.key.encode()) for e in entries if e.organization_id == ORG_A}) > 1  # spread over slots

    assert store.invalidate(ORG_A) == 5
    remaining = {k.decode() for k in client.scan_iter()}
    assert remaining == keys_of_b | {"unrelated", store.keys.index(ORG_B)}
    assert store.invalidate(ORG_A) == 0


@on_a_server_and_a_cluster
def test_the_index_forgets_expired_keys(redis_url):
    client = redis_client(redis_url)
    store = DashboardCache(client)
    store.write([Entry(ORG_A, store.keys.activity(ORG_A, 1), {}, 1)])
    client.pexpire(store.keys.activity(ORG_A, 1), 1)
    time.sleep(1.1)
    store.write([Entry(ORG_A, store.keys.summary(ORG_A), {}, 300)])
    assert [k.decode() for k in client.zrange(store.keys.index(ORG_A), 0, -1)] == [store.keys.summary(ORG_A)]


@on_a_server_and_a_cluster
def test_invalidating_metrics_keeps_charts_and_the_activity_feed(redis_url):
    store = DashboardCache(redis_client(redis_url))
    kept = [store.keys.chart(ORG_A, "revenue_trend:12m"), store.keys.activity(ORG_A, 1), store.keys.targets(ORG_A)]
    dropped = [store.keys.metrics(ORG_A, "2025-01-01", "2025-01-31"), store.keys.summary(ORG_A)]
    other = store.keys.metrics(ORG_B, "2025-01-01", "2025-01-31")
    store.write([Entry(ORG_A, key, {}, 300) for key in kept + dropped] + [Entry(ORG_B, other, {}, 300)])
    assert store.invalidate_metrics(ORG_A) == 2
    assert [store.client.exists(key) for key in kept + dropped + [other]] == [1, 1, 1, 0, 0, 1]


@on_a_server_and_a_cluster
def test_invalidating_metrics_spares_the_values_about_to_be_overwritten(redis_url):
    store = DashboardCache(redis_client(redis_url))
    warmed = store.keys.metrics(ORG_A, "2025-01-01", "2025-01-01")
    stale = store.keys.metrics(ORG_A, "2024-01-01", "2024-12-31")
    store.write([Entry(ORG_A, key, {}, 300) for key in (warmed, stale)])
    assert store.invalidate_metrics(ORG_A, keep={warmed}) == 1
    assert [store.client.exists(key) for key in (warmed, stale)] == [1, 0]

"""A Redis Cluster master killed in the middle of a read soak: every read
equals the value PostgreSQL computes, reads fall back to PostgreSQL while the
master's slots have no master, the cluster promotes the master's replica by
itself, and the next cache warming restores every key that warming writes.
And a cache warming that starts while a master and its replica are both
down, the master being the node its URL names, is retried, and writes every
key once the nodes are back."""

import datetime as dt
import json
import random
import threading
import time

import dagster as dg
import pytest
import redis

from dashboard_assets import serving
from dashboard_assets.analytics.assets import dashboard_cache, warmed_ranges
from dashboard_assets.cache import DashboardCache
from dashboard_assets.db import autocommit_connection
from dashboard_assets.resources import PostgresResource, RedisResource
from dashboard_assets_tests.analytics.conftest import AS_OF
from dashboard_assets_tests.conftest import HISTORY_END, HISTORY_START
from dashboard_assets_tests.helpers import (
    materialize_days,
    materialize_snapshot,
    read_table,
    retry_events,
    wait_for,
    without_computed_at,
)

pytestmark = pytest.mark.redis_cluster

READERS = 8
SECONDS_BEFORE_THE_KILL = 1.0
SECONDS_AFTER_THE_PROMOTION = 1.5
SECONDS_BOUND = 30  # for the cluster to fail, promote, or a run to retry
WARMED_DAYS = 30  # the rollups' days that make an organization active, and warmed
FALLBACK_WARNING = "Redis unavailable, reading from PostgreSQL"


def test_a_master_killed_during_a_read_soak(database_url, redis_cluster, caplog):
    assert materialize_days(database_url, HISTORY_START, HISTORY_END).success
    assert materialize_snapshot(database_url).success
    resources = {"postgres": PostgresResource(database_url=database_url), "redis": RedisResource(url=redis_cluster.url)}
    store = resources["redis"].cache()
    store.client.flushall()
    requests = warmed_requests(database_url)
    expected = {request: without_computed_at(serving.dashboard_metrics(
        *request, database_url=database_url, dashboard_cache=None, as_of=AS_OF)) for request in requests}
    assert warm(resources).success
    assert cached_keys(store) == written_by_warming(store, requests)

    victim = redis_cluster.node_on(store.client.get_node_from_key(store.keys.metrics(*requests[0])).port)
    replica = redis_cluster.replica_of(victim)
    failures: list[str] = []
    latencies: list[float] = []
    stop = threading.Event()

    def reader(number: int) -> None:
        rng = random.Random(number)
        while not stop.is_set():
            request = rng.choice(requests)
            began = time.perf_counter()
            try:
                answer = serving.dashboard_metrics(*request, database_url=database_url, dashboard_cache=store,
                                                   as_of=AS_OF)
                if without_computed_at(answer) != expected[request]:
                    failures.append(f"wrong answer for {request}")
            except Exception as error:  # noqa: BLE001 - every failure is reported
                failures.append(f"{type(error).__name__}: {error}")
            latencies.append(time.perf_counter() - began)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(READERS)]
    killed_at = None
    try:
        for thread in threads:
            thread.start()
        time.sleep(SECONDS_BEFORE_THE_KILL)
        killed_at = time.monotonic()
        victim.kill()
        wait_for(lambda: redis_cluster.role(replica) == "master", SECONDS_BOUND, "the replica promoted")
        promotion_seconds = time.monotonic() - killed_at
        time.sleep(SECONDS_AFTER_THE_PROMOTION)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        if killed_at is not None:
            victim = redis_cluster.restart(victim)  # it rejoins as the replica of its former replica
            redis_cluster.wait_until_settled(masters=3)
    assert not any(thread.is_alive() for thread in threads), "a reader did not end"

    fallbacks = sum(record.getMessage().startswith(FALLBACK_WARNING) for record in caplog.records)
    report = {"readers": READERS, "reads": len(latencies), "fallbacks_to_postgres": fallbacks,
              "seconds_from_kill_to_promotion": round(promotion_seconds, 2),
              "max_read_ms": round(max(latencies) * 1000, 1), "errors": len(failures)}
    print(f"cluster failover: {json.dumps(report)}")
    assert failures == [], failures[:5]
    assert fallbacks > 0  # reads went on from PostgreSQL while the slots had no master
    assert (redis_cluster.role(replica), redis_cluster.role(victim)) == ("master", "slave")

    for request in requests:  # the client follows the new master: answers from Redis again
        assert without_computed_at(serving.dashboard_metrics(*request, database_url=database_url,
                                                             dashboard_cache=store, as_of=AS_OF)) == expected[request]
    assert sum(record.getMessage().startswith(FALLBACK_WARNING) for record in caplog.records) == fallbacks

    assert warm(resources).success
    assert cached_keys(store) == written_by_warming(store, requests)
    for request in requests:
        assert without_computed_at(store.get(store.keys.metrics(*request))) == expected[request]
        assert 0 < store.client.ttl(store.keys.metrics(*request)) <= 300


def test_a_warming_started_while_a_slot_has_no_node_is_retried(database_url, redis_cluster, tmp_path):
    """The run's URL names a master that is down with its replica: its client
    cannot even be made (RedisClusterException), and the cluster is down."""
    assert materialize_days(database_url, HISTORY_END - dt.timedelta(days=WARMED_DAYS), HISTORY_END).success
    store = RedisResource(url=redis_cluster.url).cache()
    store.client.flushall()
    requests = warmed_requests(database_url)
    master = next(node for node in redis_cluster.nodes[1:] if redis_cluster.role(node) == "master")
    replica = redis_cluster.replica_of(master)
    survivor = next(node for node in redis_cluster.nodes if node not in (master, replica))
    replica.kill()
    master.kill()
    wait_for(lambda: redis.Redis.from_url(survivor.url, decode_responses=True).cluster("INFO")["cluster_state"] == "fail",
             SECONDS_BOUND, "the cluster down")
    resources = {"postgres": PostgresResource(database_url=database_url),
                 "redis": RedisResource(url=f"redis+cluster://127.0.0.1:{master.port}/0")}
    outcome = {}
    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:
        run = threading.Thread(target=lambda: outcome.update(result=warm(resources, instance)))
        run.start()
        try:
            wait_for(lambda: retry_events(instance), SECONDS_BOUND, "the warming up for retry")
        finally:
            for node in (master, replica):
                redis_cluster.restart(node)
            redis_cluster.wait_until_settled(masters=3)
            run.join(timeout=120)
    assert outcome["result"].success  # within the retries' pauses (5, 10, 20 s)
    assert cached_keys(store) == written_by_warming(store, requests)


def warmed_requests(database_url: str) -> list[tuple[str, str, str]]:
    """(organization, from, to) of every range warming writes, as of AS_OF."""
    organizations = read_table(database_url, "SELECT id AS organization_id FROM organizations ORDER BY id")
    with autocommit_connection(database_url) as conn:
        return [(org, date_from.isoformat(), date_to.isoformat())
                for org in organizations["organization_id"]
                for date_from, date_to in warmed_ranges(serving.organization_today(conn, org, AS_OF)).values()]


def written_by_warming(store: DashboardCache, requests: list[tuple[str, str, str]]) -> set[str]:
    """The keys warming writes: each range's metrics, each organization's summary and index."""
    organizations = {org for org, _, _ in requests}
    return ({store.keys.metrics(*request) for request in requests} | {store.keys.summary(org) for org in organizations}
            | {store.keys.index(org) for org in organizations})


def warm(resources: dict, instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
    """A run of the cache warming asset, for every organization, as of AS_OF."""
    run_config = {"ops": {"dashboard_cache": {"config": {"as_of": AS_OF.isoformat()}}}}
    return dg.materialize([dashboard_cache], resources=resources, run_config=run_config, instance=instance,
                          raise_on_error=False)


def cached_keys(store: DashboardCache) -> set[str]:
    """Every key on every master of the cluster but the read path's counters."""
    counters = f"{store.keys.prefix}:stats:"
    return {name for key in store.client.scan_iter() if not (name := key.decode()).startswith(counters)}

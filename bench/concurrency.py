"""Concurrent dashboard users: N threads, started together, share a fixed
count of reads through the real read path (warmed keys: the cache-hit path
every user hits first); throughput, p50/p95/p99 and errors."""

import threading
import time

import redis

from bench.read_path import dashboard_requests, organization_ids
from dashboard_assets import serving
from dashboard_assets.cache import DashboardCache
from dashboard_assets.read_stats import percentile

READS = 20_000


def measure(url: str, redis_url: str, users: int) -> dict:
    store = DashboardCache(redis.Redis.from_url(redis_url, max_connections=users + 8))
    requests = dashboard_requests(organization_ids(url), READS)
    for org, date_from, date_to in set(requests):  # warm every key once
        serving.dashboard_metrics(org, date_from, date_to, database_url=url, dashboard_cache=store)
    latencies: list[list[float]] = [[] for _ in range(users)]
    errors = [0] * users
    start = threading.Barrier(users + 1)

    def user(number: int) -> None:
        start.wait()
        for org, date_from, date_to in requests[number::users]:
            began = time.perf_counter()
            try:
                serving.dashboard_metrics(org, date_from, date_to, database_url=url, dashboard_cache=store)
            except Exception:  # noqa: BLE001 - every failure counts as an error
                errors[number] += 1
            latencies[number].append(time.perf_counter() - began)

    threads = [threading.Thread(target=user, args=(n,)) for n in range(users)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    ms = sorted(s * 1000 for per_user in latencies for s in per_user)

    return {
        f"users_{users}_reads": len(ms),
        f"users_{users}_reads_per_second": round(len(ms) / wall),
        f"users_{users}_p50_ms": percentile(ms, 0.50),
        f"users_{users}_p95_ms": percentile(ms, 0.95),
        f"users_{users}_p99_ms": percentile(ms, 0.99),
        f"users_{users}_errors": sum(errors),
    }

"""Read-path latency: cold (cache miss: rollups + live today + snapshot, then
the cache write) and cached (Redis hit), median and p99 over many calls on
random organizations and dashboard ranges, in one process."""

import datetime as dt
import random
import statistics
import time

import dagster as dg
import redis

from bench.common import END_DATE
from dashboard_assets import serving
from dashboard_assets.cache import DashboardCache
from dashboard_assets.db import raw_connection
from dashboard_assets.read_stats import percentile
from dashboard_assets.resources import PostgresResource
from dashboard_assets.rollups.assets import current_state_asset

# Reads are as of noon UTC on the generated history's last day, so that the
# organizations' today, computed live, has data.
AS_OF = dt.datetime.combine(END_DATE, dt.time(12), tzinfo=dt.UTC)


def measure(url: str, redis_url: str, calls: int) -> dict:
    assert dg.materialize([current_state_asset], resources={"postgres": PostgresResource(database_url=url)}).success
    organizations = organization_ids(url)
    requests = dashboard_requests(organizations, calls)
    store = DashboardCache(redis.Redis.from_url(redis_url))

    def timed(prepare) -> list[float]:
        seconds = []
        for org, date_from, date_to in requests:
            prepare(org, date_from, date_to)
            began = time.perf_counter()
            serving.dashboard_metrics(org, date_from, date_to, database_url=url, dashboard_cache=store, as_of=AS_OF)
            seconds.append(time.perf_counter() - began)
        return seconds

    cold = timed(lambda org, f, t: store.client.delete(store.keys.metrics(org, f, t)))
    cached = timed(lambda org, f, t: None)
    return {"read_calls": calls, **summary("cold", cold), **summary("cached", cached)}


def dashboard_requests(organizations: list[str], calls: int) -> list[tuple[str, dt.date, dt.date]]:
    """The same seeded mix of organizations and dashboard ranges for every
    benchmark that reads: last 30 days, month, week and year to date."""
    today = END_DATE
    ranges = [
        (today - dt.timedelta(days=29), today),
        (today.replace(day=1), today),
        (today - dt.timedelta(days=today.weekday()), today),
        (today - dt.timedelta(days=364), today),
    ]
    rng = random.Random(1)
    return [(rng.choice(organizations), *rng.choice(ranges)) for _ in range(calls)]


def organization_ids(url: str) -> list[str]:
    with raw_connection(url) as conn:
        return [str(org) for (org,) in conn.execute("SELECT id FROM organizations ORDER BY id")]


def summary(name: str, seconds: list[float]) -> dict:
    ms = sorted(s * 1000 for s in seconds)
    return {
        f"{name}_median_ms": round(statistics.median(ms), 3),
        f"{name}_p99_ms": percentile(ms, 0.99),
    }

"""Soak of the read path: 500 concurrent readers for a bounded time while
rollup days are replaced and organizations' cached values are invalidated
under them. Every answer must equal the answer computed before the soak (a
day being replaced is never seen empty or half-written), no read may fail,
and the latency is reported (printed, and written to `.local/soak.json`)."""

import datetime as dt
import json
import random
import threading
import time

import pytest
import redis

from dashboard_assets import serving
from dashboard_assets.cache import DashboardCache
from dashboard_assets.read_stats import percentile, read_window
from dashboard_assets.rollups.assets import DAILY_ROLLUPS
from dashboard_assets.rollups.refresh import refresh
from dashboard_assets_tests.conftest import HISTORY_END, HISTORY_START, PROJECT_ROOT
from dashboard_assets_tests.helpers import materialize_days, read_table, without_computed_at

pytestmark = pytest.mark.soak

READERS = 500
SOAK_SECONDS = 20
REPORT = PROJECT_ROOT / ".local" / "soak.json"


def dashboard_ranges() -> list[tuple[dt.date, dt.date]]:
    """What the dashboard asks for: today, week, month, 30 days and year to date, and March."""
    today = HISTORY_END
    return [(today, today), (today - dt.timedelta(days=today.weekday()), today), (today.replace(day=1), today),
            (today - dt.timedelta(days=29), today), (HISTORY_START, today), (dt.date(2025, 3, 1), dt.date(2025, 3, 31))]


def test_500_readers_while_refreshes_run(database_url, redis_url):
    assert materialize_days(database_url, HISTORY_START, HISTORY_END).success
    organizations = list(read_table(database_url, "SELECT id::text AS org FROM organizations ORDER BY id")["org"])
    requests = [(org, *days) for org in organizations for days in dashboard_ranges()]
    expected = {request: without_computed_at(serving.dashboard_metrics(*request, database_url=database_url,
                                                                       dashboard_cache=None))
                for request in requests}
    store = DashboardCache(redis.Redis.from_url(redis_url))
    deadline = time.monotonic() + SOAK_SECONDS
    latencies: list[list[float]] = [[] for _ in range(READERS)]
    failures: list[str] = []
    refreshes = 0
    start = threading.Barrier(READERS + 2)

    def reader(number: int) -> None:
        rng = random.Random(number)
        start.wait()
        while time.monotonic() < deadline:
            request = rng.choice(requests)
            began = time.perf_counter()
            try:
                answer = serving.dashboard_metrics(*request, database_url=database_url, dashboard_cache=store)
                if without_computed_at(answer) != expected[request]:
                    failures.append(f"wrong answer for {request}")
            except Exception as error:  # noqa: BLE001 - every failure is reported
                failures.append(f"{type(error).__name__}: {error}")
            latencies[number].append(time.perf_counter() - began)

    def refresher() -> None:
        nonlocal refreshes
        rng = random.Random(0)
        start.wait()
        while time.monotonic() < deadline:
            first = HISTORY_END - dt.timedelta(days=rng.randrange(40))
            rollup = rng.choice(DAILY_ROLLUPS)
            try:
                result = refresh(rollup, source_url=database_url, target_url=database_url, start=first,
                                 end=min(first + dt.timedelta(days=rng.randrange(7)), HISTORY_END))
                if not result.committed:
                    failures.append(f"refresh of {rollup.name} from {first} rolled back: {result.mismatches}")
                store.invalidate_metrics(rng.choice(organizations))  # readers of it now miss, and recompute
            except Exception as error:  # noqa: BLE001 - every failure is reported
                failures.append(f"refresh: {type(error).__name__}: {error}")
            refreshes += 1

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(READERS)]
    threads.append(threading.Thread(target=refresher))
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join(timeout=SOAK_SECONDS + 60)
    wall = time.perf_counter() - began
    assert not any(thread.is_alive() for thread in threads), "the soak did not end within its bound"

    ms = sorted(seconds * 1000 for per_reader in latencies for seconds in per_reader)
    report = {
        "readers": READERS, "seconds": round(wall, 1), "reads": len(ms), "reads_per_second": round(len(ms) / wall),
        "refreshes": refreshes, "errors": len(failures),
        "cache_hit_rate": read_window(store, dt.datetime.now(dt.UTC))["cache_hit_rate"], "p50_ms": percentile(ms, 0.50),
        "p95_ms": percentile(ms, 0.95), "p99_ms": percentile(ms, 0.99), "max_ms": round(ms[-1], 3),
    }
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"soak: {json.dumps(report)}")
    assert failures == [], failures[:5]
    assert all(latencies), "a reader never completed a read"
    assert refreshes > 0

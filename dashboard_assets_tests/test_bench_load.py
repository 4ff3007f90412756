"""The load benchmark's paced users against a real Redis: a load's latency
runs from its scheduled time, so a client that falls behind shows in it."""

import multiprocessing
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor

import redis

from bench.load import paced_gets
from dashboard_assets.cache import Keys

ORG = "0f8fad5b-d9cb-469f-a165-70867728950e"
STALL_SECONDS = 0.4


def test_a_stalled_client_shows_as_latency_and_lag(redis_url):
    key = Keys().metrics(ORG, "2025-01-01", "2025-01-31")
    redis.Redis.from_url(redis_url).set(key, "{}")
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        client_pid = pool.submit(os.getpid).result()
        run = pool.submit(paced_gets, redis_url, [key], range(20), 0.05, 2.0)
        time.sleep(0.8)
        os.kill(client_pid, signal.SIGSTOP)  # the client stops; its users' loads fall due meanwhile
        time.sleep(STALL_SECONDS)
        os.kill(client_pid, signal.SIGCONT)
        run = run.result()

    assert run["errors"] == run["misses"] == 0
    assert len(run["latencies_ms"]) == len(run["lags_ms"]) > 100
    # Loads that fell due just after the client stopped were sent once it went on.
    assert max(run["lags_ms"]) > STALL_SECONDS * 1000 * 0.8
    assert max(run["latencies_ms"]) > STALL_SECONDS * 1000 * 0.8
    assert all(latency >= lag for latency, lag in zip(run["latencies_ms"], run["lags_ms"]))


def test_a_key_not_cached_is_counted_as_a_miss(redis_url):
    present, absent = (Keys().metrics(ORG, "2025-01-01", day) for day in ("2025-01-30", "2025-01-31"))
    redis.Redis.from_url(redis_url).set(present, "{}")

    run = paced_gets(redis_url, [present, absent], range(10), 0.05, 1.0)

    assert run["errors"] == 0
    assert 0 < run["misses"] < len(run["latencies_ms"])

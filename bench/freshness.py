"""Change → Redis delay on the running demo, as a user sees it.

Starts the real demo (`dashboard-assets demo`: embedded servers, generated
data, the one-run backfill, then `dg dev` with its daemon) in a folder of
its own, and with nobody touching Dagster: sets an order created today to
delivered, one commit, and polls the organization's warmed
`dashboard:{org}:{today}:{today}` key until its delivered count is one more.
The trials start at random moments, so that they fall anywhere in the change
sensor's cycle. For each trial the Dagster instance tells whether a change
refresh run had to start for it or a working one took it, and when the warmed
cache was materialized.
"""

import datetime as dt
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import redis

from bench.common import ROOT, STATE_DIR
from dashboard_assets.local_servers import free_port
from dashboard_assets.read_stats import percentile

TRIALS = 20
ORGANIZATIONS, DEMO_DAYS = 5, 730  # the demo's defaults
_WAIT_BEFORE_TRIAL = (1.0, 6.0)  # seconds, drawn uniformly: anywhere in the sensor's 5 s cycle
_GIVE_UP_SECONDS = 120  # a change not in Redis by then is a failure, not a slow trial


@dataclass(frozen=True)
class Demo:
    """A running demo: its databases, its Redis, its process and PostgreSQL's."""

    database: str
    instance: str
    redis_url: str
    pid: int
    postmaster_pid: int


@contextmanager
def running_demo(orgs: int = ORGANIZATIONS, days: int = DEMO_DAYS) -> Iterator[Demo]:
    """`dashboard-assets demo` as a new user starts it, in a folder of its own,
    until its UI answers; stopped with Ctrl-C (SIGINT) at the end."""
    demo_dir = STATE_DIR / "measured-demo"
    shutil.rmtree(demo_dir, ignore_errors=True)  # a first run, as a new user has it
    port = free_port()
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    log_path = STATE_DIR / "measured-demo.log"
    with log_path.open("w") as log:
        demo = subprocess.Popen(
            [sys.executable, "-m", "dashboard_assets.cli", "demo", "--port", str(port), "--orgs", str(orgs),
             "--days", str(days)],
            cwd=ROOT, env={**_without_project_settings(os.environ), "DASHBOARD_DEMO_DIR": str(demo_dir)},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            _wait_for_ui(port, demo)
            database, instance, redis_url = _demo_urls(demo_dir, log_path)
            postmaster = int((demo_dir / "postgres" / "postmaster.pid").read_text().split()[0])
            yield Demo(database, instance, redis_url, demo.pid, postmaster)
        finally:
            os.killpg(demo.pid, signal.SIGINT)
            demo.wait(timeout=120)


def measure(trials: int = TRIALS) -> dict:
    with running_demo() as demo:
        results = _trials(demo.database, demo.instance, demo.redis_url, trials)
    delays = sorted(r["seconds"] for r in results)
    return {
        "freshness_trials": results,
        "freshness_p50_seconds": percentile(delays, 0.50),
        "freshness_p95_seconds": percentile(delays, 0.95),
        "freshness_max_seconds": round(delays[-1], 3),
    }


def _without_project_settings(environment: dict) -> dict:
    """The environment a new user has: none of the project's variables."""
    return {k: v for k, v in environment.items() if not k.startswith(("DASHBOARD_", "DAGSTER_"))}


def _wait_for_ui(port: int, demo: subprocess.Popen, timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if demo.poll() is not None:
            raise RuntimeError(f"the demo exited with {demo.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                time.sleep(20)  # the daemon's first sensor ticks and the schedules' first runs
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError("the demo's UI did not answer")


def _demo_urls(demo_dir: Path, log_path: Path) -> tuple[str, str, str]:
    """The demo's databases (its PostgreSQL listens on a socket in its data
    folder) and the Redis URL it printed."""
    socket = demo_dir / "postgres"
    redis_url = next(line.split()[-1] for line in log_path.read_text().splitlines()
                     if line.startswith("servers") and "redis" in line)
    return (f"postgresql://postgres@/dashboard?host={socket}", f"postgresql://postgres@/dagster?host={socket}",
            redis_url)


def _trials(database: str, instance: str, redis_url: str, trials: int) -> list[dict]:
    store = redis.Redis.from_url(redis_url)
    rng = random.Random(7)
    results = []
    with psycopg.connect(database, autocommit=True) as conn, psycopg.connect(instance, autocommit=True) as dagster:
        organizations = conn.execute("SELECT id::text, COALESCE(timezone, 'Australia/Sydney') FROM organizations"
                                     " ORDER BY id").fetchall()
        for trial in range(trials):
            org, tz = organizations[trial % len(organizations)]
            today = dt.datetime.now(ZoneInfo(tz)).date()
            key = f"dashboard:{org}:{today}:{today}"
            (order,) = conn.execute(  # an order of the organization's today (the demo's data fills whole days)
                "SELECT id FROM orders WHERE organization_id = %(org)s AND status <> 'delivered'"
                " AND created_at >= %(today)s::timestamp AT TIME ZONE %(tz)s"
                " AND created_at < (%(today)s::date + 1)::timestamp AT TIME ZONE %(tz)s"
                " ORDER BY created_at DESC LIMIT 1",
                {"org": org, "today": today, "tz": tz}).fetchone()
            time.sleep(rng.uniform(*_WAIT_BEFORE_TRIAL))
            before = json.loads(store.get(key))["delivered_orders"]
            conn.execute("UPDATE orders SET status = 'delivered', delivered_at = now(), updated_at = now()"
                         " WHERE id = %s", (order,))
            committed = time.time()
            while delivered_orders(store, key) != before + 1:  # the correct value, not a miss
                if time.time() - committed > _GIVE_UP_SECONDS:
                    raise TimeoutError(f"trial {trial + 1}: {key} did not count order {order} as delivered"
                                       f" within {_GIVE_UP_SECONDS} s")
                time.sleep(0.01)
            seen = time.time()
            results.append({"seconds": round(seen - committed, 3), **_where_the_time_went(dagster, committed, seen)})
            print(f"  trial {trial + 1}: {results[-1]}", flush=True)
    return results


def delivered_orders(store: redis.Redis, key: str) -> int | None:
    """The delivered orders of a warmed key's value (None: not cached)."""
    raw = store.get(key)
    return None if raw is None else json.loads(raw)["delivered_orders"]


def _where_the_time_went(dagster: psycopg.Connection, committed: float, seen: float) -> dict:
    """Whether the sensor started a change refresh run for the change (none
    was working: the delay holds a sensor tick and a run's start) or a working
    run's pass took it. (The run reports its materializations every 30 s, so
    their times say nothing of the delay.)"""
    (started,) = dagster.execute(
        "SELECT count(*) FROM runs WHERE pipeline_name = 'change_refresh'"
        " AND create_timestamp BETWEEN (to_timestamp(%s) AT TIME ZONE 'UTC') AND (to_timestamp(%s) AT TIME ZONE 'UTC')",
        (committed, seen)).fetchone()
    return {"run_started_for_it": started > 0}

"""Load: USERS dashboard users, measured two ways, with the CPU of the clients
and of the server beside each latency (user + system CPU seconds over the wall
time, in cores: a client near a whole core would be measuring itself).

Every read is one of REQUESTS drawn from the seeded mix of organizations and
ranges of the other read benchmarks, the full metrics of one dashboard load.

- paced (what the goals are about): each user loads the dashboard, then thinks
  for an exponentially distributed time of mean THINK_SECONDS (a look at a
  page of figures before the next click; 500 users then load about 100
  dashboards a second), for PACED_SECONDS. A load's latency runs from its
  scheduled time, so a client late to send it counts the delay (no
  coordinated omission); that delay, the lag, is given beside.
  - cached: GETs of the key the read path reads, filled beforehand by the
    read path itself, from PACED_PROCESSES processes, each running its share
    of the users as coroutines over one connection pool; the percentiles are
    those of every load of every process. The event loop's timers wait whole
    milliseconds (epoll), so a user wakes a millisecond early and yields
    until its load is due.
  - cold: pgbench (the embedded server's) calls dashboard.dashboard_metrics,
    what any dashboard runs on a cache miss, at the users' rate (`--rate`)
    through a pool of POOL_CONNECTIONS connections, as an application pools
    its users' requests; pgbench times each call from its scheduled start and
    logs the lag.
- capacity (where the server saturates): connections that send the next
  request as soon as the answer arrives, so the latency is the server's at
  full throughput, not that of users who pause.
  - cached: redis-benchmark GETs keys of the mix over USERS connections. One
    redis-benchmark process reads one key, so up to CAPACITY_PROCESSES
    processes, started together, read as many keys drawn at random, sharing
    the USERS connections; the percentiles are the highest of the processes'
    own (a bound on those of all the GETs together). Skipped, with the reason,
    where redis-benchmark is not installed (Debian: `apt-get install
    redis-tools`).
  - cold: pgbench as above, for CAPACITY_SECONDS, its POOL_CONNECTIONS kept
    busy (a user's wait for a free connection is not in it).

Errors are counted: a paced GET that fails, a redis-benchmark process stopped
by an error reply (counted as one), pgbench's failed calls and aborted
clients. The stage runs after `backfill`: the reads need the rollups.
"""

import asyncio
import csv
import multiprocessing
import random
import resource
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import dagster as dg
import psycopg
import redis
import redis.asyncio

from bench.common import PGBENCH, ServerCpu, progress
from bench.read_path import AS_OF, dashboard_requests, organization_ids
from dashboard_assets import serving
from dashboard_assets.cache import DashboardCache
from dashboard_assets.db import libpq_url, raw_connection
from dashboard_assets.local_servers import LocalRedis
from dashboard_assets.read_stats import percentile
from dashboard_assets.resources import PostgresResource
from dashboard_assets.rollups.assets import current_state_asset

USERS = 500
THINK_SECONDS = 5.0
PACED_SECONDS = 20
PACED_PROCESSES = 4
POOL_CONNECTIONS = 20
REQUESTS = 1000
CAPACITY_PROCESSES = 4
CAPACITY_GETS = 400_000
CAPACITY_SECONDS = 10
GET_TIMEOUT_SECONDS = 10
TOOL_TIMEOUT_SECONDS = 600
_TIMER_RESOLUTION_SECONDS = 0.001
_PACED, _CAPACITY = "load_paced", "load_capacity"  # what their figures are named after
_COLD_READ_SCRIPT = Path(__file__).resolve().parent / "load_cold_read.sql"
_ROLLUPS_FILLED = "SELECT EXISTS (SELECT FROM dashboard.daily_metrics)"
# The requests pgbench draws from, numbered from 1.
_REQUESTS_TABLE = """
    CREATE TABLE bench_load_requests AS
    SELECT r.n::int AS n, r.organization_id, r.date_from, r.date_to, %(as_of)s::timestamptz AS as_of
    FROM unnest(%(organizations)s::uuid[], %(froms)s::date[], %(tos)s::date[])
         WITH ORDINALITY AS r(organization_id, date_from, date_to, n)
"""


def measure(url: str, redis_server: LocalRedis, postgres_pid: int, think_seconds: float = THINK_SECONDS) -> dict:
    requests = dashboard_requests(organization_ids(url), REQUESTS)
    keys = _cached_keys(url, redis_server.url, requests)
    _requests_table(url, requests)
    return (_paced_cached(redis_server, keys, think_seconds) | _capacity_cached(redis_server, keys)
            | _paced_cold(url, postgres_pid, think_seconds) | _capacity_cold(url, postgres_pid))


def _cached_keys(url: str, redis_url: str, requests: list[tuple]) -> list[str]:
    """The key the read path reads for each request, cached by the read path
    itself as of the reads' instant (after the snapshot it reads)."""
    with raw_connection(url) as conn:
        if not conn.execute(_ROLLUPS_FILLED).fetchone()[0]:
            raise RuntimeError("the rollups are empty: run load after backfill (python -m bench backfill load)")
    assert dg.materialize([current_state_asset], resources={"postgres": PostgresResource(database_url=url)}).success
    store = DashboardCache(redis.Redis.from_url(redis_url))
    for request in sorted(set(requests)):
        serving.dashboard_metrics(*request, database_url=url, dashboard_cache=store, as_of=AS_OF)
    return [store.keys.metrics(*request) for request in requests]


def _requests_table(url: str, requests: list[tuple]) -> None:
    organizations, froms, tos = zip(*requests)
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_load_requests")
        conn.execute(_REQUESTS_TABLE, {"as_of": AS_OF, "organizations": list(organizations), "froms": list(froms),
                                       "tos": list(tos)})
        conn.execute("CREATE UNIQUE INDEX ON bench_load_requests (n)")
        conn.execute("ANALYZE bench_load_requests")


def _paced_cached(redis_server: LocalRedis, keys: list[str], think_seconds: float) -> dict:
    """USERS paced users' GETs, from PACED_PROCESSES processes. They are
    forked: a new interpreter would import the project again on the clock."""
    name = f"{_PACED}_cached"
    with _CpuBeside(redis_server.pid) as cpu:
        with ProcessPoolExecutor(PACED_PROCESSES, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = [pool.submit(paced_gets, redis_server.url, keys, range(first, USERS, PACED_PROCESSES),
                                   think_seconds, PACED_SECONDS) for first in range(PACED_PROCESSES)]
            runs = [future.result() for future in futures]
    ms = sorted(latency for run in runs for latency in run["latencies_ms"])
    if not ms:
        raise RuntimeError(f"no paced GET succeeded ({sum(run['errors'] for run in runs)} errors)")
    return {
        f"{name}_users": USERS,
        f"{name}_think_seconds": think_seconds,
        f"{name}_reads": len(ms),
        f"{name}_reads_per_second": round(len(ms) / PACED_SECONDS),
        **_percentiles(name, ms),
        f"{name}_lag_p99_ms": percentile(sorted(lag for run in runs for lag in run["lags_ms"]), 0.99),
        f"{name}_misses": sum(run["misses"] for run in runs),
        f"{name}_errors": sum(run["errors"] for run in runs),
        **cpu.figures(name),
    }


def paced_gets(redis_url: str, keys: list[str], users: range, think_seconds: float, seconds: float) -> dict:
    """One client process: `users` (their numbers seed their choices) as
    coroutines sharing one connection pool, each loading a key drawn from
    `keys` then thinking, until `seconds` have passed. Each load's latency
    from its scheduled time and its lag (scheduled to sent), in ms; misses
    and errors counted."""
    return asyncio.run(_paced_users(redis_url, keys, users, think_seconds, seconds))


async def _paced_users(redis_url: str, keys: list[str], users: range, think_seconds: float, seconds: float) -> dict:
    client = redis.asyncio.Redis.from_url(redis_url, socket_timeout=GET_TIMEOUT_SECONDS)
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    run = {"latencies_ms": [], "lags_ms": [], "misses": 0, "errors": 0}

    async def user(choices: random.Random) -> None:
        scheduled = loop.time() + choices.expovariate(1 / think_seconds)
        while scheduled < end:
            await asyncio.sleep(scheduled - loop.time() - _TIMER_RESOLUTION_SECONDS)
            while (sent := loop.time()) < scheduled:
                await asyncio.sleep(0)
            try:
                run["misses"] += await client.get(choices.choice(keys)) is None
            except redis.RedisError:
                run["errors"] += 1
            else:
                run["latencies_ms"].append((loop.time() - scheduled) * 1000)
                run["lags_ms"].append((sent - scheduled) * 1000)
            scheduled = loop.time() + choices.expovariate(1 / think_seconds)

    try:
        await asyncio.gather(*(user(random.Random(number)) for number in users))
    finally:
        await client.aclose()
    return run


def _capacity_cached(redis_server: LocalRedis, keys: list[str]) -> dict:
    """GETs of keys of the mix from USERS busy connections, by redis-benchmark."""
    name = f"{_CAPACITY}_cached"
    if not (tool := shutil.which("redis-benchmark")):
        message = "redis-benchmark not found (Debian: apt-get install redis-tools)"
        progress(f"load: cached capacity skipped, {message}")
        return {f"{name}_skipped": message}
    distinct = sorted(set(keys))
    read = random.Random(1).sample(distinct, min(CAPACITY_PROCESSES, len(distinct)))
    with _CpuBeside(redis_server.pid) as cpu:
        processes = [subprocess.Popen([tool, "-u", redis_server.url, "-c", str(clients), "-n", str(requests),
                                       "--csv", "GET", key], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for key, clients, requests in zip(read, _shares(USERS, len(read)),
                                                       _shares(CAPACITY_GETS, len(read)))]
        outputs = [_finished(process) for process in processes]
    errors = sum("Error from server" in err for _, err in outputs)
    rows = [row for out, _ in outputs for row in csv.DictReader(out.splitlines())]
    if not rows:
        raise RuntimeError(f"redis-benchmark measured nothing: {outputs[0][1].strip()}")
    if "p99_latency_ms" not in rows[0]:
        raise RuntimeError("redis-benchmark writes no latency percentiles before Redis 7: install a newer one")
    if missing := len(read) - redis.Redis.from_url(redis_server.url).exists(*read):
        raise RuntimeError(f"{missing} keys read expired during the run: their GETs were not cached reads")
    return {
        f"{name}_connections": USERS,
        f"{name}_keys_read": len(read),
        f"{name}_reads": CAPACITY_GETS,
        f"{name}_reads_per_second": round(sum(float(row["rps"]) for row in rows)),
        **{f"{name}_{p}_ms": max(float(row[f"{p}_latency_ms"]) for row in rows) for p in ("p50", "p95", "p99")},
        f"{name}_errors": errors,
        **cpu.figures(name),
    }


def _paced_cold(url: str, postgres_pid: int, think_seconds: float) -> dict:
    name = f"{_PACED}_cold"
    return {f"{name}_users": USERS, f"{name}_think_seconds": think_seconds,
            **_pgbench(url, postgres_pid, name, PACED_SECONDS, f"--rate={USERS / think_seconds}")}


def _capacity_cold(url: str, postgres_pid: int) -> dict:
    return _pgbench(url, postgres_pid, f"{_CAPACITY}_cold", CAPACITY_SECONDS)


def _pgbench(url: str, postgres_pid: int, name: str, seconds: int, *options: str) -> dict:
    """dashboard.dashboard_metrics through a pool of POOL_CONNECTIONS for
    `seconds`, by pgbench, with `options` (a rate)."""
    with tempfile.TemporaryDirectory() as logs:
        with _CpuBeside(postgres_pid) as cpu:
            process = subprocess.Popen(
                [str(PGBENCH), "-n", "-M", "prepared", "-f", str(_COLD_READ_SCRIPT), "-D", f"requests={REQUESTS}",
                 "-c", str(POOL_CONNECTIONS), "-j", "2", "-T", str(seconds), *options, "--log",
                 f"--log-prefix={logs}/cold", libpq_url(url)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            out, err = _finished(process)
        if not (tps := [line for line in out.splitlines() if line.startswith("tps")]):
            raise RuntimeError(f"pgbench measured nothing: {err.strip()}")
        # Each line: client, transaction, its latency in microseconds (or "failed"; with a rate, from its
        # scheduled start), script, epoch, microseconds and, with a rate, its lag behind the schedule.
        calls = [line.split() for log in Path(logs).iterdir() for line in log.read_text().splitlines()]
    ms = sorted(int(call[2]) / 1000 for call in calls if call[2].isdigit())
    lags = sorted(int(call[6]) / 1000 for call in calls if len(call) > 6)
    return {
        f"{name}_connections": POOL_CONNECTIONS,
        f"{name}_reads": len(ms),
        f"{name}_reads_per_second": round(float(tps[0].split()[2])),
        **_percentiles(name, ms),
        **({f"{name}_lag_p99_ms": percentile(lags, 0.99)} if lags else {}),
        f"{name}_errors": sum(call[2] == "failed" for call in calls) + err.count("aborted in command"),
        **cpu.figures(name),
    }


def _percentiles(name: str, sorted_ms: list[float]) -> dict:
    return {f"{name}_{p}_ms": percentile(sorted_ms, fraction) for p, fraction in (("p50", 0.50), ("p95", 0.95),
                                                                                  ("p99", 0.99))}


def _shares(total: int, parts: int) -> list[int]:
    """`total` dealt into `parts` shares differing by at most one."""
    return [total // parts + (n < total % parts) for n in range(parts)]


def _finished(process: subprocess.Popen) -> tuple[str, str]:
    """The tool's output once it has ended (killed if it hangs, as
    redis-benchmark does when the server does not answer)."""
    try:
        return process.communicate(timeout=TOOL_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        raise RuntimeError(f"{process.args[0]} did not end within {TOOL_TIMEOUT_SECONDS} s: {err.strip()}") from None


class _CpuBeside:
    """The wall time of a block, and the CPU that the client processes it ran
    (once ended) and the server used meanwhile, in cores."""

    def __init__(self, server_pid: int):
        self._server = ServerCpu(server_pid)

    def _now(self) -> tuple[float, float, float]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.perf_counter(), children.ru_utime + children.ru_stime, self._server.seconds()

    def __enter__(self):
        self._began = self._now()
        return self

    def __exit__(self, *_):
        self._wall, self._client, self._server_seconds = (now - then for now, then in zip(self._now(), self._began))

    def figures(self, name: str) -> dict:
        return {f"{name}_wall_seconds": round(self._wall, 2),
                f"{name}_client_cpu_cores": round(self._client / self._wall, 2),
                f"{name}_server_cpu_cores": round(self._server_seconds / self._wall, 2)}

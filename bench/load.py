"""Load: USERS concurrent dashboard users, measured by native clients that
are not the bottleneck, with the CPU of the clients and of the server beside
the latency (user + system CPU seconds over the wall time, in cores: a client
near a whole core would be measuring itself).

- cached: redis-benchmark GETs the full-metrics keys the cache warming wrote
  (`dashboard:{org}:{from}:{to}`, as a dashboard reads them) over USERS
  connections, each sending its next GET as soon as the answer arrives. One
  redis-benchmark process reads one key, so up to CACHED_PROCESSES processes,
  started together, read as many warmed keys drawn at random, sharing the
  USERS connections; the percentiles are the highest of the processes' own (a bound
  on those of all the GETs together). Skipped, with the reason, where
  redis-benchmark is not installed (Debian: `apt-get install redis-tools`).
- cold: pgbench (the embedded server's) calls dashboard.dashboard_metrics, what
  any dashboard runs on a cache miss, on the seeded mix of organizations and
  ranges of the other read benchmarks, for COLD_SECONDS through a pool of
  POOL_CONNECTIONS connections kept busy, as an application pools its users'
  requests (a user's wait for a free connection is not in it); percentiles of
  every call from pgbench's log.

Errors are counted: redis-benchmark stops a process at its first error reply
(counted as one), pgbench counts failed calls and aborted clients. The stage
runs after `backfill`: the cache warming needs the rollups.
"""

import csv
import random
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import dagster as dg
import psycopg
import redis

from bench.common import PGBENCH, ServerCpu, progress
from bench.read_path import AS_OF, dashboard_requests, organization_ids
from dashboard_assets.analytics.assets import dashboard_cache, warmed_ranges
from dashboard_assets.db import libpq_url, raw_connection
from dashboard_assets.local_servers import LocalRedis
from dashboard_assets.read_stats import percentile
from dashboard_assets.resources import PostgresResource, RedisResource
from dashboard_assets.rollups.assets import current_state_asset
from dashboard_assets.serving import organization_today

USERS = 500
CACHED_PROCESSES = 4
CACHED_REQUESTS = 400_000
POOL_CONNECTIONS = 20
COLD_SECONDS = 10
COLD_REQUESTS = 1000  # rows of the mix pgbench draws from
TOOL_TIMEOUT_SECONDS = 600
_CACHED, _COLD = f"users_{USERS}_cached", f"users_{USERS}_cold"  # what their figures are named after
_COLD_READ_SCRIPT = Path(__file__).resolve().parent / "load_cold_read.sql"
# The requests pgbench draws from, numbered from 1.
_REQUESTS_TABLE = """
    CREATE TABLE bench_load_requests AS
    SELECT r.n::int AS n, r.organization_id, r.date_from, r.date_to, %(as_of)s::timestamptz AS as_of
    FROM unnest(%(organizations)s::uuid[], %(froms)s::date[], %(tos)s::date[])
         WITH ORDINALITY AS r(organization_id, date_from, date_to, n)
"""


def measure(url: str, redis_server: LocalRedis, postgres_pid: int) -> dict:
    return _cached(redis_server, _warmed_keys(url, redis_server.url)) | _cold(url, postgres_pid)


def _warmed_keys(url: str, redis_url: str) -> list[str]:
    """The cache warming as of the reads' instant (after the snapshot it
    reads), and the full-metrics keys it wrote."""
    redis_resource = RedisResource(url=redis_url)
    assert dg.materialize([current_state_asset, dashboard_cache],
                          resources={"postgres": PostgresResource(database_url=url), "redis": redis_resource},
                          run_config={"ops": {"dashboard_cache": {"config": {"as_of": AS_OF.isoformat()}}}}).success
    store = redis_resource.cache()
    with raw_connection(url) as conn:
        candidates = sorted({store.keys.metrics(org, *dates) for org in organization_ids(url)
                             for dates in warmed_ranges(organization_today(conn, org, AS_OF)).values()})
    keys = [key for key, value in zip(candidates, store.client.mget(candidates)) if value is not None]
    if not keys:
        raise RuntimeError("the cache warming wrote no keys: the rollups are empty, run load after backfill "
                           "(python -m bench backfill load)")
    return keys


def _cached(redis_server: LocalRedis, keys: list[str]) -> dict:
    """GETs of warmed keys from USERS connections, by redis-benchmark."""
    if not (tool := shutil.which("redis-benchmark")):
        message = "redis-benchmark not found (Debian: apt-get install redis-tools)"
        progress(f"load: cached reads skipped, {message}")
        return {f"{_CACHED}_skipped": message}
    read = random.Random(1).sample(keys, min(CACHED_PROCESSES, len(keys)))
    with _CpuBeside(redis_server.pid) as cpu:
        processes = [subprocess.Popen([tool, "-u", redis_server.url, "-c", str(clients), "-n", str(requests),
                                       "--csv", "GET", key], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for key, clients, requests in zip(read, _shares(USERS, len(read)),
                                                       _shares(CACHED_REQUESTS, len(read)))]
        outputs = [_finished(process) for process in processes]
    errors = sum("Error from server" in err for _, err in outputs)
    rows = [row for out, _ in outputs for row in csv.DictReader(out.splitlines())]
    if not rows:
        raise RuntimeError(f"redis-benchmark measured nothing: {outputs[0][1].strip()}")
    if "p99_latency_ms" not in rows[0]:
        raise RuntimeError("redis-benchmark writes no latency percentiles before Redis 7: install a newer one")
    if missing := len(keys) - redis.Redis.from_url(redis_server.url).exists(*keys):
        raise RuntimeError(f"{missing} warmed keys expired during the run: their GETs were not cached reads")
    return {
        f"{_CACHED}_keys_read": len(read),
        f"{_CACHED}_requests": CACHED_REQUESTS,
        f"{_CACHED}_reads_per_second": round(sum(float(row["rps"]) for row in rows)),
        **{f"{_CACHED}_{p}_ms": max(float(row[f"{p}_latency_ms"]) for row in rows) for p in ("p50", "p95", "p99")},
        f"{_CACHED}_errors": errors,
        **cpu.figures(_CACHED),
    }


def _cold(url: str, postgres_pid: int) -> dict:
    """dashboard.dashboard_metrics through a pool of POOL_CONNECTIONS, by pgbench."""
    requests = dashboard_requests(organization_ids(url), COLD_REQUESTS)
    organizations, froms, tos = zip(*requests)
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_load_requests")
        conn.execute(_REQUESTS_TABLE, {"as_of": AS_OF, "organizations": list(organizations), "froms": list(froms),
                                       "tos": list(tos)})
        conn.execute("CREATE UNIQUE INDEX ON bench_load_requests (n)")
        conn.execute("ANALYZE bench_load_requests")
    with tempfile.TemporaryDirectory() as logs:
        with _CpuBeside(postgres_pid) as cpu:
            process = subprocess.Popen(
                [str(PGBENCH), "-n", "-M", "prepared", "-f", str(_COLD_READ_SCRIPT), "-D", f"requests={COLD_REQUESTS}",
                 "-c", str(POOL_CONNECTIONS), "-j", "2", "-T", str(COLD_SECONDS), "--log",
                 f"--log-prefix={logs}/cold", libpq_url(url)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            out, err = _finished(process)
        if not (tps := [line for line in out.splitlines() if line.startswith("tps")]):
            raise RuntimeError(f"pgbench measured nothing: {err.strip()}")
        # Each line: client, transaction, its latency in microseconds (or "failed"), script, epoch, microseconds.
        latencies = [line.split()[2] for log in Path(logs).iterdir() for line in log.read_text().splitlines()]
    ms = sorted(int(latency) / 1000 for latency in latencies if latency.isdigit())
    return {
        f"{_COLD}_connections": POOL_CONNECTIONS,
        f"{_COLD}_reads": len(ms),
        f"{_COLD}_reads_per_second": round(float(tps[0].split()[2])),
        **{f"{_COLD}_{name}_ms": percentile(ms, fraction)
           for name, fraction in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))},
        f"{_COLD}_errors": latencies.count("failed") + err.count("aborted in command"),
        **cpu.figures(_COLD),
    }


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

"""What every benchmark shares: the embedded server, a database of generated
data per scale, where results go, progress lines, and the measurements taken
beside the times (PostgreSQL's temporary files, a child process's memory, a
server's CPU), and where the embedded server's pgbench is."""

import datetime as dt
import multiprocessing
import os
import platform
import resource
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psutil
import psycopg

from dashboard_assets.automation import capture
from dashboard_assets.db import engine, libpq_url
from dashboard_assets.generate import generate
from dashboard_assets.local_servers import LocalPostgres, postgres_bin_dir
from dashboard_assets.migrations import migrate
from dashboard_assets.resources import PostgresResource, RedisResource

END_DATE = dt.date(2026, 11, 23)
DAYS = 730
START_DATE = END_DATE - dt.timedelta(days=DAYS - 1)
# From this many organizations on, the generated history is this many days
# (the last ones before END_DATE) at full volume per organization and day, so
# that a scale fits this machine; the partitions still span DAYS.
LARGE_SCALE_ORGANIZATIONS, LARGE_SCALE_HISTORY_DAYS = 1000, 60
ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".local" / "bench"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
PGBENCH = postgres_bin_dir() / "pgbench"
_STARTED = time.monotonic()


def machine() -> str:
    return f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def progress(message: str) -> None:
    """One line per stage, with the time since the benchmark started."""
    elapsed = int(time.monotonic() - _STARTED)
    print(f"[{elapsed // 60:3d}:{elapsed % 60:02d}] {message}", flush=True)


def history_days(orgs: int) -> int:
    return LARGE_SCALE_HISTORY_DAYS if orgs >= LARGE_SCALE_ORGANIZATIONS else DAYS


def fresh_database(server: LocalPostgres, name: str) -> str:
    with psycopg.connect(libpq_url(server.url()), autocommit=True) as conn:
        for (slot,) in conn.execute("SELECT slot_name FROM pg_replication_slots WHERE database = %s", (name,)):
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(name)))
    return server.create_database(name)


def generated_database(server: LocalPostgres, orgs: int) -> tuple[str, float, int]:
    """A fresh database with `orgs` organizations' generated history (see
    history_days); returns its URL, the load time and the source rows. Its
    capture slot is dropped: the benchmarks that read changes make their own."""
    url = fresh_database(server, f"bench_{orgs}_orgs")
    migrate(url, with_source_schema=True)
    began = time.perf_counter()
    with psycopg.connect(libpq_url(url)) as conn:
        rows = generate(conn, orgs=orgs, days=history_days(orgs), seed=1, end_date=END_DATE)
        conn.execute("ANALYZE")
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        capture.drop_slot(conn)
    return url, time.perf_counter() - began, sum(rows.values())


def temp_file_bytes(url: str) -> int:
    """Bytes PostgreSQL has written to temporary files in this database so
    far (pooled connections are closed first, so that their counts are in)."""
    engine(url).dispose()
    time.sleep(0.5)
    with psycopg.connect(libpq_url(url)) as conn:
        return int(conn.execute("SELECT temp_bytes FROM pg_stat_database WHERE datname = current_database()")
                   .fetchone()[0])


class ServerCpu:
    """CPU seconds a server has used: its main process (the postmaster, the
    redis-server), its children alive, and those that have exited (counted
    once reaped, so a reading waits until no child has exited unreaped)."""

    def __init__(self, pid: int):
        self._main = psutil.Process(pid)

    def seconds(self) -> float:
        while True:
            children = self._main.children()
            if not any(_exited(child) for child in children):
                break
            time.sleep(0.05)
        total = 0.0
        for child in children:
            try:
                total += sum(child.cpu_times()[:2])
            except psutil.NoSuchProcess:  # exited since, and counted in the main process's children times
                continue
        return total + sum(self._main.cpu_times()[:4])


def _exited(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def in_child_process(work: Callable, *args):
    """`work(*args)` in a new Python process, as a run worker is; returns its
    result and the process's peak resident memory in MB."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
        return child.submit(_measured, work, *args).result()


def _measured(work: Callable, *args):
    result = work(*args)
    return result, round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


@contextmanager
def sensor_contexts(url: str, redis_url: str) -> Iterator[Callable]:
    """Contexts for evaluating the change sensor from a cursor, on one instance."""
    with dg.instance_for_test() as instance:
        resources = {"postgres": PostgresResource(database_url=url), "redis": RedisResource(url=redis_url)}
        yield lambda cursor: dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)

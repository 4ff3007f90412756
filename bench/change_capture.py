"""What change capture costs the application's writes, against the same
server without any capture, variants alternating, over several rounds:

- `none`: no capture (wal_level = replica, replica identity by default);
- `logical`: the project's capture (wal_level = logical, the publication,
  REPLICA IDENTITY FULL, the slot), with the change sensor ticking beside the
  writes every 5 s as the daemon runs it (decoding, affected days, activity
  feed, run requests), and twice more after each workload: for what is left,
  and to confirm it.
  The sensor's own Python runs at the lowest CPU priority, as on the Dagster
  host it runs on in production; its queries, the decoding of the WAL
  included, run in PostgreSQL at normal priority and are counted;
- `logical_one_host`: the same with the sensor at normal priority, sharing
  the 2 cores with PostgreSQL and the clients (everything on one machine);
- `typed_triggers`: the alternative, statement-level triggers with typed SQL
  recording each statement's distinct (table, organization, day)
  (capture/typed_triggers.sql), and no reader.

The variants' order rotates from round to round. Workloads: one INSERT …
SELECT of 100,000 order items spread over 50,000 existing orders and one
UPDATE of 10,000 orders, each rolled back (3 each per round); then, after a
vacuum of what they left and a checkpoint, OLTP traffic, pgbench (the
embedded server's) running capture/oltp.sql from 4 clients for 10 s. Each is
measured by its wall time (per statement, per transaction) and by the CPU
time PostgreSQL spent on it (every server process, the sensor's decoding
included), which the disk's varying flush times do not blur. Server settings
need a restart between variants; each variant starts from a checkpoint with
the same data (what pgbench added is removed and vacuumed away).
"""

import os
import statistics
import subprocess
import threading
import time
from pathlib import Path

import psycopg
from psycopg import sql

from bench.common import PGBENCH, ServerCpu, progress, sensor_contexts
from dashboard_assets.automation import capture
from dashboard_assets.automation.changes import CAPTURED_COLUMNS
from dashboard_assets.automation.sensors import build_source_changes_sensor
from dashboard_assets.db import libpq_url
from dashboard_assets.local_servers import LocalPostgres

_HERE = Path(__file__).resolve().parent / "capture"
VARIANTS = ("none", "logical", "logical_one_host", "typed_triggers")
_SENSOR_NICENESS = {"logical": 19, "logical_one_host": 0}
ROUNDS = 5
STATEMENTS = 3
OLTP_SECONDS = 10
OLTP_CLIENTS = 4
SENSOR_TICK_SECONDS = 5
# 100,000 items dealt round-robin to (up to) 50,000 orders spread over every
# organization and day, each with its organization's first battery.
_BULK_INSERT = """
    WITH spread AS (
        SELECT id, organization_id, row_number() OVER (ORDER BY id) AS position
        FROM (SELECT id, organization_id FROM orders ORDER BY id LIMIT 50000) o
    ),
    battery AS (
        SELECT DISTINCT ON (organization_id) organization_id, id FROM products
        WHERE category = 'battery' ORDER BY organization_id, id
    )
    INSERT INTO order_items (id, organization_id, order_id, product_id, quantity, unit_price, line_total)
    SELECT gen_random_uuid(), o.organization_id, o.id, b.id, 1, 100, 100
    FROM generate_series(0, 99999) AS k
    JOIN spread o ON o.position = k % (SELECT count(*) FROM spread) + 1
    JOIN battery b ON b.organization_id = o.organization_id
"""
_BULK_UPDATE = "UPDATE orders SET status = 'delivered', updated_at = now() WHERE id IN (SELECT id FROM orders ORDER BY id LIMIT 10000)"
_WORKLOADS = ("bulk_insert", "bulk_update", "oltp")


def measure(server: LocalPostgres, url: str, redis_url: str) -> dict:
    _prepare(url)
    # variant -> workload -> [(wall seconds per unit, server CPU seconds per unit), ...] over the rounds
    runs = {variant: {workload: [] for workload in _WORKLOADS} for variant in VARIANTS}
    sensor_cpu = {variant: [] for variant in _SENSOR_NICENESS}
    for round_number in range(ROUNDS):
        for variant in VARIANTS[round_number % len(VARIANTS):] + VARIANTS[:round_number % len(VARIANTS)]:
            _set_up(server, url, variant)
            reader = _SensorBeside(url, redis_url, _SENSOR_NICENESS[variant]) if variant in _SENSOR_NICENESS else None
            cpu = ServerCpu(server.postmaster_pid)
            runs[variant]["bulk_insert"].append(_statements(url, _BULK_INSERT, 100_000, cpu, reader))
            runs[variant]["bulk_update"].append(_statements(url, _BULK_UPDATE, 10_000, cpu, reader))
            _settle(url, reader)
            runs[variant]["oltp"].append(_pgbench(url, cpu, reader))
            if reader:
                sensor_cpu[variant].append(reader.stop())
            _remove_what_oltp_added(url)
            insert, update, oltp = (runs[variant][w][-1] for w in _WORKLOADS)
            progress(f"capture round {round_number + 1}, {variant}: insert {insert[0]:.3f} s, "
                     f"update {update[0]:.3f} s, OLTP {1 / oltp[0]:.0f} tps")
    _set_up(server, url, "logical")  # as the project runs it, for what follows
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        capture.drop_slot(conn)
    return _summary(runs, sensor_cpu)


def _summary(runs: dict, sensor_cpu: dict) -> dict:
    found = {"capture_rounds": ROUNDS, "capture_oltp_seconds": OLTP_SECONDS, "capture_oltp_clients": OLTP_CLIENTS,
             "capture_each_round": {variant: {workload: [[round(wall, 5), round(cpu, 5)] for wall, cpu in measured]
                                              for workload, measured in workloads.items()}
                                    for variant, workloads in runs.items()}}
    median = {variant: {workload: (statistics.median(w for w, _ in measured), statistics.median(c for _, c in measured))
                        for workload, measured in workloads.items()}
              for variant, workloads in runs.items()}
    for variant, workloads in median.items():
        (insert_wall, insert_cpu), (update_wall, update_cpu), (oltp_wall, oltp_cpu) = workloads.values()
        found |= {f"bulk_insert_{variant}_seconds": round(insert_wall, 3),
                  f"bulk_insert_{variant}_server_cpu_seconds": round(insert_cpu, 3),
                  f"bulk_update_{variant}_seconds": round(update_wall, 4),
                  f"bulk_update_{variant}_server_cpu_seconds": round(update_cpu, 4),
                  f"oltp_{variant}_tps": round(1 / oltp_wall, 1),
                  f"oltp_{variant}_server_cpu_ms_per_transaction": round(oltp_cpu * 1000, 4)}
        if variant != "none":
            for workload in _WORKLOADS:
                wall, cpu = workloads[workload]
                base_wall, base_cpu = median["none"][workload]
                found[f"{workload}_{variant}_overhead_ratio"] = round(wall / base_wall, 3)
                found[f"{workload}_{variant}_server_cpu_ratio"] = round(cpu / base_cpu, 3)
    for variant, seconds in sensor_cpu.items():
        found[f"capture_sensor_{variant}_cpu_seconds_per_round"] = round(statistics.median(seconds), 2)
    return found


def _execute(url: str, *statements: str) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def _prepare(url: str) -> None:
    """Customers for pgbench to pick from, with their organization's first battery."""
    _execute(url, "DROP TABLE IF EXISTS bench_oltp_customers", """
        CREATE TABLE bench_oltp_customers AS
        SELECT row_number() OVER (ORDER BY c.organization_id, c.id) AS n, c.id AS customer_id, c.organization_id,
               (SELECT p.id FROM products p WHERE p.organization_id = c.organization_id AND p.category = 'battery'
                ORDER BY p.id LIMIT 1) AS product_id
        FROM customers c
        WHERE c.id IN (SELECT id FROM customers ORDER BY id LIMIT 20000)
    """, "CREATE UNIQUE INDEX ON bench_oltp_customers (n)", "ANALYZE bench_oltp_customers")


def _set_up(server: LocalPostgres, url: str, variant: str) -> None:
    """The server and database as the variant has them, after a checkpoint
    and a read of the workloads' tables."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        capture.drop_slot(conn)
        conn.execute((_HERE / "typed_triggers_drop.sql").read_text())
        conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(capture.PUBLICATION)))
        for table in CAPTURED_COLUMNS:
            conn.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY DEFAULT").format(sql.Identifier(table)))
        level = "logical" if variant in _SENSOR_NICENESS else "replica"
        conn.execute(sql.SQL("ALTER SYSTEM SET wal_level = {}").format(sql.Literal(level)))
    server.restart()
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        if variant in _SENSOR_NICENESS:
            capture.install(conn, list(CAPTURED_COLUMNS))
        elif variant == "typed_triggers":
            conn.execute((_HERE / "typed_triggers.sql").read_text())
        conn.execute("CHECKPOINT")
        for table in ("orders", "order_items", "jobs", "bench_oltp_customers"):
            conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))


def _settle(url: str, reader: "_SensorBeside | None") -> None:
    """Between the bulk statements and OLTP: a vacuum of what the rolled-back
    statements left, read past by the sensor, then a checkpoint, so that OLTP
    starts from the same state in every variant (no autovacuum of those rows,
    no checkpoint, during it)."""
    _execute(url, "VACUUM orders, order_items")
    if reader:
        reader.catch_up()
    _execute(url, "CHECKPOINT")


def _remove_what_oltp_added(url: str) -> None:
    """The orders pgbench created (the generated history ends before
    yesterday), with their items and jobs, then a vacuum: every measurement
    starts from the same data."""
    today = "created_at >= current_date - 1"
    _execute(url, f"DELETE FROM order_items WHERE order_id IN (SELECT id FROM orders WHERE {today})",
             f"DELETE FROM jobs WHERE {today}", f"DELETE FROM orders WHERE {today}",
             "VACUUM (ANALYZE) orders, order_items, jobs")


def _statements(url: str, statement: str, rows: int, cpu: ServerCpu, reader: "_SensorBeside | None"):
    """Median wall time of the statement (rolled back each time), and the
    server's CPU per statement, its decoding included."""
    seconds = []
    began_cpu = cpu.seconds()
    with psycopg.connect(libpq_url(url)) as conn:
        for _ in range(STATEMENTS):
            began = time.perf_counter()
            changed = conn.execute(statement).rowcount
            seconds.append(time.perf_counter() - began)
            conn.rollback()
            assert changed == rows, changed
    if reader:
        reader.catch_up()
    return statistics.median(seconds), (cpu.seconds() - began_cpu) / STATEMENTS


def _pgbench(url: str, cpu: ServerCpu, reader: "_SensorBeside | None"):
    """Wall time and the server's CPU per pgbench transaction, decoding included."""
    with psycopg.connect(libpq_url(url)) as conn:
        customers = conn.execute("SELECT count(*) FROM bench_oltp_customers").fetchone()[0]
    began_cpu = cpu.seconds()
    out = subprocess.run(
        [str(PGBENCH), "-n", "-f", str(_HERE / "oltp.sql"), "-D", f"customers={customers}",
         "-c", str(OLTP_CLIENTS), "-j", "2", "-T", str(OLTP_SECONDS), libpq_url(url)],
        capture_output=True, text=True, check=True,
    ).stdout
    if reader:
        reader.catch_up()
    transactions = int(next(line for line in out.splitlines() if "transactions actually processed" in line)
                       .split(":")[1].split("/")[0])
    tps = float(next(line for line in out.splitlines() if line.startswith("tps")).split()[2])
    return 1 / tps, (cpu.seconds() - began_cpu) / transactions


class _SensorBeside:
    """The change sensor ticking every SENSOR_TICK_SECONDS while the writes
    run, as the daemon would, in a thread of this niceness; `catch_up` ticks
    twice more at once. `stop` returns the CPU seconds its ticks took in this process."""

    def __init__(self, url: str, redis_url: str, niceness: int):
        self._url, self._redis_url, self._niceness = url, redis_url, niceness
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._cursor = None
        self._cpu = 0.0
        self._contexts = sensor_contexts(url, redis_url)
        self._context_for = self._contexts.__enter__()
        self._sensor = build_source_changes_sensor(wait_seconds=0)
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _tick(self) -> None:
        with self._lock:
            began = time.thread_time()
            self._cursor = self._sensor(self._context_for(self._cursor)).cursor
            self._cpu += time.thread_time() - began

    def _run(self) -> None:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._niceness)
        while not self._done.wait(SENSOR_TICK_SECONDS):
            self._tick()

    def catch_up(self) -> None:
        """A tick now, for whatever the last workload left, and the next one,
        which confirms it (advances the slot past it)."""
        self._tick()
        self._tick()

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        self._contexts.__exit__(None, None, None)
        return self._cpu

"""`python -m bench.capture_breakdown ORGS`: where capture's cost under OLTP
goes, on the database a previous `make bench` left for ORGS organizations.

First the writes alone, without any reader: pgbench (as in the capture
benchmark) with no capture and with logical capture set up, alternating
twice, with the WAL each transaction wrote. Then the reader alone, on what
the last run left in the slot: the peek that decodes it; the parts of a tick
one by one (reading and decoding the changes, their affected days and the
feed's table in one transaction, the feed pushed to Redis); a whole sensor
tick from the slot's position; and the next tick (advancing the slot, an
empty peek); each with PostgreSQL's CPU per transaction written.
"""

import sys
import time

import psycopg

from bench import change_capture
from bench.common import END_DATE, START_DATE, STATE_DIR, sensor_contexts
from dashboard_assets.automation import capture
from dashboard_assets.automation.changes import CAPTURED_COLUMNS, push_activity, record
from dashboard_assets.automation.sensors import build_source_changes_sensor
from dashboard_assets.db import libpq_url
from dashboard_assets.local_servers import LocalPostgres, LocalRedis
from dashboard_assets.resources import RedisResource


def main(orgs: int) -> None:
    server = LocalPostgres(STATE_DIR / "postgres")
    redis_server = LocalRedis(STATE_DIR / "redis")
    url = libpq_url(server.url(f"bench_{orgs}_orgs"))
    try:
        change_capture._prepare(url)
        for variant in ("none", "logical", "none", "logical"):
            transactions = _writes_alone(server, url, variant)
        _reader_alone(server, url, redis_server.url, transactions)
        change_capture._remove_what_oltp_added(url)
        with psycopg.connect(url, autocommit=True) as conn:
            capture.drop_slot(conn)
    finally:
        redis_server.stop()
        server.stop()


def _writes_alone(server: LocalPostgres, url: str, variant: str) -> float:
    change_capture._set_up(server, url, variant)
    with psycopg.connect(url, autocommit=True) as conn:
        (began,) = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    seconds_per_transaction, cpu_per_transaction = change_capture._pgbench(url, change_capture._ServerCpu(server), None)
    transactions = change_capture.OLTP_SECONDS / seconds_per_transaction
    with psycopg.connect(url, autocommit=True) as conn:
        (wal,) = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (began,)).fetchone()
    print(f"writes alone, {variant}: {1 / seconds_per_transaction:.0f} tps, server CPU "
          f"{cpu_per_transaction * 1000:.3f} ms per transaction, WAL {float(wal) / transactions / 1024:.1f} kB each",
          flush=True)
    if variant == "none":
        change_capture._remove_what_oltp_added(url)
    return transactions


def _reader_alone(server: LocalPostgres, url: str, redis_url: str, transactions: float) -> None:
    cpu = change_capture._ServerCpu(server)

    def measured(label: str, work) -> object:
        began_cpu, began = cpu.seconds(), time.perf_counter()
        result = work()
        used = cpu.seconds() - began_cpu
        print(f"reader alone, {label}: {time.perf_counter() - began:.3f} s, server CPU {used:.3f} s = "
              f"{used / transactions * 1000:.3f} ms per transaction", flush=True)
        return result

    with psycopg.connect(url, autocommit=True) as conn:
        slot = capture.slot_name(conn)
        (upto,) = conn.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()

        def peek() -> int:
            with conn.cursor(binary=True) as cursor:
                cursor.execute(capture._PEEK, {"slot": slot, "upto": upto, "publication": capture.PUBLICATION})
                return sum(1 for _ in cursor)

        messages = measured("peek (decoding)", peek)
        print(f"  {messages} messages for {transactions:.0f} transactions", flush=True)
        changes = measured("tick part: read_changes", lambda: capture.read_changes(conn, None, CAPTURED_COLUMNS))
        measured("tick part: record (affected days, the feed's table)",
                 lambda: record(conn, changes, START_DATE, END_DATE))
        store = RedisResource(url=redis_url).cache()
        measured("tick part: push_activity (the feed to Redis)",
                 lambda: push_activity(conn, store, sorted(changes.activity)))
        # the whole tick reads, marks and keeps the same changes again
        conn.execute("TRUNCATE dashboard.recent_changes, dashboard.capture_progress, dashboard.pending_days,"
                     " dashboard.pending_organizations")
    sensor = build_source_changes_sensor(wait_seconds=0.0)
    with sensor_contexts(url, redis_url) as contexts:
        first = measured("a whole tick", lambda: sensor(contexts(None)))
        measured("the next tick (advance, empty peek)", lambda: sensor(contexts(first.cursor)))


if __name__ == "__main__":
    main(int(sys.argv[1]))

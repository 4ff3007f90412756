"""`python -m bench sustained`: the running demo under a write stream that does
not stop, as a production ERP writes all day.

Starts the demo as a user does (`dashboard-assets demo`, the instance as
shipped), lets it settle, measures its idle CPU, then commits small ERP
transactions at a steady rate, one commit each, over every organization but
one: new orders with items, deliveries, completed jobs, opportunities opened
and closed, claims opened and resolved, and late edits (an order of months
ago cancelled, an item of an old order deleted, an order moved back a day).
The last organization carries the probes, one at a time: an order of its
local today delivered (until `dashboard:{org}:{today}:{today}` counts it),
then an order of months ago cancelled (until its day's rollup row does).

Every 30 s a line: transactions committed, change refresh runs queued, in
flight and created so far, pending (rollup, organization, day), the Dagster
instance's size and event rows, CPU (cores, over the interval) and memory of
the Dagster processes and of PostgreSQL, the replication slot's lag, and the
probes' delays so far. After the stream: the time until the pipeline is idle
(nothing pending, no change refresh run queued or running), and every rollup
value of every day compared with the pandas reference.
"""

import datetime as dt
import random
import threading
import time
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import psutil
import psycopg
import redis

from bench.common import progress
from bench.freshness import delivered_orders, running_demo
from dashboard_assets.read_stats import percentile
from dashboard_assets_tests import reference
from dashboard_assets_tests.helpers import DAILY_KEYS, rollup_rows, sources

SAMPLE_SECONDS = 30
# The idle demo is measured over 5 minutes: one tick of its 5-minute schedule.
IDLE_SAMPLE_SECONDS = 300
PROBE_TIMEOUT_SECONDS = 300
SETTLE_TIMEOUT_SECONDS = 1800
# Late edits and late probes touch a day this many days back, at random (at
# most as far back as the demo's history goes).
LATE_DAYS = (60, 300)


def late_days(history_days: int) -> tuple[int, int]:
    return min(LATE_DAYS[0], history_days // 2), min(LATE_DAYS[1], history_days - 2)

NEW_ORDER = """
    WITH new_order AS (
        INSERT INTO orders (id, organization_id, customer_id, status, total_amount, created_at, updated_at)
        SELECT gen_random_uuid(), %(org)s, c.id, 'confirmed', 0, now(), now()
        FROM customers c WHERE c.organization_id = %(org)s ORDER BY random() LIMIT 1
        RETURNING id
    ), items AS (
        INSERT INTO order_items (id, organization_id, order_id, product_id, quantity, unit_price, line_total)
        SELECT gen_random_uuid(), %(org)s, new_order.id, p.id, %(quantity)s, p.unit_price, %(quantity)s * p.unit_price
        FROM new_order, (SELECT id, unit_price FROM products WHERE organization_id = %(org)s
                         ORDER BY random() LIMIT %(items)s) p
        RETURNING order_id, line_total
    )
    UPDATE orders SET total_amount = (SELECT sum(line_total) FROM items)
    WHERE id = (SELECT id FROM new_order)
"""
DELIVER = """
    UPDATE orders SET status = 'delivered', delivered_at = now(), updated_at = now()
    WHERE id = (SELECT id FROM orders WHERE organization_id = %(org)s AND status IN ('confirmed', 'picking', 'picked',
                'shipped') AND created_at > now() - interval '3 days' ORDER BY created_at LIMIT 1)
"""
COMPLETE_JOB = """
    WITH job AS (
        INSERT INTO jobs (id, organization_id, order_id, customer_id, status, scheduled_date, completed_at,
                          created_at, updated_at)
        SELECT gen_random_uuid(), o.organization_id, o.id, o.customer_id, 'completed', current_date, now(), now(), now()
        FROM orders o WHERE o.organization_id = %(org)s AND o.status = 'delivered'
        ORDER BY o.created_at DESC LIMIT 1
        RETURNING id, organization_id
    )
    INSERT INTO job_time_entries (id, organization_id, job_id, hours, entry_date, created_at)
    SELECT gen_random_uuid(), organization_id, id, %(hours)s, current_date, now() FROM job
"""
OPEN_OPPORTUNITY = """
    INSERT INTO opportunities (id, organization_id, customer_id, stage, value, probability, expected_close_date,
                               created_at, updated_at)
    SELECT gen_random_uuid(), %(org)s, c.id, 'new', %(value)s, 10, current_date + 30, now(), now()
    FROM customers c WHERE c.organization_id = %(org)s ORDER BY random() LIMIT 1
"""
CLOSE_OPPORTUNITY = """
    UPDATE opportunities SET stage = %(stage)s, probability = CASE WHEN %(stage)s = 'won' THEN 100 ELSE 0 END,
                             actual_close_date = current_date, updated_at = now()
    WHERE id = (SELECT id FROM opportunities WHERE organization_id = %(org)s
                AND stage IN ('new', 'qualified', 'proposal', 'negotiation') ORDER BY created_at DESC LIMIT 1)
"""
OPEN_CLAIM = """
    INSERT INTO warranty_claims (id, organization_id, customer_id, order_id, status, claim_type, created_at, updated_at)
    SELECT gen_random_uuid(), o.organization_id, o.customer_id, o.id, 'open', 'defect', now(), now()
    FROM orders o WHERE o.organization_id = %(org)s AND o.status = 'delivered' ORDER BY o.created_at DESC LIMIT 1
"""
RESOLVE_CLAIM = """
    UPDATE warranty_claims SET status = 'resolved', resolved_at = now(), updated_at = now()
    WHERE id = (SELECT id FROM warranty_claims WHERE organization_id = %(org)s AND status = 'open'
                ORDER BY created_at DESC LIMIT 1)
"""
CANCEL_OLD_ORDER = """
    UPDATE orders SET status = 'cancelled', updated_at = now()
    WHERE id = (SELECT id FROM orders WHERE organization_id = %(org)s AND status <> 'cancelled'
                AND created_at >= now() - make_interval(days => %(days_ago)s) ORDER BY created_at LIMIT 1)
"""
DELETE_OLD_ITEM = """
    DELETE FROM order_items WHERE id = (
        SELECT i.id FROM orders o JOIN order_items i ON i.organization_id = o.organization_id AND i.order_id = o.id
        WHERE o.organization_id = %(org)s AND o.created_at >= now() - make_interval(days => %(days_ago)s)
        ORDER BY o.created_at LIMIT 1)
"""
MOVE_ORDER_BACK_A_DAY = """
    UPDATE orders SET created_at = created_at - interval '1 day', updated_at = now()
    WHERE id = (SELECT id FROM orders WHERE organization_id = %(org)s
                AND created_at >= now() - make_interval(days => %(days_ago)s) ORDER BY created_at LIMIT 1)
"""
# Each transaction of the stream, with its share: a few of them late edits.
STREAM = (
    (0.34, NEW_ORDER), (0.17, DELIVER), (0.13, COMPLETE_JOB), (0.11, OPEN_OPPORTUNITY), (0.07, CLOSE_OPPORTUNITY),
    (0.07, OPEN_CLAIM), (0.07, RESOLVE_CLAIM), (0.015, CANCEL_OLD_ORDER), (0.015, DELETE_OLD_ITEM),
    (0.01, MOVE_ORDER_BACK_A_DAY),
)

PROBE_TODAY_ORDER = """
    SELECT id FROM orders WHERE organization_id = %(org)s AND status <> 'delivered'
      AND created_at >= %(day)s::timestamp AT TIME ZONE %(tz)s AND created_at < (%(day)s::date + 1)::timestamp AT TIME ZONE %(tz)s
    ORDER BY created_at DESC LIMIT 1
"""
PROBE_LATE_ORDER = """
    SELECT id FROM orders WHERE organization_id = %(org)s AND status = 'delivered'
      AND created_at >= %(day)s::timestamp AT TIME ZONE %(tz)s AND created_at < (%(day)s::date + 1)::timestamp AT TIME ZONE %(tz)s
    ORDER BY created_at LIMIT 1
"""
ROLLUP_DELIVERED = "SELECT delivered_orders FROM dashboard.daily_metrics WHERE organization_id = %s AND metric_date = %s"
RUNS = """
    SELECT count(*) FILTER (WHERE status IN ('QUEUED', 'NOT_STARTED', 'STARTING')),
           count(*) FILTER (WHERE status IN ('STARTED', 'CANCELING')),
           count(*) FILTER (WHERE pipeline_name = 'change_refresh'),
           count(*)
    FROM runs
"""
INSTANCE_SIZE = "SELECT pg_database_size(current_database()), (SELECT count(*) FROM event_logs)"
PENDING = "SELECT (SELECT count(*) FROM dashboard.pending_days) + (SELECT count(*) FROM dashboard.pending_organizations)"
SLOT_LAG = "SELECT coalesce(max(pg_current_wal_lsn() - confirmed_flush_lsn), 0) FROM pg_replication_slots"
IN_FLIGHT_CHANGE_REFRESH = ("SELECT count(*) FROM runs WHERE pipeline_name = 'change_refresh'"
                            " AND status IN ('QUEUED', 'NOT_STARTED', 'STARTING', 'STARTED', 'CANCELING')")
ROLLUP_TABLES = (("daily_metrics", reference.daily_metrics), ("daily_customers", reference.daily_customers),
                 ("daily_pipeline", reference.daily_pipeline), ("daily_warranty", reference.daily_warranty),
                 ("daily_jobs", reference.daily_jobs))


@dataclass
class Probes:
    """The probes' delays, in seconds, as they come in."""

    today: list[float] = field(default_factory=list)
    late: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {f"{kind}_{name}": value for kind in ("today", "late")
                for name, value in _distribution(getattr(self, kind)).items()}


def measure(orgs: int, days: int, minutes: float, rate: float) -> dict:
    progress(f"sustained: the demo with {orgs} organizations and {days} days")
    with running_demo(orgs, days) as demo:
        idle = _idle_cpu(demo)
        progress(f"sustained: idle demo: Dagster {idle['dagster_cores']} cores, PostgreSQL "
                 f"{idle['postgres_cores']} cores; {rate} transactions a second for {minutes} minutes")
        stop = threading.Event()
        probes = Probes()
        committed = [0]
        late = late_days(days)
        workers = [threading.Thread(target=_stream, args=(demo, rate, late, stop, committed), daemon=True),
                   threading.Thread(target=_probe, args=(demo, late, stop, probes), daemon=True)]
        for worker in workers:
            worker.start()
        samples = _sample(demo, minutes * 60, committed, probes, idle)
        stop.set()
        for worker in workers:
            worker.join(timeout=PROBE_TIMEOUT_SECONDS)
        stream_ended = time.monotonic()
        settle_seconds = _settle(demo, stream_ended)
        progress(f"sustained: idle {settle_seconds} s after the stream; comparing every rollup value")
        differing, compared = _compare_with_reference(demo.database)
    result = {
        "organizations": orgs, "history_days": days, "minutes": minutes, "transactions_per_second": rate,
        "transactions": committed[0], "idle": idle, "samples": samples, "probes": probes.summary(),
        "probe_failures": probes.failures, "settle_seconds": settle_seconds,
        "rollup_values_compared": compared, "rollup_values_differing": differing,
    }
    result |= _totals(samples, idle, committed[0])
    progress("sustained: " + ", ".join(f"{k} {v}" for k, v in result.items()
                                       if k not in ("samples", "idle", "probe_failures")))
    return result


def _stream(demo, rate: float, late: tuple[int, int], stop: threading.Event, committed: list[int]) -> None:
    """Commit one transaction of the stream every 1/rate seconds, on schedule."""
    rng = random.Random(11)
    weights, statements = zip(*STREAM)
    with psycopg.connect(demo.database, autocommit=True) as conn:
        organizations = [org for (org,) in conn.execute("SELECT id FROM organizations ORDER BY id")][:-1]
        began = time.monotonic()
        while not stop.is_set():
            statement = rng.choices(statements, weights)[0]
            conn.execute(statement, {
                "org": rng.choice(organizations), "quantity": rng.randint(1, 4), "items": rng.randint(1, 3),
                "hours": round(rng.uniform(1, 8), 2), "value": round(rng.uniform(2_000, 40_000), 2),
                "stage": rng.choice(("won", "lost")), "days_ago": rng.randint(*late)})
            committed[0] += 1
            delay = began + committed[0] / rate - time.monotonic()
            if delay > 0:
                stop.wait(delay)


def _probe(demo, late: tuple[int, int], stop: threading.Event, probes: Probes) -> None:
    """One probe at a time on the probe organization, today's then a late one."""
    rng = random.Random(13)
    store = redis.Redis.from_url(demo.redis_url)
    with psycopg.connect(demo.database, autocommit=True) as conn:
        org, tz = conn.execute("SELECT id::text, COALESCE(timezone, 'Australia/Sydney') FROM organizations"
                               " ORDER BY id DESC LIMIT 1").fetchone()
        while not stop.is_set():
            stop.wait(rng.uniform(1, 6))
            today = dt.datetime.now(ZoneInfo(tz)).date()
            key = f"dashboard:{org}:{today}:{today}"
            row = conn.execute(PROBE_TODAY_ORDER, {"org": org, "day": today, "tz": tz}).fetchone()
            before = delivered_orders(store, key)
            if row and before is not None:
                conn.execute("UPDATE orders SET status = 'delivered', delivered_at = now(), updated_at = now()"
                             " WHERE id = %s", row)
                _wait_until(probes.today, probes.failures, f"{key} counting order {row[0]}",
                            lambda: delivered_orders(store, key) == before + 1)
            stop.wait(rng.uniform(1, 6))
            day = today - dt.timedelta(days=rng.randint(*late))
            row = conn.execute(PROBE_LATE_ORDER, {"org": org, "day": day, "tz": tz}).fetchone()
            rollup = conn.execute(ROLLUP_DELIVERED, (org, day)).fetchone()
            if row and rollup:
                conn.execute("UPDATE orders SET status = 'cancelled', updated_at = now() WHERE id = %s", row)
                _wait_until(probes.late, probes.failures, f"daily_metrics of {org} on {day} without order {row[0]}",
                            lambda: conn.execute(ROLLUP_DELIVERED, (org, day)).fetchone() == (rollup[0] - 1,))


def _wait_until(delays: list[float], failures: list[str], what: str, seen) -> None:
    committed = time.monotonic()
    while not seen():
        if time.monotonic() - committed > PROBE_TIMEOUT_SECONDS:
            failures.append(f"{what} not seen within {PROBE_TIMEOUT_SECONDS} s")
            return
        time.sleep(0.02)
    delays.append(round(time.monotonic() - committed, 3))


class _Processes:
    """CPU seconds and memory of the demo's Dagster processes (the
    demo, `dg dev`, webserver, daemon, code servers, run workers: every
    descendant, those ended counted once reaped) and of PostgreSQL's."""

    def __init__(self, demo):
        self._dagster = psutil.Process(demo.pid)
        self._postgres = psutil.Process(demo.postmaster_pid)

    def reading(self) -> dict:
        dagster_cpu, dagster_pss = _tree(self._dagster)
        postgres_cpu, postgres_pss = _tree(self._postgres)
        return {"at": time.monotonic(), "dagster_cpu": dagster_cpu, "postgres_cpu": postgres_cpu,
                "dagster_pss_mb": round(dagster_pss / 2**20, 1), "postgres_pss_mb": round(postgres_pss / 2**20, 1)}


def _tree(root: psutil.Process) -> tuple[float, int]:
    """CPU seconds (with reaped children's) and memory of a process and its
    descendants: their proportional set size, each shared page (PostgreSQL's
    shared buffers, libraries) divided among the processes that map it."""
    cpu, pss = 0.0, 0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
            cpu += times.user + times.system + times.children_user + times.children_system
            pss += process.memory_full_info().pss
        except psutil.NoSuchProcess:
            continue
    return cpu, pss


def _cores(before: dict, after: dict, name: str) -> float:
    return round((after[name] - before[name]) / (after["at"] - before["at"]), 3)


def _idle_cpu(demo) -> dict:
    processes = _Processes(demo)
    before = processes.reading()
    time.sleep(IDLE_SAMPLE_SECONDS)
    after = processes.reading()
    return {"seconds": IDLE_SAMPLE_SECONDS, "dagster_cores": _cores(before, after, "dagster_cpu"),
            "postgres_cores": _cores(before, after, "postgres_cpu"),
            "dagster_pss_mb": after["dagster_pss_mb"], "postgres_pss_mb": after["postgres_pss_mb"]}


def _sample(demo, seconds: float, committed: list[int], probes: Probes, idle: dict) -> list[dict]:
    processes = _Processes(demo)
    samples = []
    last = processes.reading()
    began = time.monotonic()
    with psycopg.connect(demo.database, autocommit=True) as conn, \
            psycopg.connect(demo.instance, autocommit=True) as dagster:
        while time.monotonic() - began < seconds:
            time.sleep(min(SAMPLE_SECONDS, max(0.0, seconds - (time.monotonic() - began))))
            now = processes.reading()
            queued, in_flight, change_runs, runs = dagster.execute(RUNS).fetchone()
            size, events = dagster.execute(INSTANCE_SIZE).fetchone()
            sample = {
                "seconds": round(time.monotonic() - began), "transactions": committed[0],
                "runs_queued": queued, "runs_in_flight": in_flight, "change_refresh_runs": change_runs,
                "runs": runs, "pending": conn.execute(PENDING).fetchone()[0],
                "instance_mb": round(size / 2**20, 1), "event_rows": events,
                "dagster_cores": _cores(last, now, "dagster_cpu"), "postgres_cores": _cores(last, now, "postgres_cpu"),
                "dagster_pss_mb": now["dagster_pss_mb"], "postgres_pss_mb": now["postgres_pss_mb"],
                "slot_lag_kb": round(int(conn.execute(SLOT_LAG).fetchone()[0]) / 1024, 1),
                "today_p95": percentile(sorted(probes.today), 0.95) if probes.today else None,
                "late_p95": percentile(sorted(probes.late), 0.95) if probes.late else None,
            }
            samples.append(sample)
            last = now
            print("  " + " ".join(f"{k}={v}" for k, v in sample.items()), flush=True)
    return samples


def _settle(demo, stream_ended: float) -> float:
    """Seconds from the end of the stream until nothing is pending and no
    change refresh run is queued or running."""
    with psycopg.connect(demo.database, autocommit=True) as conn, \
            psycopg.connect(demo.instance, autocommit=True) as dagster:
        while conn.execute(PENDING).fetchone()[0] or dagster.execute(IN_FLIGHT_CHANGE_REFRESH).fetchone()[0]:
            if time.monotonic() - stream_ended > SETTLE_TIMEOUT_SECONDS:
                raise TimeoutError(f"the pipeline was not idle {SETTLE_TIMEOUT_SECONDS} s after the stream")
            time.sleep(0.5)
    return round(time.monotonic() - stream_ended, 1)


def _compare_with_reference(database: str) -> tuple[int, int]:
    """Rollup values that differ from the pandas reference, of those compared (every day)."""
    src = sources(database)
    with psycopg.connect(database) as conn:
        first, last = conn.execute("SELECT min(metric_date), max(metric_date) FROM dashboard.daily_metrics").fetchone()
    differing = compared = 0
    for table, compute in ROLLUP_TABLES:
        keys = [*DAILY_KEYS, "customer_id"] if table == "daily_customers" else DAILY_KEYS
        actual = rollup_rows(database, table, first, last).set_index(keys).sort_index()
        expected = compute(src, first, last).set_index(keys).sort_index()
        joined = actual.join(expected, how="outer", lsuffix="_rollup", rsuffix="_reference")
        for column in expected.columns:
            left, right = joined[f"{column}_rollup"], joined[f"{column}_reference"]
            same = (left == right) | (left.isna() & right.isna())
            if column in _TOLERANT:
                same |= (left.astype(float) - right.astype(float)).abs() <= 1e-9
            differing += int((~same).sum())
            compared += len(joined)
    return differing, compared


_TOLERANT = {"avg_won_deal_size", "avg_labor_hours_per_job", "avg_resolution_days", "resolution_days_sum"}


def _distribution(delays: list[float]) -> dict:
    ordered = sorted(delays)
    if not ordered:
        return {"probes": 0}
    return {"probes": len(ordered), "p50_seconds": percentile(ordered, 0.5), "p95_seconds": percentile(ordered, 0.95),
            "max_seconds": ordered[-1]}


def _totals(samples: list[dict], idle: dict, transactions: int) -> dict:
    """What the stream cost: CPU above idle, peak memory, the instance's growth per 1,000 transactions."""
    if not samples:
        return {}
    first_size = samples[0]["instance_mb"]
    mean = {name: sum(s[name] for s in samples) / len(samples) for name in ("dagster_cores", "postgres_cores")}
    return {
        "dagster_cores_mean": round(mean["dagster_cores"], 3),
        "postgres_cores_mean": round(mean["postgres_cores"], 3),
        "dagster_cores_above_idle": round(mean["dagster_cores"] - idle["dagster_cores"], 3),
        "postgres_cores_above_idle": round(mean["postgres_cores"] - idle["postgres_cores"], 3),
        "dagster_peak_pss_mb": max(s["dagster_pss_mb"] for s in samples),
        "postgres_peak_pss_mb": max(s["postgres_pss_mb"] for s in samples),
        "runs_queued_max": max(s["runs_queued"] for s in samples),
        "change_refresh_runs": samples[-1]["change_refresh_runs"],
        "instance_growth_mb_per_1000_transactions": round(
            (samples[-1]["instance_mb"] - first_size) * 1000 / max(1, transactions - samples[0]["transactions"]), 2),
    }

"""Backfill and refresh timings, on a Dagster instance whose storage is
PostgreSQL (as in production):
- the single-run backfill of the four daily rollups over every partition,
  in a process of its own (a run worker): wall time, the database time (from
  dashboard.refresh_log) and Dagster's bookkeeping shown separately, its peak
  memory, and PostgreSQL's temporary files;
- one changed day refreshed for every organization (a schedule's refresh of
  today), and one changed (organization, day) refreshed for that
  organization alone (what a change-driven run does): medians of repeated
  runs, with their database time;
- EXPLAIN (ANALYZE, BUFFERS) of each rollup's one-day query, for every
  organization and for one, saved beside the results.
"""

import os
import statistics
import time

import dagster as dg
import psycopg

from bench.common import END_DATE, RESULTS_DIR, ROOT, START_DATE, STATE_DIR, fresh_database, in_child_process, temp_file_bytes
from dashboard_assets.db import libpq_url, load_sql
from dashboard_assets.demo import psycopg2_url
from dashboard_assets.local_servers import LocalPostgres
from dashboard_assets.resources import PostgresResource
from dashboard_assets.rollups.assets import DAILY_ROLLUPS, daily_rollup_assets
from dashboard_assets.rollups.refresh import query_params, refresh

QUIET_RUN = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def measure(server: LocalPostgres, url: str, orgs: int, repeat: int) -> dict:
    """Backfill every rollup of the generated database at `url`, then time one
    day and one (organization, day)."""
    instance_url = fresh_database(server, f"bench_{orgs}_orgs_dagster")
    home = STATE_DIR / f"dagster_home_{orgs}"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    os.environ["DAGSTER_POSTGRES_URL"] = psycopg2_url(instance_url)
    os.environ["DAGSTER_HOME"] = str(home)
    temp_before = temp_file_bytes(url)
    (backfill_seconds, events), backfill_peak_mb = in_child_process(backfill, url)
    backfill_temp = temp_file_bytes(url) - temp_before
    database_seconds = _refresh_log_seconds(url, "true")
    with psycopg.connect(libpq_url(url)) as conn:
        org = str(conn.execute("SELECT id FROM organizations ORDER BY id LIMIT 1").fetchone()[0])

    every_organization, one_organization = [], []
    for _ in range(repeat):
        every_organization.append(_refresh_all_rollups(url, None))
        one_organization.append(_refresh_all_rollups(url, [org]))
    save_plans(url, orgs, org)
    return {
        "backfill_runs": 1,
        "backfill_materialization_events": events,
        "backfill_wall_seconds": round(backfill_seconds, 2),
        "backfill_database_seconds": round(database_seconds, 2),
        "backfill_dagster_seconds": round(backfill_seconds - database_seconds, 2),
        "backfill_run_worker_peak_mb": backfill_peak_mb,
        "backfill_postgres_temp_mb": round(backfill_temp / 2**20, 1),
        "one_day_refresh_seconds_median": round(statistics.median(w for w, _ in every_organization), 4),
        "one_day_refresh_database_seconds_median": round(statistics.median(d for _, d in every_organization), 4),
        "one_changed_organization_day_seconds_median": round(statistics.median(w for w, _ in one_organization), 4),
        "one_changed_organization_day_database_seconds_median": round(
            statistics.median(d for _, d in one_organization), 4),
    }


def backfill(url: str) -> tuple[float, int]:
    """The four rollups over every partition in one run (in a run worker of
    its own); returns its wall time and its materialization events."""
    with dg.DagsterInstance.get() as instance:
        began = time.perf_counter()
        result = dg.materialize(
            daily_rollup_assets,
            instance=instance,
            resources={"postgres": PostgresResource(database_url=url)},
            tags={
                "dagster/asset_partition_range_start": START_DATE.isoformat(),
                "dagster/asset_partition_range_end": END_DATE.isoformat(),
            },
            run_config=QUIET_RUN,
        )
        seconds = time.perf_counter() - began
        assert result.success
        return seconds, len(result.get_asset_materialization_events())


def _refresh_all_rollups(url: str, organizations: list[str] | None) -> tuple[float, float]:
    """The four rollups' refresh of the last day; its wall time and database time."""
    began = time.perf_counter()
    with psycopg.connect(libpq_url(url)) as conn:
        (last_id,) = conn.execute("SELECT COALESCE(max(id), 0) FROM dashboard.refresh_log").fetchone()
    for rollup in DAILY_ROLLUPS:
        refresh(rollup, source_url=url, target_url=url, start=END_DATE, end=END_DATE, organizations=organizations)
    wall = time.perf_counter() - began
    return wall, _refresh_log_seconds(url, "id > %s", (last_id,))


def _refresh_log_seconds(url: str, where: str, params=()) -> float:
    with psycopg.connect(libpq_url(url)) as conn:
        query = psycopg.sql.SQL("SELECT COALESCE(sum(seconds), 0) FROM dashboard.refresh_log WHERE ") + psycopg.sql.SQL(where)
        return float(conn.execute(query, params).fetchone()[0])


def save_plans(url: str, orgs: int, org: str) -> None:
    """EXPLAIN ANALYZE of each table's one-day query, for every organization
    and for one, for docs/operations.md."""
    plans = []
    with psycopg.connect(libpq_url(url)) as conn:
        for scope, organizations in (("every organization", None), ("one organization", [org])):
            params = query_params(END_DATE, END_DATE, organizations)
            for rollup in DAILY_ROLLUPS:
                for table in rollup.tables:
                    query = load_sql("dashboard_assets.rollups.sql", f"{table}.sql")
                    lines = conn.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + query, params).fetchall()
                    plans.append(f"== {table}, one day, {scope} of {orgs}\n" + "\n".join(line for (line,) in lines))
    (RESULTS_DIR / f"plans-{orgs}-orgs.txt").write_text("\n\n".join(plans) + "\n")

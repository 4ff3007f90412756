"""Backfill and one-day refresh timings.

On a Dagster instance whose storage is PostgreSQL (as in production):
- the 730-day single-run backfill of the four daily rollups, wall time, with
  the database time (from dashboard.refresh_log) and Dagster's bookkeeping
  shown separately;
- one changed day refreshed for all organizations (median of repeated runs);
- EXPLAIN (ANALYZE, BUFFERS) of each rollup's one-day query, saved beside the
  results, to show that one day reads about one day of rows.
"""

import os
import statistics
import time

import dagster as dg
import psycopg

from bench.common import END_DATE, RESULTS_DIR, ROOT, START_DATE, STATE_DIR, fresh_database
from dashboard_assets.db import libpq_url, load_sql
from dashboard_assets.demo import psycopg2_url
from dashboard_assets.local_servers import LocalPostgres
from dashboard_assets.resources import PostgresResource
from dashboard_assets.rollups.assets import DAILY_ROLLUPS, daily_rollup_assets
from dashboard_assets.rollups.refresh import query_params, refresh


def measure(server: LocalPostgres, url: str, orgs: int, repeat: int) -> dict:
    """Backfill every rollup of the generated database at `url`, then time one day."""
    instance_url = fresh_database(server, f"bench_{orgs}_orgs_dagster")
    home = STATE_DIR / f"dagster_home_{orgs}"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    os.environ["DAGSTER_POSTGRES_URL"] = psycopg2_url(instance_url)
    os.environ["DAGSTER_HOME"] = str(home)
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
        )
        backfill_seconds = time.perf_counter() - began
        assert result.success
        events = len(result.get_asset_materialization_events())
    with psycopg.connect(libpq_url(url)) as conn:
        database_seconds = conn.execute("SELECT sum(seconds) FROM dashboard.refresh_log").fetchone()[0]

    one_day = []
    for _ in range(repeat):
        began = time.perf_counter()
        for rollup in DAILY_ROLLUPS:
            refresh(rollup, source_url=url, target_url=url, start=END_DATE, end=END_DATE)
        one_day.append(time.perf_counter() - began)
    save_plans(url, orgs)
    return {
        "backfill_runs": 1,
        "backfill_materialization_events": events,
        "backfill_wall_seconds": round(backfill_seconds, 2),
        "backfill_database_seconds": round(database_seconds, 2),
        "backfill_dagster_seconds": round(backfill_seconds - database_seconds, 2),
        "one_day_refresh_seconds_median": round(statistics.median(one_day), 4),
    }


def save_plans(url: str, orgs: int) -> None:
    """EXPLAIN ANALYZE of each table's one-day query, for docs/operations.md."""
    params = query_params(END_DATE, END_DATE)
    plans = []
    with psycopg.connect(libpq_url(url)) as conn:
        for rollup in DAILY_ROLLUPS:
            for table in rollup.tables:
                query = load_sql("dashboard_assets.rollups.sql", f"{table}.sql")
                lines = conn.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + query, params).fetchall()
                plans.append(f"== {table}, one day, {orgs} organizations\n" + "\n".join(line for (line,) in lines))
    (RESULTS_DIR / f"plans-{orgs}-orgs.txt").write_text("\n\n".join(plans) + "\n")

"""`python -m bench`: backfill and one-day refresh timings at several scales.

For each organization count it loads 730 days of generated data into an
embedded PostgreSQL, then measures, on a Dagster instance whose storage is
PostgreSQL (as in production):

- the 730-day single-run backfill of the four daily rollups, wall time, with
  the database time (from dashboard.refresh_log) and Dagster's own bookkeeping
  shown separately;
- one changed day refreshed for all organizations (median of repeated runs);
- EXPLAIN (ANALYZE, BUFFERS) of each rollup's one-day query, saved beside the
  results, to show that one day reads about one day of rows.

Results go to bench/results/<date>-backfill.json and are printed as a table.
"""

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time
from pathlib import Path

END_DATE = dt.date(2026, 11, 23)
DAYS = 730
START_DATE = END_DATE - dt.timedelta(days=DAYS - 1)
ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".local" / "bench"
RESULTS_DIR = Path(__file__).resolve().parent / "results"

# Before anything imports Dagster or the code location.
os.environ["DASHBOARD_HISTORY_START"] = START_DATE.isoformat()
os.environ.update({"DAGSTER_EVENT_BATCH_SIZE": "1000", "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true"})

import dagster as dg  # noqa: E402
import psycopg  # noqa: E402

from dashboard_assets.db import libpq_url, load_sql  # noqa: E402
from dashboard_assets.demo import _psycopg2_url  # noqa: E402
from dashboard_assets.generate import generate  # noqa: E402
from dashboard_assets.local_servers import LocalPostgres  # noqa: E402
from dashboard_assets.migrations import migrate  # noqa: E402
from dashboard_assets.resources import PostgresResource  # noqa: E402
from dashboard_assets.rollups.assets import DAILY_ROLLUPS, daily_rollup_assets  # noqa: E402
from dashboard_assets.rollups.refresh import query_params, refresh  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--repeat", type=int, default=5, help="runs of the one-day refresh")
    args = parser.parse_args()

    server = LocalPostgres(STATE_DIR / "postgres")
    results = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "postgres": "16.2 (embedded pgserver)",
        "scales": [measure(server, orgs, args.repeat) for orgs in args.orgs],
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"{results['date']}-backfill.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"\nwritten to {out.relative_to(ROOT)}")
    server.stop()


def measure(server: LocalPostgres, orgs: int, repeat: int) -> dict:
    url = fresh_database(server, f"bench_{orgs}_orgs")
    migrate(url, with_source_schema=True)
    began = time.perf_counter()
    with psycopg.connect(libpq_url(url)) as conn:
        rows = generate(conn, orgs=orgs, days=DAYS, seed=1, end_date=END_DATE)
        conn.execute("ANALYZE")
    load_seconds = time.perf_counter() - began

    instance_url = fresh_database(server, f"bench_{orgs}_orgs_dagster")
    home = STATE_DIR / f"dagster_home_{orgs}"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    os.environ["DAGSTER_POSTGRES_URL"] = _psycopg2_url(instance_url)
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
        "organizations": orgs,
        "days": DAYS,
        "source_rows": sum(rows.values()),
        "load_seconds": round(load_seconds, 2),
        "backfill_runs": 1,
        "backfill_materialization_events": events,
        "backfill_wall_seconds": round(backfill_seconds, 2),
        "backfill_database_seconds": round(database_seconds, 2),
        "backfill_dagster_seconds": round(backfill_seconds - database_seconds, 2),
        "one_day_refresh_seconds_median": round(statistics.median(one_day), 4),
    }


def fresh_database(server: LocalPostgres, name: str) -> str:
    with psycopg.connect(libpq_url(server.url()), autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(name)))
    return server.create_database(name)


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


def print_table(results: dict) -> None:
    print(f"{results['date']} on {results['machine']}")
    columns = [key for key in results["scales"][0]]
    print(" | ".join(columns))
    for scale in results["scales"]:
        print(" | ".join(str(scale[c]) for c in columns))


if __name__ == "__main__":
    main()

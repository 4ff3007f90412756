"""`python -m bench`: the pipeline's benchmarks on generated data.

For each organization count it loads generated data into an embedded
PostgreSQL (730 days at full volume; from 1,000 organizations on, the last 60
days at full volume, with partitions still over 730 days) and runs the
benchmarks asked for (default: all):
- `backfill`: the single-run backfill of every partition, one changed day for
  every organization, one changed (organization, day), query plans;
- `capture`: what change capture costs the application's writes (bulk and
  OLTP), against no capture and against the trigger alternative;
- `sensor`: the change sensor's tick with and without changes, and the run a
  change requests, in a run worker of its own;
- `read`: read-path latency, cold and cached, and 50 concurrent users;
- `load`: 500 dashboard users who pause between loads (paced), cached and
  cold (pgbench calling dashboard.dashboard_metrics), and the capacity of
  connections that do not pause (redis-benchmark, pgbench), with the clients'
  and the servers' CPU;
- `baseline`: the design document's materialized views and live query, and
  their error (compared with the rollups, so it runs after `backfill`).
`freshness` runs once, first (on a machine not yet busy with the scales), on
the real demo: the delay from a source change to Redis, 20 times. `sustained`
runs next on the real demo, at its 5 organizations over 730 days and at 1,000
organizations over the last 60 days: a steady stream of ERP transactions for
--sustained-minutes at --rate a second, sampled every 30 s (bench/sustained.py).
Results go to bench/results/<date>.json and are printed.
"""

import argparse
import datetime as dt
import json
import logging
import os
import subprocess

from bench.common import (
    LARGE_SCALE_HISTORY_DAYS,
    LARGE_SCALE_ORGANIZATIONS,
    RESULTS_DIR,
    ROOT,
    START_DATE,
    STATE_DIR,
    history_days,
    machine,
    progress,
)

# Before anything imports the code location or Dagster reads them.
os.environ["DASHBOARD_HISTORY_START"] = START_DATE.isoformat()

from bench import (  # noqa: E402
    backfill,
    baseline,
    change_capture,
    concurrency,
    freshness,
    load,
    read_path,
    sensor_tick,
    sustained,
)
from bench.common import generated_database  # noqa: E402
from dashboard_assets.local_servers import LocalPostgres, LocalRedis, postgres_bin_dir  # noqa: E402

PER_SCALE = ["backfill", "capture", "sensor", "read", "load", "baseline"]
# The sustained stream's demos: (organizations, days of history).
SUSTAINED_DEMOS = ((freshness.ORGANIZATIONS, freshness.DEMO_DAYS), (LARGE_SCALE_ORGANIZATIONS, LARGE_SCALE_HISTORY_DAYS))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("benchmarks", nargs="*", help=f"{', '.join(PER_SCALE)}, freshness, sustained (default: all)")
    parser.add_argument("--orgs", type=int, nargs="+", default=[1, 10, 100, 1000])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each refresh and tick measured")
    parser.add_argument("--calls", type=int, default=1000, help="read-path calls per measurement")
    parser.add_argument("--think-seconds", type=float, default=load.THINK_SECONDS,
                        help=f"the load stage's users' mean pause between dashboard loads (default: "
                             f"{load.THINK_SECONDS}, {load.USERS} users then load about "
                             f"{load.USERS / load.THINK_SECONDS:.0f} dashboards a second)")
    parser.add_argument("--sustained-minutes", type=float, default=20, help="the sustained stream's length")
    parser.add_argument("--rate", type=float, default=5, help="the sustained stream's transactions a second")
    parser.add_argument("--sustained-orgs", type=int, nargs="+", choices=[orgs for orgs, _ in SUSTAINED_DEMOS],
                        default=[orgs for orgs, _ in SUSTAINED_DEMOS], help="the sustained stage's demos")
    args = parser.parse_args()
    known = [*PER_SCALE, "freshness", "sustained"]
    args.benchmarks = args.benchmarks or known
    if unknown := set(args.benchmarks) - set(known):
        parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")
    if not args.think_seconds > 0:
        parser.error(f"--think-seconds must be more than 0, got {args.think_seconds}")
    logging.disable(logging.INFO)  # the progress lines, not Dagster's event stream

    results = {"date": dt.date.today().isoformat(), "machine": machine(), "postgres": embedded_postgres_version(),
               "command": "python -m bench " + " ".join(args.benchmarks) + " --orgs " + " ".join(map(str, args.orgs))
               + (f" --think-seconds {args.think_seconds}" if args.think_seconds != load.THINK_SECONDS else "")
               + (f" --sustained-minutes {args.sustained_minutes} --rate {args.rate}"
                  if "sustained" in args.benchmarks else ""),
               "scales": []}
    if "freshness" in args.benchmarks:
        progress("freshness: the demo, 20 changes to Redis")
        results["freshness"] = freshness.measure()
        progress(f"freshness: p50 {results['freshness']['freshness_p50_seconds']} s, "
                 f"p95 {results['freshness']['freshness_p95_seconds']} s")
    if "sustained" in args.benchmarks:
        results["sustained"] = [sustained.measure(orgs, days, args.sustained_minutes, args.rate)
                                for orgs, days in SUSTAINED_DEMOS if orgs in args.sustained_orgs]
    if set(args.benchmarks) & set(PER_SCALE):
        server = LocalPostgres(STATE_DIR / "postgres")
        redis_server = LocalRedis(STATE_DIR / "redis")
        try:
            results["scales"] = [_scale(server, redis_server, orgs, args) for orgs in args.orgs]
        finally:
            redis_server.stop()
            server.stop()
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"{results['date']}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    progress(f"written to {out.relative_to(ROOT)}")


def embedded_postgres_version() -> str:
    """The embedded server's version, as its binary prints it."""
    printed = subprocess.run([str(postgres_bin_dir() / "postgres"), "--version"], capture_output=True, text=True)
    return printed.stdout.split()[-1] + " (embedded-postgres)"


def _scale(server: LocalPostgres, redis_server: LocalRedis, orgs: int, args: argparse.Namespace) -> dict:
    progress(f"{orgs} organizations: generating {history_days(orgs)} days")
    url, load_seconds, source_rows = generated_database(server, orgs)
    scale = {"organizations": orgs, "history_days": history_days(orgs), "source_rows": source_rows,
             "load_seconds": round(load_seconds, 2)}
    stages = {
        "backfill": lambda: backfill.measure(server, url, redis_server.url, orgs, args.repeat),
        "capture": lambda: change_capture.measure(server, url, redis_server.url),
        "sensor": lambda: sensor_tick.measure(url, redis_server.url, args.repeat),
        "read": lambda: read_path.measure(url, redis_server.url, args.calls)
        | concurrency.measure(url, redis_server.url, 50),
        "load": lambda: load.measure(url, redis_server, server.postmaster_pid, args.think_seconds),
        "baseline": lambda: baseline.measure(url, args.repeat, live_calls=args.calls // 10),
    }
    for name in PER_SCALE:
        if name in args.benchmarks:
            progress(f"{orgs} organizations: {name}")
            scale |= stages[name]()
    scale |= ratios(scale)
    progress(f"{orgs} organizations: " + json.dumps({k: v for k, v in scale.items() if k in _HEADLINES}))
    return scale


_HEADLINES = ("backfill_cli_database_seconds", "backfill_cli_outside_database_seconds",
              "backfill_ui_outside_database_seconds", "one_changed_organization_day_database_seconds_median",
              "bulk_insert_logical_overhead_ratio", "bulk_update_logical_overhead_ratio", "oltp_logical_overhead_ratio",
              "load_paced_cached_p99_ms", "load_paced_cold_p99_ms", "baseline_refresh_concurrently_seconds_median")


def ratios(scale: dict) -> dict:
    """The pipeline against the baseline, where both were measured."""
    found = {}
    refresh = scale.get("baseline_refresh_concurrently_seconds_median")
    if refresh and "one_day_refresh_seconds_median" in scale:
        found["one_day_refresh_vs_baseline_refresh"] = round(scale["one_day_refresh_seconds_median"] / refresh, 5)
    if refresh and "backfill_cli_database_seconds" in scale:
        found["backfill_database_vs_baseline_refresh"] = round(scale["backfill_cli_database_seconds"] / refresh, 3)
    if "cold_median_ms" in scale and "live_query_median_ms" in scale:
        found["cold_read_vs_live_query"] = round(scale["cold_median_ms"] / scale["live_query_median_ms"], 3)
    return found


if __name__ == "__main__":
    main()

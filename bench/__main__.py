"""`python -m bench`: the pipeline's benchmarks on generated data.

For each organization count it loads 730 days of generated data into an
embedded PostgreSQL and runs the benchmarks asked for (default: all):
`backfill` (730-day single-run backfill, one changed day, query plans),
`read` (read-path latency, cold and cached, and 50 and 500 concurrent
users), `capture` (what the change
triggers cost a bulk insert of 100,000 order items) and `baseline` (the design
document's materialized views and live query, and their error). `baseline`
compares with the rollups, so it runs after `backfill`. Results go to
bench/results/<date>.json and are printed.
"""

import argparse
import datetime as dt
import json
import os

from bench.common import RESULTS_DIR, ROOT, START_DATE, STATE_DIR, machine

# Before anything imports the code location or Dagster reads them.
os.environ["DASHBOARD_HISTORY_START"] = START_DATE.isoformat()
os.environ.update({"DAGSTER_EVENT_BATCH_SIZE": "1000", "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true"})

from bench import backfill, baseline, change_capture, concurrency, read_path  # noqa: E402
from bench.common import generated_database  # noqa: E402
from dashboard_assets.local_servers import LocalPostgres, LocalRedis  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("benchmarks", nargs="*", help="backfill, read, capture, baseline (default: all)")
    parser.add_argument("--orgs", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--repeat", type=int, default=5, help="runs of the one-day refresh")
    parser.add_argument("--calls", type=int, default=1000, help="read-path calls per measurement")
    args = parser.parse_args()
    known = ["backfill", "read", "capture", "baseline"]
    args.benchmarks = args.benchmarks or known
    if unknown := set(args.benchmarks) - set(known):
        parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")

    server = LocalPostgres(STATE_DIR / "postgres")
    redis_server = LocalRedis(STATE_DIR / "redis")
    scales = []
    try:
        for orgs in args.orgs:
            url, load_seconds, source_rows = generated_database(server, orgs)
            scale = {"organizations": orgs, "days": 730, "source_rows": source_rows, "load_seconds": round(load_seconds, 2)}
            if "backfill" in args.benchmarks:
                scale |= backfill.measure(server, url, orgs, args.repeat)
            if "read" in args.benchmarks:
                scale |= read_path.measure(url, redis_server.url, args.calls)
                for users in (50, 500):
                    scale |= concurrency.measure(url, redis_server.url, users)
            if "capture" in args.benchmarks:
                scale |= change_capture.measure(url, args.repeat)
            if "baseline" in args.benchmarks:
                scale |= baseline.measure(url, args.repeat, live_calls=args.calls // 10)
                scale |= ratios(scale)
            scales.append(scale)
            print(json.dumps(scale), flush=True)
    finally:
        redis_server.stop()
        server.stop()
    results = {"date": dt.date.today().isoformat(), "machine": machine(), "postgres": "16.2 (embedded pgserver)",
               "command": "python -m bench " + " ".join(args.benchmarks) + " --orgs " + " ".join(map(str, args.orgs)),
               "scales": scales}
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"{results['date']}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out.relative_to(ROOT)}")


def ratios(scale: dict) -> dict:
    """The pipeline against the baseline, where both were measured."""
    found = {}
    refresh = scale["baseline_refresh_concurrently_seconds_median"]
    if "one_day_refresh_seconds_median" in scale:
        found["one_day_refresh_vs_baseline_refresh"] = round(scale["one_day_refresh_seconds_median"] / refresh, 5)
    if "backfill_database_seconds" in scale:
        found["backfill_database_vs_baseline_refresh"] = round(scale["backfill_database_seconds"] / refresh, 3)
    if "cold_median_ms" in scale:
        found["cold_read_vs_live_query"] = round(scale["cold_median_ms"] / scale["live_query_median_ms"], 3)
    return found


if __name__ == "__main__":
    main()

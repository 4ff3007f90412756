"""Backfill and refresh timings, on the Dagster instance as the project ships
it (dagster.yaml: storage on PostgreSQL), with nothing exported but where
the instance and the database are:
- the backfill of the four daily rollups over every partition, as a user
  launches it: `cli`, the README's `dagster asset materialize` command;
  `ui`, the UI's *Materialize* of the partition range (the webserver's
  launchPartitionBackfill, then the daemon) on `dg dev`. For each, the
  wall time, the database time (from dashboard.refresh_log) and the time
  outside the database, the peak memory of its largest process (the run
  worker or a step), and PostgreSQL's temporary files; the UI's both to the
  end of its run and to the backfill shown as completed (the daemon looks at
  backfills every 30 s);
- one changed day refreshed for every organization (a schedule's refresh of
  today), and one changed (organization, day) refreshed for that
  organization alone (what a change-driven run does): medians of repeated
  runs, with their database time;
- EXPLAIN (ANALYZE, BUFFERS) of each rollup's one-day query, for every
  organization and for one, saved beside the results.
"""

import datetime as dt
import json
import os
import statistics
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import dagster as dg
import psutil
import psycopg

from bench.common import END_DATE, RESULTS_DIR, ROOT, START_DATE, STATE_DIR, fresh_database, temp_file_bytes
from dashboard_assets import DAGSTER_BATCHING_ENV, settings
from dashboard_assets.automation import capture
from dashboard_assets.db import libpq_url, load_sql
from dashboard_assets.demo import DG, psycopg2_url, stop_group
from dashboard_assets.local_servers import LocalPostgres, free_port
from dashboard_assets.migrations import migrate
from dashboard_assets.rollups.assets import DAILY_ROLLUPS
from dashboard_assets.rollups.refresh import query_params, refresh

ROLLUP_SELECTION = ",".join(rollup.name for rollup in DAILY_ROLLUPS)
BACKFILL_PATHS = ("cli", "ui")
_LAUNCH_BACKFILL = """
mutation ($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}
"""


def measure(server: LocalPostgres, url: str, redis_url: str, orgs: int, repeat: int) -> dict:
    """Backfill every rollup of the generated database at `url` on each path,
    then time one day and one (organization, day)."""
    found = {"backfill_runs": 1}
    migrate(url)  # as a user has it: capture running, so the daemon's change sensor starts from its slot
    for path in BACKFILL_PATHS:
        found |= _backfill(server, url, redis_url, orgs, path)
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        capture.drop_slot(conn)  # the benchmarks that read changes make their own
    with psycopg.connect(libpq_url(url)) as conn:
        org = str(conn.execute("SELECT id FROM organizations ORDER BY id LIMIT 1").fetchone()[0])

    every_organization, one_organization = [], []
    for _ in range(repeat):
        every_organization.append(_refresh_all_rollups(url, None))
        one_organization.append(_refresh_all_rollups(url, [org]))
    save_plans(url, orgs, org)
    return found | {
        "one_day_refresh_seconds_median": round(statistics.median(w for w, _ in every_organization), 4),
        "one_day_refresh_database_seconds_median": round(statistics.median(d for _, d in every_organization), 4),
        "one_changed_organization_day_seconds_median": round(statistics.median(w for w, _ in one_organization), 4),
        "one_changed_organization_day_database_seconds_median": round(
            statistics.median(d for _, d in one_organization), 4),
    }


def _backfill(server: LocalPostgres, url: str, redis_url: str, orgs: int, path: str) -> dict:
    """The backfill of every partition along `path`, on a fresh instance."""
    home = STATE_DIR / f"dagster_home_{orgs}_{path}"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    env = {name: value for name, value in os.environ.items() if name not in DAGSTER_BATCHING_ENV}
    env |= {"DAGSTER_HOME": str(home), settings.DATABASE_URL: url, settings.REDIS_URL: redis_url,
            "DAGSTER_POSTGRES_URL": psycopg2_url(fresh_database(server, f"bench_{orgs}_orgs_dagster_{path}"))}
    # This process reads the runs there, and the later stages use the last path's instance.
    os.environ.update({name: env[name] for name in ("DAGSTER_HOME", "DAGSTER_POSTGRES_URL")})
    with psycopg.connect(libpq_url(url)) as conn:
        (last_log,) = conn.execute("SELECT COALESCE(max(id), 0) FROM dashboard.refresh_log").fetchone()
    temp_before = temp_file_bytes(url)
    timings, peak_mb = (_from_cli if path == "cli" else _from_ui)(env, home)
    database = _refresh_log_seconds(url, "id > %s", (last_log,))
    found = {f"backfill_{path}_database_seconds": round(database, 2),
             f"backfill_{path}_peak_process_mb": peak_mb,
             f"backfill_{path}_postgres_temp_mb": round((temp_file_bytes(url) - temp_before) / 2**20, 1)}
    for label, seconds in timings.items():
        found |= {f"backfill_{path}_{label}wall_seconds": round(seconds, 2),
                  f"backfill_{path}_{label}outside_database_seconds": round(seconds - database, 2)}
    return found


def _from_cli(env: dict, home: Path) -> tuple[dict[str, float], float]:
    """The README's command, as a user types it."""
    command = [str(DG), "launch", "--assets", ROLLUP_SELECTION, "--partition-range", f"{START_DATE}...{END_DATE}"]
    with open(home / "cli.log", "w") as log, _PeakMemory() as peak:
        began = time.perf_counter()
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        peak.watch(process.pid)
        if process.wait() != 0:
            raise RuntimeError(f"the backfill command failed, see {home / 'cli.log'}")
        return {"": time.perf_counter() - began}, peak.mb


def _from_ui(env: dict, home: Path) -> tuple[dict[str, float], float]:
    """The UI's backfill of the range on `dg dev` (webserver and daemon):
    until its run has ended, and until the backfill shows as completed."""
    port = free_port()
    command = [str(DG), "dev", "-h", "127.0.0.1", "-p", str(port)]
    with open(home / "ui.log", "w") as log, _PeakMemory() as peak:
        ui = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
        try:
            _wait_for(lambda: _answers(f"http://127.0.0.1:{port}/server_info"), 120, "the webserver")
            peak.watch(ui.pid)
            partitions = [str(START_DATE + dt.timedelta(days=n)) for n in range((END_DATE - START_DATE).days + 1)]
            params = {"assetSelection": [{"path": [rollup.name]} for rollup in DAILY_ROLLUPS],
                      "partitionNames": partitions}
            began = time.perf_counter()
            launched = _graphql(port, _LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
            if launched["__typename"] != "LaunchBackfillSuccess":
                raise RuntimeError(f"the UI's backfill was refused: {launched}")
            with dg.DagsterInstance.from_config(str(home)) as instance:
                backfill_id = launched["backfillId"]
                _wait_for(lambda: _run_ended(instance, backfill_id), 3600, "the backfill's run")
                run_seconds = time.perf_counter() - began
                _wait_for(lambda: _backfill_completed(instance, backfill_id), 120, "the backfill's completion")
                return {"run_": run_seconds, "": time.perf_counter() - began}, peak.mb
        finally:
            stop_group(ui)


def _graphql(port: int, query: str, variables: dict) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", method="POST",
                                     data=json.dumps({"query": query, "variables": variables}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.load(response)
    if "errors" in answer:
        raise RuntimeError(f"GraphQL errors: {answer['errors']}")
    return answer["data"]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def _run_ended(instance: dg.DagsterInstance, backfill_id: str) -> bool:
    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    if any(run.status == dg.DagsterRunStatus.FAILURE for run in runs):
        raise RuntimeError(f"a run of backfill {backfill_id} failed")
    return bool(runs) and all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)


def _backfill_completed(instance: dg.DagsterInstance, backfill_id: str) -> bool:
    return instance.get_backfill(backfill_id).status.value == "COMPLETED_SUCCESS"


def _wait_for(done, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := done()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not finish within {timeout} s")
        time.sleep(0.2)
    return result


class _PeakMemory:
    """The largest resident memory of any process of a tree, sampled."""

    def __init__(self):
        self.mb = 0.0
        self._root = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def watch(self, pid: int) -> None:
        self._root = psutil.Process(pid)

    def _sample(self) -> None:
        while not self._done.wait(0.2):
            if self._root is None:
                continue
            try:
                processes = [self._root, *self._root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for process in processes:
                try:
                    self.mb = max(self.mb, round(process.memory_info().rss / 2**20, 1))
                except psutil.NoSuchProcess:
                    pass

    def __exit__(self, *_):
        self._done.set()
        self._thread.join()


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
    """The time the database spent in the logged refreshes: the union of their
    transactions' intervals, so that batches running at once count once."""
    with psycopg.connect(libpq_url(url)) as conn:
        query = psycopg.sql.SQL(_BUSY_SECONDS).format(psycopg.sql.SQL(where))
        return float(conn.execute(query, params).fetchone()[0])


# refreshed_at is the transaction's start (now()), seconds its duration.
_BUSY_SECONDS = """
    SELECT COALESCE(sum(extract(epoch FROM upper(busy) - lower(busy))), 0)
    FROM (SELECT unnest(range_agg(tstzrange(refreshed_at, refreshed_at + seconds * interval '1 second'))) AS busy
          FROM dashboard.refresh_log WHERE {}) AS intervals
"""


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

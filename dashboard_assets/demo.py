"""The one-command local demo.

Starts an embedded PostgreSQL and a real Redis under `.local/demo/` (unless
DASHBOARD_DATABASE_URL / DASHBOARD_REDIS_URL / DAGSTER_POSTGRES_URL point at
servers of your own), applies the schema, loads demo data when the source is
empty, backfills every rollup partition in ONE run, refreshes the snapshot and
serves the Dagster UI with its daemon on localhost. Ctrl-C stops everything it
started. The console gets a line per stage; Dagster's own event stream (a
line per event, thousands in a backfill) and the UI's and daemon's output go
to DEMO_LOG, which the console names.
"""

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import sqlalchemy as sa

from dashboard_assets import settings
from dashboard_assets.db import libpq_url

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Servers' data and the Dagster home; DASHBOARD_DEMO_DIR moves it (tests do).
STATE_DIR = Path(os.environ.get("DASHBOARD_DEMO_DIR") or PROJECT_ROOT / ".local" / "demo")
# Where the demo serves the pipeline's Prometheus metrics (when free).
METRICS_PORT = 9464
# Dagster's `dg` CLI, installed beside this interpreter.
DG = Path(sys.executable).parent / "dg"
# Dagster's event stream, and the webserver's and daemon's output.
DEMO_LOG = STATE_DIR / "demo.log"
# The daily rollups whose partitions the backfill's progress counts.
_PROGRESS_EVERY_SECONDS = 5.0


def stage(name: str, text: str) -> None:
    """A line of the demo's console."""
    print(f"{name:<9} {text}", flush=True)


def run_demo(*, orgs: int, days: int, seed: int, port: int, serve_ui: bool) -> int:
    """Run the demo; returns the process exit code."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with ExitStack() as servers, DEMO_LOG.open("w") as log:
        stage("log", f"Dagster's events, the UI's and the daemon's output: {_shown(DEMO_LOG)}")
        _start_servers(servers)
        _prepare_dagster_home()
        today = dt.datetime.now(ZoneInfo(settings.reporting_timezone())).date()
        first_day = today - dt.timedelta(days=days - 1)
        os.environ.setdefault(settings.HISTORY_START, first_day.isoformat())

        from dashboard_assets.migrations import migrate

        database_url = os.environ[settings.DATABASE_URL]
        migrate(database_url, with_source_schema=True)
        stage("schema", "the dashboard schema, the source indexes and change capture are in place")
        _load_demo_data(database_url, orgs=orgs, days=days, seed=seed, end_date=today)
        _backfill(settings.history_start(), today, log)
        if not serve_ui:
            return 0
        os.environ.setdefault(settings.UI_URL, f"http://127.0.0.1:{port}")  # where alerts link to
        _serve_metrics(servers)
        return _serve_ui(port, log)


def _serve_metrics(stack: ExitStack) -> None:
    """The pipeline's Prometheus metrics, as `dashboard-assets serve-metrics`
    serves them, on port 9464 (or a free one), while the demo runs."""
    import dagster as dg
    from prometheus_client import start_http_server

    from dashboard_assets.local_servers import free_port
    from dashboard_assets.prometheus import registry
    from dashboard_assets.resources import RedisResource

    instance = stack.enter_context(dg.DagsterInstance.get())
    metrics = registry(os.environ[settings.DATABASE_URL], RedisResource(url=os.environ[settings.REDIS_URL]).cache(),
                       instance)
    try:
        server, _ = start_http_server(METRICS_PORT, addr="127.0.0.1", registry=metrics)
    except OSError:  # taken
        server, _ = start_http_server(free_port(), addr="127.0.0.1", registry=metrics)
    stack.callback(server.shutdown)
    stage("metrics", f"http://127.0.0.1:{server.server_port}/metrics, for Prometheus (docs/deploy.md)")


def _shown(path: Path) -> str:
    """A path as a person types it: relative to the project when inside it."""
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)


def _start_servers(stack: ExitStack) -> None:
    """Embedded servers for whatever the environment does not point at."""
    from dashboard_assets.local_servers import LocalPostgres, LocalRedis

    if not (os.environ.get(settings.DATABASE_URL) and os.environ.get("DAGSTER_POSTGRES_URL")):
        postgres = LocalPostgres(STATE_DIR / "postgres")
        stack.callback(postgres.stop)
        os.environ.setdefault(settings.DATABASE_URL, postgres.create_database("dashboard"))
        os.environ.setdefault("DAGSTER_POSTGRES_URL", psycopg2_url(postgres.create_database("dagster")))
    if not os.environ.get(settings.REDIS_URL):
        redis_server = LocalRedis(STATE_DIR / "redis")
        stack.callback(redis_server.stop)
        os.environ[settings.REDIS_URL] = redis_server.url
    stage("servers", f"PostgreSQL {_without_password(os.environ[settings.DATABASE_URL])}")
    stage("servers", f"Redis {_without_password(os.environ[settings.REDIS_URL])}")


def _prepare_dagster_home() -> None:
    """DAGSTER_HOME under .local/, holding a link to the project's dagster.yaml."""
    if os.environ.get("DAGSTER_HOME"):
        return
    home = STATE_DIR / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    link = home / "dagster.yaml"
    if not link.exists():
        link.symlink_to(PROJECT_ROOT / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)


def _load_demo_data(database_url: str, *, orgs: int, days: int, seed: int, end_date: dt.date) -> None:
    from dashboard_assets.generate import generate

    with psycopg.connect(libpq_url(database_url)) as conn:
        if conn.execute("SELECT EXISTS (SELECT 1 FROM organizations)").fetchone()[0]:
            stage("data", "source data present: not generating")
            return
        stage("data", f"generating {orgs} organizations over {days} days...")
        rows = generate(conn, orgs=orgs, days=days, seed=seed, end_date=end_date)
        conn.execute("ANALYZE")
    stage("data", f"{sum(rows.values()):,} source rows")


def _backfill(start: dt.date, end: dt.date, log) -> None:
    """Every rollup partition in one run, then the snapshot, the charts and
    analytics with the cache warming, the health report and the table
    maintenance, and every week of customer acquisition in one run; recorded in the Dagster instance so that
    the UI shows them."""
    import dagster as dg

    from dashboard_assets.analytics.assets import (
        analytics_assets,
        customer_acquisition_cost,
        dashboard_cache,
        weekly_partitions_def,
    )
    from dashboard_assets.maintenance.assets import table_maintenance
    from dashboard_assets.monitoring import dashboard_health
    from dashboard_assets.resources import build_resources
    from dashboard_assets.rollups.assets import current_state_asset, daily_rollup_assets

    weeks = weekly_partitions_def.get_partition_keys()
    days = (end - start).days + 1
    runs = [
        (f"the daily rollups, {start} to {end} ({days} partitions each), in one run", daily_rollup_assets,
         _range_tags(start.isoformat(), end.isoformat())),
        ("the current-state snapshot", [current_state_asset], {}),
        ("the charts, analytics, warmed cache, health report and table maintenance",
         [*analytics_assets, dashboard_cache, dashboard_health, table_maintenance], {}),
        (f"customer acquisition cost, {len(weeks)} weeks in one run", [customer_acquisition_cost],
         _range_tags(weeks[0], weeks[-1])),
    ]
    with dg.DagsterInstance.get() as instance:
        for what, assets, tags in runs:
            stage("backfill", f"{what}...")
            began = time.monotonic()
            with _partitions_done(instance, [a.key for a in daily_rollup_assets], days), \
                    contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                result = dg.materialize(assets, instance=instance, resources=build_resources(), tags=tags)
            if not result.success:
                raise RuntimeError(f"backfill run {result.run_id} failed: {_shown(DEMO_LOG)} says why")
            stage("backfill", f"done in {time.monotonic() - began:.0f} s (run {result.run_id[:8]})")
    stage("backfill", "every partition materialized")


@contextlib.contextmanager
def _partitions_done(instance, keys, days: int):
    """While the block runs, a console line whenever more partitions of the
    daily rollups are recorded as materialized."""
    stop = threading.Event()

    def report() -> None:
        shown = None
        while not stop.wait(_PROGRESS_EVERY_SECONDS):
            done = [len(instance.get_materialized_partitions(key)) for key in keys]
            if done != shown and shown is not None:
                stage("backfill", ", ".join(f"{key.to_user_string()} {n}/{days}" for key, n in zip(keys, done)))
            shown = done

    reporter = threading.Thread(target=report, daemon=True)
    reporter.start()
    try:
        yield
    finally:
        stop.set()
        reporter.join()


def _range_tags(first: str, last: str) -> dict[str, str]:
    """Run tags that make one run cover a partition range."""
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def _serve_ui(port: int, log) -> int:
    """`dg dev` (webserver and daemon, their output in the log) until
    Ctrl-C or SIGTERM, then stop its whole process group: interrupt, then
    terminate, then kill."""
    command = [str(DG), "dev", "-h", "127.0.0.1", "-p", str(port)]
    ui = subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,  # where dg finds the project (pyproject.toml's [tool.dg])
        env=os.environ | {"VIRTUAL_ENV": sys.prefix},
        stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,  # signals reach it from here only, in order
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    stage("UI", f"http://127.0.0.1:{port} (answering within a few seconds), with its daemon: the sensors and "
                "schedules run")
    stage("stop", "Ctrl-C stops the UI, the daemon and the servers")
    stop_requested = False

    def request_stop(*_) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    while ui.poll() is None and not stop_requested:
        time.sleep(0.5)
    stage("stop", "stopping the UI, the daemon and the servers...")
    stop_group(ui)
    return 0 if stop_requested else ui.returncode


def stop_group(leader: subprocess.Popen) -> None:
    """Stop a process started in a session of its own, and every process of
    its group: interrupt, then terminate, then kill."""
    for stop_signal, grace_seconds in [(signal.SIGINT, 30), (signal.SIGTERM, 10), (signal.SIGKILL, 5)]:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader.pid, stop_signal)
        if _group_exited(leader, grace_seconds):
            break


def _group_exited(leader: subprocess.Popen, timeout: float) -> bool:
    """Whether the leader and every process of its group are gone within timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leader.poll()
        try:
            os.killpg(leader.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def psycopg2_url(url: str) -> str:
    """dagster-postgres's storage needs the psycopg2 driver (its NOTIFY takes
    client-side parameters)."""
    return sa.make_url(url).set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)


def _without_password(url: str) -> str:
    if url.startswith("postgresql"):
        return sa.make_url(url).render_as_string(hide_password=True)
    return url.split("@")[-1]

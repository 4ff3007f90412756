"""The one-command local demo.

Starts an embedded PostgreSQL and a real Redis under `.local/demo/` (unless
DASHBOARD_DATABASE_URL / DASHBOARD_REDIS_URL / DAGSTER_POSTGRES_URL point at
servers of your own), applies the schema, loads demo data when the source is
empty, backfills every rollup partition in ONE run, refreshes the snapshot and
serves the Dagster UI with its daemon on localhost. Ctrl-C stops everything it
started.
"""

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
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


def run_demo(*, orgs: int, days: int, seed: int, port: int, serve_ui: bool) -> int:
    """Run the demo; returns the process exit code."""
    with ExitStack() as servers:
        _start_servers(servers)
        _prepare_dagster_home()
        today = dt.datetime.now(ZoneInfo(settings.reporting_timezone())).date()
        first_day = today - dt.timedelta(days=days - 1)
        os.environ.setdefault(settings.HISTORY_START, first_day.isoformat())

        from dashboard_assets.migrations import migrate

        database_url = os.environ[settings.DATABASE_URL]
        migrate(database_url, with_source_schema=True)
        _load_demo_data(database_url, orgs=orgs, days=days, seed=seed, end_date=today)
        _backfill(settings.history_start(), today)
        if not serve_ui:
            return 0
        os.environ.setdefault(settings.UI_URL, f"http://127.0.0.1:{port}")  # where alerts link to
        return _serve_ui(port)


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
    print(f"PostgreSQL: {_without_password(os.environ[settings.DATABASE_URL])}", flush=True)
    print(f"Redis:      {_without_password(os.environ[settings.REDIS_URL])}", flush=True)


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
            print("Source data present: not generating.", flush=True)
            return
        rows = generate(conn, orgs=orgs, days=days, seed=seed, end_date=end_date)
        conn.execute("ANALYZE")
    print(f"Generated {sum(rows.values()):,} source rows for {orgs} organizations over {days} days.", flush=True)


def _backfill(start: dt.date, end: dt.date) -> None:
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
    runs = [
        (daily_rollup_assets, _range_tags(start.isoformat(), end.isoformat())),
        ([current_state_asset], {}),
        ([*analytics_assets, dashboard_cache, dashboard_health, table_maintenance], {}),
        ([customer_acquisition_cost], _range_tags(weeks[0], weeks[-1])),
    ]
    print(f"Backfilling {start}..{end} ({(end - start).days + 1} partitions) in one run...", flush=True)
    with dg.DagsterInstance.get() as instance:
        for assets, tags in runs:
            result = dg.materialize(assets, instance=instance, resources=build_resources(), tags=tags)
            if not result.success:
                raise RuntimeError(f"backfill run {result.run_id} failed")
    print("Backfill done.", flush=True)


def _range_tags(first: str, last: str) -> dict[str, str]:
    """Run tags that make one run cover a partition range."""
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def _serve_ui(port: int) -> int:
    """`dagster dev` (webserver and daemon) until Ctrl-C or SIGTERM, then stop
    its whole process group: interrupt, then terminate, then kill."""
    command = [sys.executable, "-m", "dagster", "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"),
               "-h", "127.0.0.1", "-p", str(port)]
    print(f"Dagster UI on http://127.0.0.1:{port} (Ctrl-C stops the demo and its servers)", flush=True)
    ui = subprocess.Popen(
        command,
        cwd=os.environ["DAGSTER_HOME"],
        start_new_session=True,  # signals reach it from here only, in order
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    stop_requested = False

    def request_stop(*_) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    while ui.poll() is None and not stop_requested:
        time.sleep(0.5)
    print("Stopping the Dagster UI and daemon...", flush=True)
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

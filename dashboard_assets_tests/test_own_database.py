"""The README's "Point it at your own database", walked as a data engineer
would on a PostgreSQL the project did not start nor configure: Debian's
PostgreSQL 15 (package postgresql-15), a cluster of its own with the server's
default settings, an ERP owner role that owns the source tables and a runtime
role. check → fix what it names → migrate as the owner → check → backfill
with `dg launch` → the webserver and the daemon on a Dagster
storage of its own, as the runtime role, which keeps the rollups up to date."""

import datetime as dt
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql

from dashboard_assets.db import libpq_url, load_sql
from dashboard_assets.demo import psycopg2_url
from dashboard_assets.generate import generate
from dashboard_assets.local_servers import LocalPostgres, free_port
from dashboard_assets.sources import SOURCE_TABLES
from dashboard_assets_tests.conftest import PROJECT_ROOT
from dashboard_assets_tests.helpers import (
    assert_rollups_match_reference,
    execute,
    rollup_rows,
    stop_process_group,
    wait_for,
)

DEBIAN_POSTGRES_15 = Path("/usr/lib/postgresql/15/bin")
# What a freshly installed server has (PostgreSQL's defaults, as Debian ships them).
DEFAULT_SETTINGS = {"wal_level": "replica", "max_replication_slots": "10", "max_slot_wal_keep_size": "-1"}
FIRST_DAY, LAST_DAY = dt.date(2025, 3, 1), dt.date(2025, 3, 31)

pytestmark = [
    pytest.mark.own_database,
    pytest.mark.skipif(not (DEBIAN_POSTGRES_15 / "postgres").exists(),
                       reason="Debian's PostgreSQL 15 is not installed (package postgresql-15; .ci/run installs it)"),
]


def as_role(url: str, role: str) -> str:
    return sa.make_url(url).set(username=role, password=None).render_as_string(hide_password=False)


def run(*command: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([str(PROJECT_ROOT / ".venv" / "bin" / command[0]), *command[1:]], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done


@pytest.fixture
def debian_server(tmp_path):
    server = LocalPostgres(tmp_path / "postgres-15", settings=DEFAULT_SETTINGS, bin_dir=DEBIAN_POSTGRES_15)
    yield server
    server.stop()


def test_check_migrate_backfill_and_serve_on_a_server_of_your_own(debian_server, redis_url, tmp_path):
    admin = debian_server.url()
    for statement in ("CREATE ROLE erp_owner LOGIN", "CREATE ROLE dashboard_runtime LOGIN REPLICATION",
                      "GRANT dashboard_runtime TO erp_owner"):
        execute(admin, statement)
    erp = debian_server.create_database("erp")
    execute(admin, "ALTER DATABASE erp OWNER TO erp_owner")
    dagster = debian_server.create_database("dagster")
    execute(admin, "ALTER DATABASE dagster OWNER TO dashboard_runtime")
    owner_url, runtime_url = as_role(erp, "erp_owner"), as_role(erp, "dashboard_runtime")
    with psycopg.connect(libpq_url(erp)) as conn:  # the ERP, whose tables its own role owns
        conn.execute(load_sql("dashboard_assets.migrations", "source_schema.sql"))
        generate(conn, orgs=3, days=(LAST_DAY - FIRST_DAY).days + 1, seed=11, end_date=LAST_DAY, scale=0.2)
        for table in SOURCE_TABLES:
            conn.execute(sql.SQL("ALTER TABLE {} OWNER TO erp_owner").format(sql.Identifier(table)))

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DASHBOARD_", "DAGSTER_"))} | {
        "DASHBOARD_DATABASE_URL": runtime_url, "DASHBOARD_REDIS_URL": redis_url,
        "DASHBOARD_HISTORY_START": FIRST_DAY.isoformat(), "DAGSTER_HOME": str(home),
        "DAGSTER_POSTGRES_URL": psycopg2_url(as_role(dagster, "dashboard_runtime"))}

    # 1. check: a default server and no schema yet
    checked = run("dashboard-assets", "check", env=env, check=False)
    assert checked.returncode == 2
    assert "blocker wal_level: replica; change capture needs logical → ALTER SYSTEM SET wal_level = logical" \
        in checked.stdout
    assert "warning max_slot_wal_keep_size: unbounded" in checked.stdout
    assert "blocker dashboard schema: not installed" in checked.stdout
    refused = run("dashboard-assets", "migrate", "--runtime-role", "dashboard_runtime",
                  env=env | {"DASHBOARD_DATABASE_URL": owner_url}, check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.count("\n") == 1 and "wal_level = logical" in refused.stderr

    # what check named, fixed as a DBA would
    execute(admin, "ALTER SYSTEM SET wal_level = logical")
    execute(admin, "ALTER SYSTEM SET max_slot_wal_keep_size = '4GB'")
    debian_server.restart()

    # 2. migrate as the owner, then check again as the runtime role
    run("dashboard-assets", "migrate", "--runtime-role", "dashboard_runtime",
        env=env | {"DASHBOARD_DATABASE_URL": owner_url})
    checked = run("dashboard-assets", "check", env=env, check=False)
    assert checked.returncode == 0, checked.stdout
    assert "PostgreSQL: 15." in checked.stdout

    # 3. backfill in one run
    run("dg", "launch", "--assets", "daily_metrics,daily_pipeline,daily_warranty,daily_jobs", "--partition-range",
        f"{FIRST_DAY}...{LAST_DAY}", env=env)
    assert_rollups_match_reference(runtime_url, FIRST_DAY, LAST_DAY)

    # 4. the webserver and the daemon; a change in the ERP reaches its rollup
    port = free_port()
    with (tmp_path / "serve.log").open("wb") as log:
        serving = [subprocess.Popen([str(PROJECT_ROOT / ".venv" / "bin" / command), *args], cwd=PROJECT_ROOT,
                                    env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
                   for command, args in (("dagster-webserver", ["-w", "workspace.yaml", "-p", str(port)]),
                                         ("dagster-daemon", ["run", "-w", "workspace.yaml"]))]
        try:
            wait_for(lambda: _answers(port), 120, "the webserver")
            before = _revenue(runtime_url, dt.date(2025, 3, 20))
            execute(owner_url, "UPDATE orders SET status = 'cancelled' WHERE id = (SELECT id FROM orders"
                    " WHERE status = 'delivered' AND created_at >= '2025-03-20' ORDER BY created_at LIMIT 1)")
            wait_for(lambda: _revenue(runtime_url, dt.date(2025, 3, 20)) != before, 180,
                     "the change in the rollup")
        finally:
            for process in serving:
                stop_process_group(process, timeout=60)
    assert_rollups_match_reference(runtime_url, FIRST_DAY, LAST_DAY)


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
            return True
    except OSError:
        return False


def _revenue(database_url: str, day: dt.date):
    """The day's revenue over every organization, as the rollup holds it."""
    return rollup_rows(database_url, "daily_metrics", day, day)["revenue"].sum()

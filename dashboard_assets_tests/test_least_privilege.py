"""Least privilege on a real server, as docs/deploy.md sets it up: the source
tables belong to the ERP's owner role, which runs `dashboard-assets migrate
--runtime-role` once; a runtime role that is no superuser and may not write
any source table then runs everything else (backfill, change capture and the
change refresh, the read path, the SQL function, table maintenance), and
`dashboard-assets check` finds it ready."""

import datetime as dt
import itertools
import os
import subprocess
import sys

import psycopg
import pytest
import sqlalchemy as sa

from dashboard_assets import serving
from dashboard_assets.automation import capture
from dashboard_assets.db import engine, libpq_url
from dashboard_assets.maintenance.tables import MaintenanceConfig, maintain
from dashboard_assets.sources import SOURCE_TABLES
from dashboard_assets_tests.conftest import HISTORY_END, HISTORY_START, TEMPLATE_DATABASE
from dashboard_assets_tests.helpers import (
    assert_rollups_match_reference,
    execute,
    materialize_days,
    refresh_pending_now,
    tick,
)

_erps = itertools.count()


def as_role(url: str, role: str) -> str:
    """The same database, connecting as `role` (the test server trusts its socket)."""
    return sa.make_url(url).set(username=role, password=None).render_as_string(hide_password=False)


@pytest.fixture
def erp(postgres_server):
    """An ERP database whose source tables (the generated ones) belong to an
    owner role that is no superuser, without the dashboard schema; the owner's
    and the runtime role's URLs."""
    n = next(_erps)
    owner, runtime, name = f"erp_owner_{n}", f"dashboard_runtime_{n}", f"erp_{n}"
    admin = postgres_server.url()
    execute(admin, f"CREATE ROLE {owner} LOGIN")
    execute(admin, f"CREATE ROLE {runtime} LOGIN REPLICATION")
    execute(admin, f"GRANT {runtime} TO {owner}")
    url = postgres_server.create_database(name, template=TEMPLATE_DATABASE)
    execute(url, f"ALTER DATABASE {name} OWNER TO {owner}")
    execute(url, "DROP SCHEMA dashboard CASCADE")
    execute(url, f"DROP PUBLICATION IF EXISTS {capture.PUBLICATION}")
    for table in SOURCE_TABLES:
        execute(url, f"ALTER TABLE {table} OWNER TO {owner}")
    yield as_role(url, owner), as_role(url, runtime)
    for role_url in (as_role(url, owner), as_role(url, runtime)):
        engine(role_url).dispose()
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        capture.drop_slot(conn)
    postgres_server.drop_database(name)
    for role in (runtime, owner):
        execute(admin, f"DROP ROLE {role}")


def dashboard_assets_cli(*args: str, database_url: str, **environment: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DASHBOARD_", "DAGSTER_"))}
    return subprocess.run([sys.executable, "-m", "dashboard_assets.cli", *args], capture_output=True, text=True,
                          env=env | {"DASHBOARD_DATABASE_URL": database_url} | environment)


def test_the_runtime_role_runs_everything_and_writes_no_source_table(erp, redis_url, postgres_server):
    owner_url, runtime_url = erp
    runtime = sa.make_url(runtime_url).username
    migrated = dashboard_assets_cli("migrate", "--runtime-role", runtime, database_url=owner_url)
    assert migrated.returncode == 0, migrated.stderr

    checked = dashboard_assets_cli("check", database_url=runtime_url, DASHBOARD_REDIS_URL=redis_url,
                                   DAGSTER_POSTGRES_URL=postgres_server.url())
    assert checked.returncode == 0, checked.stdout  # ready: no blocker, no warning
    assert f"role {runtime}: may run the pipeline" in checked.stdout

    assert materialize_days(runtime_url, HISTORY_START, HISTORY_END).success  # backfill
    cursor = tick(runtime_url, redis_url, None).cursor  # change capture reads the slot
    execute(owner_url, "UPDATE orders SET status = 'cancelled' WHERE id = (SELECT id FROM orders"
            " WHERE status = 'delivered' AND created_at >= '2025-03-20' ORDER BY created_at LIMIT 1)")
    tick(runtime_url, redis_url, cursor)
    refresh_pending_now(runtime_url, redis_url)  # the change refresh, the snapshot, the warmed cache
    assert_rollups_match_reference(runtime_url, HISTORY_START, HISTORY_END)

    with psycopg.connect(libpq_url(runtime_url)) as conn:
        (org,) = conn.execute("SELECT id::text FROM organizations ORDER BY id LIMIT 1").fetchone()
        day = dt.date(2025, 3, 20)
        (from_function,) = conn.execute("SELECT dashboard.dashboard_metrics(%s::uuid, %s, %s)",
                                        (org, day, day)).fetchone()
    read = serving.dashboard_metrics(org, day.isoformat(), day.isoformat(), database_url=runtime_url,
                                     dashboard_cache=None)
    assert read["revenue"] == from_function["revenue"]  # the read path and the SQL function

    execute(runtime_url, "UPDATE dashboard.daily_metrics SET refreshed_at = refreshed_at")  # dead rows to vacuum
    report = maintain(runtime_url, MaintenanceConfig(dead_share_threshold=0.0))
    assert "daily_metrics" in report.vacuumed  # maintenance: the runtime role owns the dashboard tables

    for statement in ("INSERT INTO organizations (id, name) VALUES (gen_random_uuid(), 'x')",
                      "UPDATE orders SET status = status", "DELETE FROM order_items", "TRUNCATE jobs"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            execute(runtime_url, statement)


def test_migrate_names_what_the_roles_lack(erp, postgres_server):
    owner_url, runtime_url = erp
    runtime = sa.make_url(runtime_url).username
    missing = dashboard_assets_cli("migrate", "--runtime-role", "nobody_here", database_url=owner_url)
    assert missing.returncode == 2 and "role nobody_here does not exist" in missing.stderr
    execute(postgres_server.url(), f"ALTER ROLE {runtime} NOREPLICATION")
    no_replication = dashboard_assets_cli("migrate", "--runtime-role", runtime, database_url=owner_url)
    assert no_replication.returncode == 2 and f"ALTER ROLE {runtime} REPLICATION" in no_replication.stderr
    assert "Traceback" not in missing.stderr + no_replication.stderr
    unmigrated = dashboard_assets_cli("check", database_url=runtime_url)
    assert unmigrated.returncode == 2
    assert ("blocker dashboard schema: not installed → run `dashboard-assets migrate --runtime-role <runtime role>`"
            " as the source tables' owner (this role may not: it lacks CREATE on the database and ownership of"
            in unmigrated.stdout)
    assert f"blocker role {runtime}: has no REPLICATION attribute" in unmigrated.stdout

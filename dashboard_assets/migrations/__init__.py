"""The project's schema objects, applied idempotently by `dashboard-assets migrate`."""

import re

import psycopg
from psycopg import sql

from dashboard_assets.automation import capture
from dashboard_assets.automation.changes import CAPTURED_COLUMNS
from dashboard_assets.db import libpq_url, load_sql
from dashboard_assets.sources import SOURCE_TABLES

# Serializes concurrent migrations (e.g. several deploys at once).
_MIGRATION_LOCK_ID = 7_420_001
# The rollups whose refresh SQL is also a function, dashboard.<rollup>_from_source,
# for dashboard.dashboard_metrics to compute an organization's today live; and
# the parameters of that SQL (rollups.refresh.query_params), in order, typed.
_ROLLUP_SQL = "dashboard_assets.rollups.sql"
FROM_SOURCE_ROLLUPS = ("daily_metrics", "daily_pipeline", "daily_warranty", "daily_customers")
_ROLLUP_PARAMETERS = {"start_date": "date", "end_date": "date", "organization_ids": "uuid[]",
                      "utc_from": "timestamptz", "utc_to": "timestamptz"}


def migrate(database_url: str, *, with_source_schema: bool = False, runtime_role: str | None = None) -> None:
    """Create the `dashboard` schema objects, the source indexes, and change
    capture (the publication of the source tables and the replication slot,
    which needs wal_level = logical).

    With `with_source_schema` the source tables are created first (demo, tests,
    benchmarks); an operational database already has them.

    With `runtime_role`, the role that runs the pipeline (not a superuser, no
    write on any source table): the connecting role, the source tables' owner
    and a member of `runtime_role`, keeps what needs the owner (the source
    indexes, the tables' replica identity, the publication) and grants
    `runtime_role` SELECT on the source tables; the `dashboard` schema and its
    objects are created as `runtime_role`, which owns them (table maintenance
    needs the owner), and so is the slot when the connecting role may not
    replicate. Raises capture.CaptureError before changing anything when the
    server or the roles are not ready, with the fix.
    """
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        capture.require_logical_wal(conn)
        if runtime_role:
            _require_runtime_role(conn, runtime_role)
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK_ID,))
        try:
            if with_source_schema:
                with conn.transaction():
                    conn.execute(load_sql(__name__, "source_schema.sql"))
            conn.execute(_CREATE_SCHEMA + (sql.SQL(" AUTHORIZATION {}").format(sql.Identifier(runtime_role))
                                           if runtime_role else sql.SQL("")))
            if runtime_role:
                conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(
                    sql.SQL(", ").join(sql.Identifier(t) for t in SOURCE_TABLES), sql.Identifier(runtime_role)))
            with conn.transaction():
                if runtime_role:
                    conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(runtime_role)))
                conn.execute(load_sql(__name__, "dashboard_schema.sql"))
                conn.execute(load_sql(__name__, "change_capture.sql"))
                for rollup in FROM_SOURCE_ROLLUPS:
                    _create_from_source_function(conn, rollup)
                conn.execute(load_sql(__name__, "dashboard_metrics.sql"))
            _drop_invalid_indexes(conn)
            for statement in _statements(load_sql(__name__, "source_indexes.sql")):
                conn.execute(statement)
            capture.install(conn, list(CAPTURED_COLUMNS), slot_role=runtime_role)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK_ID,))


_CREATE_SCHEMA = sql.SQL("CREATE SCHEMA IF NOT EXISTS dashboard")
_RUNTIME_ROLE = """
    SELECT r.rolsuper, r.rolreplication, pg_has_role(current_user, r.oid, 'MEMBER')
    FROM pg_roles r WHERE r.rolname = %s
"""


def _require_runtime_role(conn: psycopg.Connection, role: str) -> None:
    """The runtime role exists, may replicate, and the connecting role may act as it."""
    row = conn.execute(_RUNTIME_ROLE, (role,)).fetchone()
    if row is None:
        raise capture.CaptureError(f"role {role} does not exist: CREATE ROLE {role} LOGIN REPLICATION PASSWORD '...' "
                                   "(docs/deploy.md)")
    superuser, replication, member = row
    if superuser:
        raise capture.CaptureError(f"role {role} is a superuser: the runtime role should not be (docs/deploy.md)")
    if not replication:
        raise capture.CaptureError(f"role {role} may not replicate, which change capture needs: "
                                   f"ALTER ROLE {role} REPLICATION")
    if not member:
        raise capture.CaptureError(f"this role may not create objects owned by {role}: GRANT {role} TO "
                                   f"{conn.info.user}")


def _create_from_source_function(conn: psycopg.Connection, rollup: str) -> None:
    """dashboard.<rollup>_from_source(start_date, end_date, organization_ids,
    utc_from, utc_to): the rows the rollup's refresh SQL computes, from that
    same SQL, its named parameters made positional. Recreated on every
    migration, so that it follows the file; its columns are the query's own."""
    query = load_sql(_ROLLUP_SQL, f"{rollup}.sql")
    names = list(_ROLLUP_PARAMETERS)
    body = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m[1]) + 1}", query)
    described = conn.execute(sql.SQL("SELECT * FROM ({}) q LIMIT 0").format(sql.SQL(query)),
                             dict.fromkeys(names)).description
    types = [name for (name,) in conn.execute(
        "SELECT format_type(t, NULL) FROM unnest(%s::oid[]) WITH ORDINALITY AS u(t, n) ORDER BY n",
        ([column.type_code for column in described],))]
    function = sql.Identifier("dashboard", f"{rollup}_from_source")
    signature = sql.SQL(", ").join(sql.SQL(t) for t in _ROLLUP_PARAMETERS.values())
    conn.execute(sql.SQL("DROP FUNCTION IF EXISTS {}({})").format(function, signature))
    columns = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(t))
                                 for c, t in zip(described, types))
    conn.execute(sql.SQL("CREATE FUNCTION {}({}) RETURNS TABLE ({}) LANGUAGE sql STABLE AS {}").format(
        function, signature, columns, sql.Literal(body)))


def _statements(script: str) -> list[str]:
    """The statements of a script without function bodies, one per `;`."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _drop_invalid_indexes(conn: psycopg.Connection) -> None:
    """Drop indexes a failed CREATE INDEX CONCURRENTLY left invalid, so that
    IF NOT EXISTS does not skip rebuilding them."""
    rows = conn.execute(
        """
        SELECT n.nspname, c.relname
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT i.indisvalid AND n.nspname = current_schema()
        """
    ).fetchall()
    for schema, name in rows:
        conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(schema, name)))

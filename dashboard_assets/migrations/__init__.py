"""The project's schema objects, applied idempotently by `dashboard-assets migrate`."""

import psycopg
from psycopg import sql

from dashboard_assets.automation import capture
from dashboard_assets.automation.changes import CAPTURED_COLUMNS
from dashboard_assets.db import libpq_url, load_sql

# Serializes concurrent migrations (e.g. several deploys at once).
_MIGRATION_LOCK_ID = 7_420_001


def migrate(database_url: str, *, with_source_schema: bool = False) -> None:
    """Create the `dashboard` schema objects, the source indexes, and change
    capture (the publication of the source tables and the replication slot,
    which needs wal_level = logical).

    With `with_source_schema` the source tables are created first (demo, tests,
    benchmarks); an operational database already has them.
    """
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK_ID,))
        try:
            if with_source_schema:
                with conn.transaction():
                    conn.execute(load_sql(__name__, "source_schema.sql"))
            with conn.transaction():
                conn.execute(load_sql(__name__, "dashboard_schema.sql"))
                conn.execute(load_sql(__name__, "change_capture.sql"))
            _drop_invalid_indexes(conn)
            for statement in _statements(load_sql(__name__, "source_indexes.sql")):
                conn.execute(statement)
            capture.install(conn, list(CAPTURED_COLUMNS))
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK_ID,))


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

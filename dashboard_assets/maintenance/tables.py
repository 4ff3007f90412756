"""Measuring and maintaining the `dashboard` schema's tables: their sizes and
dead rows, their indexes' sizes against a fresh build's estimate; VACUUM
(ANALYZE) of tables with many dead rows and REINDEX INDEX CONCURRENTLY of
bloated indexes.

Neither statement runs inside a transaction, so they run on an autocommit
connection, under a lock timeout: a statement that would wait longer (for
a conflicting lock, or, for REINDEX CONCURRENTLY, for every open snapshot,
a refresh's among them) gives up and is postponed to the next run, and
readers and refreshes go on. Neither statement changes a row. A REINDEX
CONCURRENTLY that fails leaves its unfinished copy behind, marked invalid:
those are dropped right away, or at the start of the next run.
"""

from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import psycopg
from psycopg import sql

from dashboard_assets.db import autocommit_connection, load_sql

SCHEMA = "dashboard"
_SQL = "dashboard_assets.maintenance.sql"

# A table is vacuumed when at least this share of its row versions is dead
# (autovacuum's default trigger is 20 % of the rows, plus 50).
DEAD_SHARE_THRESHOLD = 0.1
# An index is rebuilt when at least this share of it is bloat (its size
# against the estimate of a fresh build), and it is at least this large.
INDEX_BLOAT_THRESHOLD = 0.5
MIN_INDEX_BYTES = 8 * 2**20
# How long a statement waits for a lock before it is postponed.
LOCK_TIMEOUT_MS = 5_000
# Waiting that ends in a postponement rather than a failure.
_POSTPONED = (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected)


class MaintenanceConfig(dg.Config):
    """When a table is vacuumed and an index rebuilt, and how long to wait for a lock."""

    dead_share_threshold: float = DEAD_SHARE_THRESHOLD
    index_bloat_threshold: float = INDEX_BLOAT_THRESHOLD
    min_index_bytes: int = MIN_INDEX_BYTES
    lock_timeout_ms: int = LOCK_TIMEOUT_MS


@dataclass
class MaintenanceReport:
    """The tables and indexes before and after, what was done, and what was
    postponed (statement -> reason)."""

    tables_before: dict[str, dict[str, Any]] = field(default_factory=dict)
    tables_after: dict[str, dict[str, Any]] = field(default_factory=dict)
    indexes_before: dict[str, dict[str, Any]] = field(default_factory=dict)
    indexes_after: dict[str, dict[str, Any]] = field(default_factory=dict)
    vacuumed: list[str] = field(default_factory=list)
    reindexed: list[str] = field(default_factory=list)
    dropped_leftovers: list[str] = field(default_factory=list)
    postponed: dict[str, str] = field(default_factory=dict)


def maintain(database_url: str, config: MaintenanceConfig) -> MaintenanceReport:
    """Measure every table and index of the schema, vacuum the tables and
    rebuild the indexes past the thresholds, and measure them again."""
    report = MaintenanceReport()
    with autocommit_connection(database_url) as conn:
        conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{config.lock_timeout_ms}ms",))
        try:
            _drop_leftovers(conn, report)
            report.tables_before = _measure(conn, "table_sizes.sql", "table_name")
            for name, table in report.tables_before.items():
                if table["dead_share"] >= config.dead_share_threshold:
                    _attempt(conn, sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(SCHEMA, name)),
                             name, report.vacuumed, report)
            # After the vacuum, so that the estimates count the live rows it found.
            report.indexes_before = _measure(conn, "index_sizes.sql", "index_name")
            for name, index in report.indexes_before.items():
                if (index["index_bytes"] >= config.min_index_bytes
                        and index["bloat_share"] >= config.index_bloat_threshold):
                    statement = sql.SQL("REINDEX INDEX CONCURRENTLY {}").format(sql.Identifier(SCHEMA, name))
                    if not _attempt(conn, statement, name, report.reindexed, report):
                        _drop_leftovers(conn, report)
            report.tables_after = _measure(conn, "table_sizes.sql", "table_name")
            report.indexes_after = _measure(conn, "index_sizes.sql", "index_name")
        finally:
            conn.execute("RESET lock_timeout")
    return report


def _measure(conn: psycopg.Connection, query: str, key: str) -> dict[str, dict[str, Any]]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return {row[key]: row for row in cur.execute(load_sql(_SQL, query), {"schema": SCHEMA})}


def _attempt(conn: psycopg.Connection, statement: sql.Composable, name: str, done: list[str],
             report: MaintenanceReport) -> bool:
    """Run `statement` on `name`; on a lock it could not get in time, record it as postponed."""
    try:
        conn.execute(statement)
    except _POSTPONED as error:
        report.postponed[statement.as_string(conn)] = type(error).__name__
        return False
    done.append(name)
    return True


def _drop_leftovers(conn: psycopg.Connection, report: MaintenanceReport) -> None:
    """Drop the invalid copies failed rebuilds left behind (or postpone that too)."""
    for (name,) in conn.execute(load_sql(_SQL, "leftover_indexes.sql"), {"schema": SCHEMA}).fetchall():
        _attempt(conn, sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(SCHEMA, name)),
                 name, report.dropped_leftovers, report)

"""Replacing a rollup's days in one transaction, and reconciling them with the
source in the same snapshot before it commits.

One target transaction first locks the rollup's tables against other writers
(readers go on), deletes the days being replaced and writes the new rows.
When the source is the target's database, that transaction is REPEATABLE READ
and does everything itself: INSERT … SELECT, then the reconciliation, in the
snapshot taken just after the lock. When the source is another server (a
replica), the rows stream through COPY from a REPEATABLE READ, read-only
source transaction, which also runs the reconciliation. Readers of the target
see the old days or the new ones, never a gap; a failure anywhere rolls back
and leaves the previous days in place.
"""

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from dashboard_assets.db import copy_query_into, fetch_one, load_sql, raw_connection, snapshot
from dashboard_assets.scope import ORGANIZATIONS_FILTER

_SQL_PACKAGE = "dashboard_assets.rollups.sql"
_SCHEMA = "dashboard"


@dataclass(frozen=True)
class Rollup:
    """A rollup: its tables (each filled by `sql/<table>.sql`) and its sources.

    The first table is the rollup's own; `sql/<name>_reconcile.sql` gives its
    totals straight from the source and `sql/<name>_impossible.sql` lists rows
    no source data can produce.
    """

    name: str
    description: str
    source_tables: tuple[str, ...]
    extra_tables: tuple[str, ...] = ()
    daily: bool = True

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.name, *self.extra_tables)


@dataclass
class RefreshResult:
    """What one refresh replaced, and what its reconciliation found. A refresh
    whose totals do not reconcile is rolled back: `committed` is then False."""

    rows_written: dict[str, int]
    seconds: float
    organizations: int
    source_totals: dict[str, Any]
    rollup_totals: dict[str, Any]
    impossible_rows: list[tuple[str, dt.date]] = field(default_factory=list)

    @property
    def committed(self) -> bool:
        return not self.mismatches

    @property
    def mismatches(self) -> dict[str, dict[str, str]]:
        """Totals that differ between the source and the rollup."""
        return {
            name: {"source": str(expected), "rollup": str(self.rollup_totals.get(name))}
            for name, expected in self.source_totals.items()
            if Decimal(expected or 0) != Decimal(self.rollup_totals.get(name) or 0)
        }


def refresh(
    rollup: Rollup,
    *,
    source_url: str,
    target_url: str,
    start: dt.date | None = None,
    end: dt.date | None = None,
    organizations: list[str] | None = None,
) -> RefreshResult:
    """Replace the local days [start, end] of a daily rollup (or the whole
    snapshot of an undated one) for every organization, or only for
    `organizations` (the other organizations' rows are not touched), in one
    transaction."""
    if rollup.daily and (start is None or end is None or start > end):
        raise ValueError(f"{rollup.name} needs a date range with start <= end, got {start}..{end}")
    params = query_params(start, end, organizations)
    began = time.perf_counter()
    with _transactions(source_url, target_url, rollup.tables) as (source, target):
        rows_written = {}
        for table in rollup.tables:
            target.execute(_delete_statement(table, rollup.daily), params)
            query = load_sql(_SQL_PACKAGE, f"{table}.sql")
            if source is target:
                insert = sql.SQL("INSERT INTO {} ").format(sql.Identifier(_SCHEMA, table)) + sql.SQL(query)
                rows_written[table] = target.execute(insert, params).rowcount
            else:
                rows_written[table] = copy_query_into(source, query, params, target, f"{_SCHEMA}.{table}")
        source_totals = fetch_one(source, load_sql(_SQL_PACKAGE, f"{rollup.name}_reconcile.sql"), params)
        rollup_totals = fetch_one(target, _totals_query(rollup, source_totals), params)
        impossible = target.execute(load_sql(_SQL_PACKAGE, f"{rollup.name}_impossible.sql"), params).fetchall()
        days = (end - start).days + 1 if rollup.daily else 1
        result = RefreshResult(
            rows_written=rows_written,
            seconds=time.perf_counter() - began,
            organizations=int(source_totals["rows"]) // days,
            source_totals=source_totals,
            rollup_totals=rollup_totals,
            impossible_rows=[(str(org), day) for org, day in impossible],
        )
        if result.mismatches:
            raise psycopg.Rollback()  # unreconciled numbers never replace the previous days
        target.execute(
            "INSERT INTO dashboard.refresh_log (rollup, start_date, end_date, organizations, rows_written, seconds)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (rollup.name, start, end, result.organizations, sum(rows_written.values()), result.seconds),
        )
    return result


@contextmanager
def _transactions(source_url: str, target_url: str,
                  tables: tuple[str, ...]) -> Iterator[tuple[psycopg.Connection, psycopg.Connection]]:
    """The source and target connections of one refresh, each in its
    transaction, the target's tables locked against other writers; one
    connection for both when the source is the target's database. Rolled
    back on any error or psycopg.Rollback."""
    lock = sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(
        sql.SQL(", ").join(sql.Identifier(_SCHEMA, table) for table in tables))
    if source_url == target_url:
        with raw_connection(target_url) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            try:
                with conn.transaction():
                    conn.execute(lock)  # before the snapshot, which the first query takes
                    yield conn, conn
            finally:
                conn.isolation_level = None
        return
    with raw_connection(source_url) as source, raw_connection(target_url) as target:
        with snapshot(source), target.transaction():
            target.execute(lock)
            yield source, target


def query_params(
    start: dt.date | None, end: dt.date | None, organizations: list[str] | None = None
) -> dict[str, dt.date | dt.datetime | list[str] | None]:
    """The parameters of the rollup SQL for the local days [start, end] of every
    organization, or of `organizations` alone.

    Besides the dates, UTC bounds that contain those days in every timezone
    (offsets run from -12 h to +14 h): the SQL repeats them as constants beside
    each organization's exact window so that the planner can estimate the rows,
    choosing index range scans for a day and sequential scans for a history.
    """
    params = {"start_date": start, "end_date": end, "organization_ids": organizations, "utc_from": None, "utc_to": None}
    if start is not None and end is not None:
        midnight = dt.time(tzinfo=dt.UTC)
        params["utc_from"] = dt.datetime.combine(start - dt.timedelta(days=1), midnight)
        params["utc_to"] = dt.datetime.combine(end + dt.timedelta(days=2), midnight)
    return params


def _refreshed_rows(daily: bool) -> sql.Composable:
    """The rows a refresh replaces: its organizations, and a daily rollup's days."""
    where = sql.SQL(" WHERE ") + ORGANIZATIONS_FILTER
    return where + sql.SQL(" AND metric_date BETWEEN %(start_date)s AND %(end_date)s") if daily else where


def _delete_statement(table: str, daily: bool) -> sql.Composable:
    """Delete the rows being replaced."""
    return sql.SQL("DELETE FROM {}").format(sql.Identifier(_SCHEMA, table)) + _refreshed_rows(daily)


def _totals_query(rollup: Rollup, source_totals: dict[str, Any]) -> sql.Composable:
    """The rollup's own totals over the replaced rows, under the reconcile query's names."""
    sums = [
        sql.SQL("count(*) AS rows") if name == "rows" else sql.SQL("sum({0}) AS {0}").format(sql.Identifier(name))
        for name in source_totals
    ]
    query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(sums), sql.Identifier(_SCHEMA, rollup.name))
    return query + _refreshed_rows(rollup.daily)

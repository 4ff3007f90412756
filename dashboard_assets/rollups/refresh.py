"""Replacing a rollup's days in batches of days, each in one transaction, and
reconciling each batch with the source in the same snapshot before it commits.

A batch first takes the rollup's locks of its days (session advisory locks,
taken before its transaction begins, so that its snapshot sees what the
previous writer of those days committed), then one target transaction
deletes the days being replaced and writes the new rows. When the source is
the target's database, that transaction is REPEATABLE READ and does
everything itself: INSERT … SELECT, then the reconciliation. When the source
is another server (a replica), the rows stream through COPY from a
REPEATABLE READ, read-only source transaction, which also runs the
reconciliation. Readers of the target see the old days or the new ones,
never a gap; a failure anywhere rolls back and leaves the previous days of
that batch in place.

Writers of other days of the same rollup never wait for each other: a
change-driven refresh of today goes on while a backfill rewrites last year,
and waits at most for the one batch that holds today. A range of more
organization-days than a batch holds is split into batches of whole days,
refreshed a few at a time; a batch committed under a resume key (the run's
root run id, shared by its retries and re-executions) is not done again.
"""

import dataclasses
import datetime as dt
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from dashboard_assets import settings
from dashboard_assets.db import autocommit_connection, copy_query_into, fetch_one, load_sql, raw_connection, snapshot
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
    batches: int = 1
    resumed_batches: int = 0

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

    @classmethod
    def of_batches(cls, results: list["RefreshResult"], seconds: float, resumed: int) -> "RefreshResult":
        """One result for a refresh done in batches: sums of what each batch
        wrote and reconciled; the first batch that did not reconcile, when one did not."""
        if failed := [result for result in results if not result.committed]:
            return dataclasses.replace(failed[0], batches=len(results) + resumed, resumed_batches=resumed)

        def summed(field_name: str) -> dict:
            totals: Counter = Counter()
            for result in results:
                totals.update({k: v or 0 for k, v in getattr(result, field_name).items()})
            return dict(totals)

        return cls(
            rows_written=dict(sum((Counter(r.rows_written) for r in results), Counter())),
            seconds=seconds,
            organizations=max((r.organizations for r in results), default=0),
            source_totals=summed("source_totals"),
            rollup_totals=summed("rollup_totals"),
            impossible_rows=[row for r in results for row in r.impossible_rows],
            batches=len(results) + resumed,
            resumed_batches=resumed,
        )


def refresh(
    rollup: Rollup,
    *,
    source_url: str,
    target_url: str,
    start: dt.date | None = None,
    end: dt.date | None = None,
    organizations: list[str] | None = None,
    resume_key: str | None = None,
    organization_days_per_batch: int = settings.DEFAULT_BATCH_ORGANIZATION_DAYS,
    concurrent_batches: int = settings.DEFAULT_CONCURRENT_BATCHES,
) -> RefreshResult:
    """Replace the local days [start, end] of a daily rollup (or the whole
    snapshot of an undated one) for every organization, or only for
    `organizations` (the other organizations' rows are not touched): in one
    transaction when the range fits in a batch, else batch by batch, a few
    at a time, skipping the batches already committed under `resume_key`.
    The first batch that does not reconcile is rolled back and no batch
    starts after it; the batches committed before it stay."""
    if rollup.daily and (start is None or end is None or start > end):
        raise ValueError(f"{rollup.name} needs a date range with start <= end, got {start}..{end}")
    began = time.perf_counter()
    if not rollup.daily:
        return _refresh_batch(rollup, source_url, target_url, None, None, organizations, resume_key)
    ranges = day_batches(start, end, _days_per_batch(source_url, organizations, organization_days_per_batch))
    done = _committed_batches(target_url, rollup, resume_key, ranges) if resume_key else set()
    pending = [batch for batch in ranges if batch not in done]
    failed = threading.Event()  # a batch that failed or did not reconcile: start no other

    def refresh_batch(batch: tuple[dt.date, dt.date]) -> RefreshResult | None:
        if failed.is_set():
            return None
        try:
            result = _refresh_batch(rollup, source_url, target_url, *batch, organizations, resume_key)
        except BaseException:
            failed.set()
            raise
        if not result.committed:
            failed.set()
        return result

    with ThreadPoolExecutor(max_workers=max(1, min(concurrent_batches, len(pending)))) as pool:
        results = [result for result in pool.map(refresh_batch, pending) if result is not None]
    if len(ranges) == 1 and results:
        return results[0]
    return RefreshResult.of_batches(results, time.perf_counter() - began, resumed=len(done))


def day_batches(start: dt.date, end: dt.date, days_per_batch: int) -> list[tuple[dt.date, dt.date]]:
    """[start, end] as consecutive ranges of at most `days_per_batch` days."""
    step = dt.timedelta(days=days_per_batch)
    batches = []
    while start <= end:
        batches.append((start, min(end, start + step - dt.timedelta(days=1))))
        start += step
    return batches


def _days_per_batch(source_url: str, organizations: list[str] | None, organization_days: int) -> int:
    """Whole days per batch for the refreshed organizations (at least one)."""
    if organizations is not None:
        count = len(organizations)
    else:
        with raw_connection(source_url) as conn:
            (count,) = conn.execute("SELECT count(*) FROM organizations").fetchone()
            conn.rollback()
    return max(1, organization_days // max(1, count))


def _committed_batches(target_url: str, rollup: Rollup, resume_key: str,
                       ranges: list[tuple[dt.date, dt.date]]) -> set[tuple[dt.date, dt.date]]:
    """The batches of `ranges` committed under `resume_key`."""
    with raw_connection(target_url) as conn:
        rows = conn.execute(
            "SELECT start_date, end_date FROM dashboard.refresh_log WHERE rollup = %s AND resume_key = %s",
            (rollup.name, resume_key)).fetchall()
        conn.rollback()
    return set(ranges) & {tuple(row) for row in rows}


def _refresh_batch(rollup: Rollup, source_url: str, target_url: str, start: dt.date | None, end: dt.date | None,
                   organizations: list[str] | None, resume_key: str | None) -> RefreshResult:
    """Replace [start, end] (or the snapshot) in one transaction, under the
    locks of its days; rolled back when it does not reconcile."""
    params = query_params(start, end, organizations)
    with day_locks(target_url, rollup, start, end):
        began = time.perf_counter()
        with _transactions(source_url, target_url) as (source, target):
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
                "INSERT INTO dashboard.refresh_log"
                " (rollup, start_date, end_date, organizations, rows_written, seconds, resume_key)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (rollup.name, start, end, result.organizations, sum(rows_written.values()), result.seconds,
                 resume_key),
            )
    return result


@contextmanager
def day_locks(target_url: str, rollup: Rollup, start: dt.date | None, end: dt.date | None) -> Iterator[None]:
    """Hold the rollup's locks of the days [start, end] (its one lock when
    undated) on a connection of their own, taken in order (no deadlock
    between writers) and before the writer's transaction begins."""
    with autocommit_connection(target_url) as conn:
        conn.execute(_TAKE_LOCKS, (lock_class(rollup), _days(start, end)))
        try:
            yield
        finally:
            try:
                conn.execute("SELECT pg_advisory_unlock_all()")
            except psycopg.Error:
                conn.close()  # never back to the pool holding a lock (its session ends, and the locks)
                raise


# Session locks, taken one after the other in the array's (ascending) order.
_TAKE_LOCKS = "SELECT count(pg_advisory_lock(%s, day)) FROM unnest(%s::int[]) AS day"


def lock_class(rollup: Rollup) -> int:
    """The first key of the rollup's advisory locks (a stable 31-bit number)."""
    return zlib.crc32(f"dashboard.{rollup.name}".encode()) & 0x7FFFFFFF


def _days(start: dt.date | None, end: dt.date | None) -> list[int]:
    """The days [start, end] as ordinals, ascending (one key, 0, when undated)."""
    if start is None or end is None:
        return [0]
    return list(range(start.toordinal(), end.toordinal() + 1))


@contextmanager
def _transactions(source_url: str, target_url: str) -> Iterator[tuple[psycopg.Connection, psycopg.Connection]]:
    """The source and target connections of one batch, each in its
    transaction; one REPEATABLE READ connection for both when the source is
    the target's database. Rolled back on any error or psycopg.Rollback."""
    if source_url == target_url:
        with raw_connection(target_url) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            try:
                with conn.transaction():
                    yield conn, conn
            finally:
                conn.isolation_level = None
        return
    with raw_connection(source_url) as source, raw_connection(target_url) as target:
        with snapshot(source), target.transaction():
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

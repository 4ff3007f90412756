"""What captured changes mean for the pipeline: the (rollup, organization,
day) they affect, the runs that refresh exactly those, and the activity feed."""

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

import psycopg

from dashboard_assets.automation.capture import ACTIVITY_DEPTH, CapturedChanges
from dashboard_assets.db import load_sql, raw_connection

_SQL = "dashboard_assets.automation.sql"
DAILY_ROLLUPS = ("daily_metrics", "daily_pipeline", "daily_warranty", "daily_jobs")

# The captured source tables and the columns of theirs that place a change on
# the days it affects (every table keeps its id and organization for the
# activity feed). The columns' meaning is in sql/affected_days.sql.
CAPTURED_COLUMNS = {
    "organizations": ("id",),
    "products": ("id", "organization_id"),
    "orders": ("id", "organization_id", "created_at"),
    "order_items": ("id", "organization_id", "order_id"),
    "jobs": ("id", "organization_id", "order_id", "created_at", "completed_at"),
    "job_time_entries": ("id", "organization_id", "job_id"),
    "opportunities": ("id", "organization_id", "created_at"),
    "warranty_claims": ("id", "organization_id", "created_at"),
}
# The rollups every row of a table feeds (for a TRUNCATE, which names no rows).
ROLLUPS_BY_TABLE = {
    "organizations": DAILY_ROLLUPS,
    "products": ("daily_metrics",),
    "orders": ("daily_metrics",),
    "order_items": ("daily_metrics",),
    "jobs": ("daily_metrics", "daily_jobs"),
    "job_time_entries": ("daily_jobs",),
    "opportunities": ("daily_pipeline",),
    "warranty_claims": ("daily_warranty",),
}
# Unpartitioned assets refreshed with the rollups when these tables change.
DEPENDENTS_BY_TABLE = {
    "products": ("product_mix_30d",),
    "orders": ("product_mix_30d",),
    "order_items": ("product_mix_30d",),
    "opportunities": ("conversion_funnel_90d",),
}
ALWAYS_REFRESHED = ("current_state", "dashboard_cache")
# What the sensor requests when capture restarts: everything it refreshes.
FULL_REFRESH = (*DAILY_ROLLUPS, *ALWAYS_REFRESHED, *sorted({d for ds in DEPENDENTS_BY_TABLE.values() for d in ds}))


@dataclass(frozen=True)
class Refresh:
    """One run: a contiguous range of days (None: no partition), the assets
    refreshed over it, and the organizations it refreshes (None: every one)."""

    days: tuple[dt.date, dt.date] | None
    assets: tuple[str, ...]
    organizations: tuple[str, ...] | None


def affected_days(conn: psycopg.Connection, changes: CapturedChanges,
                  first_day: dt.date, last_day: dt.date) -> set[tuple[str, str, dt.date]]:
    """The (rollup, organization, day) within [first_day, last_day] that the
    changes affect, in one query on the primary."""
    params = {"first_day": first_day, "last_day": last_day, "rollups": list(DAILY_ROLLUPS)}
    for table, columns in CAPTURED_COLUMNS.items():
        values = list(zip(*changes.versions.get(table, ()))) or [()] * len(columns)
        params |= {f"{table}_{column}": list(column_values) for column, column_values in zip(columns, values)}
    rows = conn.execute(load_sql(_SQL, "affected_days.sql"), params).fetchall()
    return {(rollup, str(org), day) for rollup, org, day in rows}


def plan_refreshes(changes: CapturedChanges, affected: set[tuple[str, str, dt.date]],
                   first_day: dt.date, last_day: dt.date) -> list[Refresh]:
    """One run per contiguous range of affected days, each with the rollups
    and organizations changed in it; a TRUNCATE or a capture restart refreshes
    every day of every organization. Changes that affect no day in range
    (dates beyond the partitions) still refresh the snapshot and the cache of
    their organizations."""
    tables = set(changes.versions) | changes.truncated
    dependents = tuple(sorted({d for t in tables for d in DEPENDENTS_BY_TABLE.get(t, ())}))
    if changes.restart_reason:
        return [Refresh((first_day, last_day), FULL_REFRESH, None)]
    if changes.truncated:
        rollups = sorted({r for t in changes.truncated for r in ROLLUPS_BY_TABLE[t]})
        return [Refresh((first_day, last_day), (*rollups, *ALWAYS_REFRESHED, *dependents), None)]
    by_day: dict[dt.date, list[tuple[str, str]]] = defaultdict(list)
    for rollup, org, day in affected:
        by_day[day].append((rollup, org))
    refreshes = []
    for start, end in _contiguous(sorted(by_day)):
        in_range = [pair for offset in range((end - start).days + 1)
                    for pair in by_day[start + dt.timedelta(days=offset)]]
        rollups = tuple(sorted({rollup for rollup, _ in in_range}))
        organizations = tuple(sorted({org for _, org in in_range}))
        refreshes.append(Refresh((start, end), (*rollups, *ALWAYS_REFRESHED, *dependents), organizations))
    if not refreshes and changes.activity:
        refreshes.append(Refresh(None, ALWAYS_REFRESHED, tuple(sorted(changes.activity))))
    return refreshes


def _contiguous(days: list[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Sorted days as runs of consecutive days, (first, last) each."""
    ranges: list[list[dt.date]] = []
    for day in days:
        if ranges and day - ranges[-1][1] == dt.timedelta(days=1):
            ranges[-1][1] = day
        else:
            ranges.append([day, day])
    return [(start, end) for start, end in ranges]


def record_activity(conn: psycopg.Connection, changes: CapturedChanges) -> None:
    """Keep the decoded changes of each organization in dashboard.recent_changes,
    the newest ACTIVITY_DEPTH of them."""
    entries = [entry for per_org in changes.activity.values() for entry in per_org]
    if not entries:
        return
    with conn.transaction():
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO dashboard.recent_changes (commit_lsn, ordinal, organization_id, source_table, operation,"
                " row_id, committed_at) VALUES (%s::pg_lsn, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                entries,
            )
        conn.execute(load_sql(_SQL, "prune_recent_changes.sql"),
                     {"organizations": list(changes.activity), "keep": ACTIVITY_DEPTH})


def activity_pages(database_url: str, organizations: list[str], page_size: int, pages: int) -> dict[str, list[list[dict]]]:
    """The newest changes of each organization, newest first, split into pages."""
    feed: dict[str, list[dict]] = defaultdict(list)
    with raw_connection(database_url) as conn:
        rows = conn.execute(
            load_sql(_SQL, "activity_feed.sql"),
            {"organizations": organizations, "per_organization": page_size * pages},
        ).fetchall()
        conn.rollback()
    for org, table, operation, row_id, changed_at in rows:
        feed[str(org)].append({"table": table, "operation": operation, "row_id": str(row_id),
                               "changed_at": changed_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")})
    return {org: [feed[org][i:i + page_size] for i in range(0, len(feed[org]), page_size)] or [[]]
            for org in organizations}

"""Reading the change log and turning it into the runs that refresh exactly
what changed."""

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from dashboard_assets.db import load_sql, raw_connection

_SQL = "dashboard_assets.automation.sql"

# Which daily rollups a change to each captured table affects.
ROLLUPS_BY_TABLE = {
    "orders": ("daily_metrics",),
    "order_items": ("daily_metrics",),
    "jobs": ("daily_metrics", "daily_jobs"),
    "job_time_entries": ("daily_jobs",),
    "opportunities": ("daily_pipeline",),
    "warranty_claims": ("daily_warranty",),
}
# Unpartitioned assets refreshed with the rollups when these tables change.
DEPENDENTS_BY_TABLE = {
    "orders": ("product_mix_30d",),
    "order_items": ("product_mix_30d",),
    "opportunities": ("conversion_funnel_90d",),
}
ALWAYS_REFRESHED = ("current_state", "dashboard_cache")


@dataclass
class PendingChanges:
    """What changed between the cursor and the horizon."""

    horizon: str
    days_by_rollup: dict[str, set[dt.date]] = field(default_factory=lambda: defaultdict(set))
    tables: set[str] = field(default_factory=set)
    organizations: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Refresh:
    """One run: a contiguous range of days, the rollups changed in it, and the
    unpartitioned assets that follow them."""

    start: dt.date
    end: dt.date
    assets: tuple[str, ...]


def read_pending(database_url: str, after: str) -> PendingChanges:
    """The changes with transaction ids in [after, horizon), in one query."""
    with raw_connection(database_url) as conn:
        rows = conn.execute(load_sql(_SQL, "pending_changes.sql"), {"after": after}).fetchall()
        conn.rollback()
    pending = PendingChanges(horizon=rows[0][0])
    for _, table, org, day in rows:
        if table is None:
            continue
        pending.tables.add(table)
        pending.organizations.add(str(org))
        for rollup in ROLLUPS_BY_TABLE[table]:
            pending.days_by_rollup[rollup].add(day)
    return pending


def plan_refreshes(pending: PendingChanges, first_day: dt.date, last_day: dt.date) -> list[Refresh]:
    """One refresh per contiguous range of changed days within [first_day,
    last_day] (the partitions that exist), each with the rollups changed in it."""
    days = sorted({d for ds in pending.days_by_rollup.values() for d in ds if first_day <= d <= last_day})
    ranges: list[list[dt.date]] = []
    for day in days:
        if ranges and day - ranges[-1][1] == dt.timedelta(days=1):
            ranges[-1][1] = day
        else:
            ranges.append([day, day])
    dependents = sorted({d for t in pending.tables for d in DEPENDENTS_BY_TABLE.get(t, ())})
    refreshes = []
    for start, end in ranges:
        rollups = sorted(r for r, ds in pending.days_by_rollup.items() if any(start <= d <= end for d in ds))
        refreshes.append(Refresh(start, end, (*rollups, *ALWAYS_REFRESHED, *dependents)))
    return refreshes


def activity_pages(database_url: str, organizations: list[str], page_size: int, pages: int) -> dict[str, list[list[dict]]]:
    """The newest changes of each organization, split into pages."""
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


def prune_consumed(database_url: str, consumed_below: str, keep: dt.timedelta) -> int:
    """Delete change-log rows below an already-processed horizon and older than
    `keep` (the activity feed reads the newest); returns how many."""
    with raw_connection(database_url) as conn:
        deleted = conn.execute(
            "SELECT dashboard.prune_change_log(%s::xid8, %s)", (consumed_below, keep)
        ).fetchone()[0]
        conn.commit()
    return deleted

"""What captured changes mean for the pipeline: the (rollup, organization,
day) and the undated assets of the organizations they affect, marked pending
for the change refresh; what a capture restart or a TRUNCATE refreshes
instead; and the activity feed."""

import datetime as dt
import struct
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import psycopg

from dashboard_assets import cache
from dashboard_assets.automation.capture import ACTIVITY_DEPTH, CapturedChanges, read_changes, slot_name
from dashboard_assets.db import load_sql
from dashboard_assets.partitions import partition_days
from dashboard_assets.resources import RedisResource
from dashboard_assets.rollups import assets as rollup_assets

_SQL = "dashboard_assets.automation.sql"
DAILY_ROLLUPS = tuple(rollup.name for rollup in rollup_assets.DAILY_ROLLUPS)

# The captured source tables and, for each, the columns that place a change on
# the days it affects (their meaning is in sql/mark_pending_days.sql).
CAPTURED_COLUMNS = {
    "organizations": ("id",),
    "products": ("organization_id", "id"),
    "orders": ("organization_id", "id", "created_at"),
    "order_items": ("organization_id", "order_id"),
    "jobs": ("organization_id", "order_id", "created_at", "completed_at"),
    "job_time_entries": ("organization_id", "job_id"),
    "opportunities": ("organization_id", "created_at"),
    "warranty_claims": ("organization_id", "created_at"),
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


# The activity feed pushed to Redis: pages of this many changes.
ACTIVITY_PAGE_SIZE = 20
ACTIVITY_PAGES = 5


@dataclass(frozen=True)
class FullRefresh:
    """A refresh of every day of every organization: the assets it refreshes."""

    assets: tuple[str, ...]


def record(conn: psycopg.Connection, changes: CapturedChanges, first_day: dt.date, last_day: dt.date) -> int:
    """Mark pending what the changes affect: the (rollup, organization, day)
    within [first_day, last_day], and the undated assets of every changed
    organization (also when no day in range changed); keep their newest
    changes for the activity feed; store the position they were read through
    (dashboard.capture_progress). One transaction on
    the primary: the decoded rows are copied in as they were decoded (binary
    COPY into temporary tables), and set-based SQL does the rest. Returns the
    (rollup, organization, day) marked."""
    if changes.empty:
        return 0
    with conn.transaction():
        conn.execute(load_sql(_SQL, "decoded_changes.sql"))
        with conn.cursor() as cur:
            with cur.copy("COPY decoded_versions FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(_binary_copy(_version_rows(changes)))
            with cur.copy("COPY decoded_activity FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(_binary_copy(_activity_rows(changes)))
        conn.execute("ANALYZE decoded_versions")  # row counts for the plan's joins
        marked = conn.execute(load_sql(_SQL, "mark_pending_days.sql"), {"first_day": first_day, "last_day": last_day,
                                                   "rollups": list(DAILY_ROLLUPS),
                                                   "position": changes.position}).rowcount
        conn.execute(load_sql(_SQL, "mark_pending_organizations.sql"),
                     {"assets": list(undated_assets(changes)), "organizations": sorted(changes.activity),
                      "position": changes.position})
        conn.execute(load_sql(_SQL, "keep_activity.sql"))
        conn.execute(load_sql(_SQL, "prune_activity.sql"), {"keep": ACTIVITY_DEPTH})
        conn.execute(_RECORDED_THROUGH, (slot_name(conn), changes.position, newest_commit(changes)))
    return marked


_POSTGRES_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_RECORDED_THROUGH = """
    INSERT INTO dashboard.capture_progress (slot_name, recorded_through, lag_seconds)
    VALUES (%s, %s::pg_lsn, extract(epoch FROM clock_timestamp() - %s::timestamptz))
    ON CONFLICT (slot_name) DO UPDATE
    SET recorded_through = greatest(capture_progress.recorded_through, excluded.recorded_through), recorded_at = now(),
        lag_seconds = excluded.lag_seconds
"""


def undated_assets(changes: CapturedChanges) -> tuple[str, ...]:
    """The undated assets a changed organization's change refresh refreshes:
    the snapshot and the warmed cache, and the analytics that read the changed tables."""
    tables = set(changes.versions) | changes.truncated
    return (*ALWAYS_REFRESHED, *sorted({d for t in tables for d in DEPENDENTS_BY_TABLE.get(t, ())}))


# The columns of the temporary table decoded_versions after its source_table.
_VERSION_COLUMNS = ("id", "organization_id", "order_id", "job_id", "created_at", "completed_at")
_INT16, _INT32, _UINT64 = struct.Struct("!h"), struct.Struct("!i"), struct.Struct("!Q")
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_COPY_TRAILER = _INT16.pack(-1)
_NULL = _INT32.pack(-1)


def _version_rows(changes: CapturedChanges) -> Iterator[tuple]:
    for table, versions in changes.versions.items():
        places = [_VERSION_COLUMNS.index(column) for column in CAPTURED_COLUMNS[table]]
        name = table.encode()
        for version in versions:
            row = [None] * len(_VERSION_COLUMNS)
            for place, value in zip(places, version):
                row[place] = value
            yield name, *row


def newest_commit(changes: CapturedChanges) -> dt.datetime | None:
    """When the newest change read was committed (pgoutput's commit time:
    microseconds since 2000-01-01 UTC, big-endian)."""
    newest = max((entry[5] for entries in changes.activity.values() for entry in entries), default=None)
    if newest is None:
        return None
    return _POSTGRES_EPOCH + dt.timedelta(microseconds=int.from_bytes(newest, "big", signed=True))


def _activity_rows(changes: CapturedChanges) -> Iterator[tuple]:
    for org, entries in changes.activity.items():
        org_bytes = uuid.UUID(org).bytes
        for commit_lsn, ordinal, table, operation, row_id, committed_at in entries:
            yield (org_bytes, _UINT64.pack(commit_lsn), _INT32.pack(ordinal), table.encode(), operation.encode(),
                   row_id, committed_at)


def _binary_copy(rows: Iterable[tuple[bytes | None, ...]]) -> bytes:
    """Rows of binary values as a COPY ... (FORMAT BINARY) stream."""
    parts = [_COPY_HEADER]
    for row in rows:
        parts.append(_INT16.pack(len(row)))
        parts.extend(_NULL if value is None else _INT32.pack(len(value)) + value for value in row)
    parts.append(_COPY_TRAILER)
    return b"".join(parts)


def capture_and_mark(conn: psycopg.Connection, cursor: str | None, wait_seconds: float, redis: RedisResource,
                     log) -> tuple[CapturedChanges, int]:
    """Read the changes after the stored position (waiting up to
    `wait_seconds` for the first), mark pending what they affect and push the
    changed organizations' activity feed (Redis out of reach: a warning);
    the changes, and the (rollup, organization, day) marked."""
    changes = read_changes(conn, cursor, CAPTURED_COLUMNS, wait_seconds)
    marked = record(conn, changes, *partition_days())
    if organizations := sorted(changes.activity):
        try:
            pushed = push_activity(conn, redis.cache(), organizations)
            log.info(f"activity feed: {pushed} pages for {len(organizations)} organizations")
        except cache.UNAVAILABLE as error:
            log.warning(f"activity feed not pushed, Redis unavailable: {error}")
    return changes, marked


def push_activity(conn: psycopg.Connection, store: cache.DashboardCache, organizations: list[str]) -> int:
    """Write `dashboard:activity:{org}:{page}` for each organization; returns pages written."""
    entries = [
        cache.Entry(org, store.keys.activity(org, number), {"organization_id": org, "page": number, "items": items},
                    cache.TTL_SECONDS["activity"])
        for org, pages in activity_pages(conn, organizations, ACTIVITY_PAGE_SIZE, ACTIVITY_PAGES).items()
        for number, items in enumerate(pages, start=1)
    ]
    return store.write(entries)


def full_refresh(changes: CapturedChanges) -> FullRefresh | None:
    """What must be refreshed over every day of every organization: everything
    after a capture restart, a truncated table's rollups (with the undated
    assets) after a TRUNCATE, which names no rows; None otherwise."""
    if changes.restart_reason:
        return FullRefresh(FULL_REFRESH)
    if changes.truncated:
        rollups = sorted({r for t in changes.truncated for r in ROLLUPS_BY_TABLE[t]})
        return FullRefresh((*rollups, *undated_assets(changes)))
    return None


def activity_pages(conn: psycopg.Connection, organizations: list[str], page_size: int,
                   pages: int) -> dict[str, list[list]]:
    """The activity feed of each organization: its newest changes, newest
    first, split into pages (one empty page when it has none)."""
    feed: dict[str, list[dict]] = {org: [] for org in organizations}
    with conn.cursor(binary=True) as cur:
        rows = cur.execute(load_sql(_SQL, "activity_feed.sql"),
                           {"organizations": organizations, "per_organization": page_size * pages}).fetchall()
    for org, table, operation, row_id, changed_at in rows:
        feed[str(org)].append({"table": table, "operation": operation, "row_id": str(row_id),
                               "changed_at": changed_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")})
    return {org: [items[i:i + page_size] for i in range(0, len(items), page_size)] or [[]]
            for org, items in feed.items()}

"""The hybrid read path: full dashboard metrics for an organization and a
date range, as `dashboard_metrics()` and `dashboard-assets metrics`.

Redis first. On a miss, one call of the SQL function
dashboard.dashboard_metrics (migrations/dashboard_metrics.sql): the days
before the organization's today from the rollups, today live from the source
tables (the rollup SQL narrowed to one organization and day), the
current-state snapshot, merged exactly (sums, distinct customers over the
whole range, win rate as a ratio of sums); then cached with its TTL. With
Redis down it still answers from PostgreSQL: any error of the cache is the
cache's, never the read's. Besides redis.RedisError, a Redis Cluster client
raises RedisClusterException (no node reachable, a slot without a master),
and, shared by threads while it re-reads the cluster's layout after a
failover, errors of a socket another thread has just closed.
"""

import datetime as dt
import logging
import time
from typing import Any

import psycopg

from dashboard_assets import cache
from dashboard_assets.db import autocommit_connection
from dashboard_assets.read_stats import record_read

log = logging.getLogger(__name__)

EARLIEST_DATE = dt.date(2000, 1, 1)
MAX_RANGE_DAYS = 5 * 366


class InvalidRequest(ValueError):
    """A request the read path refuses: malformed id or dates, absurd range."""


class UnknownOrganization(LookupError):
    """No organization has this id."""


def validate_request(org: object, date_from: object, date_to: object) -> tuple[str, dt.date, dt.date]:
    """The request's canonical organization id and dates, or InvalidRequest."""
    try:
        org = cache.organization_id(org)
        date_from, date_to = cache.iso_date(date_from), cache.iso_date(date_to)
    except cache.InvalidKeyPart as error:
        raise InvalidRequest(str(error)) from None
    if date_from > date_to:
        raise InvalidRequest(f"date_from {date_from} is after date_to {date_to}")
    if date_from < EARLIEST_DATE or date_to > dt.date.today() + dt.timedelta(days=366):
        raise InvalidRequest(f"range {date_from}..{date_to} is outside {EARLIEST_DATE}..one year from today")
    if (date_to - date_from).days + 1 > MAX_RANGE_DAYS:
        raise InvalidRequest(f"range {date_from}..{date_to} is longer than {MAX_RANGE_DAYS} days")
    return org, date_from, date_to


def dashboard_metrics(
    org: object,
    date_from: object,
    date_to: object,
    *,
    database_url: str,
    dashboard_cache: cache.DashboardCache | None,
    as_of: dt.datetime | None = None,
) -> dict[str, Any]:
    """Full metrics for [date_from, date_to]: from Redis, else computed and cached."""
    org, date_from, date_to = validate_request(org, date_from, date_to)
    began = time.perf_counter()
    key = dashboard_cache.keys.metrics(org, date_from, date_to) if dashboard_cache else None
    looked_up = None
    if dashboard_cache:
        try:
            cached = dashboard_cache.get(key)
            looked_up = time.perf_counter()
            if cached is not None:
                _record(dashboard_cache, "hit", began, looked_up)
                return cached
        except Exception as error:  # noqa: BLE001 - see the module's docstring
            log.warning("Redis unavailable, reading from PostgreSQL: %s: %s", type(error).__name__, error)
    asked = time.perf_counter()
    with autocommit_connection(database_url) as conn:  # one statement, one snapshot
        value = compute_metrics(conn, org, date_from, date_to, as_of=as_of)
    answered = time.perf_counter()
    if dashboard_cache:
        try:
            dashboard_cache.write([cache.Entry(org, key, value, cache.TTL_SECONDS["metrics"])])
            _record(dashboard_cache, "miss", began, looked_up, answered - asked)
        except Exception as error:  # noqa: BLE001 - see the module's docstring
            log.warning("Redis unavailable, answer not cached: %s: %s", type(error).__name__, error)
    return value


def _record(dashboard_cache: cache.DashboardCache, outcome: str, began: float, looked_up: float | None,
            database_seconds: float | None = None) -> None:
    record_read(dashboard_cache, outcome, time.perf_counter() - began,
                cache_seconds=None if looked_up is None else looked_up - began, database_seconds=database_seconds)


def organization_today(conn: psycopg.Connection, org: str, as_of: dt.datetime | None = None) -> dt.date:
    """The organization's local date at `as_of` (now), or UnknownOrganization."""
    row = conn.execute(
        "SELECT today FROM dashboard.organization_today(%s) WHERE organization_id = %s", (as_of, org)
    ).fetchone()
    if row is None:
        raise UnknownOrganization(f"no organization {org}")
    return row[0]


def compute_metrics(
    conn: psycopg.Connection, org: str, date_from: dt.date, date_to: dt.date, *, as_of: dt.datetime | None = None
) -> dict[str, Any]:
    """Full metrics computed in PostgreSQL (no cache): one call of
    dashboard.dashboard_metrics, the SQL function any dashboard can call."""
    try:
        (value,) = conn.execute("SELECT dashboard.dashboard_metrics(%s, %s, %s, %s)",
                                (org, date_from, date_to, as_of)).fetchone()
    except psycopg.errors.NoDataFound as error:
        raise UnknownOrganization(error.diag.message_primary) from None
    except psycopg.errors.InvalidParameterValue as error:
        raise InvalidRequest(error.diag.message_primary) from None
    return value

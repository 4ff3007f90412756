"""The hybrid read path: full dashboard metrics for an organization and a
date range, as `dashboard_metrics()` and `dashboard-assets metrics`.

Redis first. On a miss: the days before the organization's today from the
rollups, today live from the source tables (the rollup SQL narrowed to one
organization and day), the current-state snapshot, merged exactly (sums,
distinct customers over the whole range, win rate as a ratio of sums), then
cached with its TTL. With Redis down it still answers from PostgreSQL.
"""

import datetime as dt
import logging
import time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import psycopg
import redis

from dashboard_assets import cache
from dashboard_assets.db import fetch_one, load_sql, raw_connection, snapshot
from dashboard_assets.read_stats import record_read
from dashboard_assets.rollups.refresh import query_params

log = logging.getLogger(__name__)

EARLIEST_DATE = dt.date(2000, 1, 1)
MAX_RANGE_DAYS = 5 * 366
_ROLLUP_SQL = "dashboard_assets.rollups.sql"


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
    if dashboard_cache:
        try:
            if (cached := dashboard_cache.get(key)) is not None:
                _record(dashboard_cache, "hit", began)
                return cached
        except redis.RedisError as error:
            log.warning("Redis unavailable, reading from PostgreSQL: %s", error)
    with raw_connection(database_url) as conn, snapshot(conn):
        value = compute_metrics(conn, org, date_from, date_to, as_of=as_of)
    if dashboard_cache:
        try:
            dashboard_cache.write([cache.Entry(org, key, value, cache.TTL_SECONDS["metrics"])])
            _record(dashboard_cache, "miss", began)
        except redis.RedisError as error:
            log.warning("Redis unavailable, answer not cached: %s", error)
    return value


def _record(dashboard_cache: cache.DashboardCache, outcome: str, began: float) -> None:
    record_read(dashboard_cache, outcome, time.perf_counter() - began)


def organization_today(conn: psycopg.Connection, org: str, as_of: dt.datetime | None = None) -> dt.date:
    """The organization's local date at `as_of` (now), or UnknownOrganization."""
    row = conn.execute(
        "SELECT today FROM dashboard.organization_today(%s) WHERE organization_id = %s", (as_of, org)
    ).fetchone()
    if row is None:
        raise UnknownOrganization(f"no organization {org}")
    return row[0]


def compute_metrics(
    conn: psycopg.Connection,
    org: str,
    date_from: dt.date,
    date_to: dt.date,
    *,
    as_of: dt.datetime | None = None,
    today: dt.date | None = None,
) -> dict[str, Any]:
    """Full metrics computed from PostgreSQL (no cache), on one connection.
    `today` is the organization's local date at `as_of`, looked up when not given."""
    today = today or organization_today(conn, org, as_of)
    past_to = min(date_to, today - dt.timedelta(days=1))
    totals = {"revenue": Decimal(0), "kwh_deployed": Decimal(0), "delivered_orders": 0,
              "warranty_claims": 0, "won_count": 0, "closed_opportunities": 0}
    if date_from <= past_to:
        past = fetch_one(
            conn,
            "SELECT * FROM dashboard.range_totals(%(org)s, %(date_from)s, %(past_to)s)",
            {"org": org, "date_from": date_from, "past_to": past_to},
        )
        for name in totals:
            totals[name] += past[name]
    today_customers: list[str] = []
    if date_from <= today <= date_to:
        params = query_params(today, today, [org])
        live = {
            **fetch_one(conn, load_sql(_ROLLUP_SQL, "daily_metrics.sql"), params),
            **fetch_one(conn, load_sql(_ROLLUP_SQL, "daily_pipeline.sql"), params),
            **fetch_one(conn, load_sql(_ROLLUP_SQL, "daily_warranty.sql"), params),
        }
        live["warranty_claims"] = live["total_claims"]
        for name in totals:
            totals[name] += live[name]
        today_customers = [row[2] for row in conn.execute(load_sql(_ROLLUP_SQL, "daily_customers.sql"), params)]
    customers = conn.execute(
        """
        SELECT count(DISTINCT customer_id) FROM (
            SELECT customer_id FROM dashboard.daily_customers
            WHERE organization_id = %(org)s AND metric_date BETWEEN %(date_from)s AND %(past_to)s
            UNION ALL
            SELECT unnest(%(today_customers)s::uuid[])
        ) range_customers
        """,
        {"org": org, "date_from": date_from, "past_to": past_to, "today_customers": today_customers},
    ).fetchone()[0]
    state = conn.execute(
        "SELECT active_installations, current_pipeline FROM dashboard.current_state WHERE organization_id = %s",
        (org,),
    ).fetchone()
    return {
        "organization_id": org,
        "date_from": date_from.isoformat(),
        "date_to": date_to.isoformat(),
        "revenue": rounded(totals["revenue"], 2),
        "kwh_deployed": rounded(totals["kwh_deployed"], 3),
        "quote_win_rate": (
            rounded(Decimal(totals["won_count"]) / totals["closed_opportunities"], 4)
            if totals["closed_opportunities"] else None
        ),
        "active_installations": state[0] if state else None,
        "warranty_claims": int(totals["warranty_claims"]),
        "pipeline": rounded(state[1], 2) if state else None,
        "customers": customers,
        "delivered_orders": int(totals["delivered_orders"]),
        "computed_at": utc_now_iso(),
    }


def rounded(value: Decimal | int, places: int) -> float:
    """Half away from zero to `places` decimals, as PostgreSQL's round()."""
    return float(Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def utc_now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


"""Storing a per-organization JSON value in its table, and publishing it."""

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from psycopg import sql

from dashboard_assets.cache import DashboardCache, Entry
from dashboard_assets.db import copy_query_into, raw_connection, snapshot
from dashboard_assets.scope import ORGANIZATIONS_FILTER

SCHEMA = "dashboard"
_TABLE_LOCK = "SELECT true FROM pg_advisory_xact_lock(hashtext(%s))"
_TABLE_LOCK_IF_FREE = "SELECT pg_try_advisory_xact_lock(hashtext(%s))"


class TableBusy(RuntimeError):
    """Another transaction is replacing rows of the table."""


def replace_table(
    query: str | sql.Composable,
    params: Mapping[str, Any],
    *,
    source_url: str,
    target_url: str,
    table: str,
    where: sql.Composable | None = None,
    wait: bool = True,
) -> int:
    """Replace the rows of `table` of the organizations `params["organization_ids"]`
    names (every organization when None), and of those only the rows matching
    `where`, by the rows of `query` run on the source, in one transaction;
    returns rows. Writers of a table take turns; with `wait` False, TableBusy
    when another one is at work instead of waiting for it."""
    query_text = query.as_string() if isinstance(query, sql.Composable) else query
    with raw_connection(source_url) as source, raw_connection(target_url) as target:
        with snapshot(source), target.transaction():
            if not target.execute(_TABLE_LOCK if wait else _TABLE_LOCK_IF_FREE, (f"{SCHEMA}.{table}",)).fetchone()[0]:
                raise TableBusy(f"{SCHEMA}.{table} is being replaced by another run")
            delete = sql.SQL("DELETE FROM {} WHERE ").format(sql.Identifier(SCHEMA, table)) + ORGANIZATIONS_FILTER
            target.execute(delete + (sql.SQL(" AND ") + where if where is not None else sql.SQL("")), params)
            return copy_query_into(source, query_text, params, target, f"{SCHEMA}.{table}")


def publish(
    query: str,
    params: Mapping[str, Any],
    *,
    database_url: str,
    cache: DashboardCache,
    key: Callable[[str], str],
    ttl_seconds: int,
) -> list[tuple[str, Any]]:
    """Write each (organization_id, payload, ...) row of `query` to Redis under
    `key(organization_id)`; returns the (organization_id, payload) pairs written."""
    with raw_connection(database_url) as conn:
        rows = [(str(org), payload) for org, payload, *_ in conn.execute(query, params)]
        conn.rollback()
    cache.write(Entry(org, key(org), payload, ttl_seconds) for org, payload in rows)
    return rows


def payload_query(table: str) -> str:
    """The stored values of a per-organization analytics table, of the
    organizations `organization_ids` names (every one when NULL)."""
    query = sql.SQL("SELECT organization_id, payload FROM {} WHERE ").format(sql.Identifier(SCHEMA, table))
    return (query + ORGANIZATIONS_FILTER).as_string()


def parse_as_of(value: str) -> dt.datetime | None:
    """The run config's `as_of` (ISO-8601 with an offset), or None for now."""
    if not value:
        return None
    instant = dt.datetime.fromisoformat(value)
    if instant.tzinfo is None:
        raise ValueError(f"as_of must carry a UTC offset, got {value!r}")
    return instant

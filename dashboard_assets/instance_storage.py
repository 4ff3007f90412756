"""Dagster's instance storage on PostgreSQL, with its connections held open.

dagster-postgres opens a new connection for every statement outside the
webserver (a new server process each time, a few milliseconds): a
change-driven run writes about 80 events and opens about 170 connections,
which is most of its time in Dagster. This storage is the same tables and
statements on pooled connections: one kept open per storage and process,
more opened when threads need them (and closed when they are done), each
checked before use so that a restarted server costs nothing but a reconnect.
"""

from typing import Any

from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

KEPT_OPEN = 1  # per storage (runs, events, schedules) and process
MORE_WHEN_BUSY = 10
RECYCLE_SECONDS = 3600


class PooledPostgresStorage(DagsterPostgresStorage):
    """`DagsterPostgresStorage` (same configuration) on pooled connections."""

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True, inst_data: Any = None,
                 token_provider: Any = None):
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        for storage in (self._run_storage, self._event_log_storage, self._schedule_storage):
            storage._engine.dispose()
            storage._engine = create_pg_engine(
                postgres_url, token_provider, isolation_level="AUTOCOMMIT", pool_size=KEPT_OPEN,
                max_overflow=MORE_WHEN_BUSY, pool_recycle=RECYCLE_SECONDS, pool_pre_ping=True,
            )

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> "PooledPostgresStorage":
        return cls(
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            inst_data=inst_data,
            token_provider=get_token_provider_from_config(config_value),
        )

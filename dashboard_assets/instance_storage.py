"""Dagster's instance storage on PostgreSQL, with its connections held open.

dagster-postgres opens a new connection for every statement outside the
webserver (a new server process each time, a few milliseconds): a
change-driven run writes about 80 events and opens about 170 connections,
which is most of its time in Dagster. This storage is the same tables and
statements on pooled connections: one kept open per storage and process,
more opened when threads need them (and closed when they are done), each
checked before use so that a restarted server costs nothing but a reconnect.
"""

import logging
import os
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage
from dagster._core.storage.base_storage import DagsterStorage
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

KEPT_OPEN = 1  # per storage (runs, events, schedules) and process
MORE_WHEN_BUSY = 10
RECYCLE_SECONDS = 3600
# Where the instance keeps runs, events and schedules without a PostgreSQL URL.
LOCAL_STORAGE = Path(__file__).resolve().parent.parent / ".local" / "dagster-local"


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


class ProjectStorage(DagsterStorage):
    """The storage `dagster.yaml` names: PooledPostgresStorage on the database
    of the environment variable `postgres_url_env` (DAGSTER_POSTGRES_URL).
    Without that variable, Dagster's own local storage (SQLite files under
    .local/dagster-local), with a warning, as any Dagster project has it: so
    that `dg check defs`, `dg list defs` and `dg dev` work from a fresh clone.
    A deployment sets the variable; `dashboard-assets check` names it a
    blocker when it is not set. Never instantiated: its configuration makes
    one of those two storages."""

    @classmethod
    def config_type(cls) -> dict:
        return {"postgres_url_env": dg.Field(str, is_required=False, default_value="DAGSTER_POSTGRES_URL")}

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> DagsterPostgresStorage | DagsterSqliteStorage:
        variable = config_value["postgres_url_env"]
        if url := os.environ.get(variable):
            return PooledPostgresStorage(postgres_url=url, inst_data=inst_data)
        logging.getLogger(__name__).warning(
            f"{variable} is not set: runs, events and schedules are kept in SQLite files under {LOCAL_STORAGE} "
            "(a local try-out only; a deployment sets it)")
        return DagsterSqliteStorage.from_local(str(LOCAL_STORAGE), inst_data=inst_data)

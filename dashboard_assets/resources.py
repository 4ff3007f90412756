"""Dagster resources: PostgreSQL (target and optional read replica) and Redis."""

import functools
import os
from collections.abc import Mapping

import dagster as dg
import redis

from dashboard_assets import settings
from dashboard_assets.cache import DashboardCache
from dashboard_assets.replica import wait_for_source


class PostgresResource(dg.ConfigurableResource):
    """The target database (rollups, change log) and the source it reads from.

    The source defaults to the target; point `source_database_url` at a read
    replica to keep refresh reads off the primary. A step waits up to
    `source_replay_timeout_seconds` for the replica to replay what its run
    must see.
    """

    database_url: str
    source_database_url: str = ""
    source_replay_timeout_seconds: int = settings.DEFAULT_SOURCE_REPLAY_TIMEOUT_SECONDS

    @property
    def source_url(self) -> str:
        return self.source_database_url or self.database_url

    def source_url_for_run(self, run_tags: Mapping[str, str]) -> str:
        """The source's URL, once the source has replayed everything the run
        with these tags must see (replica.py)."""
        wait_for_source(self.source_url, self.database_url, run_tags, self.source_replay_timeout_seconds)
        return self.source_url


class RedisResource(dg.ConfigurableResource):
    """The Redis server the dashboard reads, and the prefix of every key."""

    url: str
    prefix: str = settings.DEFAULT_REDIS_PREFIX

    def client(self) -> redis.Redis:
        return _redis_client(self.url)

    def cache(self) -> DashboardCache:
        return DashboardCache(self.client(), self.prefix)


@functools.cache
def _redis_client(url: str) -> redis.Redis:
    """One pooled client per URL and process; short timeouts so that a Redis
    outage fails fast instead of stalling a run."""
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30)


def _env_or_default(name: str, default: str | int, env_var=dg.EnvVar) -> dg.EnvVar | str | int:
    """`env_var(name)` when the variable is set (its value then never shows in
    the UI), else a non-secret default."""
    return env_var(name) if os.environ.get(name) else default


def build_resources() -> dict[str, dg.ConfigurableResource]:
    """The resources of the operating contract, bound to its environment variables."""
    return {
        "postgres": PostgresResource(
            database_url=dg.EnvVar(settings.DATABASE_URL),
            source_database_url=_env_or_default(settings.SOURCE_DATABASE_URL, ""),
            source_replay_timeout_seconds=_env_or_default(settings.SOURCE_REPLAY_TIMEOUT,
                                                          settings.DEFAULT_SOURCE_REPLAY_TIMEOUT_SECONDS,
                                                          dg.EnvVar.int),
        ),
        "redis": RedisResource(
            url=dg.EnvVar(settings.REDIS_URL),
            prefix=_env_or_default(settings.REDIS_PREFIX, settings.DEFAULT_REDIS_PREFIX),
        ),
    }

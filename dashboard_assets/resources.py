"""Dagster resources: PostgreSQL (target and optional read replica), Redis, and
the webhook that alerts go to."""

import functools
import os
from collections.abc import Mapping

import dagster as dg
import redis
from redis.cluster import RedisCluster

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

    def client(self) -> redis.Redis | RedisCluster:
        return _redis_client(self.url)

    def cache(self) -> DashboardCache:
        return DashboardCache(self.client(), self.prefix)


class AlertWebhookResource(dg.ConfigurableResource):
    """Where alerts go: a Slack-compatible incoming webhook (empty: alerts are
    only logged), and the UI's address, from which alerts link to runs."""

    url: str = ""
    ui_url: str = settings.DEFAULT_UI_URL

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.url:
            settings.require_http_url(settings.ALERT_WEBHOOK_URL, self.url)
        settings.require_http_url(settings.UI_URL, self.ui_url)

    def run_link(self, run_id: str) -> str:
        """The run's page in the UI."""
        return f"{self.ui_url.rstrip('/')}/runs/{run_id}"


# The URL schemes of a Redis Cluster, each with the scheme of one of its nodes.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
SERVER_SCHEMES = ("redis", "rediss", "unix")


def redis_client(url: str, **options) -> redis.Redis | RedisCluster:
    """A client for `url`: `redis://`, `rediss://` (TLS) or `unix://` for one server,
    `redis+cluster://` or `rediss+cluster://` for a Redis Cluster, found from
    the node the URL names. Any other scheme is a SettingsError."""
    scheme, separator, rest = url.partition("://")
    if scheme in CLUSTER_SCHEMES:
        return RedisCluster.from_url(f"{CLUSTER_SCHEMES[scheme]}://{rest}", **options)
    if scheme in SERVER_SCHEMES and separator:
        return redis.Redis.from_url(url, **options)
    schemes = ", ".join(f"{name}://" for name in (*SERVER_SCHEMES, *CLUSTER_SCHEMES))
    raise settings.SettingsError(f"{settings.REDIS_URL} must start with one of {schemes}")


@functools.cache
def _redis_client(url: str) -> redis.Redis | RedisCluster:
    """One pooled client per URL and process; short timeouts so that a Redis
    outage fails fast instead of stalling a run."""
    return redis_client(url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30)


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
        "alert_webhook": AlertWebhookResource(
            url=_env_or_default(settings.ALERT_WEBHOOK_URL, ""),
            ui_url=_env_or_default(settings.UI_URL, settings.DEFAULT_UI_URL),
        ),
    }

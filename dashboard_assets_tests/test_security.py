"""Credentials and tenants: Redis AUTH and TLS work end to end, credentials never
reach a run's events, logs or metadata, and one organization's read never
returns another's cached value."""

import datetime as dt
import json

import dagster as dg
import psycopg
import pytest
import redis
from psycopg import sql

from dashboard_assets import serving
from dashboard_assets.analytics.assets import analytics_assets, dashboard_cache
from dashboard_assets.cache import DashboardCache
from dashboard_assets.db import libpq_url
from dashboard_assets.local_servers import LocalRedis
from dashboard_assets.resources import PostgresResource, RedisResource
from dashboard_assets.rollups.assets import current_state_asset, daily_rollup_assets
from dashboard_assets_tests.conftest import PROJECT_ROOT
from dashboard_assets_tests.helpers import without_computed_at
from dashboard_assets_tests.tls import TlsTerminator

DAY = dt.date(2025, 3, 3)
REDIS_PASSWORD = "r3dis-S3CRET-pw"
DATABASE_PASSWORD = "pg-S3CRET-pw"


def _organizations(database_url: str) -> list[str]:
    with psycopg.connect(libpq_url(database_url)) as conn:
        return [str(org) for (org,) in conn.execute("SELECT id FROM organizations ORDER BY id")]


def test_redis_auth_works_and_a_wrong_password_falls_back_to_postgres(database_url, tmp_path):
    server = LocalRedis(PROJECT_ROOT / ".local" / f"auth-redis-{tmp_path.name}", password=REDIS_PASSWORD)
    try:
        org = _organizations(database_url)[0]
        with_auth = DashboardCache(redis.Redis.from_url(server.url))
        first = serving.dashboard_metrics(org, DAY, DAY, database_url=database_url, dashboard_cache=with_auth)
        assert with_auth.client.exists(with_auth.keys.metrics(org, DAY, DAY))
        wrong = DashboardCache(redis.Redis.from_url(server.url.replace(REDIS_PASSWORD, "wrong")))
        fallback = serving.dashboard_metrics(org, DAY, DAY, database_url=database_url, dashboard_cache=wrong)
        assert without_computed_at(fallback) == without_computed_at(first)
    finally:
        server.stop()


def test_credentials_never_reach_events_logs_or_metadata(database_url, tmp_path):
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE app_user LOGIN SUPERUSER PASSWORD {}").format(sql.Literal(DATABASE_PASSWORD)))
    url_with_password = database_url.replace("postgres:@", f"app_user:{DATABASE_PASSWORD}@")
    server = LocalRedis(PROJECT_ROOT / ".local" / f"auth-redis-{tmp_path.name}", password=REDIS_PASSWORD)
    try:
        resources = {"postgres": PostgresResource(database_url=url_with_password), "redis": RedisResource(url=server.url)}
        with dg.instance_for_test() as instance:
            runs = [
                dg.materialize(daily_rollup_assets, resources=resources, instance=instance,
                               tags={"dagster/asset_partition_range_start": DAY.isoformat(),
                                     "dagster/asset_partition_range_end": DAY.isoformat()}),
                dg.materialize([current_state_asset, *analytics_assets, dashboard_cache],
                               resources=resources, instance=instance),
            ]
            assert all(run.success for run in runs)
            records = instance.get_records_for_run(runs[0].run_id).records + \
                instance.get_records_for_run(runs[1].run_id).records
            text = "\n".join(str(record.event_log_entry) for record in records)
        assert len(records) > 20
        assert DATABASE_PASSWORD not in text and REDIS_PASSWORD not in text
    finally:
        server.stop()


def test_one_organizations_read_never_returns_anothers_cached_value(database_url, redis_url):
    first, second = _organizations(database_url)[:2]
    store = DashboardCache(redis.Redis.from_url(redis_url))
    value_of_first = serving.dashboard_metrics(first, DAY, DAY, database_url=database_url, dashboard_cache=store)
    value_of_second = serving.dashboard_metrics(second, DAY, DAY, database_url=database_url, dashboard_cache=store)
    assert value_of_first["organization_id"] == first and value_of_second["organization_id"] == second
    cached = json.loads(store.client.get(store.keys.metrics(second, DAY, DAY)))
    assert cached["organization_id"] == second
    assert serving.dashboard_metrics(second, DAY, DAY, database_url=database_url, dashboard_cache=store) == cached


def test_rediss_urls_verify_the_certificate_and_carry_auth(database_url, tmp_path):
    """`rediss://` with the CA given in the URL: the pipeline publishes and the
    read path caches over TLS with AUTH; a client that does not trust the
    certificate never talks to Redis, and the read path answers from PostgreSQL."""
    server = LocalRedis(tmp_path / "redis", password=REDIS_PASSWORD)
    terminator = TlsTerminator(server.port, tmp_path / "ca.pem")
    try:
        tls_url = f"rediss://:{REDIS_PASSWORD}@127.0.0.1:{terminator.port}/0"
        trusted = f"{tls_url}?ssl_cert_reqs=required&ssl_ca_certs={tmp_path / 'ca.pem'}"
        resources = {"postgres": PostgresResource(database_url=database_url), "redis": RedisResource(url=trusted)}
        assert dg.materialize([current_state_asset, *analytics_assets], resources=resources).success
        plaintext = DashboardCache(redis.Redis.from_url(server.url))
        org = _organizations(database_url)[0]
        assert plaintext.get(plaintext.keys.targets(org)) is not None  # published through TLS

        over_tls = RedisResource(url=trusted).cache()
        first = serving.dashboard_metrics(org, DAY, DAY, database_url=database_url, dashboard_cache=over_tls)
        assert plaintext.client.exists(plaintext.keys.metrics(org, DAY, DAY))
        assert serving.dashboard_metrics(org, DAY, DAY, database_url=database_url, dashboard_cache=over_tls) == first

        untrusting = DashboardCache(redis.Redis.from_url(f"{tls_url}?ssl_cert_reqs=required"))
        with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            untrusting.client.ping()
        fallback = serving.dashboard_metrics(org, DAY, DAY, database_url=database_url, dashboard_cache=untrusting)
        assert without_computed_at(fallback) == without_computed_at(first)
    finally:
        terminator.close()
        server.stop()

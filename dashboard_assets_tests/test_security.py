"""Credentials and tenants: Redis AUTH and TLS work end to end, credentials never
reach a run's events, logs or metadata, and one organization's read never
returns another's cached value."""

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import redis
import trustme
from psycopg import sql

from dashboard_assets import serving
from dashboard_assets.analytics.assets import analytics_assets, dashboard_cache
from dashboard_assets.cache import DashboardCache
from dashboard_assets.db import libpq_url
from dashboard_assets.local_servers import LocalRedis, LocalRedisCluster, TlsFiles
from dashboard_assets.resources import PostgresResource, RedisResource, redis_client
from dashboard_assets.rollups.assets import current_state_asset, daily_rollup_assets
from dashboard_assets_tests.conftest import PROJECT_ROOT
from dashboard_assets_tests.helpers import without_computed_at

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


@pytest.mark.redis_tls
def test_rediss_urls_verify_the_certificate_and_carry_auth(database_url, tmp_path, redis7_server_executable):
    """A redis-server that accepts only TLS (`--port 0`) and AUTH, its
    certificate issued by a throwaway CA: with that CA given in the
    `rediss://` URL, the pipeline publishes and the read path caches; a client
    trusting another CA is refused with CERTIFICATE_VERIFY_FAILED and reads
    from PostgreSQL; without the password, or without TLS, nothing is served."""
    tls = issue_certificate(tmp_path, "127.0.0.1")
    server = LocalRedis(tmp_path / "redis", password=REDIS_PASSWORD, executable=redis7_server_executable, tls=tls)
    try:
        trusted = f"rediss://:{REDIS_PASSWORD}@127.0.0.1:{server.port}/0?ssl_cert_reqs=required&ssl_ca_certs={tls.ca}"
        resources = {"postgres": PostgresResource(database_url=database_url), "redis": RedisResource(url=trusted)}
        assert dg.materialize([current_state_asset, *analytics_assets], resources=resources).success
        over_tls = RedisResource(url=trusted).cache()
        org = _organizations(database_url)[0]
        assert over_tls.get(over_tls.keys.targets(org)) is not None  # published through TLS
        first = serving.dashboard_metrics(org, DAY, DAY, database_url=database_url, dashboard_cache=over_tls)
        assert over_tls.client.exists(over_tls.keys.metrics(org, DAY, DAY))
        assert serving.dashboard_metrics(org, DAY, DAY, database_url=database_url, dashboard_cache=over_tls) == first

        other_ca = issue_certificate(tmp_path / "other", "127.0.0.1").ca
        wrong_ca = DashboardCache(redis_client(trusted.replace(str(tls.ca), str(other_ca))))
        with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            wrong_ca.client.ping()
        fallback = serving.dashboard_metrics(org, DAY, DAY, database_url=database_url, dashboard_cache=wrong_ca)
        assert without_computed_at(fallback) == without_computed_at(first)

        with pytest.raises(redis.AuthenticationError):
            redis_client(trusted.replace(f":{REDIS_PASSWORD}@", "")).get(over_tls.keys.targets(org))
        with pytest.raises(redis.ConnectionError):
            redis_client(f"redis://:{REDIS_PASSWORD}@127.0.0.1:{server.port}/0", socket_timeout=2).ping()
    finally:
        server.stop()


@pytest.mark.redis_tls
@pytest.mark.redis_cluster
def test_rediss_cluster_urls_reach_a_cluster_over_tls(database_url, tmp_path, redis7_server_executable):
    """A Redis Cluster whose nodes accept only TLS and talk to one another over
    TLS: `rediss+cluster://` with the CA publishes every organization's values
    across the masters and caches reads; a client trusting another CA cannot
    be made (CERTIFICATE_VERIFY_FAILED)."""
    tls = issue_certificate(tmp_path, "127.0.0.1")
    cluster = LocalRedisCluster(tmp_path / "cluster", redis7_server_executable, tls=tls)
    try:
        assert cluster.url.startswith("rediss+cluster://")
        resources = {"postgres": PostgresResource(database_url=database_url), "redis": RedisResource(url=cluster.url)}
        assert dg.materialize([current_state_asset, *analytics_assets], resources=resources).success
        store = RedisResource(url=cluster.url).cache()
        organizations = _organizations(database_url)
        assert all(store.get(store.keys.targets(org)) is not None for org in organizations)
        assert len({store.client.get_node_from_key(store.keys.targets(org)).port for org in organizations}) > 1
        first = serving.dashboard_metrics(organizations[0], DAY, DAY, database_url=database_url, dashboard_cache=store)
        assert store.get(store.keys.metrics(organizations[0], DAY, DAY)) == first

        other_ca = issue_certificate(tmp_path / "other", "127.0.0.1").ca
        with pytest.raises(redis.exceptions.RedisClusterException, match="CERTIFICATE_VERIFY_FAILED"):
            redis_client(cluster.url.replace(str(tls.ca), str(other_ca)))
    finally:
        cluster.stop()


def issue_certificate(folder: Path, host: str) -> TlsFiles:
    """A throwaway CA, and a server certificate for `host` that it issued, as PEM files in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    authority = trustme.CA()
    certificate = authority.issue_cert(host)
    files = TlsFiles(cert=folder / "server.pem", key=folder / "server.key", ca=folder / "ca.pem")
    certificate.cert_chain_pems[0].write_to_path(str(files.cert))
    certificate.private_key_pem.write_to_path(str(files.key))
    authority.cert_pem.write_to_path(str(files.ca))
    return files

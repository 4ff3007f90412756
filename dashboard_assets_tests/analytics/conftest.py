"""One database for the whole module: rollups, snapshot, charts, analytics,
weekly acquisition and the warmed cache, all as of one instant."""

import datetime as dt
from dataclasses import dataclass

import dagster as dg
import pytest
import redis

from dashboard_assets.analytics.assets import analytics_assets, customer_acquisition_cost, dashboard_cache
from dashboard_assets.resources import PostgresResource, RedisResource
from dashboard_assets.rollups.assets import current_state_asset, daily_rollup_assets
from dashboard_assets_tests.conftest import HISTORY_END, HISTORY_START, TEMPLATE_DATABASE
from dashboard_assets_tests.helpers import read_table

# 12:00 UTC is 22:00 in Sydney and 20:00 in Perth on 10 April, and already
# 00:00 on 11 April in Auckland: each organization has its own today.
AS_OF = dt.datetime(2025, 4, 10, 12, 0, tzinfo=dt.UTC)
FIRST_WEEK, LAST_WEEK = dt.date(2025, 1, 6), dt.date(2025, 4, 7)
SERVING_ASSETS = [*analytics_assets, dashboard_cache]


@dataclass
class Served:
    database_url: str
    redis_url: str
    resources: dict

    def organizations(self) -> list[str]:
        query = "SELECT id AS organization_id FROM organizations"
        return read_table(self.database_url, query)["organization_id"].tolist()

    def materialize_serving(self) -> None:
        """The charts, analytics, cache warming and every week of acquisition."""
        config = {"config": {"as_of": AS_OF.isoformat()}}
        run_config = {"ops": {asset.key.path[-1]: config for asset in SERVING_ASSETS}}
        assert dg.materialize(SERVING_ASSETS, resources=self.resources, run_config=run_config).success
        assert dg.materialize(
            [customer_acquisition_cost],
            resources=self.resources,
            run_config={"ops": {"customer_acquisition_cost": config}},
            tags={
                "dagster/asset_partition_range_start": FIRST_WEEK.isoformat(),
                "dagster/asset_partition_range_end": LAST_WEEK.isoformat(),
            },
        ).success


@pytest.fixture(scope="module")
def served(postgres_server, redis_server) -> Served:
    url = postgres_server.create_database(f"served_{id(object())}", template=TEMPLATE_DATABASE)
    redis.Redis.from_url(redis_server.url).flushall()
    resources = {"postgres": PostgresResource(database_url=url), "redis": RedisResource(url=redis_server.url)}
    assert dg.materialize(
        daily_rollup_assets,
        resources=resources,
        tags={
            "dagster/asset_partition_range_start": HISTORY_START.isoformat(),
            "dagster/asset_partition_range_end": HISTORY_END.isoformat(),
        },
    ).success
    assert dg.materialize([current_state_asset], resources=resources).success
    result = Served(url, redis_server.url, resources)
    result.materialize_serving()
    return result

"""Inserts, updates and deletes in the source reach the rollups and the
read path through Redis (a server or a cluster) via the sensor and its change refresh alone,
and equal the pandas computation afterwards."""

import datetime as dt
import uuid

import psycopg

from dashboard_assets import serving
from dashboard_assets.cache import DashboardCache
from dashboard_assets.db import libpq_url
from dashboard_assets.resources import redis_client
from dashboard_assets_tests import reference_analytics as ref
from dashboard_assets_tests.conftest import HISTORY_END, HISTORY_START, on_a_server_and_a_cluster
from dashboard_assets_tests.helpers import (
    assert_rollups_match_reference,
    materialize_days,
    materialize_snapshot,
    run_change_refresh,
    sources,
    tick,
    without_computed_at,
)

MARCH = (dt.date(2025, 3, 1), dt.date(2025, 3, 31))


@on_a_server_and_a_cluster
def test_source_changes_reach_rollups_and_redis(database_url, redis_url):
    assert materialize_days(database_url, HISTORY_START, HISTORY_END).success
    assert materialize_snapshot(database_url).success
    store = DashboardCache(redis_client(redis_url))
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        org, customer, product = conn.execute(
            "SELECT o.organization_id::text, o.customer_id, p.id FROM orders o"
            " JOIN products p ON p.organization_id = o.organization_id AND p.category = 'battery'"
            " ORDER BY o.id LIMIT 1").fetchone()
        before = serving.dashboard_metrics(org, *MARCH, database_url=database_url, dashboard_cache=store)
        assert store.client.exists(store.keys.metrics(org, *MARCH))
        cursor = tick(database_url, redis_url, None).cursor

        order = uuid.uuid4()  # a new delivered order on 15 March, with a battery, installed on 20 March
        created, completed = dt.datetime(2025, 3, 15, 3, tzinfo=dt.UTC), dt.datetime(2025, 3, 20, 3, tzinfo=dt.UTC)
        conn.execute("INSERT INTO orders (id, organization_id, customer_id, status, total_amount, created_at,"
                     " updated_at) VALUES (%s, %s, %s, 'delivered', 5000, %s, %s)", (order, org, customer, created, created))
        conn.execute("INSERT INTO order_items (id, organization_id, order_id, product_id, quantity, unit_price,"
                     " line_total) VALUES (%s, %s, %s, %s, 2, 2500, 5000)", (uuid.uuid4(), org, order, product))
        conn.execute("INSERT INTO jobs (id, organization_id, order_id, customer_id, status, completed_at, created_at,"
                     " updated_at) VALUES (%s, %s, %s, %s, 'completed', %s, %s, %s)",
                     (uuid.uuid4(), org, order, customer, completed, created, completed))
        conn.execute("UPDATE orders SET status = 'cancelled' WHERE id = (SELECT id FROM orders WHERE organization_id = %s"
                     " AND status = 'delivered' AND created_at BETWEEN '2025-03-05' AND '2025-03-25' AND id <> %s"
                     " ORDER BY id LIMIT 1)", (org, order))  # an order of before, not the one just made
        conn.execute("DELETE FROM warranty_claims WHERE id IN (SELECT id FROM warranty_claims WHERE organization_id = %s"
                     " AND created_at BETWEEN '2025-03-05' AND '2025-03-25' ORDER BY id LIMIT 2)", (org,))

    (request,) = tick(database_url, redis_url, cursor).run_requests
    assert request.job_name == "change_refresh"
    assert run_change_refresh(database_url, redis_url).success

    assert_rollups_match_reference(database_url, HISTORY_START, HISTORY_END)
    assert not store.client.exists(store.keys.metrics(org, *MARCH))  # the stale answer is gone
    after = serving.dashboard_metrics(org, *MARCH, database_url=database_url, dashboard_cache=store)
    expected = ref.full_metrics(sources(database_url), org, *MARCH, dt.datetime.now(dt.UTC))
    assert without_computed_at(after) == expected
    assert after["revenue"] != before["revenue"] and after["kwh_deployed"] != before["kwh_deployed"]
    assert store.client.exists(store.keys.activity(org, 1))

"""Each organization's day is taken in its own timezone, midnight included."""

import datetime as dt
import uuid

import psycopg

from dashboard_assets.db import libpq_url
from dashboard_assets_tests.helpers import materialize_days, rollup_rows

ORGANIZATIONS = {  # timezone -> id
    "Pacific/Auckland": "00000000-0000-4000-8000-000000000001",
    "Australia/Perth": "00000000-0000-4000-8000-000000000002",
    None: "00000000-0000-4000-8000-000000000003",  # NULL: Australia/Sydney
}
# 2025-03-04 11:00:00 UTC is 00:00 on 5 March in Auckland (NZDT, +13),
# 19:00 on 4 March in Perth (+8) and 22:00 on 4 March in Sydney (AEDT, +11).
INSTANT = dt.datetime(2025, 3, 4, 11, 0, tzinfo=dt.UTC)
ONE_MICROSECOND = dt.timedelta(microseconds=1)


def _load(database_url: str) -> None:
    with psycopg.connect(libpq_url(database_url)) as conn:
        for timezone, org in ORGANIZATIONS.items():
            conn.execute(
                "INSERT INTO organizations (id, name, timezone) VALUES (%s, %s, %s)", (org, f"org in {timezone}", timezone)
            )
            for created_at in (INSTANT, INSTANT - ONE_MICROSECOND):
                conn.execute(
                    "INSERT INTO orders (id, organization_id, customer_id, status, total_amount, created_at, updated_at)"
                    " VALUES (%s, %s, %s, 'delivered', 100.00, %s, %s)",
                    (uuid.uuid4(), org, uuid.uuid4(), created_at, created_at),
                )


def test_local_midnight_starts_the_organizations_new_day(empty_database_url):
    _load(empty_database_url)
    march_4, march_5 = dt.date(2025, 3, 4), dt.date(2025, 3, 5)
    assert materialize_days(empty_database_url, march_4, march_5).success
    rows = rollup_rows(empty_database_url, "daily_metrics", march_4, march_5)
    delivered = {(r.organization_id, r.metric_date): r.delivered_orders for r in rows.itertuples()}
    auckland, perth, sydney = ORGANIZATIONS.values()
    assert delivered == {
        (auckland, march_4): 1,  # 23:59:59.999999 local
        (auckland, march_5): 1,  # 00:00:00 local exactly
        (perth, march_4): 2,
        (perth, march_5): 0,
        (sydney, march_4): 2,
        (sydney, march_5): 0,
    }

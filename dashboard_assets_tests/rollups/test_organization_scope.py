"""A change-driven refresh replaces only the organizations it names: theirs
equal the pandas computation, and every other organization's rows stay
exactly as they were, values and refreshed_at alike, even where the source
changed under them too."""

import datetime as dt

import pandas as pd
import psycopg

from dashboard_assets.db import libpq_url
from dashboard_assets.rollups.assets import CURRENT_STATE, DAILY_ROLLUPS
from dashboard_assets.rollups.refresh import refresh
from dashboard_assets_tests import reference
from dashboard_assets_tests.helpers import (
    DAILY_KEYS,
    assert_frames_equal,
    materialize_days,
    materialize_snapshot,
    read_table,
    sources,
)

WEEK = (dt.date(2025, 3, 10), dt.date(2025, 3, 16))
TABLES = {  # table -> (reference computation, key columns)
    "daily_metrics": (reference.daily_metrics, DAILY_KEYS),
    "daily_customers": (reference.daily_customers, [*DAILY_KEYS, "customer_id"]),
    "daily_pipeline": (reference.daily_pipeline, DAILY_KEYS),
    "daily_warranty": (reference.daily_warranty, DAILY_KEYS),
    "daily_jobs": (reference.daily_jobs, DAILY_KEYS),
    "current_state": (lambda src, *_: reference.current_state(src), ["organization_id"]),
}


def stored(database_url: str, table: str) -> pd.DataFrame:
    """Every row of a rollup table, with refreshed_at, in key order."""
    keys = TABLES[table][1]
    frame = read_table(database_url, f"SELECT * FROM dashboard.{table}")
    return frame.sort_values(keys).reset_index(drop=True)


def change_two_organizations(database_url: str, named: str, other: str) -> None:
    """One transaction changing every fact table of both organizations in WEEK."""
    in_week = "organization_id = ANY(%(orgs)s::uuid[]) AND created_at >= '2025-03-10' AND created_at < '2025-03-16'"
    with psycopg.connect(libpq_url(database_url)) as conn:
        params = {"orgs": [named, other]}
        conn.execute(f"UPDATE orders SET total_amount = total_amount + 7, status = 'delivered' WHERE {in_week}", params)
        conn.execute(f"UPDATE opportunities SET stage = 'won' WHERE {in_week}", params)
        conn.execute(f"DELETE FROM warranty_claims WHERE {in_week}", params)
        conn.execute(f"UPDATE jobs SET status = 'cancelled' WHERE {in_week}", params)
        conn.execute("DELETE FROM job_time_entries WHERE job_id IN (SELECT id FROM jobs"
                     f" WHERE {in_week})", params)


def test_a_refresh_named_to_one_organization_touches_no_other(database_url):
    assert materialize_days(database_url, *WEEK).success
    assert materialize_snapshot(database_url).success
    named, other, *_ = read_table(database_url, "SELECT id AS organization_id FROM organizations ORDER BY id")[
        "organization_id"]
    before = {table: stored(database_url, table) for table in TABLES}
    change_two_organizations(database_url, named, other)

    for rollup in (*DAILY_ROLLUPS, CURRENT_STATE):
        result = refresh(rollup, source_url=database_url, target_url=database_url,
                         start=WEEK[0] if rollup.daily else None, end=WEEK[1] if rollup.daily else None,
                         organizations=[named])
        assert result.committed and result.organizations == 1, rollup.name

    src = sources(database_url)
    for table, (compute, keys) in TABLES.items():
        after = stored(database_url, table)
        expected = compute(src, *WEEK)
        mine = after[after.organization_id == named].drop(columns=["refreshed_at", "snapshot_at"], errors="ignore")
        assert not mine.empty, table
        assert_frames_equal(mine, expected[expected.organization_id == named], keys)
        untouched = before[table][before[table].organization_id != named].reset_index(drop=True)
        pd.testing.assert_frame_equal(after[after.organization_id != named].reset_index(drop=True), untouched)
    # the other organization changed too, and kept its previous numbers: it was not named
    kept, current = before["daily_metrics"], reference.daily_metrics(src, *WEEK)
    assert (kept[kept.organization_id == other].total_order_value.sum()
            != current[current.organization_id == other].total_order_value.sum())
    with psycopg.connect(libpq_url(database_url)) as conn:
        logged = conn.execute("SELECT organizations FROM dashboard.refresh_log ORDER BY id DESC LIMIT 5").fetchall()
    assert logged == [(1,)] * 5

"""The approach the design document describes, measured beside the pipeline:
its five materialized views refreshed with REFRESH MATERIALIZED VIEW
CONCURRENTLY, the live multi-table dashboard query, and how far the views'
fan-out joins put their numbers from the rollups'."""

import statistics
import time
from pathlib import Path

import psycopg
from psycopg import sql

from bench.read_path import dashboard_requests, organization_ids, summary
from dashboard_assets.db import libpq_url, raw_connection

VIEWS = ("mv_daily_metrics", "mv_daily_pipeline", "mv_daily_warranty", "mv_daily_jobs", "mv_current_state")
_HERE = Path(__file__).resolve().parent

# Whole-history totals per metric: the views' against the rollups'.
_COMPARED = {
    "revenue": ("mv_daily_metrics", "daily_metrics"),
    "kwh_deployed": ("mv_daily_metrics", "daily_metrics"),
    "delivered_orders": ("mv_daily_metrics", "daily_metrics"),
    "pending_orders": ("mv_daily_metrics", "daily_metrics"),
    "total_order_value": ("mv_daily_metrics", "daily_metrics"),
    "active_customers": ("mv_daily_metrics", "daily_metrics"),
    "weighted_pipeline": ("mv_daily_pipeline", "daily_pipeline"),
    "won_count": ("mv_daily_pipeline", "daily_pipeline"),
    "total_claims": ("mv_daily_warranty", "daily_warranty"),
    "total_labor_hours": ("mv_daily_jobs", "daily_jobs"),
}


def measure(url: str, repeat: int, live_calls: int) -> dict:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        began = time.perf_counter()
        conn.execute((_HERE / "baseline.sql").read_text())
        create_seconds = time.perf_counter() - began
        refreshes = []
        for _ in range(repeat):
            began = time.perf_counter()
            for view in VIEWS:
                conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW CONCURRENTLY {}").format(sql.Identifier("baseline", view)))
            refreshes.append(time.perf_counter() - began)
        errors = {metric: _relative_error(conn, metric, view, table) for metric, (view, table) in _COMPARED.items()}

    live_query = (_HERE / "live_dashboard.sql").read_text()
    seconds = []
    with raw_connection(url) as conn:
        for org, date_from, date_to in dashboard_requests(organization_ids(url), live_calls):
            began = time.perf_counter()
            conn.execute(live_query, {"org": org, "date_from": date_from, "date_to": date_to}).fetchone()
            seconds.append(time.perf_counter() - began)
        conn.rollback()
    return {
        "baseline_create_seconds": round(create_seconds, 2),
        "baseline_refresh_concurrently_seconds_median": round(statistics.median(refreshes), 3),
        **summary("live_query", seconds),
        "baseline_relative_error": errors,
    }


def _relative_error(conn: psycopg.Connection, metric: str, view: str, table: str) -> float:
    """(views' total − rollups' total) / rollups' total over the whole history."""
    query = sql.SQL("SELECT (SELECT sum({m}) FROM {v}), (SELECT sum({m}) FROM {t})").format(
        m=sql.Identifier(metric), v=sql.Identifier("baseline", view), t=sql.Identifier("dashboard", table)
    )
    baseline_total, rollup_total = conn.execute(query).fetchone()
    return round(float((baseline_total - rollup_total) / rollup_total), 4) if rollup_total else None

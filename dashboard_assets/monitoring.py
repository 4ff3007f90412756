"""The `dashboard_health` asset: the read path's cache hit rate and latency
(counted by `read_stats`), each rollup's last refresh and the state of change
capture, as numeric metadata that the UI plots over time, with checks that
warn on degradation."""

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg

from dashboard_assets import cache, settings
from dashboard_assets.analytics.assets import AnalyticsConfig
from dashboard_assets.analytics.publish import parse_as_of
from dashboard_assets.automation.freshness import FRESHNESS_WINDOWS
from dashboard_assets.automation.capture import setup_problems, slot_health
from dashboard_assets.automation.changes import CAPTURED_COLUMNS
from dashboard_assets.db import autocommit_connection, raw_connection
from dashboard_assets.read_stats import read_window
from dashboard_assets.resources import PostgresResource, RedisResource
from dashboard_assets.rollups.assets import CURRENT_STATE, DAILY_ROLLUPS
from dashboard_assets.sources import OWNER

MIN_HIT_RATE = 0.8
MIN_READS_FOR_HIT_RATE = 20
READ_P99_BUDGET_MS = 600.0  # the design document's budget for a cold read
# Change capture warns when the sensor is this far behind the WAL, or when it
# restarted (and refreshed everything) within the last day.
CAPTURE_LAG_WARN_BYTES = 256 * 2**20
CAPTURE_RESTART_WINDOW = dt.timedelta(days=1)
BUSINESS_HOURS = range(8, 18)  # Monday to Friday, reporting time


def refresh_ages(database_url: str, now: dt.datetime) -> dict[str, float | None]:
    """Seconds since each rollup's last refresh (None: never refreshed)."""
    with raw_connection(database_url) as conn:
        last = dict(conn.execute("SELECT rollup, max(refreshed_at) FROM dashboard.refresh_log GROUP BY rollup"))
        conn.rollback()
    return {
        rollup.name: round((now - last[rollup.name]).total_seconds(), 1) if rollup.name in last else None
        for rollup in (*DAILY_ROLLUPS, CURRENT_STATE)
    }


def capture_state(database_url: str) -> dict:
    """The replication slot's state, what keeps capture from seeing every
    change, and its restarts within CAPTURE_RESTART_WINDOW."""
    with autocommit_connection(database_url) as conn:
        state = slot_health(conn)
        state["problems"] = setup_problems(conn, list(CAPTURED_COLUMNS))
        state["recent_restarts"] = [reason for (reason,) in conn.execute(
            "SELECT reason FROM dashboard.capture_restarts WHERE restarted_at > now() - %s ORDER BY id",
            (CAPTURE_RESTART_WINDOW,))]
    return state


HIT_RATE = "cache_hit_rate_in_business_hours"
ROLLUPS_FRESH = "rollups_within_freshness"
LATENCY = "read_latency_within_budget"
CAPTURE = "change_capture_is_healthy"


@dg.asset(
    group_name="monitoring",
    kinds={"postgres", "redis"},
    owners=[OWNER],
    deps=[rollup.name for rollup in (*DAILY_ROLLUPS, CURRENT_STATE)],
    check_specs=[
        dg.AssetCheckSpec(HIT_RATE, asset="dashboard_health",
                          description=f"Cache hit rate at least {MIN_HIT_RATE:.0%} in business hours."),
        dg.AssetCheckSpec(ROLLUPS_FRESH, asset="dashboard_health",
                          description="Every rollup refreshed within its freshness window."),
        dg.AssetCheckSpec(LATENCY, asset="dashboard_health",
                          description=f"Read latency p99 within {READ_P99_BUDGET_MS:.0f} ms."),
        dg.AssetCheckSpec(CAPTURE, asset="dashboard_health",
                          description=("Change capture set up (publication, replica identity, wal_level), its slot "
                                       f"reserved and less than {CAPTURE_LAG_WARN_BYTES // 2**20} MB behind, and no "
                                       "restart within the last day.")),
    ],
)
def dashboard_health(config: AnalyticsConfig, postgres: PostgresResource, redis: RedisResource) -> dg.MaterializeResult:
    """Health of the dashboard over the last one to two hours: reads, cache hit rate and read latency
    (p50, p99) from the read path's counters in Redis, seconds since each rollup's last refresh, and
    change capture: how far the change sensor is behind the WAL and how much WAL its slot keeps."""
    now = parse_as_of(config.as_of) or dt.datetime.now(dt.UTC)
    try:
        reads = read_window(redis.cache(), now)
    except cache.UNAVAILABLE:
        reads = {"reads": 0, "cache_hit_rate": None, "read_p50_ms": None, "read_p99_ms": None}
    ages = refresh_ages(postgres.database_url, now)
    local = now.astimezone(ZoneInfo(settings.reporting_timezone()))
    business_hours = local.weekday() < 5 and local.hour in BUSINESS_HOURS
    low_hit_rate = (business_hours and reads["reads"] >= MIN_READS_FOR_HIT_RATE
                    and reads["cache_hit_rate"] is not None and reads["cache_hit_rate"] < MIN_HIT_RATE)
    stale = sorted(name for name, age in ages.items()
                   if age is None or age > FRESHNESS_WINDOWS[name][1].total_seconds())
    slow = reads["read_p99_ms"] is not None and reads["read_p99_ms"] > READ_P99_BUDGET_MS
    capture = capture_state(postgres.database_url)
    capture_healthy = (capture["slot"] in ("reserved", "extended") and not capture["problems"]
                       and not capture["recent_restarts"] and capture["lag_bytes"] < CAPTURE_LAG_WARN_BYTES)
    metadata = {key: value for key, value in reads.items() if value is not None}
    metadata |= {f"seconds_since_refresh_{name}": age for name, age in ages.items() if age is not None}
    metadata |= {f"change_capture_{name}": capture[name] for name in ("lag_bytes", "retained_bytes", "safe_wal_bytes")
                 if capture.get(name) is not None}
    warn = dg.AssetCheckSeverity.WARN
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(check_name=HIT_RATE, passed=not low_hit_rate, severity=warn,
                                metadata={"business_hours": business_hours, "reads": reads["reads"]}),
            dg.AssetCheckResult(check_name=ROLLUPS_FRESH, passed=not stale, severity=warn,
                                metadata={"stale": dg.MetadataValue.json(stale)}),
            dg.AssetCheckResult(check_name=LATENCY, passed=not slow, severity=warn,
                                metadata={"budget_ms": READ_P99_BUDGET_MS}),
            dg.AssetCheckResult(check_name=CAPTURE, passed=capture_healthy, severity=warn,
                                metadata={"slot": capture["slot"], "problems": dg.MetadataValue.json(capture["problems"]),
                                          "recent_restarts": dg.MetadataValue.json(capture["recent_restarts"])}),
        ],
    )

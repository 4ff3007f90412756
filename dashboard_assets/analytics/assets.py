"""The chart and analytics assets: one factory over a table of specs for the
per-organization JSON values, the weekly customer-acquisition asset, and the
cache warming of the read path."""

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg
from psycopg import sql

from dashboard_assets import cache, settings
from dashboard_assets.analytics.preview import PreviewRows, pick, preview_markdown
from dashboard_assets.analytics.publish import parse_as_of, payload_query, publish, replace_table
from dashboard_assets.db import load_sql, raw_connection, snapshot
from dashboard_assets.resources import PostgresResource, RedisResource
from dashboard_assets.retries import POSTGRES_ERRORS, REDIS_ERRORS, retried_on
from dashboard_assets.rollups.assets import CURRENT_STATE, DAILY_ROLLUPS
from dashboard_assets.scope import tagged_organizations
from dashboard_assets.serving import compute_metrics, organization_today
from dashboard_assets.sources import OWNER, source_key
from dashboard_assets.table_schemas import table_metadata

# Either server out of reach: the step is retried. Tables are replaced and
# keys overwritten, so a retry after a partial publish is harmless.
retried_when_unreachable = retried_on(*POSTGRES_ERRORS, *REDIS_ERRORS)

_SQL = "dashboard_assets.analytics.sql"
DAILY_METRICS, DAILY_PIPELINE, DAILY_WARRANTY, _ = (dg.AssetKey(r.name) for r in DAILY_ROLLUPS)
CURRENT_STATE_KEY = dg.AssetKey(CURRENT_STATE.name)


class AnalyticsConfig(dg.Config):
    """`as_of`: compute as of this ISO-8601 instant (with offset) instead of now."""

    as_of: str = ""


@dataclass(frozen=True)
class Analytics:
    """A per-organization JSON value: its SQL, its Redis key, its lineage, and
    the rows of a value its materialization previews."""

    name: str
    description: str
    sql_file: str
    redis_key: Callable[[cache.Keys, str], str]
    deps: tuple[dg.AssetKey, ...]
    preview: PreviewRows
    reads_source: bool = False
    sql_parts: dict[str, sql.Composable] = field(default_factory=dict)

    def query(self) -> sql.Composable:
        return sql.SQL(load_sql(_SQL, self.sql_file)).format(**self.sql_parts)


def _trend(metric: str, scale: int, chart: str) -> Analytics:
    return Analytics(
        name=f"{metric.removesuffix('_deployed')}_trend_12m",
        description=(
            f"Monthly {metric} of the last 12 months per organization (the current month up to today), "
            f"from daily_metrics; Redis `dashboard:charts:{{org}}:{chart}:12m`, 24 h."
        ),
        sql_file="monthly_trend.sql",
        redis_key=lambda keys, org: keys.chart(org, f"{chart}:12m"),
        deps=(DAILY_METRICS,),
        preview=lambda value: pick(value["points"][-3:], "month", metric),  # the latest months
        sql_parts={"metric": sql.Identifier(metric), "label": sql.Literal(metric), "scale": sql.Literal(scale)},
    )


ANALYTICS = (
    _trend("revenue", 2, "revenue_trend"),
    _trend("kwh_deployed", 3, "kwh_trend"),
    Analytics(
        name="yoy_comparison",
        description=(
            "This year to date against the same span last year, per metric (revenue, kWh, delivered orders, "
            "warranty claims, win rate, customers) with the change in percent, from the rollups; Redis "
            "`dashboard:charts:{org}:yoy_comparison`, 24 h."
        ),
        sql_file="yoy_comparison.sql",
        redis_key=lambda keys, org: keys.chart(org, "yoy_comparison"),
        deps=(DAILY_METRICS, DAILY_PIPELINE, DAILY_WARRANTY),
        preview=lambda value: pick([{"metric": name, **figure} for name, figure in value["metrics"].items()],
                                   "metric", "current", "previous", "change_percent"),
    ),
    Analytics(
        name="product_mix_30d",
        description=(
            "Delivered revenue and units per product category over the last 30 days, from the source tables "
            "(the rollups keep no categories); Redis `dashboard:charts:{org}:product_mix:30d`, 15 min."
        ),
        sql_file="product_mix_30d.sql",
        redis_key=lambda keys, org: keys.chart(org, "product_mix:30d"),
        deps=tuple(source_key(t) for t in ("organizations", "orders", "order_items", "products")),
        preview=lambda value: pick(value["categories"], "category", "revenue", "units"),
        reads_source=True,
    ),
    Analytics(
        name="conversion_funnel_90d",
        description=(
            "Opportunities of the last 90 days per stage, how many reached each step of new → qualified → "
            "proposal → negotiation → won, and each step's conversion, from daily_pipeline; Redis "
            "`dashboard:charts:{org}:conversion_funnel:90d`, 15 min."
        ),
        sql_file="conversion_funnel_90d.sql",
        redis_key=lambda keys, org: keys.chart(org, "conversion_funnel:90d"),
        deps=(DAILY_PIPELINE,),
        preview=lambda value: pick(value["conversion"], "from", "to", "rate"),
    ),
    Analytics(
        name="target_progress",
        description=(
            "Each target of the current period with its actual value to date and the percent reached, from "
            "the targets table and the rollups; Redis `dashboard:targets:{org}`, 30 min."
        ),
        sql_file="target_progress.sql",
        redis_key=lambda keys, org: keys.targets(org),
        deps=(source_key("targets"), DAILY_METRICS, DAILY_PIPELINE, DAILY_WARRANTY),
        preview=lambda value: pick(value["targets"], "metric", "period_start", "period_end", "target", "actual",
                                   "percent"),
    ),
    Analytics(
        name="customer_lifetime_value",
        description=(
            "Delivered revenue per paying customer, overall and by acquisition cohort (month), from the "
            "source tables; Redis `dashboard:analytics:{org}:ltv`, 7 days."
        ),
        sql_file="customer_lifetime_value.sql",
        redis_key=lambda keys, org: keys.analytics(org, "ltv"),
        deps=tuple(source_key(t) for t in ("organizations", "customers", "orders", "order_items")),
        preview=lambda value: pick([value], "customers", "mean_ltv"),
        reads_source=True,
    ),
)


def build_analytics_asset(spec: Analytics) -> dg.AssetsDefinition:
    """An asset that replaces `dashboard.<name>` (one JSON value per
    organization) in one transaction, then publishes the values to Redis."""

    @dg.asset(
        name=spec.name,
        description=spec.description,
        group_name="analytics",
        kinds={"postgres", "redis"},
        owners=[OWNER],
        deps=list(spec.deps),
        metadata=table_metadata(spec.name),
    )
    @retried_when_unreachable
    def _analytics(
        context: dg.AssetExecutionContext, config: AnalyticsConfig, postgres: PostgresResource, redis: RedisResource
    ) -> dg.MaterializeResult:
        source_url = postgres.source_url_for_run(context.run.tags) if spec.reads_source else postgres.database_url
        metadata = refresh_analytics(spec, database_url=postgres.database_url, source_url=source_url,
                                     store=redis.cache(), organizations=tagged_organizations(context.run.tags),
                                     as_of=parse_as_of(config.as_of))
        context.log.info(f"{spec.name}: {metadata['organizations']} organizations stored, "
                         f"{metadata['redis_keys_written']} Redis keys written")
        return dg.MaterializeResult(metadata=metadata)

    return _analytics


def refresh_analytics(spec: Analytics, *, database_url: str, source_url: str, store: cache.DashboardCache,
                      organizations: list[str] | None, as_of: dt.datetime | None, wait: bool = True) -> dict:
    """Replace the values of `organizations` (every one when None) in
    `dashboard.<name>` and publish them to Redis; returns the materialization's
    metadata. With `wait` False, TableBusy instead of waiting while another
    run replaces the table."""
    params = {"as_of": as_of, "organization_ids": organizations}
    rows = replace_table(spec.query(), params, source_url=source_url, target_url=database_url, table=spec.name,
                         wait=wait)
    published = publish(
        payload_query(spec.name),
        params,
        database_url=database_url,
        cache=store,
        key=lambda org: spec.redis_key(store.keys, org),
        ttl_seconds=cache.TTL_SECONDS[spec.name],
    )
    return {"organizations": rows, "redis_keys_written": len(published),
            "preview": dg.MetadataValue.md(preview_markdown(published, spec.preview))}


analytics_assets = [build_analytics_asset(spec) for spec in ANALYTICS]
ANALYTICS_BY_NAME = {spec.name: spec for spec in ANALYTICS}


def _first_monday_on_or_after(day: dt.date) -> dt.date:
    return day + dt.timedelta(days=(7 - day.weekday()) % 7)


weekly_partitions_def = dg.WeeklyPartitionsDefinition(
    start_date=_first_monday_on_or_after(settings.history_start()).isoformat(),
    day_offset=1,  # weeks start on Monday
    timezone=settings.reporting_timezone(),
    end_offset=1,
)


@dg.asset(
    group_name="analytics",
    kinds={"postgres", "redis"},
    owners=[OWNER],
    deps=[source_key(t) for t in ("organizations", "marketing_spend", "customers")],
    partitions_def=weekly_partitions_def,
    backfill_policy=dg.BackfillPolicy.single_run(),
    metadata=table_metadata("weekly_customer_acquisition"),
)
@retried_when_unreachable
def customer_acquisition_cost(
    context: dg.AssetExecutionContext, config: AnalyticsConfig, postgres: PostgresResource, redis: RedisResource
) -> dg.MaterializeResult:
    """Customer acquisition cost per organization and week (Monday start): marketing spend, customers
    acquired and spend per new customer, in `dashboard.weekly_customer_acquisition` (weekly partitions,
    so past weeks can be backfilled); Redis `dashboard:analytics:{org}:cac` holds the last 12 weeks, 7 days."""
    key_range = context.partition_key_range
    params = {"start_date": dt.date.fromisoformat(key_range.start), "end_date": dt.date.fromisoformat(key_range.end),
              "as_of": parse_as_of(config.as_of), "organization_ids": None}
    rows = replace_table(
        load_sql(_SQL, "weekly_customer_acquisition.sql"),
        params,
        source_url=postgres.source_url_for_run(context.run.tags),
        target_url=postgres.database_url,
        table="weekly_customer_acquisition",
        where=sql.SQL("week_start BETWEEN %(start_date)s AND %(end_date)s"),
    )
    dashboard_cache = redis.cache()
    published = publish(
        load_sql(_SQL, "customer_acquisition_cost.sql"),
        params,
        database_url=postgres.database_url,
        cache=dashboard_cache,
        key=lambda org: dashboard_cache.keys.analytics(org, "cac"),
        ttl_seconds=cache.TTL_SECONDS["customer_acquisition_cost"],
    )
    latest_weeks = preview_markdown(
        published, lambda value: pick(value["weeks"][-3:], "week_start", "spend", "new_customers", "cac"))
    return dg.MaterializeResult(
        metadata={"dagster/row_count": rows, "first_week": key_range.start, "last_week": key_range.end,
                  "redis_keys_written": len(published), "preview": dg.MetadataValue.md(latest_weeks)}
    )


def warmed_ranges(today: dt.date) -> dict[str, tuple[dt.date, dt.date]]:
    """The ranges the dashboard opens with, for an organization's local today."""
    return {
        "today": (today, today),
        "this_week": (today - dt.timedelta(days=today.weekday()), today),
        "this_month": (today.replace(day=1), today),
        "last_30_days": (today - dt.timedelta(days=29), today),
    }


@dg.asset(
    group_name="serving",
    kinds={"postgres", "redis"},
    owners=[OWNER],
    deps=[DAILY_METRICS, DAILY_PIPELINE, DAILY_WARRANTY, CURRENT_STATE_KEY,
          *(source_key(t) for t in ("orders", "order_items", "jobs", "opportunities", "warranty_claims"))],
)
@retried_when_unreachable
def dashboard_cache(
    context: dg.AssetExecutionContext, config: AnalyticsConfig, postgres: PostgresResource, redis: RedisResource
) -> dg.MaterializeResult:
    """Cache warming: for every organization with activity in the last 30 days, the full metrics of
    today, this_week (Monday start), this_month and last_30_days under `dashboard:{org}:{from}:{to}`, and
    `dashboard:summary:{org}` (month to date beside the previous month), 5 min. In a run the change sensor
    requested, only the changed organizations: their warmed values are overwritten and their other cached
    read-path values deleted, so that a reader never misses a warmed key."""
    metadata = warm_cache(postgres.database_url, redis.cache(), tagged_organizations(context.run.tags),
                          parse_as_of(config.as_of))
    if "keys_invalidated" in metadata:
        context.log.info(f"invalidated {metadata['keys_invalidated']} other keys of the changed organizations")
    context.log.info(f"warmed {metadata['redis_keys_written']} keys for {metadata['organizations']} organizations")
    return dg.MaterializeResult(metadata=metadata)


def warm_cache(database_url: str, store: cache.DashboardCache, changed: list[str] | None,
               as_of: dt.datetime | None) -> dict:
    """Warm the read path's opening ranges and summary of the `changed`
    organizations (their other cached values deleted), or of every
    organization active in the last 30 days when None; returns the
    materialization's metadata."""
    entries = []
    with raw_connection(database_url) as conn, snapshot(conn):
        organizations = changed or [str(row[0]) for row in conn.execute(
            load_sql(_SQL, "active_organizations.sql"), {"as_of": as_of, "organization_ids": None})]
        for org in organizations:
            today = organization_today(conn, org, as_of)
            for date_from, date_to in warmed_ranges(today).values():
                value = compute_metrics(conn, org, date_from, date_to, as_of=as_of)
                entries.append(cache.Entry(org, store.keys.metrics(org, date_from, date_to), value,
                                           cache.TTL_SECONDS["metrics"]))
            entries.append(cache.Entry(org, store.keys.summary(org), summary(conn, org, today, as_of),
                                       cache.TTL_SECONDS["summary"]))
    metadata = {"organizations": len(organizations)}
    if changed:
        warmed = {entry.key for entry in entries}
        metadata["keys_invalidated"] = sum(store.invalidate_metrics(org, keep=warmed) for org in changed)
    metadata["redis_keys_written"] = store.write(entries)
    return metadata


def summary(conn, org: str, today: dt.date, as_of: dt.datetime | None) -> dict:
    """Month to date, with the whole previous month beside it."""
    month_start = today.replace(day=1)
    previous_end = month_start - dt.timedelta(days=1)
    month_to_date = compute_metrics(conn, org, month_start, today, as_of=as_of)
    return {
        "organization_id": org,
        "month_to_date": month_to_date,
        "previous_month": compute_metrics(conn, org, previous_end.replace(day=1), previous_end, as_of=as_of),
        "computed_at": month_to_date["computed_at"],
    }

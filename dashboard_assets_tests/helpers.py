"""Shared test steps: materializing rollups and reading tables back."""

import datetime as dt
import time

import dagster as dg
import pandas as pd
import psycopg
import sqlalchemy as sa

from dashboard_assets.automation.sensors import build_source_changes_sensor
from dashboard_assets.db import engine, libpq_url
from dashboard_assets.resources import PostgresResource, RedisResource
from dashboard_assets.rollups.assets import CURRENT_STATE, DAILY_ROLLUPS, current_state_asset, daily_rollup_assets
from dashboard_assets.rollups.refresh import refresh
from dashboard_assets.scope import tagged_organizations
from dashboard_assets_tests import reference

ROLLUP_ASSETS = [*daily_rollup_assets, current_state_asset]
EXACT_TOLERANCE = 1e-9
# Quotients that need not terminate (means, fractional days): PostgreSQL's
# numeric division and Python's Decimal context stop at different digits.
QUOTIENT_COLUMNS = {"avg_won_deal_size", "avg_labor_hours_per_job", "avg_resolution_days", "resolution_days_sum"}


def materialize_days(database_url: str, start: dt.date, end: dt.date, assets=None, *,
                     postgres: PostgresResource | None = None, tags: dict[str, str] | None = None,
                     **kwargs) -> dg.ExecuteInProcessResult:
    """Materialize the daily rollups for [start, end] in ONE run (a single-run
    backfill), with `postgres` when given (else the database alone as source
    and target) and the run's extra `tags`."""
    range_tags = {
        "dagster/asset_partition_range_start": start.isoformat(),
        "dagster/asset_partition_range_end": end.isoformat(),
    }
    return dg.materialize(
        assets or daily_rollup_assets,
        resources={"postgres": postgres or PostgresResource(database_url=database_url)},
        tags=range_tags | (tags or {}),
        **kwargs,
    )


def materialize_snapshot(database_url: str) -> dg.ExecuteInProcessResult:
    return dg.materialize([current_state_asset], resources={"postgres": PostgresResource(database_url=database_url)})


def execute(database_url: str, statement: str, params=None) -> None:
    """One statement on its own connection, committed."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute(statement, params)


def before_insert_on_daily_metrics(database_url: str, name: str, body: str) -> None:
    """A real PostgreSQL trigger on the rollup table, running `body` (PL/pgSQL
    returning NEW) before each inserted row."""
    execute(
        database_url,
        f"""
        CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} END $$;
        CREATE TRIGGER {name} BEFORE INSERT ON dashboard.daily_metrics FOR EACH ROW EXECUTE FUNCTION {name}();
        """,
    )


def read_table(database_url: str, query: str, **params) -> pd.DataFrame:
    """A query's result with uuids as lower-case text and numerics as Decimal."""
    with engine(database_url).connect() as conn:
        frame = pd.read_sql(sa.text(query), conn, params=params, coerce_float=False)
    for column in frame.columns:
        if column.endswith("_id"):
            frame[column] = frame[column].astype(str)
    return frame


def rollup_rows(database_url: str, table: str, start: dt.date, end: dt.date) -> pd.DataFrame:
    frame = read_table(
        database_url,
        f"SELECT * FROM dashboard.{table} WHERE metric_date BETWEEN :start AND :end",
        start=start,
        end=end,
    )
    return frame.drop(columns=["refreshed_at"], errors="ignore")


def sources(database_url: str) -> reference.Sources:
    with engine(database_url).connect() as conn:
        return reference.load_sources(conn)


def assert_frames_equal(actual: pd.DataFrame, expected: pd.DataFrame, keys: list[str]) -> None:
    """Equal row for row and column by column: exact for integers and
    decimals (money to the cent and beyond), within EXACT_TOLERANCE for quotients."""
    assert sorted(actual.columns) == sorted(expected.columns)
    actual = actual.sort_values(keys).reset_index(drop=True)
    expected = expected[actual.columns].sort_values(keys).reset_index(drop=True)
    assert len(actual) == len(expected), f"{len(actual)} rows, expected {len(expected)}"
    for column in actual.columns:
        for row, (got, want) in enumerate(zip(actual[column], expected[column], strict=True)):
            if want is None or (isinstance(want, float) and pd.isna(want)):
                assert got is None or pd.isna(got), f"{column} row {row} {actual.loc[row, keys].tolist()}: {got!r} != None"
            elif isinstance(want, float) or column in QUOTIENT_COLUMNS:
                assert abs(float(got) - float(want)) <= EXACT_TOLERANCE, f"{column} row {row}: {got!r} != {want!r}"
            else:
                assert got == want, f"{column} row {row} {actual.loc[row, keys].tolist()}: {got!r} != {want!r}"


DAILY_KEYS = ["organization_id", "metric_date"]


def assert_rollups_match_reference(database_url: str, start: dt.date, end: dt.date, rollups=None) -> None:
    """Every daily rollup table (or those of the named `rollups`) over [start,
    end] equals the pandas reference."""
    src = sources(database_url)
    for rollup, table, compute, keys in [
        ("daily_metrics", "daily_metrics", reference.daily_metrics, DAILY_KEYS),
        ("daily_metrics", "daily_customers", reference.daily_customers, [*DAILY_KEYS, "customer_id"]),
        ("daily_pipeline", "daily_pipeline", reference.daily_pipeline, DAILY_KEYS),
        ("daily_warranty", "daily_warranty", reference.daily_warranty, DAILY_KEYS),
        ("daily_jobs", "daily_jobs", reference.daily_jobs, DAILY_KEYS),
    ]:
        if rollups is None or rollup in rollups:
            assert_frames_equal(rollup_rows(database_url, table, start, end), compute(src, start, end), keys)


def wait_for(condition, timeout: float, what: str):
    """The first true value of `condition()`, polled every 50 ms for up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise TimeoutError(f"{what} within {timeout} s")


def retry_events(instance: dg.DagsterInstance) -> list[dg.EventLogEntry]:
    """Every step of the instance's runs that was put up for a retry."""
    return [event for run in instance.get_runs() for event in instance.all_logs(run.run_id)
            if event.dagster_event and event.dagster_event.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]


def without_computed_at(value: dict) -> dict:
    """A read-path answer without the instant it was computed at."""
    return {k: v for k, v in value.items() if k != "computed_at"}


# The change sensor as deployed, but answering at once when nothing changed.
_SENSOR_WITHOUT_WAITING = build_source_changes_sensor(wait_seconds=0)


def tick(database_url: str, redis_url: str, cursor: str | None, sensor=_SENSOR_WITHOUT_WAITING,
         source_url: str = "") -> dg.SensorResult:
    """One evaluation of the change sensor from `cursor`, as a fresh process
    would run it (with the source at `source_url` when given)."""
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance,
            cursor=cursor,
            resources={"postgres": PostgresResource(database_url=database_url, source_database_url=source_url),
                       "redis": RedisResource(url=redis_url)},
        )
        return sensor(context)


def ranges(result: dg.SensorResult) -> list[tuple[str, str, list[str]]]:
    """Each run request's (first day, last day, asset names), sorted."""
    return sorted(
        (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"],
         sorted(k.to_user_string() for k in r.asset_selection))
        for r in result.run_requests
    )


_ROLLUPS_BY_NAME = {rollup.name: rollup for rollup in DAILY_ROLLUPS}


def refresh_what_the_sensor_requests(database_url: str, redis_url: str, cursor: str) -> str:
    """One sensor tick, then each requested run's rollups refreshed over its
    range for its organizations (what the run's steps do, without the run);
    returns the new cursor."""
    result = tick(database_url, redis_url, cursor)
    for request in result.run_requests:
        start = request.tags.get("dagster/asset_partition_range_start")
        end = request.tags.get("dagster/asset_partition_range_end")
        organizations = tagged_organizations(request.tags)
        for key in request.asset_selection:
            name = key.to_user_string()
            if name in _ROLLUPS_BY_NAME:
                outcome = refresh(_ROLLUPS_BY_NAME[name], source_url=database_url, target_url=database_url,
                                  start=dt.date.fromisoformat(start), end=dt.date.fromisoformat(end),
                                  organizations=organizations)
                assert outcome.committed, (name, start, end, outcome.mismatches)
        assert refresh(CURRENT_STATE, source_url=database_url, target_url=database_url,
                       organizations=organizations).committed
    return result.cursor

"""Shared test steps: materializing rollups and reading tables back."""

import contextlib
import datetime as dt
import os
import signal
import subprocess
import time

import dagster as dg
import pandas as pd
import psycopg
import sqlalchemy as sa

from dashboard_assets.automation.change_refresh import change_refresh_job, pending_work, refresh_pending
from dashboard_assets.automation.sensors import build_source_changes_sensor
from dashboard_assets.db import engine, libpq_url
from dashboard_assets.resources import PostgresResource, RedisResource
from dashboard_assets.rollups.assets import RECONCILES_WITH_SOURCE, current_state_asset, daily_rollup_assets
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


def backends_sleeping_in_a_trigger(database_url: str) -> list[int]:
    """The sessions of the database sleeping in pg_sleep (a trigger holding them)."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        return [pid for (pid,) in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'PgSleep'")]


def backends_alive(database_url: str, pids: list[int]) -> bool:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        return conn.execute("SELECT count(*) > 0 FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchone()[0]


def stop_process_group(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM to a process started in a session of its own and its group, as a
    service manager stops it; SIGKILL after `timeout` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


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
         source_url: str = "", instance: dg.DagsterInstance | None = None) -> dg.SensorResult:
    """One evaluation of the change sensor from `cursor`, as a fresh process
    would run it (with the source at `source_url`, and on `instance`, when given)."""
    with contextlib.nullcontext(instance) if instance else dg.instance_for_test() as on_instance:
        context = dg.build_sensor_context(
            instance=on_instance,
            cursor=cursor,
            resources={"postgres": PostgresResource(database_url=database_url, source_database_url=source_url),
                       "redis": RedisResource(url=redis_url)},
        )
        return sensor(context)


def pending_days(database_url: str) -> dict[str, dict[dt.date, set[str]]]:
    """What the change sensor left pending: per rollup, the organizations of each day."""
    with psycopg.connect(libpq_url(database_url)) as conn:
        return pending_work(conn).days


def pending_organizations(database_url: str) -> dict[str, set[str]]:
    """What the change sensor left pending: per undated asset, its organizations."""
    with psycopg.connect(libpq_url(database_url)) as conn:
        return pending_work(conn).organizations


def refresh_pending_now(database_url: str, redis_url: str | None = None, source_url: str = "") -> list:
    """One pass of the change refresh over everything pending (what a
    change_refresh run does, without the run); its events. Without
    `redis_url` what publishes to Redis stays pending."""
    postgres = PostgresResource(database_url=database_url, source_database_url=source_url)
    return list(refresh_pending(postgres, RedisResource(url=redis_url) if redis_url else None))


def run_change_refresh(database_url: str, redis_url: str, postgres: PostgresResource | None = None,
                       **kwargs) -> dg.ExecuteInProcessResult:
    """A change_refresh run as the sensor requests it (with `postgres` when
    given), ending after one pass."""
    return change_refresh_job.execute_in_process(
        run_config={"ops": {"refresh_pending_changes": {"config": {"idle_seconds": 0}}}},
        resources={"postgres": postgres or PostgresResource(database_url=database_url),
                   "redis": RedisResource(url=redis_url)},
        **kwargs)


def refresh_what_the_sensor_requests(database_url: str, redis_url: str, cursor: str) -> str:
    """One sensor tick, then one pass of the change refresh over what it left
    pending (its rollups and snapshot); returns the new cursor."""
    result = tick(database_url, redis_url, cursor)
    for event in refresh_pending_now(database_url, redis_url):
        if isinstance(event, dg.AssetCheckEvaluation) and event.check_name == RECONCILES_WITH_SOURCE:
            assert event.passed, event
    return result.cursor

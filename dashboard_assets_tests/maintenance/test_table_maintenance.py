"""Table maintenance on real tables: a bloated rollup index is rebuilt smaller
and a freshly built one is left alone; with a refresh and a reader holding
their tables and snapshots, maintenance postpones what it cannot lock in time,
both go on, and no row of any rollup changes."""

import threading
import time

import dagster as dg
import psycopg

from dashboard_assets.db import libpq_url
from dashboard_assets.maintenance.assets import table_maintenance
from dashboard_assets.resources import PostgresResource
from dashboard_assets.rollups.assets import DAILY_ROLLUPS
from dashboard_assets.rollups.refresh import refresh
from dashboard_assets_tests.conftest import HISTORY_END, HISTORY_START
from dashboard_assets_tests.helpers import materialize_days, read_table

ROLLUP_TABLES = ("daily_metrics", "daily_customers", "daily_pipeline", "daily_warranty", "daily_jobs")
DAILY_PIPELINE = next(rollup for rollup in DAILY_ROLLUPS if rollup.name == "daily_pipeline")
# Days past the generated history: rows of the rollups' shape that no refresh of the history touches.
EXTRA_DAYS = {"first": "2030-01-01", "last_customer_day": "2030-12-31", "last_metrics_day": "2049-12-31"}
LEFTOVER_INDEXES = ("SELECT count(*) AS n FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "WHERE c.relnamespace = 'dashboard'::regnamespace AND NOT i.indisvalid")


def _execute(database_url: str, *statements: str) -> None:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement, EXTRA_DAYS if "%(" in statement else None)


def _run(database_url: str, **config) -> dg.ExecuteInProcessResult:
    return dg.materialize([table_maintenance], resources={"postgres": PostgresResource(database_url=database_url)},
                          run_config={"ops": {"table_maintenance": {"config": config}}}, raise_on_error=False)


def _maintain(database_url: str, **config) -> dg.AssetMaterialization:
    result = _run(database_url, **config)
    assert result.success
    [materialization] = result.asset_materializations_for_node("table_maintenance")
    return materialization


def _value(materialization: dg.AssetMaterialization, key: str):
    return materialization.metadata[key].value


def _rollup_rows(database_url: str) -> dict:
    """Every row of every rollup table, in order, without the instant it was refreshed."""
    rows = {}
    for table in ROLLUP_TABLES:
        frame = read_table(database_url, f"SELECT * FROM dashboard.{table}").drop(columns=["refreshed_at"],
                                                                                   errors="ignore")
        rows[table] = frame.sort_values(list(frame.columns), ignore_index=True)
    return rows


def _assert_same_rows(before: dict, after: dict) -> None:
    for table, rows in before.items():
        assert after[table].equals(rows), table


def test_a_bloated_index_is_rebuilt_smaller_and_a_fresh_one_is_left(database_url):
    assert materialize_days(database_url, HISTORY_START, HISTORY_END).success
    # daily_customers gets a year of 40 customers a day per organization, nine
    # in ten of them then deleted: its primary key keeps the deleted rows' pages.
    # daily_metrics gets twenty years of days, and its primary key is built afresh.
    # Autovacuum is off for daily_customers, so that the dead rows are still
    # there for maintenance to find rather than for a worker that came first.
    _execute(
        database_url,
        "ALTER TABLE dashboard.daily_customers SET (autovacuum_enabled = false)",
        "INSERT INTO dashboard.daily_customers SELECT o.id, d, gen_random_uuid() FROM organizations o, "
        "generate_series(%(first)s::date, %(last_customer_day)s::date, interval '1 day') d, generate_series(1, 40)",
        "INSERT INTO dashboard.daily_metrics SELECT o.id, d, 0, 0, 0, 0, 0, 0, now() FROM organizations o, "
        "generate_series(%(first)s::date, %(last_metrics_day)s::date, interval '1 day') d ORDER BY random()",
        "REINDEX INDEX dashboard.daily_metrics_pkey",
        "ANALYZE dashboard.daily_customers",
        "DELETE FROM dashboard.daily_customers WHERE metric_date >= %(first)s "
        "AND get_byte(uuid_send(customer_id), 15) < 230",
        "SELECT pg_stat_force_next_flush()",
    )
    before = _rollup_rows(database_url)

    materialization = _maintain(database_url, min_index_bytes=2**20)

    indexes = _value(materialization, "indexes")
    print(indexes)  # what the asset's page shows (`pytest -s`)
    assert _value(materialization, "indexes_reindexed") == 1
    assert "| daily_customers_pkey | daily_customers |" in indexes
    reindexed = next(line for line in indexes.splitlines() if line.startswith("| daily_customers_pkey |"))
    assert reindexed.endswith("| REINDEX CONCURRENTLY |")
    assert next(line for line in indexes.splitlines()
                if line.startswith("| daily_metrics_pkey |")).endswith("|  |")  # measured, left alone
    assert "| daily_customers | " in _value(materialization, "tables")
    assert _value(materialization, "tables_vacuumed") >= 1
    assert _value(materialization, "postponed") == 0
    assert (_value(materialization, "daily_customers_bytes_before")
            - _value(materialization, "daily_customers_bytes_after")) > 2**20
    assert _value(materialization, "index_bytes_after") < _value(materialization, "index_bytes_before")
    _assert_same_rows(before, _rollup_rows(database_url))

    again = _maintain(database_url, min_index_bytes=2**20)
    assert _value(again, "indexes_reindexed") == 0  # healthy now


def test_a_held_refresh_and_reader_go_on_and_maintenance_postpones_what_they_hold(database_url):
    assert materialize_days(database_url, HISTORY_START, HISTORY_END).success
    before = _rollup_rows(database_url)
    with (psycopg.connect(libpq_url(database_url)) as row_holder,
          psycopg.connect(libpq_url(database_url)) as reader):
        # A refresh of daily_pipeline takes its days' locks, then waits on a row another session holds.
        row_holder.execute("SELECT 1 FROM dashboard.daily_pipeline WHERE metric_date = %s FOR UPDATE",
                           (HISTORY_END,))
        outcome: list = []
        refreshing = threading.Thread(target=lambda: outcome.append(refresh(
            DAILY_PIPELINE, source_url=database_url, target_url=database_url, start=HISTORY_START, end=HISTORY_END)))
        refreshing.start()
        _wait_for_lock_wait(database_url)
        # A reader in one snapshot, as the read path reads.
        reader.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        total = "SELECT sum(revenue) FROM dashboard.daily_metrics"
        read_before = reader.execute(total).fetchone()

        began = time.monotonic()
        materialization = _maintain(database_url, dead_share_threshold=0.0, index_bloat_threshold=0.0,
                                    min_index_bytes=0, lock_timeout_ms=200)
        took = time.monotonic() - began

        assert reader.execute(total).fetchone() == read_before  # the reader goes on in its snapshot
        reader.commit()
        assert refreshing.is_alive()  # still waiting for the row, not for maintenance
        row_holder.commit()
        refreshing.join(timeout=60)
    assert outcome and outcome[0].committed
    postponed = _value(materialization, "postponed_statements")
    assert not any(statement.startswith("VACUUM") for statement in postponed)  # a refresh holds no table lock
    assert any(statement.startswith("REINDEX INDEX CONCURRENTLY") for statement in postponed)
    assert _value(materialization, "tables_vacuumed") > 0  # the tables nobody held
    assert took < 120
    _assert_same_rows(before, _rollup_rows(database_url))

    # With nobody holding anything, the next run rebuilds what was postponed
    # and drops the copies the postponed rebuilds left.
    _maintain(database_url, dead_share_threshold=0.0, index_bloat_threshold=0.0, min_index_bytes=0)
    assert read_table(database_url, LEFTOVER_INDEXES)["n"][0] == 0
    _assert_same_rows(before, _rollup_rows(database_url))


def test_maintenance_killed_in_the_middle_of_a_rebuild_fails_and_changes_no_row(database_url):
    assert materialize_days(database_url, HISTORY_START, HISTORY_END).success
    before = _rollup_rows(database_url)
    outcome: list = []
    with psycopg.connect(libpq_url(database_url)) as reader, \
            psycopg.connect(libpq_url(database_url), autocommit=True) as admin:
        reader.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        reader.execute("SELECT count(*) FROM dashboard.refresh_log")  # a snapshot every rebuild waits for
        maintaining = threading.Thread(target=lambda: outcome.append(_run(
            database_url, dead_share_threshold=0.0, index_bloat_threshold=0.0, min_index_bytes=0,
            lock_timeout_ms=60_000)))
        maintaining.start()
        rebuilding = _wait_for_lock_wait(database_url, query="REINDEX%")
        admin.execute("SELECT pg_terminate_backend(%s)", (rebuilding,))
        maintaining.join(timeout=60)
        reader.commit()
    assert outcome and not outcome[0].success
    _assert_same_rows(before, _rollup_rows(database_url))
    assert read_table(database_url, LEFTOVER_INDEXES)["n"][0] == 1  # the copy the killed rebuild left
    after = _maintain(database_url)
    assert len(_value(after, "dropped_leftover_indexes")) == 1
    assert read_table(database_url, LEFTOVER_INDEXES)["n"][0] == 0


def _wait_for_lock_wait(database_url: str, query: str = "%", timeout: float = 30) -> int:
    """The process id of a session of the database that waits for a lock
    running a statement LIKE `query`, once there is one."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        while not (waiting := conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE %s", (query,)).fetchone()):
            assert time.monotonic() < deadline, f"no statement like {query!r} waited for a lock"
            time.sleep(0.1)
    return waiting[0]

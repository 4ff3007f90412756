"""Property: whatever sequence of inserts, updates and deletes reaches the
source tables, refreshing exactly what the change sensor marks pending leaves every
rollup equal to the pandas computation over the raw tables.

Hypothesis draws the sequences from the ugly cases: NULL and negative amounts,
negative quantities, statuses and stages the metrics do not know, timestamps
before the first partition and far after the last, midnight in each
organization's timezone, batteries whose capacity is garbage, orders with no
or several jobs, and several statements in one transaction. Each example
starts from its own clone of a small generated database, fully refreshed, and
is checked after each of two batches, so that the sensor's cursor carries
from one tick to the next.
"""

import contextlib
import datetime as dt
import itertools
import uuid

import psycopg
import pytest
from psycopg import sql
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboard_assets.db import engine, libpq_url
from dashboard_assets.generate import generate
from dashboard_assets.migrations import migrate
from dashboard_assets.rollups.assets import CURRENT_STATE, DAILY_ROLLUPS
from dashboard_assets.rollups.refresh import refresh
from dashboard_assets_tests import reference
from dashboard_assets_tests.conftest import HISTORY_START, capture_running
from dashboard_assets_tests.helpers import (
    assert_frames_equal,
    assert_rollups_match_reference,
    read_table,
    refresh_what_the_sensor_requests,
    sources,
    tick,
)

SMALL_TEMPLATE = "small_template"
SMALL_DAYS = 14
SMALL_END = HISTORY_START + dt.timedelta(days=SMALL_DAYS - 1)
# Checked: the generated days, and the days just after them that changes may move rows to.
CHECKED = (HISTORY_START, SMALL_END + dt.timedelta(days=3))
_clones = itertools.count()

# --- what the changes are made of ---------------------------------------------

# Day offsets from the first partition: before it, inside, after the generated
# days, and decades after the last partition.
day_offsets = st.sampled_from([-2, -1, 0, 1, 5, 9, 13, 14, 16, 27_000])
# UTC hours that are local midnight somewhere among the generated timezones.
hours = st.sampled_from([0, 5, 13, 14, 16, 23])
money = st.sampled_from([None, "-125.50", "0", "0.01", "4999.99", "123456.78"])
quantities = st.sampled_from([-3, -1, 0, 1, 2, 40])
probabilities = st.sampled_from([None, -10, 0, 35, 100, 150])
order_statuses = st.sampled_from([*reference.PENDING_ORDER_STATUSES, "delivered", "cancelled", "refunded??", ""])
job_statuses = st.sampled_from([*reference.JOB_STATUSES, "on_hold", "COMPLETED"])
stages = st.sampled_from([*reference.OPPORTUNITY_STAGES, "zombie"])
claim_statuses = st.sampled_from([*reference.CLAIM_STATUSES, "escalated"])
claim_types = st.sampled_from([*reference.CLAIM_TYPES, "other"])
picks = st.integers(min_value=0, max_value=10_000)  # an existing row, by position modulo the row count
maybe_day = st.one_of(st.none(), day_offsets)


def instant(offset: int, hour: int) -> dt.datetime:
    return dt.datetime.combine(HISTORY_START + dt.timedelta(days=offset), dt.time(hour), dt.UTC)


def day(offset: int | None) -> dt.date | None:
    return None if offset is None else HISTORY_START + dt.timedelta(days=offset)


def stamp(offset: int | None, hour: int) -> dt.datetime | None:
    return None if offset is None else instant(offset, hour)


# Each change is (SQL, parameters drawn); `{pick:table}` names a row of `table`
# chosen by the drawn position, `{org}` the organization of the change.
CHANGES = {
    "insert order": (
        "INSERT INTO orders (id, organization_id, customer_id, status, total_amount, created_at, updated_at)"
        " SELECT %(id)s, c.organization_id, c.id, %(status)s, %(amount)s, %(at)s, %(at)s FROM {pick:customers} c",
        {"status": order_statuses, "amount": money, "at": st.builds(instant, day_offsets, hours)},
    ),
    "insert item": (
        "INSERT INTO order_items (id, organization_id, order_id, product_id, quantity, unit_price, line_total)"
        " SELECT %(id)s, o.organization_id, o.id, p.id, %(quantity)s, %(price)s, %(total)s"
        " FROM {pick:orders} o JOIN LATERAL (SELECT id FROM products WHERE organization_id = o.organization_id"
        " ORDER BY category = 'battery' DESC, id OFFSET %(product)s %% 8 LIMIT 1) p ON true",
        {"quantity": quantities, "price": money, "total": money, "product": picks},
    ),
    "insert job": (
        "INSERT INTO jobs (id, organization_id, order_id, customer_id, status, completed_at, created_at, updated_at)"
        " SELECT %(id)s, o.organization_id, o.id, o.customer_id, %(status)s, %(completed)s, %(at)s, %(at)s"
        " FROM {pick:orders} o",
        {"status": job_statuses, "completed": st.builds(stamp, maybe_day, hours), "at": st.builds(instant, day_offsets, hours)},
    ),
    "insert time entry": (
        "INSERT INTO job_time_entries (id, organization_id, job_id, hours, entry_date, created_at)"
        " SELECT %(id)s, j.organization_id, j.id, %(hours)s, %(day)s, now() FROM {pick:jobs} j",
        {"hours": st.sampled_from([None, "-1.50", "0", "2.25", "9999.99"]), "day": st.builds(day, day_offsets)},
    ),
    "insert opportunity": (
        "INSERT INTO opportunities (id, organization_id, customer_id, stage, value, probability, actual_close_date,"
        " created_at, updated_at) SELECT %(id)s, c.organization_id, c.id, %(stage)s, %(value)s, %(probability)s,"
        " %(closed)s, %(at)s, %(at)s FROM {pick:customers} c",
        {"stage": stages, "value": money, "probability": probabilities, "closed": st.builds(day, maybe_day),
         "at": st.builds(instant, day_offsets, hours)},
    ),
    "insert claim": (
        "INSERT INTO warranty_claims (id, organization_id, customer_id, order_id, status, claim_type, created_at,"
        " updated_at, resolved_at) SELECT %(id)s, o.organization_id, o.customer_id, o.id, %(status)s, %(type)s,"
        " %(at)s, %(at)s, %(resolved)s FROM {pick:orders} o",
        {"status": claim_statuses, "type": claim_types, "at": st.builds(instant, day_offsets, hours),
         "resolved": st.builds(stamp, maybe_day, hours)},
    ),
    "order status": ("UPDATE orders SET status = %(status)s, updated_at = now() WHERE id = (SELECT id FROM {pick:orders} x)",
                     {"status": order_statuses}),
    "order moves day": ("UPDATE orders SET created_at = %(at)s WHERE id = (SELECT id FROM {pick:orders} x)",
                        {"at": st.builds(instant, day_offsets, hours)}),
    "order amount": ("UPDATE orders SET total_amount = %(amount)s WHERE id = (SELECT id FROM {pick:orders} x)",
                     {"amount": money}),
    "item quantity": ("UPDATE order_items SET quantity = %(quantity)s, line_total = %(total)s"
                      " WHERE id = (SELECT id FROM {pick:order_items} x)", {"quantity": quantities, "total": money}),
    "job completes late": ("UPDATE jobs SET status = %(status)s, completed_at = %(completed)s"
                           " WHERE id = (SELECT id FROM {pick:jobs} x)",
                           {"status": job_statuses, "completed": st.builds(stamp, maybe_day, hours)}),
    "job changes order": ("UPDATE jobs SET order_id = (SELECT id FROM {pick:orders} x) WHERE id = (SELECT id FROM {pick:jobs} y)", {}),
    "opportunity closes": ("UPDATE opportunities SET stage = %(stage)s, actual_close_date = %(closed)s, value = %(value)s"
                           " WHERE id = (SELECT id FROM {pick:opportunities} x)",
                           {"stage": stages, "closed": st.builds(day, maybe_day), "value": money}),
    "claim resolves": ("UPDATE warranty_claims SET status = %(status)s, resolved_at = %(resolved)s"
                       " WHERE id = (SELECT id FROM {pick:warranty_claims} x)",
                       {"status": claim_statuses, "resolved": st.builds(stamp, maybe_day, hours)}),
    "delete order": ("DELETE FROM orders WHERE id = (SELECT id FROM {pick:orders} x)", {}),
    "delete item": ("DELETE FROM order_items WHERE id = (SELECT id FROM {pick:order_items} x)", {}),
    "delete job": ("DELETE FROM jobs WHERE id = (SELECT id FROM {pick:jobs} x)", {}),
    "delete time entry": ("DELETE FROM job_time_entries WHERE id = (SELECT id FROM {pick:job_time_entries} x)", {}),
    "delete opportunity": ("DELETE FROM opportunities WHERE id = (SELECT id FROM {pick:opportunities} x)", {}),
    "delete claim": ("DELETE FROM warranty_claims WHERE id = (SELECT id FROM {pick:warranty_claims} x)", {}),
}


def _pick(table: str) -> str:
    """The row of `table` at the drawn position (modulo its row count), as a subquery."""
    return (f"(SELECT * FROM {table} ORDER BY id OFFSET %(pick_{table})s %% GREATEST("
            f"(SELECT count(*) FROM {table}), 1) LIMIT 1)")


@st.composite
def changes(draw) -> tuple[str, str, dict]:
    name = draw(st.sampled_from(sorted(CHANGES)))
    template, drawn = CHANGES[name]
    statement = template
    params = {}
    for table in ("customers", "orders", "order_items", "jobs", "job_time_entries", "opportunities", "warranty_claims"):
        if f"{{pick:{table}}}" in statement:
            statement = statement.replace(f"{{pick:{table}}}", _pick(table))
            params[f"pick_{table}"] = draw(picks)
    params |= {key: draw(strategy) for key, strategy in drawn.items()}
    return name, statement, params


# A batch is a list of transactions, each a list of changes.
batches = st.lists(st.lists(changes(), min_size=1, max_size=3), min_size=1, max_size=6)


# --- the property -------------------------------------------------------------


@pytest.fixture(scope="module")
def small_template(postgres_server) -> str:
    url = postgres_server.create_database(SMALL_TEMPLATE)
    migrate(url, with_source_schema=True)
    with psycopg.connect(libpq_url(url)) as conn:
        generate(conn, orgs=3, days=SMALL_DAYS, seed=23, end_date=SMALL_END, scale=0.1)
    with capture_running(url):  # no slot of its own: clones get theirs
        pass
    return SMALL_TEMPLATE


def apply(database_url: str, batch: list[list[tuple[str, str, dict]]], new_ids) -> None:
    """Each transaction of the batch, committed in turn; inserted rows take
    the next of `new_ids`, so that a replayed example inserts the same rows."""
    with psycopg.connect(libpq_url(database_url)) as conn:
        for transaction in batch:
            with conn.transaction():
                for _, statement, params in transaction:
                    conn.execute(statement, {**params, "id": next(new_ids)})


def assert_everything_matches_reference(database_url: str) -> None:
    assert_rollups_match_reference(database_url, *CHECKED)
    current = read_table(database_url, "SELECT * FROM dashboard.current_state").drop(columns=["snapshot_at", "refreshed_at"])
    assert_frames_equal(current, reference.current_state(sources(database_url)), ["organization_id"])


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(first=batches, second=batches)
def test_rollups_equal_the_reference_after_any_sequence_of_changes(postgres_server, small_template, redis_url,
                                                                    first, second):
    with scratch_clone(postgres_server, small_template) as database_url:
        check_changes_through_the_sensor(database_url, redis_url, first, second)


@contextlib.contextmanager
def scratch_clone(postgres_server, template: str):
    """A clone of `template` for one example, dropped afterwards with its pooled connections."""
    name = f"property_{next(_clones)}"
    database_url = postgres_server.create_database(name, template=template)
    try:
        with capture_running(database_url):
            yield database_url
    finally:
        engine(database_url).dispose()
        with psycopg.connect(libpq_url(postgres_server.url()), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def check_changes_through_the_sensor(database_url: str, redis_url: str, first, second) -> None:
    for rollup in DAILY_ROLLUPS:
        assert refresh(rollup, source_url=database_url, target_url=database_url,
                       start=CHECKED[0], end=CHECKED[1]).committed
    assert refresh(CURRENT_STATE, source_url=database_url, target_url=database_url).committed
    cursor = tick(database_url, redis_url, None).cursor
    new_ids = (uuid.UUID(int=2**127 + n) for n in itertools.count())
    for batch in (first, second):
        apply(database_url, batch, new_ids)
        cursor = refresh_what_the_sensor_requests(database_url, redis_url, cursor)
        assert_everything_matches_reference(database_url)

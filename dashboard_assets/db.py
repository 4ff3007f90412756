"""PostgreSQL access: pooled SQLAlchemy engines on psycopg 3, the project's SQL
files, and COPY streaming between a source and a target database."""

import contextlib
import functools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib import resources
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import sql

# Range queries over skewed per-organization data need custom plans: a generic
# plan of a prepared statement is orders of magnitude slower here.
_CONNECT_OPTIONS = "-c plan_cache_mode=force_custom_plan"


def sqlalchemy_url(url: str) -> sa.URL:
    """A postgresql:// URL bound to the psycopg 3 driver."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"not a PostgreSQL URL: {parsed.render_as_string(hide_password=True)}")
    return parsed.set(drivername="postgresql+psycopg")


def libpq_url(url: str) -> str:
    """The same URL in the form libpq (and so psycopg.connect) takes."""
    return sqlalchemy_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@functools.cache
def engine(url: str) -> sa.Engine:
    """One pooled engine per database URL and process."""
    return sa.create_engine(
        sqlalchemy_url(url),
        pool_size=5,
        max_overflow=10,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"options": _CONNECT_OPTIONS, "prepare_threshold": None},
    )


@contextmanager
def raw_connection(url: str) -> Iterator[psycopg.Connection]:
    """A pooled psycopg connection, returned to the pool (rolled back) on exit."""
    pooled = engine(url).raw_connection()
    try:
        yield pooled.driver_connection
    finally:
        pooled.close()


@contextmanager
def autocommit_connection(url: str) -> Iterator[psycopg.Connection]:
    """A pooled psycopg connection in autocommit mode (explicit transactions
    only). Session state such as temporary tables stays with it in the pool."""
    with raw_connection(url) as conn:
        conn.autocommit = True
        try:
            yield conn
        finally:
            with contextlib.suppress(psycopg.Error):
                conn.autocommit = False


@contextmanager
def snapshot(conn: psycopg.Connection) -> Iterator[None]:
    """One REPEATABLE READ, read-only transaction: every query sees the same data."""
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    try:
        with conn.transaction():
            yield
    finally:
        conn.isolation_level = None
        conn.read_only = None


@functools.cache
def load_sql(package: str, name: str) -> str:
    """The text of a `.sql` file shipped inside a package of this project."""
    return resources.files(package).joinpath(name).read_text()


def fetch_one(conn: psycopg.Connection, query: str | sql.Composable, params: Mapping[str, Any]) -> dict[str, Any]:
    """The first row of a query as a dict of column name to value."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(query, params)
        row = cur.fetchone()
    if row is None:
        raise LookupError("query returned no row")
    return row


def copy_query_into(
    source: psycopg.Connection,
    query: str,
    params: Mapping[str, Any],
    target: psycopg.Connection,
    table: str,
) -> int:
    """Stream the rows of `query` on `source` into `table` on `target` with
    COPY (text format, so that the target coerces types), without materializing them in Python; returns the row count."""
    copy_out = sql.SQL("COPY ({}) TO STDOUT").format(sql.SQL(query))
    schema, _, name = table.rpartition(".")
    copy_in = sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(schema, name))
    with source.cursor() as out_cur, target.cursor() as in_cur:
        with out_cur.copy(copy_out, params) as out, in_cur.copy(copy_in) as into:
            for chunk in out:
                into.write(chunk)
        return out_cur.rowcount

"""What every benchmark shares: the embedded server, a database of generated
data per scale, and where results go."""

import datetime as dt
import os
import platform
import time
from pathlib import Path

import psycopg

from dashboard_assets.db import libpq_url
from dashboard_assets.generate import generate
from dashboard_assets.local_servers import LocalPostgres
from dashboard_assets.migrations import migrate

END_DATE = dt.date(2026, 11, 23)
DAYS = 730
START_DATE = END_DATE - dt.timedelta(days=DAYS - 1)
ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".local" / "bench"
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine() -> str:
    return f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def fresh_database(server: LocalPostgres, name: str) -> str:
    with psycopg.connect(libpq_url(server.url()), autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(name)))
    return server.create_database(name)


def generated_database(server: LocalPostgres, orgs: int) -> tuple[str, float, int]:
    """A fresh database with `orgs` organizations × 730 days; returns its URL,
    the load time and the source rows."""
    url = fresh_database(server, f"bench_{orgs}_orgs")
    migrate(url, with_source_schema=True)
    began = time.perf_counter()
    with psycopg.connect(libpq_url(url)) as conn:
        rows = generate(conn, orgs=orgs, days=DAYS, seed=1, end_date=END_DATE)
        conn.execute("ANALYZE")
    return url, time.perf_counter() - began, sum(rows.values())

"""`dashboard-assets check` on a real server: what it finds wrong in a
database the pipeline would fail on, each finding with its fix, and its exit
status."""

import pytest

from dashboard_assets import readiness, settings
from dashboard_assets.demo import psycopg2_url
from dashboard_assets_tests.helpers import execute


@pytest.fixture
def environment(database_url, redis_url, postgres_server, monkeypatch):
    monkeypatch.setenv(settings.DATABASE_URL, database_url)
    monkeypatch.setenv(settings.REDIS_URL, redis_url)
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", psycopg2_url(postgres_server.url()))
    return database_url


def lines(findings: list[readiness.Finding]) -> list[str]:
    return [finding.line() for finding in findings]


def test_a_database_the_pipeline_would_fail_on_is_named_blocker_by_blocker(environment):
    execute(environment, "UPDATE organizations SET timezone = 'Mars/Olympus_Mons'"
                         " WHERE id = (SELECT id FROM organizations ORDER BY id LIMIT 1)")
    execute(environment, "ALTER TABLE orders RENAME COLUMN delivered_at TO delivered_on")
    execute(environment, "ALTER TABLE jobs ALTER COLUMN completed_at TYPE timestamp")
    execute(environment, "ALTER TABLE warranty_claims REPLICA IDENTITY DEFAULT")
    execute(environment, "DROP INDEX idx_jobs_org_status")
    found = lines(readiness.check())
    for expected in (
        "blocker timezones: 1 organizations have a timezone PostgreSQL does not know",
        "blocker column orders.delivered_at: missing → the source contract needs it (timestamptz)",
        "blocker column jobs.completed_at: is timestamp without time zone → the source contract needs timestamptz",
        "blocker source tables: replica identity not FULL: warranty_claims",
        "warning source indexes: 1 missing (idx_jobs_org_status)",
    ):
        assert any(line.startswith(expected) for line in found), (expected, found)
    assert all(" → " in line for line in found if not line.startswith(("ok", "note")))  # each with its fix
    assert readiness.exit_status(readiness.check()) == 2


def test_settings_redis_and_dagster_storage_are_looked_at_too(environment, monkeypatch):
    monkeypatch.setenv(settings.TIMEZONE, "Mars/Olympus_Mons")
    monkeypatch.setenv(settings.REDIS_URL, "redis://127.0.0.1:9/0")  # nothing listens on port 9
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", "postgresql+psycopg2://dagster@127.0.0.1:9/dagster")
    found = lines(readiness.check())
    assert any(line.startswith("blocker settings: DASHBOARD_TIMEZONE='Mars/Olympus_Mons' is not an IANA timezone")
               for line in found), found
    assert any(line.startswith("warning DASHBOARD_REDIS_URL: unreachable") for line in found), found
    assert any(line.startswith("blocker DAGSTER_POSTGRES_URL: cannot connect") for line in found), found


def test_a_ready_database_has_no_other_finding_than_its_superuser(environment):
    findings = readiness.check()
    # the test server runs everything as a superuser, which is a warning (a runtime role is not one)
    assert [f.line() for f in findings if f.level >= readiness.Level.WARNING] == [
        "warning role postgres: is a superuser → run the pipeline as a runtime role without superuser "
        "(docs/deploy.md gives the GRANTs)"]
    assert readiness.exit_status(findings) == 1

"""The operator's commands, against a real database."""

import json

import psycopg
import pytest

from dashboard_assets import cli, settings
from dashboard_assets.db import libpq_url


def test_migrate_is_idempotent_and_generate_loads_deterministically(postgres_server, monkeypatch, capsys):
    url = postgres_server.create_database("cli_generate")
    monkeypatch.setenv(settings.DATABASE_URL, url)
    assert cli.main(["migrate", "--with-source-schema"]) == 0
    assert cli.main(["migrate", "--with-source-schema"]) == 0
    args = ["generate", "--orgs", "2", "--days", "10", "--seed", "3", "--scale", "0.1", "--end-date", "2025-02-01"]
    assert cli.main(args) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rows["organizations"] == 2 and rows["orders"] > 0
    with psycopg.connect(libpq_url(url)) as conn:
        fingerprint = conn.execute("SELECT md5(string_agg(id::text, ',' ORDER BY id)) FROM orders").fetchone()[0]
        conn.execute("TRUNCATE organizations, customers, products, orders, order_items, opportunities, jobs,"
                     " job_time_entries, warranty_claims, targets, marketing_spend")
        conn.commit()
        assert cli.main(args) == 0
        assert conn.execute("SELECT md5(string_agg(id::text, ',' ORDER BY id)) FROM orders").fetchone()[0] == fingerprint


def test_missing_database_url_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.delenv(settings.DATABASE_URL, raising=False)
    assert cli.main(["migrate"]) == 2
    assert "DASHBOARD_DATABASE_URL is not set" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["0", "-3", "ten"])
def test_generate_refuses_a_bad_count(bad):
    with pytest.raises(SystemExit):
        cli.main(["generate", "--orgs", bad, "--days", "3"])


@pytest.mark.parametrize("value", ["2025-13-01", "01/02/2025", "2025-1-1; DROP TABLE orders"])
def test_malformed_history_start_is_refused(monkeypatch, value):
    monkeypatch.setenv(settings.HISTORY_START, value)
    with pytest.raises(settings.SettingsError):
        settings.history_start()


def test_unknown_reporting_timezone_is_refused(monkeypatch):
    monkeypatch.setenv(settings.TIMEZONE, "Mars/Olympus_Mons")
    with pytest.raises(settings.SettingsError):
        settings.reporting_timezone()

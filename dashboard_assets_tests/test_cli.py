"""The operator's commands, against a real database."""

import json

import psycopg
import pytest

from dashboard_assets import cli, settings
from dashboard_assets.db import libpq_url
from dashboard_assets.local_servers import LocalPostgres


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
def test_generate_refuses_a_bad_count(bad, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["generate", "--orgs", bad, "--days", "3"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (f"dashboard-assets generate: argument --orgs: {bad} is not a positive whole "
                                       "number → see `dashboard-assets generate --help`\n")


@pytest.mark.parametrize("argv, says", [
    (["migrate"], "server at \"127.0.0.1\", port 9 failed"),
    (["check"], "blocker DASHBOARD_DATABASE_URL: cannot connect"),
    (["metrics", "--org", "not-an-id", "--from", "2025-01-01", "--to", "2025-01-02"], "canonical lower-case uuid"),
])
def test_an_operator_mistake_is_one_line_naming_its_cause_and_exit_2(argv, says, monkeypatch, capsys):
    monkeypatch.setenv(settings.DATABASE_URL, "postgresql://erp@127.0.0.1:9/erp")  # nothing listens on port 9
    assert cli.main(argv) == 2
    printed = capsys.readouterr()
    lines = (printed.err or printed.out).strip().splitlines()
    assert any(says in line for line in lines), lines
    if argv[0] != "check":  # check prints a line per finding
        assert len(lines) == 1 and "Traceback" not in printed.err


def test_migrate_on_a_server_without_logical_decoding_names_the_fix_and_changes_nothing(tmp_path, monkeypatch, capsys):
    server = LocalPostgres(tmp_path / "postgres", settings={"wal_level": "replica"})
    try:
        url = server.create_database("erp")
        monkeypatch.setenv(settings.DATABASE_URL, url)
        assert cli.main(["migrate", "--with-source-schema"]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert "wal_level = logical (it is replica)" in line and "restart PostgreSQL" in line
        with psycopg.connect(libpq_url(url)) as conn:
            assert conn.execute("SELECT to_regnamespace('dashboard'), to_regclass('orders')").fetchone() == (None, None)
    finally:
        server.stop()


@pytest.mark.parametrize("value", ["2025-13-01", "01/02/2025", "2025-1-1; DROP TABLE orders"])
def test_malformed_history_start_is_refused(monkeypatch, value):
    monkeypatch.setenv(settings.HISTORY_START, value)
    with pytest.raises(settings.SettingsError):
        settings.history_start()


def test_unknown_reporting_timezone_is_refused(monkeypatch):
    monkeypatch.setenv(settings.TIMEZONE, "Mars/Olympus_Mons")
    with pytest.raises(settings.SettingsError):
        settings.reporting_timezone()

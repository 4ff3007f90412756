"""`dashboard-assets check`: whether an environment is ready for the
pipeline, before its first failure. It reads the operating contract's
variables and looks at the database (server version, WAL and slot settings,
the connecting role's rights for `migrate` and for running the pipeline, the
source tables and columns of the contract, organizations' timezones, the
source indexes, the slot's lag), at Redis and at the Dagster storage. Each
finding is one line with its fix; the exit status is 0 when ready, 1 with
warnings only, 2 with a blocker. It changes nothing."""

import enum
import os
import re
from dataclasses import dataclass

import psycopg
import redis

from dashboard_assets import cache, settings
from dashboard_assets.automation import capture
from dashboard_assets.automation.changes import CAPTURED_COLUMNS
from dashboard_assets.db import fetch_one, libpq_url, load_sql
from dashboard_assets.sources import SOURCE_TABLES

_SQL = "dashboard_assets.readiness.sql"
_MIGRATIONS = "dashboard_assets.migrations"
# The PostgreSQL major versions the pipeline supports as its source and store.
SUPPORTED_VERSIONS = range(14, 19)
# A slot this far behind the WAL is a warning (as in dashboard_health's check).
SLOT_LAG_WARNING_BYTES = 256 * 1024 * 1024
# The Redis eviction policies under which a full cache still takes writes.
_EVICTING_POLICIES = ("allkeys-lru", "allkeys-lfu", "volatile-lru", "volatile-lfu", "volatile-ttl",
                      "allkeys-random", "volatile-random")
# The column types the contract's types accept (without modifiers).
_ACCEPTED_TYPES = {
    "uuid": {"uuid"},
    "text": {"text", "character varying", "character"},
    "timestamptz": {"timestamp with time zone"},
    "date": {"date"},
    "jsonb": {"jsonb", "json"},
    "numeric": {"numeric", "integer", "bigint", "smallint", "real", "double precision"},
    "integer": {"integer", "smallint", "bigint"},
}


class Level(enum.IntEnum):
    OK = 0
    NOTE = 1
    WARNING = 2
    BLOCKER = 3


@dataclass(frozen=True)
class Finding:
    level: Level
    subject: str
    message: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.level.name.lower():<8}{self.subject}: {self.message}" + (f" → {self.fix}" if self.fix else "")


def exit_status(findings: list[Finding]) -> int:
    """0: ready; 1: warnings only; 2: at least one blocker."""
    worst = max((f.level for f in findings), default=Level.OK)
    return 2 if worst == Level.BLOCKER else 1 if worst == Level.WARNING else 0


def check() -> list[Finding]:
    """Every finding about this process's environment."""
    environ = os.environ
    findings = _settings()
    if database_url := environ.get(settings.DATABASE_URL):
        findings += _database(database_url)
    else:
        findings.append(Finding(Level.BLOCKER, settings.DATABASE_URL, "not set",
                                "export it: postgresql://user:password@host:port/database"))
    if source_url := environ.get(settings.SOURCE_DATABASE_URL):
        findings += _source_replica(source_url)
    findings += _redis(environ.get(settings.REDIS_URL), environ.get(settings.REDIS_PREFIX))
    findings += _dagster_storage(environ.get("DAGSTER_POSTGRES_URL"))
    return findings


def _settings() -> list[Finding]:
    findings = []
    for read in (settings.reporting_timezone, settings.history_start, settings.batch_organization_days,
                 settings.concurrent_batches, settings.run_retention_days):
        try:
            read()
        except settings.SettingsError as error:
            findings.append(Finding(Level.BLOCKER, "settings", str(error), "correct or unset the variable"))
    return findings


def _connect(url: str) -> psycopg.Connection:
    """A connection whose transactions are read-only: check changes nothing."""
    return psycopg.connect(libpq_url(url), connect_timeout=10, autocommit=True,
                           options="-c default_transaction_read_only=on")


def one_line(error: Exception) -> str:
    """An error's message in one line (libpq's spans several)."""
    return " ".join(str(error).split())


def unreachable(name: str, error: Exception) -> Finding:
    """A server out of reach, in one line."""
    reason = one_line(error)
    return Finding(Level.BLOCKER, name, f"cannot connect: {reason}",
                   "check the URL's host, port, user, password and database, and that the server accepts them")


def _database(url: str) -> list[Finding]:
    try:
        conn = _connect(url)
    except psycopg.Error as error:
        return [unreachable(settings.DATABASE_URL, error)]
    with conn:
        server = fetch_one(conn, load_sql(_SQL, "server.sql"), {"publication": capture.PUBLICATION})
        slot = capture.slot_health(conn)
        server |= {"may_log_running_transactions": capture.may_log_running_transactions(conn),
                   "slot_wal_status": None if slot["slot"] == "missing" else slot["slot"],
                   "slot_lag_bytes": slot.get("lag_bytes")}
        rows = conn.execute(load_sql(_SQL, "source_tables.sql"), {"tables": list(SOURCE_TABLES)}).fetchall()
        readable = {name for name, present, can_read, *_ in rows if present and can_read}
        unowned = [name for name, present, _, _, owns, _ in rows if present and not owns]
        findings = [*_server(server), *_role(conn, server, unowned), *_source_tables(rows, server["superuser"])]
        if len(readable) == len(rows):
            findings += _columns(conn) + _timezones(conn)
        findings += _source_indexes(conn, server["migrated"]) + _slot(server)
    return findings


def _server(server: dict) -> list[Finding]:
    major = server["version_num"] // 10000
    findings = []
    if major not in SUPPORTED_VERSIONS:
        findings.append(Finding(Level.BLOCKER, "PostgreSQL", f"{server['version']} is not supported",
                                f"use PostgreSQL {SUPPORTED_VERSIONS.start} to {SUPPORTED_VERSIONS.stop - 1}"))
    else:
        findings.append(Finding(Level.OK, "PostgreSQL", f"{server['version']}, supported "
                                f"({SUPPORTED_VERSIONS.start} to {SUPPORTED_VERSIONS.stop - 1})"))
    if major < 16:
        findings.append(Finding(Level.NOTE, "running transactions record", "PostgreSQL before 16 has no "
                                "pg_log_standby_snapshot(): after a bulk statement, capture reads may decode up to "
                                "15 s of WAL again"))
    elif not server["may_log_running_transactions"]:
        findings.append(Finding(Level.NOTE, "running transactions record", "this role may not call "
                                "pg_log_standby_snapshot(): after a bulk statement, capture reads may decode up to "
                                "15 s of WAL again", "as a superuser: GRANT EXECUTE ON FUNCTION "
                                f"pg_log_standby_snapshot() TO {server['role']}"))
    if server["wal_level"] != "logical":
        findings.append(Finding(Level.BLOCKER, "wal_level", f"{server['wal_level']}; change capture needs logical",
                                "ALTER SYSTEM SET wal_level = logical; then restart the server"))
    else:
        findings.append(Finding(Level.OK, "wal_level", "logical"))
    has_slot = server["slot_wal_status"] is not None
    free = server["max_slots"] - server["slots_used"]
    if not has_slot and free < 1:
        findings.append(Finding(Level.BLOCKER, "replication slots", f"{server['slots_used']} of "
                                f"{server['max_slots']} in use; capture needs one",
                                "raise max_replication_slots (a restart), or drop an unused slot"))
    else:
        findings.append(Finding(Level.OK, "replication slots", f"{server['slots_used']} of {server['max_slots']} "
                                f"in use{', capture has its own' if has_slot else ''}"))
    findings.append(Finding(Level.OK, "WAL senders", f"{server['wal_senders_used']} of {server['max_wal_senders']} "
                            "in use; capture reads its slot with SQL functions and takes none (a standby "
                            "source takes one)"))
    if server["max_slot_wal_keep_size"] == "-1":
        findings.append(Finding(Level.WARNING, "max_slot_wal_keep_size", "unbounded: a slot nobody reads keeps WAL "
                                "until the disk is full", "ALTER SYSTEM SET max_slot_wal_keep_size = '4GB'; "
                                "SELECT pg_reload_conf()"))
    else:
        findings.append(Finding(Level.OK, "max_slot_wal_keep_size", server["max_slot_wal_keep_size"]))
    return findings


def _role(conn: psycopg.Connection, server: dict, unowned_sources: list[str]) -> list[Finding]:
    role = f"role {server['role']}"
    if server["superuser"]:
        return [Finding(Level.WARNING, role, "is a superuser", "run the pipeline as a runtime role without "
                        "superuser (docs/deploy.md gives the GRANTs)")]
    findings = []
    if not server["replication"]:
        findings.append(Finding(Level.BLOCKER, role, "has no REPLICATION attribute: capture cannot read its slot",
                                f"ALTER ROLE {server['role']} REPLICATION"))
    if not server["migrated"]:
        migrate_lacks = ([] if server["create_on_database"] else ["CREATE on the database"]) + (
            [f"ownership of {_listed(unowned_sources)}"] if unowned_sources else [])
        findings.append(Finding(Level.BLOCKER, "dashboard schema", "not installed",
                                "run `dashboard-assets migrate --runtime-role <runtime role>` as the source tables' "
                                "owner" + (f" (this role may not: it lacks {' and '.join(migrate_lacks)})"
                                           if migrate_lacks else " (this role may)")))
        return findings
    if not server["dashboard_usage"]:
        findings.append(Finding(Level.BLOCKER, role, "has no USAGE on schema dashboard",
                                f"GRANT USAGE ON SCHEMA dashboard TO {server['role']}"))
        return findings
    if not server["published"]:
        findings.append(Finding(Level.BLOCKER, "publication", f"{capture.PUBLICATION} is missing",
                                "run `dashboard-assets migrate` as the source tables' owner"))
    lacking = conn.execute(load_sql(_SQL, "dashboard_rights.sql")).fetchall()
    if missing := [f"{kind} {name}" for kind, name, lacks_use, _ in lacking if lacks_use]:
        findings.append(Finding(Level.BLOCKER, role, f"cannot use {', '.join(missing[:5])}"
                                + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""),
                                "run migrate with this role as the runtime role (docs/deploy.md)"))
    if unowned := [name for kind, name, _, lacks_ownership in lacking if lacks_ownership]:
        findings.append(Finding(Level.WARNING, role, f"does not own {len(unowned)} dashboard tables: table "
                                "maintenance (VACUUM, REINDEX) will skip them",
                                "run migrate with this role as the runtime role (docs/deploy.md)"))
    if not findings:
        findings.append(Finding(Level.OK, role, "may run the pipeline (REPLICATION, the dashboard schema's objects)"))
    return findings


def _listed(names: list[str], shown: int = 4) -> str:
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _source_tables(rows: list[tuple], superuser: bool) -> list[Finding]:
    missing = [name for name, present, *_ in rows if not present]
    unreadable = [name for name, present, can_read, *_ in rows if present and not can_read]
    writable = [name for name, present, _, can_write, *_ in rows if present and can_write]
    partial = [name for name, present, *_, identity in rows
               if present and name in CAPTURED_COLUMNS and identity != "f"]
    findings = []
    if missing:
        findings.append(Finding(Level.BLOCKER, "source tables", f"{len(missing)} missing or not on the search path: "
                                f"{_listed(missing)}", "point DASHBOARD_DATABASE_URL at the ERP's database, or set "
                                "the role's search_path to the tables' schema"))
    if unreadable:
        findings.append(Finding(Level.BLOCKER, "source tables", f"not readable by this role: {_listed(unreadable)}",
                                "GRANT SELECT ON every source table TO the runtime role (docs/deploy.md)"))
    if writable and not superuser:  # a superuser is a warning of its own
        findings.append(Finding(Level.WARNING, "source tables", f"writable by this role: {_listed(writable)}",
                                "run the pipeline as a role that only reads them (docs/deploy.md)"))
    if partial:
        findings.append(Finding(Level.BLOCKER, "source tables", f"replica identity not FULL: {_listed(partial)}; "
                                "capture cannot see a changed row's old version",
                                "run `dashboard-assets migrate` as their owner"))
    return findings or [Finding(Level.OK, "source tables", f"all {len(rows)} present, readable and not writable")]


def contract_columns() -> dict[tuple[str, str], str]:
    """The source contract's columns and their types: the project's own
    source schema (migrations/source_schema.sql)."""
    columns, table = {}, None
    for line in load_sql(_MIGRATIONS, "source_schema.sql").splitlines():
        if match := re.match(r"CREATE TABLE IF NOT EXISTS (\w+) \(", line):
            table = match[1]
        elif table and (match := re.match(r"\s+(\w+)\s+(\w+)", line)):
            columns[(table, match[1])] = match[2]
        elif line.startswith(")"):
            table = None
    return columns


def _columns(conn: psycopg.Connection) -> list[Finding]:
    actual = {(table, column): type_ for table, column, type_ in conn.execute(
        load_sql(_SQL, "source_columns.sql"), {"tables": list(SOURCE_TABLES)})}
    findings = []
    for (table, column), expected in contract_columns().items():
        found = actual.get((table, column))
        if found is None:
            findings.append(Finding(Level.BLOCKER, f"column {table}.{column}", "missing",
                                    f"the source contract needs it ({expected})"))
        elif found not in _ACCEPTED_TYPES[expected]:
            findings.append(Finding(Level.BLOCKER, f"column {table}.{column}", f"is {found}",
                                    f"the source contract needs {expected}"))
    return findings or [Finding(Level.OK, "source columns", "every column of the contract, with its type")]


def _timezones(conn: psycopg.Connection) -> list[Finding]:
    unknown = conn.execute(load_sql(_SQL, "unknown_timezones.sql")).fetchall()
    if not unknown:
        return [Finding(Level.OK, "timezones", "every organization's timezone is an IANA name")]
    shown = ", ".join(f"{org} ({tz!r})" for org, tz in unknown[:3])
    return [Finding(Level.BLOCKER, "timezones", f"{len(unknown)} organizations have a timezone PostgreSQL does not "
                    f"know: {shown}{' and more' if len(unknown) > 3 else ''}; their refreshes would fail",
                    "set organizations.timezone to an IANA name (such as Australia/Sydney), or NULL for "
                    f"{settings.DEFAULT_TIMEZONE}")]


def source_index_names() -> list[str]:
    """The names of the source indexes `migrate` creates."""
    return re.findall(r"IF NOT EXISTS (\w+) ON", load_sql(_MIGRATIONS, "source_indexes.sql"))


def _source_indexes(conn: psycopg.Connection, migrated: bool) -> list[Finding]:
    rows = conn.execute(load_sql(_SQL, "source_indexes.sql"), {"indexes": source_index_names()}).fetchall()
    missing = [name for name, valid in rows if valid is None]
    invalid = [name for name, valid in rows if valid is False]
    findings = []
    if missing:
        findings.append(Finding(Level.WARNING if migrated else Level.NOTE, "source indexes",
                                f"{len(missing)} missing ({_listed(missing, 3)}): refreshes and live reads scan "
                                "whole tables",
                                "run `dashboard-assets migrate` as the source tables' owner"))
    if invalid:
        findings.append(Finding(Level.WARNING, "source indexes", f"invalid: {', '.join(invalid)} (an interrupted "
                                "CREATE INDEX CONCURRENTLY)", "run `dashboard-assets migrate` again: it rebuilds them"))
    return findings or [Finding(Level.OK, "source indexes", f"all {len(rows)} present and valid")]


def _slot(server: dict) -> list[Finding]:
    if server["slot_wal_status"] is None:
        return [Finding(Level.NOTE, "capture slot", "not created yet: `migrate` or the change sensor's first tick "
                        "creates it")]
    lag = server["slot_lag_bytes"] or 0
    if server["slot_wal_status"] == "lost":
        return [Finding(Level.WARNING, "capture slot", "lost: its WAL was removed (max_slot_wal_keep_size)",
                        "nothing to do: the change sensor restarts capture and refreshes every day")]
    if lag > SLOT_LAG_WARNING_BYTES:
        return [Finding(Level.WARNING, "capture slot", f"{lag / 2**20:.0f} MB behind the WAL",
                        "start the Dagster daemon (source_changes_sensor reads the slot), or look at its ticks")]
    return [Finding(Level.OK, "capture slot", f"{lag / 2**20:.1f} MB behind the WAL")]


def _source_replica(url: str) -> list[Finding]:
    try:
        with _connect(url) as conn:
            (standby,) = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    except psycopg.Error as error:
        return [unreachable(settings.SOURCE_DATABASE_URL, error)]
    if not standby:
        return [Finding(Level.NOTE, settings.SOURCE_DATABASE_URL, "a primary, not a standby: refreshes read it "
                        "as they would the primary")]
    return [Finding(Level.OK, settings.SOURCE_DATABASE_URL, "a standby: refreshes read it")]


def _redis(url: str | None, prefix: str | None) -> list[Finding]:
    from dashboard_assets.resources import RedisResource

    if not url:
        return [Finding(Level.WARNING, settings.REDIS_URL, "not set: nothing is cached, every read goes to "
                        "PostgreSQL", "export it: redis://host:6379/0")]
    try:
        client = RedisResource(url=url, prefix=prefix or settings.DEFAULT_REDIS_PREFIX).client()
        client.ping()
    except (*cache.UNAVAILABLE, ValueError) as error:
        return [Finding(Level.WARNING, settings.REDIS_URL, f"unreachable ({one_line(error)}): reads "
                        "go to PostgreSQL until it is back", "check the URL and that the server accepts it")]
    try:
        memory = client.config_get("maxmemory*")
    except redis.RedisError:  # CONFIG is often disabled on managed Redis
        return [Finding(Level.NOTE, settings.REDIS_URL, "reachable; its maxmemory-policy cannot be read (CONFIG is "
                        "disabled): make sure a full cache evicts (volatile-lru) rather than refuse writes")]
    policy, limit = memory.get("maxmemory-policy"), int(memory.get("maxmemory", 0))
    if limit and policy not in _EVICTING_POLICIES:
        return [Finding(Level.WARNING, settings.REDIS_URL, f"maxmemory {limit} with maxmemory-policy {policy}: a full "
                        "cache refuses writes", "CONFIG SET maxmemory-policy volatile-lru (every key has a TTL)")]
    bound = f"maxmemory {limit}, maxmemory-policy {policy}" if limit else "no maxmemory (the keys' TTLs bound it)"
    return [Finding(Level.OK, settings.REDIS_URL, f"reachable, {bound}")]


def _dagster_storage(url: str | None) -> list[Finding]:
    if not url:
        return [Finding(Level.BLOCKER, "DAGSTER_POSTGRES_URL", "not set: dagster.yaml keeps runs, events and "
                        "schedules there", "export it: postgresql+psycopg2://user:password@host:port/dagster")]
    try:
        with _connect(url):
            pass
    except psycopg.Error as error:
        return [unreachable("DAGSTER_POSTGRES_URL", error)]
    return [Finding(Level.OK, "DAGSTER_POSTGRES_URL", "reachable")]

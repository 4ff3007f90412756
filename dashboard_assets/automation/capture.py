"""The change stream: a publication of the source tables and a logical
replication slot (pgoutput) on the primary, read by the change sensor.

Capture costs the application's writes nothing but their old rows in the WAL
(REPLICA IDENTITY FULL). The slot keeps every committed change, in commit
order, until the sensor confirms it: each tick first advances the slot to the
position the previous tick stored in Dagster, then peeks (reads without
consuming) everything after it. A tick that dies before its position is
stored is simply read again.

Capture that cannot be trusted is never silent:
- publication, replica identity or wal_level not as capture needs (a
  migration not run, a table dropped from the publication): the tick fails
  with what to fix, and the slot is dropped so that WAL is not retained;
- the slot missing, lost (its WAL removed past max_slot_wal_keep_size) or
  moved past the stored position (recreated or advanced by someone else):
  capture restarts from a new slot, the restart is recorded in
  dashboard.capture_restarts, and the sensor refreshes everything.
"""

import operator
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from dashboard_assets.automation.pgoutput import Decoder, RowChange, Truncation, lsn_text, lsn_value

PUBLICATION = "dashboard_source_changes"
# Changes kept per organization for the activity feed.
ACTIVITY_DEPTH = 100
# While nothing has changed, a tick looks again this often (slower when a look
# is expensive: each look is at most a quarter of the time).
POLL_SECONDS = 0.1
# Every message but Begin (the commit time comes with Commit), in binary.
_PEEK = """
    SELECT data FROM pg_logical_slot_peek_binary_changes(
        %(slot)s, %(upto)s::pg_lsn, NULL,
        'proto_version', '1', 'publication_names', %(publication)s, 'binary', 'true')
    WHERE get_byte(data, 0) <> 66
"""
# A peek decodes from the slot's restart position, which only moves past a
# record of the running transactions (written by PostgreSQL every 15 s at
# most, and at checkpoints). When the slot's restart position is more than
# this far behind the WAL, a tick writes such a record before peeking, so
# that the next tick's advance moves the restart position up to it: each tick
# then decodes about what changed since the previous one, instead of
# everything since that record (a bulk statement's WAL again and again).
# Skipped without the right to call it (granted by a superuser), and before
# PostgreSQL 16, which has no such function: there, PostgreSQL's own record,
# every 15 s while the server writes, bounds what a read decodes again.
RESTART_LAG_BYTES = 1 << 20
# Whether this role may write that record (PostgreSQL 16 on; a superuser's
# GRANT): a statement naming the function is refused as it starts, before any
# row, so the function is called in a statement of its own, only when due.
MAY_LOG_RUNNING_TRANSACTIONS = """
    CASE WHEN current_setting('server_version_num')::int >= 160000
         THEN has_function_privilege('pg_log_standby_snapshot()', 'EXECUTE') ELSE false END
"""
_MAY_LOG = f"SELECT {MAY_LOG_RUNNING_TRANSACTIONS}"
_RUNNING_TRANSACTIONS_DUE = f"""
    SELECT {MAY_LOG_RUNNING_TRANSACTIONS} AND EXISTS (
        SELECT FROM pg_replication_slots
        WHERE slot_name = %(slot)s AND pg_current_wal_lsn() - restart_lsn > %(lag)s)
"""


class CaptureError(RuntimeError):
    """Change capture is not set up as it needs to be; the message says how to fix it."""


@dataclass
class CapturedChanges:
    """What changed after the stored position, up to `position`.

    `versions[table]` holds the distinct (old and new) versions of the changed
    rows, as tuples of their captured columns in PostgreSQL's binary format;
    `activity[organization]` the newest changes of each organization, as
    (commit position, ordinal, table, operation, row id, commit time);
    `restart_reason` is set when capture restarted, so that nothing before
    `position` can be trusted to be known.
    """

    position: str
    versions: dict[str, set[tuple]] = field(default_factory=lambda: defaultdict(set))
    truncated: set[str] = field(default_factory=set)
    activity: dict[str, deque] = field(default_factory=dict)
    restart_reason: str | None = None

    @property
    def empty(self) -> bool:
        return not self.versions and not self.truncated


def require_logical_wal(conn: psycopg.Connection) -> None:
    """CaptureError, with the fix, unless the server's wal_level is logical."""
    if (level := _wal_level(conn)) != "logical":
        raise CaptureError(_WAL_LEVEL_MESSAGE.format(level=level))


def install(conn: psycopg.Connection, tables: list[str], slot_role: str | None = None) -> None:
    """Publish `tables` and create the slot if it does not exist (autocommit
    connection of a role that owns the tables; the slot is created as
    `slot_role` when given, else as this role, which must then replicate)."""
    require_logical_wal(conn)
    conn.execute("SELECT dashboard.publish_source_changes(%s, %s)", (PUBLICATION, tables))
    if _slot(conn) is None:
        if slot_role:
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(slot_role)))
        try:
            create_slot(conn)
        finally:
            conn.execute("RESET ROLE")


def slot_name(conn: psycopg.Connection) -> str:
    """The slot of this database (slot names are per server)."""
    return conn.execute(
        "SELECT 'dashboard_changes_' || oid FROM pg_database WHERE datname = current_database()"
    ).fetchone()[0]


def create_slot(conn: psycopg.Connection) -> int:
    """Create the slot; returns the position it starts from. Capture starts
    here: a backfill after this point leaves nothing uncaptured."""
    (position,) = conn.execute(
        "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')", (slot_name(conn),)
    ).fetchone()
    return lsn_value(position)


def drop_slot(conn: psycopg.Connection) -> None:
    """Drop the slot if it exists (capture stops; WAL is no longer retained)."""
    conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                 (slot_name(conn),))


def restart_after_load(conn: psycopg.Connection) -> None:
    """After rows were loaded like a restore: if capture is running, start it
    again after them (a new slot), so that they are not decoded as changes."""
    autocommit, conn.autocommit = conn.autocommit, True
    try:
        if _slot(conn) is not None:
            drop_slot(conn)
            create_slot(conn)
    finally:
        conn.autocommit = autocommit


def read_changes(conn: psycopg.Connection, cursor: str | None, captured: dict[str, tuple[str, ...]],
                 wait_seconds: float = 0.0) -> CapturedChanges:
    """The changes of the tables and columns `captured` after the stored
    position, waiting up to `wait_seconds` for the first one, on an
    autocommit connection to the primary. The stored position is the later of
    `cursor` (the position the sensor's previous tick returned; None on the
    first tick) and the position through which changes were last marked
    pending (dashboard.capture_progress)."""
    if problems := setup_problems(conn, list(captured)):
        drop_slot(conn)
        raise CaptureError(f"change capture is broken: {'; '.join(problems)}. Run `dashboard-assets migrate`; "
                           "the change sensor then refreshes everything once.")
    cursor = _later(cursor, recorded_through(conn))
    restart_reason, confirmed = _restart_reason(conn, cursor)
    if restart_reason:  # everything committed so far is left to the full refresh this asks for
        (resumed_at,) = conn.execute(
            "INSERT INTO dashboard.capture_restarts (reason, resumed_at)"
            " VALUES (%s, greatest(%s::pg_lsn, pg_current_wal_flush_lsn())) RETURNING resumed_at::text",
            (restart_reason, lsn_text(confirmed))).fetchone()
        return CapturedChanges(position=resumed_at, restart_reason=restart_reason)
    slot = slot_name(conn)
    if cursor is not None and lsn_value(cursor) > confirmed:
        conn.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (slot, cursor))
    if conn.execute(_RUNNING_TRANSACTIONS_DUE, {"slot": slot, "lag": RESTART_LAG_BYTES}).fetchone()[0]:
        conn.execute("SELECT pg_log_standby_snapshot()")
    return _peek_until_changed(conn, slot, captured, wait_seconds)


def may_log_running_transactions(conn: psycopg.Connection) -> bool:
    """Whether capture can write its record of the running transactions here."""
    return conn.execute(_MAY_LOG).fetchone()[0]


def recorded_through(conn: psycopg.Connection) -> str | None:
    """The position through which changes have been marked pending (None: never)."""
    row = conn.execute("SELECT recorded_through::text FROM dashboard.capture_progress WHERE slot_name = %s",
                       (slot_name(conn),)).fetchone()
    return None if row is None else row[0]


def _later(cursor: str | None, recorded: str | None) -> str | None:
    """The later of two positions; a cursor that is no WAL position stays, so
    that capture restarts."""
    if cursor is None or recorded is None:
        return cursor or recorded
    try:
        return cursor if lsn_value(cursor) >= lsn_value(recorded) else recorded
    except ValueError:
        return cursor


def setup_problems(conn: psycopg.Connection, tables: list[str]) -> list[str]:
    """What keeps capture from seeing every change of `tables` (empty when none)."""
    problems = []
    if (level := _wal_level(conn)) != "logical":
        problems.append(f"wal_level is {level}, not logical")
    rows = conn.execute(
        """
        SELECT t.name, c.relreplident, p.tablename IS NOT NULL
        FROM unnest(%s::text[]) AS t(name)
        LEFT JOIN pg_class c ON c.oid = to_regclass(t.name)
        LEFT JOIN pg_publication_tables p ON p.pubname = %s AND p.tablename = t.name
                                         AND p.schemaname = current_schema()
        """,
        (tables, PUBLICATION),
    ).fetchall()
    unpublished = [name for name, _, published in rows if not published]
    partial = [name for name, identity, _ in rows if identity not in (None, "f")]
    if unpublished:
        problems.append(f"not in publication {PUBLICATION}: {', '.join(unpublished)}")
    if partial:
        problems.append(f"not REPLICA IDENTITY FULL: {', '.join(partial)}")
    return problems


def slot_health(conn: psycopg.Connection) -> dict:
    """The slot's state for monitoring: WAL status, bytes not yet confirmed by
    the sensor (lag), bytes retained, and bytes left before it would be lost."""
    row = conn.execute(
        """
        SELECT wal_status,
               pg_current_wal_lsn() - confirmed_flush_lsn,
               pg_current_wal_lsn() - restart_lsn,
               safe_wal_size
        FROM pg_replication_slots WHERE slot_name = %s
        """,
        (slot_name(conn),),
    ).fetchone()
    if row is None:
        return {"slot": "missing"}
    status, lag, retained, safe = row
    return {"slot": status, "lag_bytes": int(lag), "retained_bytes": int(retained),
            "safe_wal_bytes": None if safe is None else int(safe)}


_WAL_LEVEL_MESSAGE = (
    "change capture needs wal_level = logical (it is {level}): set it in postgresql.conf (or ALTER SYSTEM SET "
    "wal_level = logical), restart PostgreSQL, and run `dashboard-assets migrate` again"
)


def _wal_level(conn: psycopg.Connection) -> str:
    return conn.execute("SELECT current_setting('wal_level')").fetchone()[0]


def _slot(conn: psycopg.Connection) -> tuple[int, str] | None:
    """The slot's confirmed position and WAL status, or None when it does not exist."""
    row = conn.execute(
        "SELECT confirmed_flush_lsn::text, wal_status FROM pg_replication_slots WHERE slot_name = %s",
        (slot_name(conn),),
    ).fetchone()
    return None if row is None else (lsn_value(row[0]), row[1])


def _restart_reason(conn: psycopg.Connection, cursor: str | None) -> tuple[str | None, int]:
    """Why capture must restart from the current state (None: it need not),
    and the slot's confirmed position, after recreating it when needed."""
    slot = _slot(conn)
    if slot is None:
        return "the replication slot was missing", create_slot(conn)
    confirmed, status = slot
    if status == "lost":
        drop_slot(conn)
        return "the replication slot was lost: WAL it needed was removed (max_slot_wal_keep_size)", create_slot(conn)
    if cursor is None:
        return None, confirmed
    try:
        stored = lsn_value(cursor)
    except ValueError:
        return f"the stored position {cursor[:40]!r} is not a WAL position", confirmed
    if confirmed > stored:
        return "the replication slot was past the stored position (recreated or advanced elsewhere)", confirmed
    return None, confirmed


def _peek_until_changed(conn: psycopg.Connection, slot: str, captured: dict[str, tuple[str, ...]],
                        wait_seconds: float) -> CapturedChanges:
    """Peek everything committed so far; while nothing changed, look again
    until `wait_seconds` have passed."""
    deadline = time.monotonic() + wait_seconds
    wanted = {table: tuple(dict.fromkeys((*_ACTIVITY_COLUMNS, *columns))) for table, columns in captured.items()}
    projections = {table: _projection([wanted[table].index(c) for c in columns]) for table, columns in captured.items()}
    while True:
        began = time.monotonic()
        (upto,) = conn.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()
        decoder = Decoder(wanted)
        changes = CapturedChanges(position=upto)
        _collect(decoder.decode(peeked_messages(conn, slot, upto)), projections, changes)
        changes.position = lsn_text(max(lsn_value(upto), decoder.last_commit_lsn))
        remaining = deadline - time.monotonic()
        if not changes.empty or remaining <= 0:
            return changes
        time.sleep(min(remaining, max(POLL_SECONDS, 4 * (time.monotonic() - began))))


def peeked_messages(conn: psycopg.Connection, slot: str, upto: str) -> Iterator[bytes]:
    """The slot's messages up to `upto`, decoded by the server at once into a
    cursor that outlives its transaction (WITH HOLD) and then fetched in
    batches: memory stays bounded however large a transaction is, and the
    peek holds no snapshot while Python decodes what it fetched, so VACUUM and
    page pruning go on removing the rows the application's updates leave
    behind (autocommit connection)."""
    with conn.cursor(name="peek", binary=True, withhold=True) as peek:
        peek.itersize = 10_000
        peek.execute(_PEEK, {"slot": slot, "upto": upto, "publication": PUBLICATION})
        yield from (message for (message,) in peek)


# Decoded for every change, for the activity feed: the row's id and its
# organization (a table without organization_id, organizations itself, is
# keyed by its id).
_ACTIVITY_COLUMNS = ("id", "organization_id")


def _projection(indexes: list[int]) -> Callable[[tuple], tuple]:
    """What picks the captured columns out of a decoded version."""
    if len(indexes) == 1:
        (index,) = indexes
        return lambda version: (version[index],)
    return operator.itemgetter(*indexes)


def _collect(decoded: Iterator[RowChange | Truncation], projections: dict[str, Callable[[tuple], tuple]],
             changes: CapturedChanges) -> None:
    activity: dict[bytes, deque] = defaultdict(lambda: deque(maxlen=ACTIVITY_DEPTH))
    for change in decoded:
        if isinstance(change, Truncation):
            changes.truncated.update(change.tables)
            continue
        table, operation, old, new, commit_lsn, committed_at, ordinal = change
        versions = changes.versions[table]
        project = projections[table]
        row_id = (new or old)[0]
        organizations = set()
        for version in (old, new):
            if version is not None:
                versions.add(project(version))
                organizations.add(version[1] or version[0])
        for org in organizations:
            activity[org].append((commit_lsn, ordinal, table, operation, row_id, committed_at))
    changes.activity.update((str(uuid.UUID(bytes=org)), entries) for org, entries in activity.items())

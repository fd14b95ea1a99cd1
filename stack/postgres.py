"""PostgreSQL 15 + TimescaleDB for the local stack: a cluster of our own, port and socket dir.

PostgreSQL refuses to run as root. When the stack is started by root (CI, containers) the cluster
is created and run as the unprivileged `postgres` account that Debian's package creates, in a
directory that account can reach.
"""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import psycopg2
from psycopg2.extensions import make_dsn

from .process import ManagedServer, RunAs, ServerProcess, wait_until, write_private

PG_BINDIR = Path(os.environ.get("GCC_PG_BINDIR", "/usr/lib/postgresql/15/bin"))

# Server settings. synchronous_commit stays on: an acknowledged batch must survive a crash.
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_permissions": "0700",
    "shared_preload_libraries": "timescaledb",
    "timescaledb.telemetry_level": "off",
    "max_connections": "200",
    "shared_buffers": "256MB",
    "max_wal_size": "2GB",
    "synchronous_commit": "on",
    "max_worker_processes": "16",
    "timescaledb.max_background_workers": "8",
    "log_min_messages": "warning",
    "log_line_prefix": "%m [%p] ",
}


class PostgresServer(ManagedServer):
    name = "postgres"
    stop_timeout = 30.0

    def __init__(self, data_dir: Path, port: int, superuser: str, password: str, database: str,
                 run_as: RunAs | None, log_dir: Path, run_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = port
        self.superuser = superuser
        self.password = password
        self.database = database
        self.run_as = run_as
        argv = [str(PG_BINDIR / "postgres"), "-D", str(data_dir),
                "-c", f"port={port}", "-c", f"unix_socket_directories={data_dir}"]
        for key, value in SERVER_SETTINGS.items():
            argv += ["-c", f"{key}={value}"]
        # SIGINT is PostgreSQL's fast shutdown, when we stop it, when `stack down` does and when the
        # supervisor dies (SIGTERM would wait for every client to disconnect).
        self.process = ServerProcess(self.name, argv, log_path=log_dir / "postgres.log",
                                     pid_path=run_dir / "postgres.pid", run_as=run_as, stop_signal=signal.SIGINT)

    def dsn(self, database: str | None = None) -> str:
        return make_dsn(host="127.0.0.1", port=self.port, dbname=database or self.database, user=self.superuser,
                        password=self.password, connect_timeout=3)

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        pwfile = self.data_dir.parent / f".{self.data_dir.name}.pw"
        write_private(pwfile, self.password + "\n", owner=self.run_as)
        if self.run_as:
            self.run_as.own_dir(self.data_dir)
        try:
            argv = [str(PG_BINDIR / "initdb"), "-D", str(self.data_dir), "-U", self.superuser,
                    f"--pwfile={pwfile}", "--auth=scram-sha-256", "--encoding=UTF8",
                    "--locale=C.UTF-8"]
            kwargs = {}
            if self.run_as:
                kwargs.update(user=self.run_as.uid, group=self.run_as.gid, extra_groups=[])
            result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
            if result.returncode != 0:
                raise RuntimeError(f"initdb failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self, timeout: float = 60.0) -> None:
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        # process.start() removes a stale pid file of ours; a postmaster.pid left by a killed
        # server is checked by PostgreSQL itself on start.
        self.process.start()
        wait_until(lambda: self._query("select 1", database="postgres"), timeout=timeout,
                   what="PostgreSQL to accept connections", proc=self.process, interval=0.2)
        self._ensure_database()

    def _query(self, sql: str, database: str | None = None):
        with psycopg2.connect(self.dsn(database)) as conn, conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()

    def _ensure_database(self) -> None:
        conn = psycopg2.connect(self.dsn("postgres"))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("select 1 from pg_database where datname = %s", (self.database,))
                if cur.fetchone() is None:
                    cur.execute(f'create database "{self.database}"')
        finally:
            conn.close()

"""`make demo`'s stack: starts healthy, stops on Ctrl-C with no orphans, starts again, and
recovers from a supervisor killed outright."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg2
import pytest

from config.settings import REPO_ROOT, Settings
from stack import free_port
from stack.process import cmdline, pid_alive, read_pid_file

from ..support import wait_for

pytestmark = pytest.mark.slow


def _pids(data_dir: Path) -> dict[str, int]:
    """Part name -> pid, from the pid files the stack leaves in its run dir."""
    run = data_dir / "run"
    records = {p.stem: read_pid_file(p) for p in run.glob("*.pid")} if run.exists() else {}
    return {name: record.pid for name, record in records.items() if record is not None}


def _stack(command: str, data_dir: Path) -> subprocess.CompletedProcess:
    """`python -m stack <command>` from another terminal."""
    return subprocess.run([sys.executable, "-m", "stack", command, "--data-dir", str(data_dir)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def _still_running(pids: dict[str, int]) -> str:
    return "; still running: " + ", ".join(f"{name} ({' '.join(cmdline(pid))[:80]})"
                                            for name, pid in pids.items() if pid_alive(pid))


class Demo:
    """`make demo` in its own process group, as a terminal runs it."""

    running: list[Demo] = []

    def __init__(self, data_dir: Path, ports: dict[str, int]) -> None:
        env = {**os.environ, "DATA_DIR": str(data_dir),
               **{f"GCC_{k.upper()}_PORT": str(v) for k, v in ports.items()}}
        self.log = open(data_dir.parent / f"{data_dir.name}-demo.log", "ab+")  # noqa: SIM115 - open for the run
        self.proc = subprocess.Popen(["make", "--no-print-directory", "demo"], cwd=REPO_ROOT, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.data_dir = data_dir
        Demo.running.append(self)
        self.log.seek(0, os.SEEK_END)
        self._start = self.log.tell()

    def output(self) -> str:
        """What this run printed (the log file is shared by the runs of one test)."""
        self.log.flush()
        self.log.seek(self._start)
        return self.log.read().decode(errors="replace")

    def wait_ready(self) -> None:
        wait_for(lambda: "Press Ctrl-C" in self.output() or self.proc.poll() is not None,
                  180, "the demo stack to report healthy")
        assert self.proc.poll() is None, self.output()

    def ctrl_c(self) -> None:
        """Ctrl-C as a terminal sends it: SIGINT to the whole foreground process group. make
        itself then ends by SIGINT (after waiting for its child); our supervisor must have
        stopped every server and said so."""
        os.killpg(self.proc.pid, signal.SIGINT)
        code = self.proc.wait(90)
        assert code in (0, -signal.SIGINT), self.output()
        assert "stopped." in self.output(), self.output()


@pytest.fixture
def demo_dir():
    base = Path(tempfile.mkdtemp(prefix="gridcc-demo-test-"))
    base.chmod(0o711)  # the servers' unprivileged accounts pass through to their own dirs
    Demo.running = []
    yield base / "data"
    for demo in Demo.running:  # a failed test may leave a demo up
        if demo.proc.poll() is None:
            os.killpg(demo.proc.pid, signal.SIGINT)
            demo.proc.wait(90)
    subprocess.run([sys.executable, "-m", "stack", "down", "--data-dir", str(base / "data")],
                   cwd=REPO_ROOT, capture_output=True)
    subprocess.run(["rm", "-rf", str(base)])


def _started(demo_dir: Path) -> tuple[Demo, dict[str, int]]:
    """`make demo` on free ports, reported healthy."""
    ports = {"mqtt": free_port(), "redis": free_port(), "pg": free_port()}
    demo = Demo(demo_dir, ports)
    demo.wait_ready()
    return demo, ports


def _settings_from(data_dir: Path) -> Settings:
    """Where the demo's servers are (stack.env, which holds no password) as the database owner
    (secrets.json beside it)."""
    secrets = json.loads((data_dir / "secrets.json").read_text())
    return Settings(_env_file=data_dir / "stack.env", pg_password=secrets["pg_password"])


def test_demo_reports_each_service_healthy_and_ctrl_c_stops_everything(demo_dir):
    demo, ports = _started(demo_dir)
    out = demo.output()
    for line in ("PostgreSQL 15 + TimescaleDB", "Redis 7", "Mosquitto 2", "ingest-1", "ingest-2", "ingest-http",
                 "dashboard", "cases"):
        assert any(line in row and "healthy" in row for row in out.splitlines()), out
    assert "Open the dashboard:     http://127.0.0.1:" in out
    assert re.search(r"kiosk wall \(no login\):  http://127\.0\.0\.1:\d+/wall\?kiosk=1&token=[\w-]{40,}", out), out
    assert re.search(r"^    admin +\S{12,} +admin ", out, re.MULTILINE), out     # a demo login, its password
    servers = _pids(demo_dir)
    assert set(servers) == {"stack", "postgres", "redis", "mosquitto", "simulator", "ingest-1", "ingest-2",
                            "ingest-http", "handheld-bridge", "dashboard", "cases", "desk"}
    settings = _settings_from(demo_dir)
    assert settings.pg_port == ports["pg"]
    with psycopg2.connect(settings.pg_dsn) as conn, conn.cursor() as cur:
        cur.execute("insert into audit_log (actor, roles, action, outcome) values ('t', '{}', 'test.kept', 'done')")

    demo.ctrl_c()
    wait_for(lambda: not any(pid_alive(p) for p in servers.values()), 30, "every server to exit")
    assert _pids(demo_dir) == {}

    # a second `make demo` in a row starts cleanly and finds the data of the first
    again = Demo(demo_dir, ports)
    again.wait_ready()
    with psycopg2.connect(_settings_from(demo_dir).pg_dsn) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from audit_log where action = 'test.kept'")
        assert cur.fetchone()[0] == 1
    again.ctrl_c()


def test_a_killed_supervisor_takes_its_servers_with_it_and_the_next_start_works(demo_dir):
    demo, ports = _started(demo_dir)
    pids = _pids(demo_dir)
    os.kill(pids["stack"], signal.SIGKILL)
    wait_for(lambda: not any(pid_alive(p) for p in pids.values()), 30,
              "servers to exit after their supervisor was killed", explain=lambda: _still_running(pids))
    demo.proc.wait(30)
    assert set(_pids(demo_dir)) == set(pids)  # stale pid files are left behind ...

    again = Demo(demo_dir, ports)             # ... and do not block the next start
    again.wait_ready()
    again.ctrl_c()
    assert _pids(demo_dir) == {}


def test_a_crashed_server_is_restarted_by_the_supervisor(demo_dir):
    demo, ports = _started(demo_dir)
    old = _pids(demo_dir)["redis"]
    os.kill(old, signal.SIGKILL)

    def restarted() -> bool:
        new = _pids(demo_dir).get("redis")
        return new not in (None, old) and pid_alive(new)

    wait_for(restarted, 30, "the supervisor to restart Redis")
    assert "redis exited with code" in demo.output()
    demo.ctrl_c()


def test_status_names_each_running_part_and_down_stops_the_stack_from_another_terminal(demo_dir):
    demo, ports = _started(demo_dir)
    pids = _pids(demo_dir)
    status = _stack("status", demo_dir)
    assert status.returncode == 0, status.stdout + status.stderr
    for name, pid in pids.items():
        assert f"{name} running, pid {pid}" in " ".join(status.stdout.split()), status.stdout

    down = _stack("down", demo_dir)
    assert "stopped." in down.stdout, down.stdout + down.stderr
    assert demo.proc.wait(90) == 0, demo.output()
    assert not any(pid_alive(p) for p in pids.values()), _still_running(pids)
    assert _pids(demo_dir) == {}
    assert _stack("status", demo_dir).returncode == 3

"""Start, watch and stop one server process that the local stack owns.

Every server runs in its own session (so Ctrl-C reaches only the supervisor, which then stops the
servers in order), dies with its supervisor (Linux parent-death signal), and leaves a pid file that
the next start recognises as stale when its process is gone.
"""
from __future__ import annotations

import ctypes
import os
import pwd
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from telemetry.lifecycle import STOP_SIGNALS

_PR_SET_PDEATHSIG = 1


def running_as_root() -> bool:
    return os.geteuid() == 0


@dataclass(frozen=True)
class RunAs:
    """The unprivileged account a server runs as when the stack is started by root."""

    user: str
    uid: int
    gid: int

    @classmethod
    def for_service(cls, user: str) -> RunAs | None:
        """None when we are not root: servers then simply run as the current user."""
        if not running_as_root():
            return None
        entry = pwd.getpwnam(user)
        return cls(user=user, uid=entry.pw_uid, gid=entry.pw_gid)

    def own(self, *paths: Path) -> None:
        for path in paths:
            os.chown(path, self.uid, self.gid)


def reachable_by(path: Path, run_as: RunAs | None) -> bool:
    """True when `run_as` can traverse every ancestor of `path` (root can reach anything)."""
    if run_as is None:
        return True
    for ancestor in [path.resolve(), *path.resolve().parents]:
        if not ancestor.exists():
            continue
        st = ancestor.stat()
        if st.st_uid == run_as.uid:
            bit = 0o100
        elif st.st_gid == run_as.gid:
            bit = 0o010
        else:
            bit = 0o001
        if not st.st_mode & bit:
            return False
    return True


def _death_signal_setup(signum: int):
    def setup() -> None:
        # Runs in the child after the uid switch and before exec: the server gets `signum` if the
        # supervisor dies, so a killed `make demo` leaves no orphans behind.
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signum)
        # the supervisor blocks its stop signals to take them with sigwait; its servers must not
        # inherit that mask, or they could never be stopped
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    return setup


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def runs(pid: int, *tokens: str) -> bool:
    """True when process `pid` is alive and its command line contains every token (so a pid
    reused by an unrelated process after a reboot is never signalled)."""
    line = " ".join(cmdline(pid))
    return bool(line) and all(token in line for token in tokens)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ServerProcess:
    """One server child process with a pid file and a log file."""

    def __init__(self, name: str, argv: list[str], *, log_path: Path, pid_path: Path,
                 run_as: RunAs | None = None, env: dict[str, str] | None = None,
                 cwd: Path | None = None, death_signal: int = signal.SIGTERM) -> None:
        self.name = name
        self.death_signal = death_signal
        self.restarts = 0
        self.exited_at: float | None = None
        self.argv = argv
        self.log_path = log_path
        self.pid_path = pid_path
        self.run_as = run_as
        self.env = env
        self.cwd = cwd
        self.ready_url: str | None = None  # answers 200 once the process is ready (apps only)
        self._proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def clear_stale_pid_file(self) -> None:
        """Remove a pid file left by a crash; refuse to start twice over a live server."""
        if not self.pid_path.exists():
            return
        try:
            pid = int(self.pid_path.read_text().strip() or 0)
        except ValueError:
            pid = 0
        if pid and runs(pid, *self.identity):
            raise RuntimeError(
                f"{self.name} is already running (pid {pid}, pid file {self.pid_path}); "
                f"stop it first with `make stop`")
        self.pid_path.unlink(missing_ok=True)

    @property
    def identity(self) -> tuple[str, ...]:
        """What this server's command line contains: its program and its first arguments."""
        return (os.path.basename(self.argv[0]), *self.argv[1:3])

    def start(self) -> None:
        self.clear_stale_pid_file()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        kwargs = {}
        if self.run_as is not None:
            kwargs.update(user=self.run_as.uid, group=self.run_as.gid, extra_groups=[])
        self._proc = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_death_signal_setup(self.death_signal), env=self.env,
            cwd=self.cwd, **kwargs)
        log.close()
        self.pid_path.parent.mkdir(parents=True, exist_ok=True)
        self.pid_path.write_text(f"{self._proc.pid}\n")

    def exited(self) -> int | None:
        """The exit code if the process has ended, else None."""
        return self._proc.poll() if self._proc else 0

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def send_signal(self, signum: int) -> None:
        if self._proc and self._proc.poll() is None:
            os.kill(self._proc.pid, signum)

    def stop(self, timeout: float = 15.0, signum: int = signal.SIGTERM) -> None:
        """Ask the server to stop; kill it when it does not within `timeout` seconds."""
        if self._proc is not None and self._proc.poll() is None:
            try:
                os.kill(self._proc.pid, signum)
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
            except ProcessLookupError:
                pass
        self.pid_path.unlink(missing_ok=True)

    def kill(self) -> None:
        """Simulate a crash: SIGKILL, no clean-up by the server itself (the pid file stays)."""
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGKILL)
            self._proc.wait(5)


def wait_until(check, *, timeout: float, what: str, proc: ServerProcess | None = None,
               interval: float = 0.1):
    """Poll `check()` until it returns a truthy value; fail early if `proc` exits meanwhile."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.exited() is not None:
            raise RuntimeError(f"{proc.name} exited with code {proc.exited()} while waiting for "
                               f"{what}; log tail:\n{proc.log_tail()}")
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last_error = exc
        time.sleep(interval)
    detail = f" (last error: {last_error})" if last_error else ""
    tail = f"; log tail:\n{proc.log_tail()}" if proc else ""
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}{tail}")

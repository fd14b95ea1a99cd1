"""Start, watch and stop one server process that the local stack owns.

Every server runs in its own session (so Ctrl-C reaches only the supervisor, which then stops the
servers in order), dies with its supervisor (Linux parent-death signal), and leaves a pid file that
says how to recognise and stop it: the next start recognises it as stale when its process is gone,
and `python -m stack down|status` act on every pid file they find without a list of names.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pwd
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from core.lifecycle import STOP_SIGNALS

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

    def own_dir(self, path: Path) -> None:
        """Hand directory `path` to this account, never through a link: it is opened without
        following one (a link or a file put in its place makes this fail) and changed through the
        descriptor."""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchown(fd, self.uid, self.gid)
        finally:
            os.close(fd)


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
        # everything a server creates (Redis's append-only files, Mosquitto's persistence, logs of
        # its own) is private to its account
        os.umask(PRIVATE_UMASK)
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


@dataclass(frozen=True)
class PidRecord:
    """What a pid file says: the process, the tokens its command line contains (so a pid reused by
    an unrelated program after a reboot is never taken for ours), and the signal that stops it."""

    pid: int
    identity: tuple[str, ...]
    stop_signal: signal.Signals = signal.SIGTERM

    def is_running(self) -> bool:
        return runs(self.pid, *self.identity)

    def text(self) -> str:
        return json.dumps({"pid": self.pid, "identity": list(self.identity),
                           "stop_signal": self.stop_signal.name}) + "\n"


def parse_pid_record(text: str) -> PidRecord | None:
    """The record in a pid file's text; None for anything else (an old file holding only a number,
    an empty or garbled one): such a file cannot say whose pid it holds, so it is never acted on."""
    try:
        item = json.loads(text)
        pid, identity, stop_signal = item["pid"], item["identity"], signal.Signals[item["stop_signal"]]
    except (ValueError, TypeError, KeyError):
        return None
    valid = (type(pid) is int and pid > 0 and isinstance(identity, list) and identity
             and all(isinstance(token, str) and token for token in identity))
    return PidRecord(pid, tuple(identity), stop_signal) if valid else None


def read_pid_file(path: Path) -> PidRecord | None:
    """The record in pid file `path`, or None when it is missing or unrecognisable."""
    try:
        return parse_pid_record(path.read_text())
    except (OSError, UnicodeDecodeError):
        return None


PRIVATE_UMASK = 0o077   # what the stack and its servers create is theirs alone


def write_private(path: Path, text: str, owner: RunAs | None = None) -> None:
    """Write a file only its owner (`owner`, else us) may read, atomically, and safely in a
    directory that a service account can write to: the temporary file gets a name nobody could
    have prepared and is created with O_EXCL|O_NOFOLLOW (mkstemp), its mode and owner are set
    through its descriptor, and the rename replaces whatever sits at `path` (a link included)
    instead of following it. Root never writes or chowns through a link a service planted."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            os.fchmod(handle.fileno(), 0o600)
            if owner is not None:
                os.fchown(handle.fileno(), owner.uid, owner.gid)
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def untrusted_reason(directory: Path) -> str | None:
    """Why `directory` (resolved) cannot hold the stack's data, or None when it can: it and every
    directory above it must belong to root or to us, and none may let others rename what is in it
    (writable by group or others without the sticky bit, as /tmp has). Otherwise whoever owns or
    can write to it could swap a directory that root later hands to a service for a link."""
    me = os.geteuid()
    for place in [directory, *directory.parents]:
        st = os.lstat(place)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            return f"{place} is not a directory"
        if st.st_uid not in (0, me):
            return f"{place} belongs to uid {st.st_uid}, neither root nor us (uid {me})"
        if place == directory and st.st_mode & 0o022:
            return f"{place} is writable by others (mode {stat.S_IMODE(st.st_mode):o})"
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            return f"{place} is writable by others without the sticky bit (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def write_pid_file(path: Path, record: PidRecord) -> None:
    """Write atomically, so a concurrent `down` or `status` never reads half a file."""
    write_private(path, record.text())


def live_record(path: Path) -> PidRecord | None:
    """The record in `path` when its process still runs; otherwise the file is stale (its process
    is gone, or it is unrecognisable) and is removed, so it never blocks a start."""
    record = read_pid_file(path)
    if record is not None and record.is_running():
        return record
    path.unlink(missing_ok=True)
    return None


def pid_files(run_dir: Path) -> list[Path]:
    """Every pid file in `run_dir`, oldest first: the order in which their processes started."""
    return sorted(run_dir.glob("*.pid"), key=_written_at) if run_dir.is_dir() else []


def _written_at(path: Path) -> tuple[int, str]:
    try:
        return path.stat().st_mtime_ns, path.name
    except OSError:  # removed meanwhile by the process's own stop
        return 0, path.name


def stop_recorded(paths: Iterable[Path], timeout: float) -> list[str]:
    """Stop the processes that the pid files `paths` record, each with its recorded signal, and
    wait up to `timeout` seconds for all of them to exit. Each file is removed; a process whose
    command line does not match its record is never signalled. Returns the names (file stems) of
    the processes that were signalled."""
    signalled: list[tuple[str, PidRecord]] = []
    for path in paths:
        record = live_record(path)
        if record is None:
            continue
        try:
            os.kill(record.pid, record.stop_signal)
            signalled.append((path.stem, record))
        except ProcessLookupError:
            pass
        path.unlink(missing_ok=True)
    deadline = time.monotonic() + timeout
    # is_running, not pid_alive: an exited child not yet reaped by its parent has stopped
    while any(record.is_running() for _, record in signalled) and time.monotonic() < deadline:
        time.sleep(0.2)
    return [name for name, _ in signalled]


class ServerProcess:
    """One server child process with a pid file and a log file."""

    def __init__(self, name: str, argv: list[str], *, log_path: Path, pid_path: Path,
                 run_as: RunAs | None = None, env: dict[str, str] | None = None,
                 cwd: Path | None = None, stop_signal: signal.Signals = signal.SIGTERM) -> None:
        self.name = name
        # how it is stopped: by us, by `stack down` (from the pid file) and when the supervisor dies
        self.stop_signal = stop_signal
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
        record = live_record(self.pid_path)
        if record is not None:
            raise RuntimeError(
                f"{self.name} is already running (pid {record.pid}, pid file {self.pid_path}); "
                f"stop it first with `make stop`")

    @property
    def identity(self) -> tuple[str, ...]:
        """What this server's command line contains: its program and its first arguments."""
        return (os.path.basename(self.argv[0]), *self.argv[1:3])

    def start(self) -> None:
        self.clear_stale_pid_file()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        kwargs = {}
        if self.run_as is not None:
            kwargs.update(user=self.run_as.uid, group=self.run_as.gid, extra_groups=[])
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(log_fd, "ab") as log:
            self._proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=_death_signal_setup(self.stop_signal), env=self.env,
                cwd=self.cwd, **kwargs)
        write_pid_file(self.pid_path, PidRecord(self._proc.pid, self.identity, self.stop_signal))

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

    def stop(self, timeout: float = 15.0) -> None:
        """Ask the server to stop (its stop signal); kill it when it does not within `timeout`
        seconds."""
        if self._proc is not None and self._proc.poll() is None:
            try:
                os.kill(self._proc.pid, self.stop_signal)
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
            except ProcessLookupError:
                pass
        self._remove_own_pid_file()

    def _remove_own_pid_file(self) -> None:
        """Remove the pid file if it is ours: after a refused start it belongs to another process."""
        record = read_pid_file(self.pid_path)
        if self._proc is not None and record is not None and record.pid == self._proc.pid:
            self.pid_path.unlink(missing_ok=True)

    def kill(self) -> None:
        """Simulate a crash: SIGKILL, no clean-up by the server itself (the pid file stays)."""
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGKILL)
            self._proc.wait(5)


class ManagedServer:
    """A server of the stack (PostgreSQL, Redis, Mosquitto) wrapped around its ServerProcess.

    Subclasses write their configuration and wait for health in start(); everything else the
    supervisor needs of a part (name, exited, log_tail, stop) is the process's, so a server and an
    app are restarted through the same path (stack.supervision)."""

    name: str
    process: ServerProcess
    stop_timeout = 15.0  # seconds before a server that does not stop is killed

    def start(self) -> None:
        raise NotImplementedError

    def exited(self) -> int | None:
        return self.process.exited()

    def log_tail(self, lines: int = 20) -> str:
        return self.process.log_tail(lines)

    def stop(self) -> None:
        self.process.stop(timeout=self.stop_timeout)


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

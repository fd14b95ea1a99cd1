"""The stack's supervision without servers: crashed parts come back with a growing back-off (on an
injected clock), and `down` acts only on pid files that recognise their process."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
from pathlib import Path

import pytest

from stack.process import (
    PidRecord,
    ServerProcess,
    live_record,
    pid_files,
    read_pid_file,
    stop_recorded,
    write_pid_file,
)
from stack.supervision import (
    HEALTH_EVERY,
    MAX_BACKOFF,
    STABLE_AFTER,
    UNHEALTHY_LIMIT,
    RestartState,
    Step,
    Supervisor,
    backoff,
    health_step,
    restart_step,
)

from ..support import wait_for


def _part(tmp_path: Path, name: str, *argv: str) -> ServerProcess:
    return ServerProcess(name, list(argv), log_path=tmp_path / f"{name}.log", pid_path=tmp_path / f"{name}.pid")


@pytest.fixture
def parts():
    started: list[ServerProcess] = []
    yield started
    for part in started:
        part.stop(timeout=5)


@pytest.fixture
def sleeper():
    """A live process that is not one of ours (the test's own child)."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def _exited(part: ServerProcess) -> None:
    wait_for(lambda: part.exited() is not None, 5, f"{part.name} to exit")


def _crash_and_restart_times(supervisor: Supervisor, part: ServerProcess, crashes: int) -> list[float]:
    """Tick the supervisor every 0.5 s of fake time; the fake times at which `part` was restarted."""
    now, restarted_at = 0.0, []
    while len(restarted_at) < crashes:
        _exited(part)
        now += 0.5
        if supervisor.restart_crashed(now) == [part.name]:
            restarted_at.append(now)
    return restarted_at


def test_a_crashing_part_is_restarted_with_a_back_off_that_doubles_up_to_30_seconds(tmp_path, parts):
    crashy = _part(tmp_path, "crashy", "sh", "-c", "exit 3")
    parts.append(crashy)
    crashy.start()
    supervisor = Supervisor([crashy])

    restarted_at = _crash_and_restart_times(supervisor, crashy, crashes=7)

    # each crash is seen on the next tick (0.5 s), then the part waits out its back-off
    waits = [b - a for a, b in zip([0.0, *restarted_at], restarted_at, strict=False)]
    assert waits == [1.5, 2.5, 4.5, 8.5, 16.5, 30.5, 30.5]
    assert supervisor.states["crashy"].restarts == 7


def test_a_crash_is_reported_with_its_exit_code_and_log_tail(tmp_path, parts, caplog):
    crashy = _part(tmp_path, "crashy", "sh", "-c", "echo out of cheese; exit 3")
    parts.append(crashy)
    crashy.start()
    _exited(crashy)
    supervisor = Supervisor([crashy])

    with caplog.at_level(logging.ERROR, logger="stack"):
        assert supervisor.restart_crashed(now=100.0) == []

    assert "crashy exited with code 3; restarting. Log tail:\nout of cheese" in caplog.text


def test_the_supervisor_never_waits_out_a_back_off_itself(tmp_path, parts):
    crashy = _part(tmp_path, "crashy", "sh", "-c", "exit 3")
    parts.append(crashy)
    crashy.start()
    _exited(crashy)
    supervisor = Supervisor([crashy])

    assert supervisor.restart_crashed(now=100.0) == []   # seen exited
    assert supervisor.restart_crashed(now=100.5) == []   # backing off: returns at once, no restart
    assert supervisor.restart_crashed(now=101.0) == ["crashy"]


def test_a_running_part_is_left_alone(tmp_path, parts):
    steady = _part(tmp_path, "steady", "sleep", "60")
    parts.append(steady)
    steady.start()
    pid = steady.pid
    supervisor = Supervisor([steady])

    assert [supervisor.restart_crashed(now) for now in (1.0, 50.0, 500.0)] == [[], [], []]
    assert steady.pid == pid and steady.exited() is None


def test_a_part_that_fails_to_start_again_is_backed_off_like_a_crash(tmp_path, parts):
    crashy = _part(tmp_path, "crashy", "sh", "-c", "exit 3")
    parts.append(crashy)
    crashy.start()
    _exited(crashy)
    crashy.argv = [str(tmp_path / "no-such-program")]  # the next start raises
    supervisor = Supervisor([crashy])

    supervisor.restart_crashed(now=0.0)
    assert supervisor.restart_crashed(now=1.0) == ["crashy"]  # tried, failed, and did not stop the loop
    supervisor.restart_crashed(now=1.5)                         # seen exited again
    assert supervisor.restart_crashed(now=3.0) == []           # now 2 s of back-off
    assert supervisor.restart_crashed(now=3.5) == ["crashy"]


def test_a_part_that_ran_for_a_minute_since_its_restart_is_forgiven_its_crashes():
    state = RestartState(restarts=5, restarted_at=0.0)

    state, step = restart_step(state, None, now=STABLE_AFTER)

    assert (state, step) == (RestartState(), Step.RUNNING)
    assert restart_step(state, 1, now=100.0) == (RestartState(exited_at=100.0), Step.CRASHED)


def test_a_part_that_crashes_soon_after_its_restart_keeps_its_count():
    state, step = restart_step(RestartState(restarts=5, restarted_at=0.0), None, now=STABLE_AFTER - 1)
    assert (state.restarts, step) == (5, Step.RUNNING)


def test_the_back_off_is_capped():
    assert [backoff(n) for n in range(8)] == [1, 2, 4, 8, 16, MAX_BACKOFF, MAX_BACKOFF, MAX_BACKOFF]


def test_a_part_that_runs_but_fails_its_health_check_for_a_minute_is_stopped_and_restarted(tmp_path, parts):
    hung = _part(tmp_path, "hung", "sleep", "600")       # running, but (the probe says) answering nothing
    parts.append(hung)
    hung.start()
    first_pid = hung.pid
    healthy = {"hung": False}
    supervisor = Supervisor([hung], probe=lambda part: healthy[part.name])

    now, stopped_at = 0.0, None
    while stopped_at is None and now < 2 * UNHEALTHY_LIMIT:
        now += 1.0
        if supervisor.stop_unhealthy(now) == ["hung"]:
            stopped_at = now
        supervisor.restart_crashed(now)
    assert stopped_at is not None and UNHEALTHY_LIMIT <= stopped_at - 1.0 < UNHEALTHY_LIMIT + HEALTH_EVERY
    _exited(hung)
    while supervisor.restart_crashed(now) != ["hung"]:       # the crash path: reported, backed off, restarted
        now += 0.5
    assert hung.exited() is None and hung.pid != first_pid


def test_a_part_that_recovers_before_the_limit_is_left_running():
    since, stop = health_step(None, False, now=10.0)
    since, stop = health_step(since, False, now=10.0 + UNHEALTHY_LIMIT - 1)
    assert (since, stop) == (10.0, False)
    assert health_step(since, True, now=10.0 + UNHEALTHY_LIMIT) == (None, False)
    assert health_step(10.0, False, now=10.0 + UNHEALTHY_LIMIT) == (10.0, True)


def test_parts_without_a_health_check_are_never_stopped_for_it(tmp_path, parts):
    steady = _part(tmp_path, "steady", "sleep", "60")
    parts.append(steady)
    steady.start()
    supervisor = Supervisor([steady])                       # no probe: nothing to check
    assert [supervisor.stop_unhealthy(now) for now in (0.0, 100.0, 1000.0)] == [[], [], []]
    assert steady.exited() is None


# --- pid files -------------------------------------------------------------------------------


def test_a_started_process_records_its_pid_identity_and_stop_signal(tmp_path, parts):
    steady = ServerProcess("steady", ["sleep", "60"], log_path=tmp_path / "steady.log",
                           pid_path=tmp_path / "steady.pid", stop_signal=signal.SIGINT)
    parts.append(steady)
    steady.start()

    record = read_pid_file(steady.pid_path)

    assert record == PidRecord(steady.pid, ("sleep", "60"), signal.SIGINT)
    assert record.is_running()


def test_down_stops_a_live_process_that_matches_its_pid_file_with_the_recorded_signal(tmp_path, parts):
    steady = _part(tmp_path, "steady", "sleep", "60")
    parts.append(steady)
    steady.start()

    assert stop_recorded([steady.pid_path], timeout=5) == ["steady"]

    _exited(steady)
    assert steady.exited() == -signal.SIGTERM
    assert not steady.pid_path.exists()


def test_down_never_signals_a_pid_whose_command_line_does_not_match(tmp_path, sleeper):
    path = tmp_path / "redis.pid"
    write_pid_file(path, PidRecord(sleeper.pid, ("redis-server", "/some/redis.conf")))

    assert stop_recorded([path], timeout=1) == []

    assert sleeper.poll() is None
    assert not path.exists()  # stale: removed, so it blocks no start


@pytest.mark.parametrize("text", ["12345\n", "", "{garbled", '{"pid": "12345"}', "[1, 2]",
                                  '{"pid": 1, "identity": [], "stop_signal": "SIGTERM"}',
                                  '{"pid": 1, "identity": ["x"], "stop_signal": "SIGNOPE"}'])
def test_an_old_or_garbled_pid_file_is_unrecognised_and_removed(tmp_path, sleeper, text):
    path = tmp_path / "old.pid"
    path.write_text(text.replace("12345", str(sleeper.pid)))

    assert read_pid_file(path) is None
    assert stop_recorded([path], timeout=1) == []

    assert sleeper.poll() is None
    assert not path.exists()


def test_a_stale_pid_file_does_not_block_the_next_start(tmp_path, parts):
    steady = _part(tmp_path, "steady", "sleep", "60")
    write_pid_file(steady.pid_path, PidRecord(2 ** 22 + 1, ("sleep", "60")))  # above any pid_max: gone
    parts.append(steady)

    steady.start()

    assert read_pid_file(steady.pid_path).pid == steady.pid


def test_a_live_pid_file_refuses_a_second_start(tmp_path, parts):
    first, second = _part(tmp_path, "steady", "sleep", "60"), _part(tmp_path, "steady", "sleep", "60")
    parts.append(first)
    first.start()

    with pytest.raises(RuntimeError, match="already running"):
        second.start()
    second.stop()  # a refused start leaves the other's pid file alone

    assert live_record(first.pid_path).pid == first.pid


def test_pid_files_are_listed_in_the_order_their_processes_started(tmp_path):
    for i, name in enumerate(["stack", "postgres", "redis", "ingest-1"]):
        path = tmp_path / f"{name}.pid"
        write_pid_file(path, PidRecord(100 + i, (name,)))
        stamp = 1_700_000_000 + i
        os.utime(path, (stamp, stamp))

    assert [p.stem for p in pid_files(tmp_path)] == ["stack", "postgres", "redis", "ingest-1"]
    assert pid_files(tmp_path / "missing") == []

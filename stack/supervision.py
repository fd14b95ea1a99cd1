"""Restarting the parts of the stack that crash: servers and apps alike, through one path.

A part is anything with a name that can be started, stopped, asked whether it has exited and for the
end of its log: the servers (stack.process.ManagedServer) and the apps (stack.process.ServerProcess)
both are. Whether a crashed part is restarted now is a pure function of its restart state, its exit
code and the time (`restart_step`), so the supervisor loop never sleeps to back off and tests need
no real clock: a part still backing off is simply looked at again on the next tick.

A part that runs but stopped answering its health URL (an app deadlocked, or one whose /healthz
says it is stuck) for UNHEALTHY_LIMIT seconds is stopped, with its log tail, and from there takes
the same path as one that crashed (`health_step`).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Protocol

log = logging.getLogger("stack")

MAX_BACKOFF = 30.0   # seconds: the longest wait before restarting a part that keeps crashing
STABLE_AFTER = 60.0  # seconds: a part running this long since its restart is forgiven its crashes
HEALTH_EVERY = 5.0       # seconds between two looks at a part's health URL
UNHEALTHY_LIMIT = 60.0   # seconds a running part may fail its health check before it is stopped


class Part(Protocol):
    """What the supervisor needs of a server or an app."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def exited(self) -> int | None: ...

    def log_tail(self, lines: int = 20) -> str: ...


def backoff(restarts: int) -> float:
    """Seconds to wait before the next restart of a part restarted `restarts` times in a row:
    1, 2, 4, 8, 16, then 30 s, so a part that keeps crashing does not spin."""
    return min(2.0 ** restarts, MAX_BACKOFF)


@dataclass(frozen=True)
class RestartState:
    """One part's restart bookkeeping: restarts in a row, when it was last restarted, and when the
    supervisor saw it exit (None while it runs)."""

    restarts: int = 0
    restarted_at: float = 0.0
    exited_at: float | None = None


class Step(Enum):
    RUNNING = "running"   # nothing to do
    CRASHED = "crashed"   # just seen to have exited: report it, restart once the back-off has passed
    WAITING = "waiting"   # exited, still backing off
    RESTART = "restart"   # start it again now


def restart_step(state: RestartState, exit_code: int | None, now: float) -> tuple[RestartState, Step]:
    """The next state of one part and what to do with it, given its exit code (None while it runs)
    and the time `now` (monotonic seconds)."""
    if exit_code is None:
        if state.restarts and now - state.restarted_at >= STABLE_AFTER:
            return RestartState(), Step.RUNNING
        return replace(state, exited_at=None), Step.RUNNING
    if state.exited_at is None:
        return replace(state, exited_at=now), Step.CRASHED
    if now - state.exited_at >= backoff(state.restarts):
        return RestartState(restarts=state.restarts + 1, restarted_at=now), Step.RESTART
    return state, Step.WAITING


def health_step(failing_since: float | None, healthy: bool, now: float) -> tuple[float | None, bool]:
    """When a running part started failing its health check (None: it passes) and whether it has
    failed for UNHEALTHY_LIMIT seconds now, and must be stopped."""
    if healthy:
        return None, False
    since = failing_since if failing_since is not None else now
    return since, now - since >= UNHEALTHY_LIMIT


class Supervisor:
    """Watches started parts and restarts those that crash, each with its own back-off; stops (and
    so restarts) those that run but fail their health check for too long. `probe(part)` says
    whether a part is healthy, None for a part without a health check."""

    def __init__(self, parts: Sequence[Part], probe: Callable[[Part], bool | None] | None = None) -> None:
        self.parts = list(parts)
        self.states = {part.name: RestartState() for part in self.parts}
        self.probe = probe or (lambda part: None)
        self.failing_since: dict[str, float | None] = {}
        self._next_health_look = 0.0

    def stop_unhealthy(self, now: float) -> list[str]:
        """Every HEALTH_EVERY seconds, ask each running part with a health check whether it is
        healthy; stop one that has failed for UNHEALTHY_LIMIT seconds (its exit is then seen by
        `restart_crashed`, which restarts it with its back-off). Returns the names stopped."""
        if now < self._next_health_look:
            return []
        self._next_health_look = now + HEALTH_EVERY
        stopped = []
        for part in self.parts:
            if part.exited() is not None:
                self.failing_since.pop(part.name, None)
                continue
            healthy = self.probe(part)
            if healthy is None:
                continue
            since, stop = health_step(self.failing_since.get(part.name), healthy, now)
            self.failing_since[part.name] = since
            if stop:
                log.error("%s has failed its health check for %.0f s; stopping it to restart it. Log tail:\n%s",
                          part.name, now - since, part.log_tail(10))
                part.stop()
                self.failing_since.pop(part.name, None)
                stopped.append(part.name)
        return stopped

    def restart_crashed(self, now: float) -> list[str]:
        """Look at every part once at time `now`: report a part seen to have exited, restart one
        whose back-off has passed. Returns the names of the parts restarted. Never sleeps."""
        restarted = []
        for part in self.parts:
            code = part.exited()
            self.states[part.name], step = restart_step(self.states[part.name], code, now)
            if step is Step.CRASHED:
                log.error("%s exited with code %s; restarting. Log tail:\n%s", part.name, code, part.log_tail(10))
            elif step is Step.RESTART:
                _restart(part, self.states[part.name].restarts)
                restarted.append(part.name)
        return restarted


def _restart(part: Part, restarts: int) -> None:
    """Start `part` again. A start that fails (a server that does not become healthy) counts as one
    more crash: the part is stopped, so the next look sees it exited and backs off further, and
    the supervisor keeps running the rest of the stack."""
    log.info("restarting %s (restart %d in a row)", part.name, restarts)
    try:
        part.start()
    except Exception:  # noqa: BLE001 - whatever failed, the part is down and is retried later
        log.exception("%s did not start again", part.name)
        part.stop()

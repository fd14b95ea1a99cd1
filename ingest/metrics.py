"""The ingest worker's Prometheus metrics (served at /metrics by http.py), its progress (when it last
committed, batches abandoned since) and the live state's health, for the metrics and for /healthz."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Progress:
    """When the worker last committed a batch, and when it last found nothing to do. A worker
    with messages waiting that has done neither for a while is stalled. Pure: the clock is
    injected (monotonic seconds)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.last_commit: float | None = None
        self.last_idle: float | None = None
        self.abandoned_since_commit = 0   # batches given up because an exception escaped the chain

    def committed(self) -> None:
        self.last_commit = self.clock()
        self.abandoned_since_commit = 0

    def abandoned(self) -> None:
        self.abandoned_since_commit += 1

    def idle(self) -> None:
        self.last_idle = self.clock()

    def since_commit(self) -> float:
        """Seconds since the last commit (since the start, before the first)."""
        return self.clock() - (self.last_commit if self.last_commit is not None else self.started)

    def stalled_for(self, pending: int) -> float:
        """How long the worker has had work and not committed: 0 when nothing is pending; else
        the seconds since it last committed or was idle (or started)."""
        if pending <= 0:
            return 0.0
        marks = [m for m in (self.started, self.last_commit, self.last_idle) if m is not None]
        return self.clock() - max(marks)


def is_out_of_memory(exc: BaseException) -> bool:
    """Redis refused a write because it is full (maxmemory with noeviction): it will not pass by
    itself, someone must act."""
    return isinstance(exc, redis.exceptions.OutOfMemoryError) or "OOM command not allowed" in str(exc)


class LiveHealth:
    """Whether the live state keeps failing: since when every live update has failed (None while
    the last one worked) and whether Redis said it is out of memory. Pure: the clock is injected."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.failing_since: float | None = None
        self.out_of_memory = False

    def ok(self) -> None:
        self.failing_since, self.out_of_memory = None, False

    def failed(self, exc: BaseException) -> None:
        if self.failing_since is None:
            self.failing_since = self.clock()
        self.out_of_memory = is_out_of_memory(exc)

    def failing_for(self) -> float:
        return 0.0 if self.failing_since is None else self.clock() - self.failing_since


@dataclass(frozen=True)
class Health:
    """What /healthz judges a worker by (see assess)."""
    broker_up: bool
    pending: int
    stalled_for: float
    since_commit: float
    stall_after_s: float
    loop_ended: bool = False
    live_failing_for: float = 0.0
    live_out_of_memory: bool = False
    live_unhealthy_after_s: float = 30.0
    abandoned: int = 0


def _reasons(h: Health) -> list[str]:
    reasons = []
    if not h.broker_up:
        reasons.append("the broker link is down")
    if h.stalled_for > h.stall_after_s:
        reasons.append(f"{h.pending} messages waiting and no commit for {h.stalled_for:.0f} s "
                       f"(more than {h.stall_after_s:g} s)")
    if h.loop_ended:
        reasons.append("the worker's loop has ended")
    if h.live_out_of_memory:
        reasons.append("Redis is out of memory: live updates are refused (OOM), the screens do not change")
    elif h.live_failing_for > h.live_unhealthy_after_s:
        reasons.append(f"every live update has failed for {h.live_failing_for:.0f} s (more than "
                       f"{h.live_unhealthy_after_s:g} s): the screens do not change")
    if h.abandoned:
        reasons.append(f"{h.abandoned} batch(es) abandoned since the last commit (an exception escaped the chain; "
                       "reconnected to the broker so that it delivers them again)")
    return reasons


def assess(health: Health | None = None, **values) -> tuple[bool, dict]:
    """A worker's health: not ok when the broker link is down, when messages have waited more than
    stall_after_s without a commit (the database not coming back, a stuck batch, a dead loop), when
    its loop has ended, while the live state keeps failing (Redis full, or every update failed for
    live_unhealthy_after_s), or when a batch was abandoned and nothing committed since.
    (ok, detail): the detail is JSON-ready, with a "reason" when not ok."""
    h = health or Health(**values)
    reasons = _reasons(h)
    detail = {"broker": "up" if h.broker_up else "down", "pending": h.pending,
              "seconds_since_commit": round(h.since_commit, 1), "stall_after_s": h.stall_after_s,
              "live": "out of memory" if h.live_out_of_memory else "failing" if h.live_failing_for else "ok"}
    if h.abandoned:
        detail["abandoned_batches"] = h.abandoned
    if reasons:
        detail["reason"] = "; ".join(reasons)
    return not reasons, detail


class Metrics:
    def __init__(self, worker: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"worker": worker}
        r = self.registry
        self.received = Counter("gcc_ingest_received", "messages received from the broker (and HTTP)",
                                ["worker"], registry=r).labels(**labels)
        self.stored = Counter("gcc_ingest_stored_rows", "rows committed, by table", ["worker", "table"], registry=r)
        self.duplicates = Counter("gcc_ingest_duplicates", "rows skipped as already stored (redeliveries)",
                                  ["worker"], registry=r).labels(**labels)
        self.dead_letters = Counter("gcc_ingest_dead_letters", "messages dead-lettered, by reason",
                                    ["worker", "reason"], registry=r)
        self.redeliveries = Counter("gcc_ingest_redeliveries", "messages the broker delivered again (DUP)",
                                    ["worker"], registry=r).labels(**labels)
        self.acked = Counter("gcc_ingest_acked", "messages acknowledged to the broker after commit",
                             ["worker"], registry=r).labels(**labels)
        self.db_retries = Counter("gcc_ingest_db_temporary_errors", "batches retried after a temporary "
                                  "database error", ["worker"], registry=r).labels(**labels)
        self.live_errors = Counter("gcc_ingest_live_errors", "live-state or live-event updates that failed",
                                   ["worker"], registry=r).labels(**labels)
        self.events = Counter("gcc_ingest_live_events",
                              "entries put on the live bus (one per batch that changed something)",
                              ["worker"], registry=r).labels(**labels)
        self.batch_size = Histogram("gcc_ingest_batch_size", "messages per committed batch", ["worker"],
                                    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000), registry=r).labels(**labels)
        self.commit_seconds = Histogram("gcc_ingest_commit_seconds", "time to commit one batch", ["worker"],
                                        buckets=(.002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5),
                                        registry=r).labels(**labels)
        self.in_flight = Gauge("gcc_ingest_in_flight", "messages received and not yet acknowledged",
                               ["worker"], registry=r).labels(**labels)
        self.commits = Counter("gcc_ingest_commits", "database transactions committed (a clean batch is one)",
                               ["worker"], registry=r).labels(**labels)
        self.narrowed = Counter("gcc_ingest_narrowed_batches", "batches the database refused or whose storing "
                                "raised, narrowed down by bisection", ["worker"], registry=r).labels(**labels)
        self.exceptions = Counter("gcc_ingest_exceptions", "unexpected exceptions (bugs) contained, by part of the "
                                  "chain", ["worker", "part"], registry=r)
        self.registry_updates = Counter("gcc_ingest_registry_updates", "registry changes taken in while running "
                                        "(the city read again)", ["worker"], registry=r).labels(**labels)
        self.qos0_shed = Counter("gcc_ingest_qos0_shed", "QoS 0 messages dropped because the worker's inbox was "
                                 "full (QoS 1 is never shed)", ["worker"], registry=r).labels(**labels)
        self.since_commit = Gauge("gcc_ingest_seconds_since_commit", "seconds since the worker last committed "
                                  "(since its start, before the first commit)", ["worker"], registry=r).labels(**labels)
        self.counted_only = Counter("gcc_ingest_refusals_counted_only", "refused messages acknowledged and "
                                    "counted without a dead letter of their own (a device's later refusals in a "
                                    "window), by reason", ["worker", "reason"], registry=r)
        self.abandoned = Counter("gcc_ingest_abandoned_batches", "batches given up unacknowledged because an "
                                 "exception escaped the chain (the worker then reconnects to the broker, which "
                                 "delivers them again)", ["worker"], registry=r).labels(**labels)
        self.worker = worker

    def track(self, progress: Progress) -> None:
        self.since_commit.set_function(progress.since_commit)

    def exception(self, part: str) -> None:
        self.exceptions.labels(worker=self.worker, part=part).inc()

    def stored_rows(self, table: str, count: int) -> None:
        self.stored.labels(worker=self.worker, table=table).inc(count)

    def dead_letter(self, reason: str) -> None:
        self.dead_letters.labels(worker=self.worker, reason=reason).inc()

    def refusal_counted_only(self, reason: str) -> None:
        self.counted_only.labels(worker=self.worker, reason=reason).inc()

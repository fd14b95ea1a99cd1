"""The live side of an ingest worker, after each commit: the live state (ingest.live), its bus entry
(telemetry.live), the silence sweep, and how healthy all that is (metrics.LiveHealth).

A failing live-state or bus update is contained (logged, counted): the data is already committed.
The bus numbering then skips a number, so the screens see a gap and resynchronise from the stored
state. A failure that is not Redis being away (a bug) is narrowed down to the messages that cause
it, for the worker to dead-letter as `poison`.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from ingest.live import LiveState
from ingest.metrics import LiveHealth, Metrics, is_out_of_memory
from ingest.model import Outcome
from ingest.store import bisect_failures
from telemetry import live

log = logging.getLogger(__name__)


class LiveUpdates:
    def __init__(self, name: str, live_state: LiveState, metrics: Metrics, stop_event: threading.Event,
                 poison_attempts: int, home_grid_of: Callable[[str], str | None]) -> None:
        self.name = name
        self.live = live_state
        self.bus = live.BusWriter(live_state.r, name)
        self.metrics = metrics
        self.stop_event = stop_event
        self.poison_attempts = poison_attempts
        self.home_grid_of = home_grid_of
        self.health = LiveHealth()
        self._last_sweep = 0.0

    def apply(self, outcomes: list[Outcome]) -> list[tuple[int, BaseException]]:
        """Live state and its bus entry for a committed batch. When the update raises (a bug, not
        Redis being away), the batch is bisected like a refused store: the parts that work are
        applied. Returns the outcomes (by index) that make it raise poison_attempts times alone,
        with the exception (they stay stored and acknowledged)."""
        origins = [i for i, o in enumerate(outcomes) if o.accepted]
        if not origins:
            return []

        def attempt(part: list[int]) -> BaseException | None:
            return self.attempt([e for i in part for e in outcomes[i].accepted])

        failure = attempt(origins)
        if failure is None:
            return []
        log.error("live update raised (data is stored); narrowing it down", exc_info=failure)
        return bisect_failures(origins, failure, attempt, lambda _: self.poison_attempts)

    def attempt(self, accepted: list, attempts: int = 3) -> BaseException | None:
        """One live update. A failure can leave the live state half-updated, and a retry then sees
        those changes as old news: so every failure uses up a bus number, and readers that see the
        gap resynchronise from Redis and the database. Redis being briefly away is retried (the
        scripts are idempotent), a full Redis (OOM) is not; after that the batch is acknowledged
        anyway, and counted (None). An exception of any other kind is returned, for the caller to
        narrow down."""
        for attempt in range(attempts):
            try:
                self.publish(self.live.apply(accepted))
                self.health.ok()
                return None
            except (redis.RedisError, OSError) as exc:
                self.failed(exc)
                log.warning("live update failed (data is stored; attempt %d of %d): %s", attempt + 1, attempts, exc)
                if is_out_of_memory(exc) or self.stop_event.wait(0.2 * (attempt + 1)):
                    return None   # a full Redis does not empty itself in a second: no retries
            except Exception as exc:  # a bug here must not stop ingestion: contained, counted, narrowed
                self.failed(exc)
                self.metrics.exception("live")
                return exc
        return None

    def failed(self, exc: BaseException) -> None:
        self.metrics.live_errors.inc()
        self.health.failed(exc)
        self.bus.skip()

    def publish(self, changes: list[live.Change]) -> None:
        """One bus entry for the batch's changes (none when nothing changed)."""
        if changes:
            self.bus.publish(changes)
            self.metrics.events.inc()

    def sweep_when_due(self, sweep_every_s: float) -> None:
        """Every sweep_every_s one worker (a Redis lock decides which) marks silent terminals
        silent and tells the screens of each member's own grid."""
        now = time.monotonic()
        if now - self._last_sweep < sweep_every_s:
            return
        self._last_sweep = now
        try:
            if not self.live.r.set(live.Keys.SWEEP_LOCK, self.name, nx=True, ex=int(sweep_every_s)):
                return
            self.publish(self.live.sweep_silent(self.home_grid_of))
        except (redis.RedisError, OSError) as exc:
            self.failed(exc)   # it may have marked terminals silent that no screen heard of
            log.warning("silence sweep failed (next one in %.0f s): %s", sweep_every_s, exc)

    def ensure_schema(self) -> None:
        try:
            self.live.ensure_schema()
        except (redis.RedisError, OSError) as exc:  # Redis away: the data path does not wait for it
            self.metrics.live_errors.inc()
            log.warning("could not check the live state's layout (%s); going on", exc)

"""One ingest worker: the chain from broker to database, live state, the live bus and the ack.

The chain, in order (one visible list; the pure per-message stages are in stages.py):

    collect       a batch of deliveries, by size or time
    process       check_size → decode → check_time → check_device → enrich   (stages.process_batch)
    store         one transaction; temporary errors: retry, keep unacknowledged
    live state    Redis, only what changed (live.LiveState)
    live bus      one entry per batch on the Redis stream (telemetry.live)
    settle        acknowledge to the broker / answer the waiting HTTP posts

A failing live-state or bus update is contained (logged, counted): the data is already committed.
The bus numbering then skips a number, so the screens see a gap and resynchronise from the stored
state (see _live).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

import psycopg2
import redis

from ingest.live import LiveState
from ingest.metrics import Metrics
from ingest.model import Delivery, Enriched, Outcome, Rejection
from ingest.mqtt_source import MqttSource
from ingest.stages import Registry, process_batch
from ingest.store import Batch, Store, TemporaryStoreError, dead_letter_row, row_for
from telemetry import live

log = logging.getLogger(__name__)


@dataclass
class WorkerConfig:
    batch_size: int = 2000
    flush_interval_s: float = 0.1
    retry_max_s: float = 10.0
    sweep_every_s: float = live.SWEEP_EVERY_S


class Worker:
    def __init__(self, name: str, source: MqttSource, store: Store, live_state: LiveState,
                 registry: Registry, config: WorkerConfig | None = None) -> None:
        self.name = name
        self.source = source
        self.store = store
        self.live = live_state
        self.registry = registry
        self.bus = live.BusWriter(live_state.r, name)
        self.config = config or WorkerConfig()
        self.metrics = Metrics(name)
        self.stop_event = threading.Event()
        self._last_sweep = 0.0

    # --- collecting -----------------------------------------------------------------------------
    def _collect(self) -> list[Delivery]:
        inbox, cfg = self.source.inbox, self.config
        try:
            first = inbox.get(timeout=cfg.flush_interval_s)
        except queue.Empty:
            return []
        items = [first]
        deadline = time.monotonic() + cfg.flush_interval_s
        while len(items) < cfg.batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                items.append(inbox.get(timeout=remaining))
            except queue.Empty:
                break
        return items

    # --- the chain --------------------------------------------------------------------------------
    def handle(self, deliveries: list[Delivery]) -> None:
        self.metrics.received.inc(len(deliveries))
        self.metrics.redeliveries.inc(sum(d.inbound.dup for d in deliveries))
        self.metrics.in_flight.set(len(deliveries) + self.source.inbox.qsize())
        outcomes = process_batch([d.inbound for d in deliveries], self.registry)
        if not self._store(self._rows(outcomes), outcomes):
            return  # stopping with the batch unwritten: unacked, the broker delivers it again
        for outcome in outcomes:
            if outcome.rejection is not None:
                self.metrics.dead_letter(outcome.rejection.reason)
        self._live([e for o in outcomes for e in o.accepted])
        settled = sum(d.receipt.settle(o.rejection) for d, o in zip(deliveries, outcomes, strict=True))
        self.metrics.acked.inc(settled)
        self.metrics.batch_size.observe(len(deliveries))

    def _rows(self, outcomes: list[Outcome]) -> Batch:
        batch = Batch()
        for index, outcome in enumerate(outcomes):
            if outcome.rejection is not None:
                batch.dead_letters.append(dead_letter_row(outcome.inbound, outcome.rejection, self.name))
            for enriched in outcome.accepted:
                table, row = row_for(enriched, outcome.inbound.received_at)
                batch.add(table, row, index)
        return batch

    def _write_with_retry(self, batch: Batch):
        """Commit, retrying temporary errors with backoff. None when asked to stop meanwhile;
        a permanent psycopg2.Error is raised to the caller."""
        delay = 0.2
        while True:
            started = time.monotonic()
            try:
                result = self.store.write(batch)
            except TemporaryStoreError as exc:
                self.metrics.db_retries.inc()
                log.warning("database unavailable (%s); retrying the batch in %.1f s", exc, delay)
                if self.stop_event.wait(delay):
                    return None
                delay = min(delay * 2, self.config.retry_max_s)
                continue
            self.metrics.commit_seconds.observe(time.monotonic() - started)
            for table, count in result.inserted.items():
                self.metrics.stored_rows(table, count)
            self.metrics.duplicates.inc(result.duplicates)
            return result

    def _store(self, batch: Batch, outcomes: list[Outcome]) -> bool:
        try:
            return self._write_with_retry(batch) is not None
        except psycopg2.Error as exc:
            log.error("the database refused a batch (%s); isolating the messages it refuses", exc)
            return self._store_isolated(batch, outcomes)

    def _store_isolated(self, batch: Batch, outcomes: list[Outcome]) -> bool:
        """Write message by message; the ones the database refuses become dead letters."""
        dead = Batch(dead_letters=list(batch.dead_letters))
        for origin in sorted({o for per_table in batch.origins.values() for o in per_table}):
            try:
                if self._write_with_retry(batch.only(origin)) is None:
                    return False
            except psycopg2.Error as exc:
                outcome = outcomes[origin]
                outcome.accepted.clear()
                outcome.rejection = Rejection("db_rejected", f"{exc.pgcode}: {(exc.pgerror or str(exc)).strip()}")
                dead.dead_letters.append(dead_letter_row(outcome.inbound, outcome.rejection, self.name))
        try:
            return self._write_with_retry(dead) is not None
        except psycopg2.Error:
            log.exception("dead letters refused by the database; the batch stays unacknowledged")
            return False

    def _live(self, accepted: list[Enriched], attempts: int = 3) -> None:
        """Live state and its bus entry for a committed batch. A failure can leave the live state
        half-updated, and a retry then sees those changes as old news: so every failure uses up a
        bus number, and readers that see the gap resynchronise from Redis and the database.
        Redis being briefly away is retried (the scripts are idempotent); after that the batch is
        acknowledged anyway, and counted."""
        for attempt in range(attempts):
            try:
                self._live_once(accepted)
                return
            except (redis.RedisError, OSError) as exc:
                self._live_failed()
                log.warning("live update failed (data is stored; attempt %d of %d): %s", attempt + 1, attempts, exc)
                if self.stop_event.wait(0.2 * (attempt + 1)):
                    return
            except Exception:  # a bug here must not stop ingestion: contained, logged, counted
                self._live_failed()
                log.exception("live update failed (data is stored)")
                return

    def _live_failed(self) -> None:
        self.metrics.live_errors.inc()
        self.bus.skip()

    def _live_once(self, accepted: list[Enriched]) -> None:
        self._publish(self.live.apply(accepted))

    def _publish(self, changes: list[live.Change]) -> None:
        """One bus entry for the batch's changes (none when nothing changed)."""
        if changes:
            self.bus.publish(changes)
            self.metrics.events.inc()

    def _home_grid_of(self, terminal_id: str) -> str | None:
        member = self.registry.members.get(terminal_id)
        return member.grid_code if member else None

    def _sweep_when_due(self) -> None:
        """Every sweep_every_s one worker (a Redis lock decides which) marks silent terminals
        silent and tells the screens of each member's own grid."""
        now = time.monotonic()
        if now - self._last_sweep < self.config.sweep_every_s:
            return
        self._last_sweep = now
        try:
            if not self.live.r.set(live.Keys.SWEEP_LOCK, self.name, nx=True, ex=int(self.config.sweep_every_s)):
                return
            self._publish(self.live.sweep_silent(self._home_grid_of))
        except (redis.RedisError, OSError) as exc:
            self._live_failed()   # it may have marked terminals silent that no screen heard of
            log.warning("silence sweep failed (next one in %.0f s): %s", self.config.sweep_every_s, exc)

    def _ensure_live_schema(self) -> None:
        try:
            self.live.ensure_schema()
        except (redis.RedisError, OSError) as exc:  # Redis away: the data path does not wait for it
            self.metrics.live_errors.inc()
            log.warning("could not check the live state's layout (%s); going on", exc)

    # --- running --------------------------------------------------------------------------------
    def run(self, end_session: bool = False) -> None:
        self._ensure_live_schema()
        self.source.start()
        try:
            while not self.stop_event.is_set():
                items = self._collect()
                if items:
                    self.handle(items)
                self._sweep_when_due()
        finally:
            self.source.stop(end_session=end_session)
            self.store.close()

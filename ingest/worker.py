"""One ingest worker: the chain from broker to database, live state, the live bus and the ack.

The chain, in order (one visible list; the pure per-message stages are in stages.py):

    collect       a batch of deliveries, by size or time (QoS 0 is shed at a full inbox: mqtt_source)
    process       check_rate → check_size → decode → check_time → check_device → enrich
                  (stages.process_batch; a stage that raises costs only its message: `poison`)
    claim ids     an alarm/report/task id belongs to its first sender; others' are `foreign_id`
    rows          each accepted message's rows, each refused message's dead letter
    store         one transaction; temporary errors: retry, keep unacknowledged; a batch the
                  database refuses, or whose storing raises, is bisected (see _store)
    live state    Redis, only what changed (live.LiveState)
    live bus      one entry per batch on the Redis stream (telemetry.live)
    settle        acknowledge to the broker / answer the waiting HTTP posts

A failing live-state or bus update is contained (logged, counted): the data is already committed.
The bus numbering then skips a number, so the screens see a gap and resynchronise from the stored
state (see _live). An unexpected exception anywhere is contained, counted
(gcc_ingest_exceptions_total) and costs at most the one message that causes it, as a `poison`
dead letter: the worker keeps going. `health()` says whether it is doing its job (/healthz).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

import psycopg2
import redis

from config.settings import Settings
from ingest.live import LiveState
from ingest.metrics import Metrics, Progress, assess
from ingest.model import DB_REJECTED, POISON, Delivery, Outcome, Rejection, poison
from ingest.mqtt_source import MqttSource
from ingest.redeliveries import Redeliveries
from ingest.stages import RateLimiter, Registry, id_claims, process_batch, refuse_foreign_ids
from ingest.store import Batch, Store, TemporaryStoreError, bisect_failures, dead_letter_row, row_for
from telemetry import live

log = logging.getLogger(__name__)


def _default(setting: str):
    """A setting's default (config.settings owns them), for a worker built without settings."""
    return Settings.model_fields[setting].default


@dataclass
class WorkerConfig:
    batch_size: int = 2000
    flush_interval_s: float = 0.1
    retry_max_s: float = 10.0
    sweep_every_s: float = live.SWEEP_EVERY_S
    stall_after_s: float = _default("ingest_stall_after_s")
    device_rate_per_s: float = _default("ingest_device_rate_per_s")   # 0: no rate limit
    device_burst: int = _default("ingest_device_burst")
    qos0_inbox_limit: int = _default("ingest_qos0_inbox_limit")
    poison_attempts: int = 3   # N: tries alone (store, live) or processings begun (redeliveries) before `poison`

    @classmethod
    def from_settings(cls, settings) -> WorkerConfig:
        return cls(batch_size=settings.ingest_batch_size, flush_interval_s=settings.ingest_flush_interval_s,
                   stall_after_s=settings.ingest_stall_after_s, device_rate_per_s=settings.ingest_device_rate_per_s,
                   device_burst=settings.ingest_device_burst, qos0_inbox_limit=settings.ingest_qos0_inbox_limit)


class _Stopping(Exception):
    """Asked to stop while a batch was being written: it stays unacknowledged."""


def _refuse(outcome: Outcome, rejection: Rejection) -> None:
    outcome.accepted.clear()
    outcome.rejection = rejection


def _first_line(exc: BaseException) -> str:
    return next(iter(str(exc).strip().splitlines()), "")


def _store_rejection(exc: BaseException) -> Rejection:
    if isinstance(exc, psycopg2.Error):
        return Rejection(DB_REJECTED, f"{exc.pgcode}: {(exc.pgerror or str(exc)).strip()}")
    return poison(exc, "store")


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
        cfg = self.config
        self.limiter = RateLimiter(cfg.device_rate_per_s, cfg.device_burst) if cfg.device_rate_per_s > 0 else None
        self.progress = Progress()
        self.metrics.track(self.progress)
        self.redeliveries = Redeliveries(cfg.poison_attempts)
        self.in_hand = 0            # deliveries taken from the inbox and not yet settled
        self.loop_ended = False     # run() returned while not asked to stop
        source.qos0_inbox_limit = cfg.qos0_inbox_limit
        source.on_shed = self.metrics.qos0_shed.inc

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
        self.in_hand = len(deliveries)
        try:
            self._handle(deliveries)
        finally:
            self.in_hand = 0

    def _handle(self, deliveries: list[Delivery]) -> None:
        self.metrics.received.inc(len(deliveries))
        self.metrics.redeliveries.inc(sum(d.inbound.dup for d in deliveries))
        self.metrics.in_flight.set(len(deliveries) + self.source.inbox.qsize())
        together, alone, doomed = self.redeliveries.triage(self.live.r, deliveries)
        self._chain(together, doomed)
        for delivery in alone:
            if self.stop_event.is_set():
                return
            self.redeliveries.begin(self.live.r, [delivery])
            self._chain([delivery], {})

    def _process(self, deliveries: list[Delivery], doomed: dict[int, Rejection]) -> list[Outcome]:
        """The pure stages for the deliveries not doomed; the doomed ones keep their rejection."""
        rest = [d.inbound for i, d in enumerate(deliveries) if i not in doomed]
        processed = iter(process_batch(rest, self.registry, self.limiter))
        outcomes = [Outcome(d.inbound, rejection=doomed[i]) if i in doomed else next(processed)
                    for i, d in enumerate(deliveries)]
        self.metrics.exceptions.labels(worker=self.name, part="stage").inc(
            sum(o.rejection is not None and o.rejection.reason == POISON for o in outcomes) - len(doomed))
        return outcomes

    def _chain(self, deliveries: list[Delivery], doomed: dict[int, Rejection]) -> None:
        if not deliveries:
            return
        outcomes = self._process(deliveries, doomed)
        if not self._claim_ids(outcomes):
            return  # stopping: unacked
        if not self._store(self._rows(outcomes), outcomes):
            return  # stopping with the batch unwritten: unacked, the broker delivers it again
        self._count_dead_letters(outcomes)
        self._live(outcomes)
        settled = sum(d.receipt.settle(o.rejection) for d, o in zip(deliveries, outcomes, strict=True))
        self.metrics.acked.inc(settled)
        self.metrics.batch_size.observe(len(deliveries))

    def _claim_ids(self, outcomes: list[Outcome]) -> bool:
        """Alarm, report and task ids belong to the device that first used them: claim them (the
        database decides, for every worker alike) and refuse the messages of other devices.
        False when asked to stop while the database was away."""
        claims = id_claims(outcomes)
        if not claims:
            return True
        delay = 0.2
        while True:
            try:
                owners = self.store.claim_ids([claim for _, claim in claims])
                break
            except TemporaryStoreError as exc:
                self.metrics.db_retries.inc()
                log.warning("database unavailable (%s); retrying the id claims in %.1f s", exc, delay)
                if self.stop_event.wait(delay):
                    return False
                delay = min(delay * 2, self.config.retry_max_s)
        refuse_foreign_ids(outcomes, claims, owners)
        return True

    def _count_dead_letters(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            if outcome.rejection is not None:
                self.metrics.dead_letter(outcome.rejection.reason)
                if outcome.rejection.reason == POISON:
                    log.error("poison message on %s dead-lettered: %s", outcome.inbound.topic, outcome.rejection.detail)

    def _rows(self, outcomes: list[Outcome]) -> Batch:
        batch = Batch()
        for index, outcome in enumerate(outcomes):
            try:
                rows = [row_for(enriched, outcome.inbound.received_at) for enriched in outcome.accepted]
            except Exception as exc:  # a bug in a kind's row: this message alone is dead-lettered
                self.metrics.exception("rows")
                _refuse(outcome, poison(exc, "rows"))
            if outcome.rejection is not None:
                batch.dead_letters.append(dead_letter_row(outcome.inbound, outcome.rejection, self.name))
                continue
            for table, row in rows:
                batch.add(table, row, index)
        return batch

    def _write_with_retry(self, batch: Batch):
        """Commit, retrying temporary errors with backoff. None when asked to stop meanwhile;
        a permanent psycopg2.Error (or any other exception) is raised to the caller."""
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
            self.metrics.commits.inc()
            self.progress.committed()
            for table, count in result.inserted.items():
                self.metrics.stored_rows(table, count)
            self.metrics.duplicates.inc(result.duplicates)
            return result

    def _attempt(self, batch: Batch) -> BaseException | None:
        """Commit `batch` (temporary errors retried): None when committed, else why not: the
        database's refusal (a psycopg2.Error) or what storing raised. Raises _Stopping."""
        try:
            result = self._write_with_retry(batch)
        except psycopg2.Error as exc:
            return exc
        except Exception as exc:  # a bug in storing: contained; the caller narrows it down
            self.metrics.exception("store")
            return exc
        if result is None:
            raise _Stopping
        return None

    def _tries_alone(self, failure: BaseException) -> int:
        """A refusal by the database is final; an exception of ours may be a passing one."""
        return 1 if isinstance(failure, psycopg2.Error) else self.config.poison_attempts

    def _store(self, batch: Batch, outcomes: list[Outcome]) -> bool:
        """Commit the batch. When the database refuses it (SQLSTATE class 22/23) or storing raises,
        bisect it by message: the halves that commit are committed, and a message refused alone
        becomes a dead letter (`db_rejected`, or `poison` after poison_attempts tries): one bad
        message among 2,000 costs about 2·11 attempts, not 2,000 commits. False: asked to stop
        (nothing of the batch is acknowledged; what was committed comes back as duplicates)."""
        try:
            failure = self._attempt(batch)
            if failure is None:
                return True
            self.metrics.narrowed.inc()
            log.error("a batch of %d messages could not be stored (%s: %s); narrowing it down",
                      len(outcomes), type(failure).__name__, _first_line(failure))
            failed = bisect_failures(batch.message_indexes(), failure, lambda part: self._attempt(batch.subset(part)),
                                     self._tries_alone)
        except _Stopping:
            return False
        dead = list(batch.dead_letters)
        for origin, exc in failed:
            _refuse(outcomes[origin], _store_rejection(exc))
            dead.append(dead_letter_row(outcomes[origin].inbound, outcomes[origin].rejection, self.name))
        return self._write_dead_letters(dead)

    def _write_dead_letters(self, rows: list[tuple]) -> bool:
        if not rows:
            return True
        try:
            failure = self._attempt(Batch(dead_letters=rows))
        except _Stopping:
            return False
        if failure is not None:
            self.metrics.exception("dead_letters")
            log.error("dead letters refused (%s); their messages stay unacknowledged", failure)
        return failure is None

    def _live(self, outcomes: list[Outcome]) -> None:
        """Live state and its bus entry for a committed batch. When the update raises (a bug, not
        Redis being away), the batch is bisected like a refused store: the parts that work are
        applied, and a message that makes it raise poison_attempts times alone is dead-lettered
        as `poison` (it stays stored and acknowledged)."""
        origins = [i for i, o in enumerate(outcomes) if o.accepted]
        if not origins:
            return

        def attempt(part: list[int]) -> BaseException | None:
            return self._live_attempt([e for i in part for e in outcomes[i].accepted])

        failure = attempt(origins)
        if failure is None:
            return
        log.error("live update raised (data is stored); narrowing it down", exc_info=failure)
        failed = bisect_failures(origins, failure, attempt, lambda _: self.config.poison_attempts)
        rows = []
        for origin, exc in failed:
            rejection = poison(exc, "live update (the message is stored)")
            self.metrics.dead_letter(POISON)
            log.error("poison message on %s dead-lettered: %s", outcomes[origin].inbound.topic, rejection.detail)
            rows.append(dead_letter_row(outcomes[origin].inbound, rejection, self.name))
        self._write_dead_letters(rows)

    def _live_attempt(self, accepted: list, attempts: int = 3) -> BaseException | None:
        """One live update. A failure can leave the live state half-updated, and a retry then sees
        those changes as old news: so every failure uses up a bus number, and readers that see the
        gap resynchronise from Redis and the database. Redis being briefly away is retried (the
        scripts are idempotent); after that the batch is acknowledged anyway, and counted (None).
        An exception of any other kind is returned, for the caller to narrow down."""
        for attempt in range(attempts):
            try:
                self._live_once(accepted)
                return None
            except (redis.RedisError, OSError) as exc:
                self._live_failed()
                log.warning("live update failed (data is stored; attempt %d of %d): %s", attempt + 1, attempts, exc)
                if self.stop_event.wait(0.2 * (attempt + 1)):
                    return None
            except Exception as exc:  # a bug here must not stop ingestion: contained, counted, narrowed
                self._live_failed()
                self.metrics.exception("live")
                return exc
        return None

    def _live_failed(self) -> None:
        self.metrics.live_errors.inc()
        self.bus.skip()

    def _live_once(self, accepted: list) -> None:
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

    # --- health ---------------------------------------------------------------------------------
    def health(self) -> tuple[bool, dict]:
        """Whether this worker is doing its job, for /healthz: (ok, a JSON-ready detail that says
        why not under "reason"); see metrics.assess."""
        pending = self.source.inbox.qsize() + self.in_hand
        return assess(broker_up=self.source.connected.is_set(), pending=pending,
                      stalled_for=self.progress.stalled_for(pending), since_commit=self.progress.since_commit(),
                      stall_after_s=self.config.stall_after_s, loop_ended=self.loop_ended)

    # --- running --------------------------------------------------------------------------------
    def run(self, end_session: bool = False) -> None:
        self._ensure_live_schema()
        self.source.start()
        try:
            while not self.stop_event.is_set():
                self._step()
        finally:
            self.loop_ended = not self.stop_event.is_set()
            self.source.stop(end_session=end_session)
            self.store.close()

    def _step(self) -> None:
        """One turn of the loop. An exception that escapes the chain (a bug outside the contained
        parts) is logged and counted, and the loop goes on; its batch stays unacknowledged (the
        broker delivers it again after a reconnect)."""
        try:
            items = self._collect()
            if items:
                self.handle(items)
            else:
                self.progress.idle()
            self._sweep_when_due()
        except Exception:
            self.metrics.exception("loop")
            log.exception("unexpected error in the worker loop; going on")
            self.stop_event.wait(1.0)

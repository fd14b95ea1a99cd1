"""One ingest worker: the chain from broker to database, live state, the live bus and the ack.

The chain, in order (one visible list; the pure per-message stages are in stages.py):

    collect       a batch of deliveries, by size or time (QoS 0 is shed at a full inbox: mqtt_source)
    process       check_rate → check_size → decode → check_time → check_device → enrich
                  (stages.process_batch; a stage that raises costs only its message: `poison`)
    digest        per device, one `rate_limited` dead letter a window; later ones only counted
    check clears  an alarm `cleared` by a sensor that never raised that id, while another sensor
                  did, is `foreign_id` (the database is asked; identity is (device, id) elsewhere)
    rows          each accepted message's rows, each refused message's dead letter
    store         one transaction; temporary errors: retry, keep unacknowledged; a batch the
                  database refuses, or whose storing raises, is bisected (see _store)
    live state    Redis, only what changed (live_updates.LiveUpdates → live.LiveState)
    live bus      one entry per batch on the Redis stream (telemetry.live)
    settle        acknowledge to the broker / answer the waiting HTTP posts

Its deliveries come from a `Source`: the broker (ingest.mqtt_source.MqttSource, `python -m ingest`)
or the device-facing HTTP service's inbox (ingest.http.source.HttpSource, `python -m ingest.http`,
one chain per server process); the chain is the same.

A failing live-state or bus update is contained (logged, counted): the data is already committed.
The bus numbering then skips a number, so the screens see a gap and resynchronise from the stored
state (see ingest.live_updates). An unexpected exception anywhere is contained, counted
(gcc_ingest_exceptions_total) and costs at most the one message that causes it, as a `poison`
dead letter: the worker keeps going. An exception that escapes all of that abandons its batch
unacknowledged: the worker reconnects to the broker, which then delivers the batch again (and the
crash-loop protection, ingest.redeliveries, takes over). `health()` says whether it is doing its
job (/healthz).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import psycopg2

from config.settings import Settings
from ingest.limits import Budgets, RateLimiter, RefusalDigest
from ingest.live import LiveState
from ingest.live_updates import LiveUpdates
from ingest.metrics import Health, Metrics, Progress, assess
from ingest.model import DB_REJECTED, POISON, UNKNOWN_DEVICE, Delivery, Outcome, Rejection, poison
from ingest.redeliveries import Redeliveries
from ingest.stages import Registry, clears, digest_refusals, process_batch, refuse_forged_clears
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
    report_rate_per_min: float = _default("ingest_report_rate_per_min")   # per terminal; 0: no budget
    report_burst: int = _default("ingest_report_burst")
    alarm_rate_per_min: float = _default("ingest_alarm_rate_per_min")     # per gateway; 0: no budget
    alarm_burst: int = _default("ingest_alarm_burst")
    refusal_window_s: float = _default("ingest_refusal_window_s")
    live_unhealthy_after_s: float = _default("ingest_live_unhealthy_after_s")

    @classmethod
    def from_settings(cls, settings) -> WorkerConfig:
        return cls(batch_size=settings.ingest_batch_size, flush_interval_s=settings.ingest_flush_interval_s,
                   stall_after_s=settings.ingest_stall_after_s, device_rate_per_s=settings.ingest_device_rate_per_s,
                   device_burst=settings.ingest_device_burst, qos0_inbox_limit=settings.ingest_qos0_inbox_limit,
                   report_rate_per_min=settings.ingest_report_rate_per_min, report_burst=settings.ingest_report_burst,
                   alarm_rate_per_min=settings.ingest_alarm_rate_per_min, alarm_burst=settings.ingest_alarm_burst,
                   refusal_window_s=settings.ingest_refusal_window_s,
                   live_unhealthy_after_s=settings.ingest_live_unhealthy_after_s)


class Source(Protocol):
    """Where a worker's deliveries come from, and where their receipts go: the broker
    (ingest.mqtt_source.MqttSource) or the HTTP service's inbox (ingest.http.source.HttpSource).
    `connected` is set while deliveries can come and be settled; `reconnect()` is asked for after an
    abandoned batch (the broker then delivers it again); `kind` names it in /healthz."""
    kind: str
    inbox: queue.Queue[Delivery]
    connected: threading.Event
    qos0_inbox_limit: int
    on_shed: Callable[[], None]

    def start(self) -> None: ...
    def reconnect(self) -> None: ...
    def stop(self, end_session: bool = False) -> None: ...


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
    def __init__(self, name: str, source: Source, store: Store, live_state: LiveState,
                 registry: Registry, config: WorkerConfig | None = None) -> None:
        self.name = name
        self.source = source
        self.store = store
        self.live = live_state
        self.registry = registry
        self.config = config or WorkerConfig()
        self.metrics = Metrics(name)
        self.stop_event = threading.Event()
        cfg = self.config
        self.live_updates = LiveUpdates(name, live_state, self.metrics, self.stop_event, cfg.poison_attempts,
                                        self._home_grid_of)
        self.bus = self.live_updates.bus
        self.limiter = RateLimiter(cfg.device_rate_per_s, cfg.device_burst) if cfg.device_rate_per_s > 0 else None
        self.budgets = Budgets.of(cfg.report_rate_per_min, cfg.report_burst, cfg.alarm_rate_per_min, cfg.alarm_burst)
        self.refusals = RefusalDigest(cfg.refusal_window_s)
        self.progress = Progress()
        self.metrics.track(self.progress)
        self.redeliveries = Redeliveries(cfg.poison_attempts)
        self.watch = None           # a database.citydb.CityWatch, started and stopped with run()
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
        registry = self.registry
        processed = iter(process_batch(rest, registry, self.limiter, self.budgets))
        outcomes = [Outcome(d.inbound, rejection=doomed[i]) if i in doomed else next(processed)
                    for i, d in enumerate(deliveries)]
        self._retry_unknown(outcomes, registry)
        digest_refusals(outcomes, self.refusals)
        self.metrics.exceptions.labels(worker=self.name, part="stage").inc(
            sum(o.rejection is not None and o.rejection.reason == POISON for o in outcomes) - len(doomed))
        return outcomes

    def _chain(self, deliveries: list[Delivery], doomed: dict[int, Rejection]) -> None:
        if not deliveries:
            return
        outcomes = self._process(deliveries, doomed)
        if not self._check_clears(outcomes):
            return  # stopping: unacked
        if not self._store(self._rows(outcomes), outcomes):
            return  # stopping with the batch unwritten: unacked, the broker delivers it again
        self._count_dead_letters(outcomes)
        self._live(outcomes)
        settled = sum(d.receipt.settle(o.rejection) for d, o in zip(deliveries, outcomes, strict=True))
        self.metrics.acked.inc(settled)
        self.metrics.batch_size.observe(len(deliveries))

    def _retry_unknown(self, outcomes: list[Outcome], checked_against: Registry) -> None:
        """A device refused as unknown may have been added a moment ago, its notification still on
        the way: if the registry moved on since it was read (CityWatch.catch_up, one query per such
        batch), those messages go through the chain again with the new registry (without the
        rate limits, which have counted them once)."""
        unknown = [i for i, o in enumerate(outcomes)
                   if o.rejection is not None and o.rejection.reason == UNKNOWN_DEVICE]
        if not unknown or self.watch is None:
            return
        self.watch.catch_up()
        if self.registry is checked_against:
            return
        again = process_batch([outcomes[i].inbound for i in unknown], self.registry)
        for i, outcome in zip(unknown, again, strict=True):
            outcomes[i] = outcome

    def _check_clears(self, outcomes: list[Outcome]) -> bool:
        """Refuse forged clears (stages.refuse_forged_clears), asking the database which sensors
        raised the cleared ids. False when asked to stop while the database was away. Should the
        check itself fail otherwise, the clears pass: it guards nobody's data (an alarm is its
        sensor's everywhere), it only names the forger."""
        alarm_ids = clears(outcomes)
        if not alarm_ids:
            return True
        try:
            raised = self._retrying(lambda: self.store.raised_by(sorted(alarm_ids)), "the check of alarm clears")
        except _Stopping:
            return False
        except Exception:
            self.metrics.exception("clears")
            log.exception("could not check %d alarm clears; letting them pass", len(alarm_ids))
            return True
        refuse_forged_clears(outcomes, raised)
        return True

    def _retrying(self, call, what: str):
        """call(), with temporary database errors retried with backoff; _Stopping when asked to
        stop meanwhile. Anything else is raised to the caller."""
        delay = 0.2
        while True:
            try:
                return call()
            except TemporaryStoreError as exc:
                self.metrics.db_retries.inc()
                log.warning("database unavailable (%s); retrying %s in %.1f s", exc, what, delay)
                if self.stop_event.wait(delay):
                    raise _Stopping from None
                delay = min(delay * 2, self.config.retry_max_s)

    def _count_dead_letters(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            if outcome.rejection is not None and outcome.counted_only:
                self.metrics.refusal_counted_only(outcome.rejection.reason)
            elif outcome.rejection is not None:
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
                if not outcome.counted_only:
                    batch.dead_letters.append(dead_letter_row(outcome.inbound, outcome.rejection, self.name))
                continue
            for table, row in rows:
                batch.add(table, row, index)
        return batch

    def _write_timed(self, batch: Batch):
        started = time.monotonic()
        result = self.store.write(batch)
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
            self._retrying(lambda: self._write_timed(batch), "the batch")
        except _Stopping:
            raise
        except psycopg2.Error as exc:
            return exc
        except Exception as exc:  # a bug in storing: contained; the caller narrows it down
            self.metrics.exception("store")
            return exc
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
        """The live state and bus (live_updates.LiveUpdates); a message that makes the update
        raise (a bug) is dead-lettered as `poison` (it stays stored and acknowledged)."""
        rows = []
        for origin, exc in self.live_updates.apply(outcomes):
            rejection = poison(exc, "live update (the message is stored)")
            self.metrics.dead_letter(POISON)
            log.error("poison message on %s dead-lettered: %s", outcomes[origin].inbound.topic, rejection.detail)
            rows.append(dead_letter_row(outcomes[origin].inbound, rejection, self.name))
        self._write_dead_letters(rows)

    def _home_grid_of(self, terminal_id: str) -> str | None:
        member = self.registry.members.get(terminal_id)
        return member.grid_code if member else None

    # --- health ---------------------------------------------------------------------------------
    def health(self) -> tuple[bool, dict]:
        """Whether this worker is doing its job, for /healthz: (ok, a JSON-ready detail that says
        why not under "reason"); see metrics.assess."""
        pending, cfg = self.source.inbox.qsize() + self.in_hand, self.config
        ok, detail = assess(Health(
            broker_up=self.source.connected.is_set(), pending=pending, stalled_for=self.progress.stalled_for(pending),
            since_commit=self.progress.since_commit(), stall_after_s=cfg.stall_after_s, loop_ended=self.loop_ended,
            live_failing_for=self.live_updates.health.failing_for(),
            live_out_of_memory=self.live_updates.health.out_of_memory,
            live_unhealthy_after_s=cfg.live_unhealthy_after_s, abandoned=self.progress.abandoned_since_commit))
        if self.source.kind != "mqtt":
            detail["broker"] = f"not used (fed by {self.source.kind} requests only)"
        return ok, detail

    # --- running --------------------------------------------------------------------------------
    def registry_changed(self, city, tables: frozenset[str] | None) -> None:
        """The registry changed (the city was read again): the next batch is checked against it."""
        self.registry = self.registry.updated(city, tables)
        self.metrics.registry_updates.inc()

    def run(self, end_session: bool = False) -> None:
        self.live_updates.ensure_schema()
        if self.watch is not None:
            self.watch.start()
        self.source.start()
        try:
            while not self.stop_event.is_set():
                self._step()
        finally:
            self.loop_ended = not self.stop_event.is_set()
            self.source.stop(end_session=end_session)
            self.store.close()
            if self.watch is not None:
                self.watch.stop()

    def _step(self) -> None:
        """One turn of the loop. An exception that escapes the chain (a bug outside the contained
        parts) is logged and counted, and the loop goes on; a batch it interrupted is abandoned
        (see _abandon)."""
        items: list[Delivery] = []
        try:
            items = self._collect()
            if items:
                self.handle(items)
            else:
                self.progress.idle()
            items = []
            self.live_updates.sweep_when_due(self.config.sweep_every_s)
        except Exception:
            self.metrics.exception("loop")
            log.exception("unexpected error in the worker loop; going on")
            if items:
                self._abandon(len(items))
            self.stop_event.wait(1.0)

    def _abandon(self, count: int) -> None:
        """A batch left unacknowledged: the broker delivers unacknowledged messages again only on a
        new connection (and until then they fill the in-flight window), so reconnect (the same
        persistent session). Counted, and seen by health() until the next commit."""
        self.metrics.abandoned.inc()
        self.progress.abandoned()
        log.error("abandoned a batch of %d messages unacknowledged; reconnecting so that the broker delivers "
                  "them again", count)
        try:
            self.source.reconnect()
        except Exception:  # the client's own reconnect loop goes on trying
            log.exception("reconnecting to the broker failed")

"""The handheld bridge: what the command center sends to members' terminals, copied into their
phones' outbox (`handheld_outbox`, docs/HANDHELD_API.md "Downlink"). `python -m handheld.bridge`.

A phone speaks HTTPS, not MQTT, so it cannot hold a broker session of its own. One process with
its own broker account (`AccountKind.HANDHELD_BRIDGE`: it may subscribe to every terminal's
`…/notice` and `…/task` and every org unit's `…/announcement`, and publish nothing) keeps a
persistent session (clean start off, a week's session expiry) at QoS 1 with manual
acknowledgement, as the ingest workers do (ingest/mqtt_source.py): each message is written for
every enrolled phone it is for, and acknowledged only after that commit. Killed between the two,
the broker delivers it again and the outbox's natural key (device, kind, the message's own id)
keeps it from being written twice. Who gets it:

    gcc/v1/terminal/{t}/notice, …/task     the phones (kind 'handheld', not retired) of the member
                                           whose dedicated terminal is t
    gcc/v1/org/{code}/announcement         the phones of the members whose grid lies within code

A message that is not a downlink of the contract (docs/WIRE_FORMAT.md) is logged, counted and
acknowledged: one bad message never blocks the rest, and never stops the bridge.
"""
from __future__ import annotations

import argparse
import logging
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

import orjson
import paho.mqtt.client as mqtt
import psycopg2
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes

from core.orgcodes import is_valid as is_org_code
from telemetry.fields import is_valid_id
from telemetry.notices import Announcement, CaseNotice
from telemetry.topics import ANNOUNCEMENT, NOTICE, PREFIX, TASK, handheld_downlink_filters

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 86400        # the broker keeps what comes while the bridge is down this long
BATCH = 200                         # messages written in one transaction, at most
BATCH_WAIT_S = 0.05                 # after the first message, wait this long for more to join its batch
RETRY_S = 1.0                       # the database unreachable: try the batch again after this
APPLICATION_NAME = "gcc-handheld-bridge"

# what a downlink's kind is in the outbox, by its topic's leaf
OUTBOX_KIND = {NOTICE: "notice", TASK: "task", ANNOUNCEMENT: "announcement"}

# the enrolled phones a message is for: of the member whose dedicated terminal it names, or of the
# members whose grid is within the org unit it names (one statement per message, on conflict nothing)
_PHONES = ("select d.device_id from member_devices d join members m using (member_id) "
           "where d.kind = 'handheld' and d.retired_at is null and m.retired_at is null and ")
_INSERT = ("insert into handheld_outbox (device_id, kind, key, body) select device_id, %s, %s, %s::jsonb "
           "from ({}) phones on conflict (device_id, kind, key) do nothing")
_TO_TERMINAL = _INSERT.format(_PHONES + "m.terminal_id = %s")
_TO_ORG = _INSERT.format(_PHONES + "org_contains(%s, m.grid_code)")


class BadDownlink(ValueError):
    """A message on a downlink topic that is not a downlink of the contract; says why."""


@dataclass(frozen=True)
class Downlink:
    """One downlink message as the outbox keeps it: its kind, whom the topic names (a terminal id
    or an org code), its own id, and its body as it came (a JSON object)."""
    kind: str
    target: str
    key: str
    body: bytes

    @property
    def to_org(self) -> bool:
        return self.kind == "announcement"


def parse(topic: str, payload: bytes) -> Downlink:
    """The downlink a message is (pure), or BadDownlink naming what is wrong."""
    parts = topic.split("/")
    head = PREFIX.split("/")
    if len(parts) != len(head) + 3 or parts[:len(head)] != head:
        raise BadDownlink(f"not a downlink topic: {topic[:200]!r}")
    where, target, leaf = parts[len(head):]
    try:
        if (where, leaf) == ("terminal", NOTICE) and is_valid_id(target):
            notice = CaseNotice.parse(target, payload)
            return Downlink(OUTBOX_KIND[leaf], target, str(notice.notice_id), _object(payload))
        if (where, leaf) == ("terminal", TASK) and is_valid_id(target):
            body = orjson.loads(payload)
            task_id = body.get("task_id") if isinstance(body, dict) else None
            if not is_valid_id(task_id):
                raise BadDownlink(f"a task names its task_id (an id of 1-64 characters), got {task_id!r:.80}")
            return Downlink(OUTBOX_KIND[leaf], target, task_id, _object(payload))
        if (where, leaf) == ("org", ANNOUNCEMENT) and is_org_code(target):
            announcement = Announcement.parse(payload)
            if announcement.org_code != target:
                raise BadDownlink(f"announcement {announcement.announcement_id} names org "
                                  f"{announcement.org_code!r:.20} on the topic of {target}")
            return Downlink(OUTBOX_KIND[leaf], target, str(announcement.announcement_id), _object(payload))
    except BadDownlink:
        raise
    except (ValueError, KeyError, TypeError) as error:     # orjson.JSONDecodeError is a ValueError
        raise BadDownlink(f"{leaf} on {topic[:200]}: {type(error).__name__}: {str(error)[:200]}") from None
    raise BadDownlink(f"not a downlink topic: {topic[:200]!r}")


def _object(payload: bytes) -> bytes:
    """The payload as the outbox stores it: checked to be a JSON object (a NUL anywhere in its
    text is refused by PostgreSQL's jsonb, so it is refused here first, with the reason)."""
    body = orjson.loads(payload)
    if not isinstance(body, dict):
        raise BadDownlink("a downlink is a JSON object")
    if b"\\u0000" in payload:
        raise BadDownlink("a downlink's text may not hold NUL (\\u0000)")
    return payload


def write(cur, downlinks: list[Downlink]) -> int:
    """Write each downlink for the phones it is for; returns the rows written (a repeat: none)."""
    written = 0
    for downlink in downlinks:
        cur.execute(_TO_ORG if downlink.to_org else _TO_TERMINAL,
                    (downlink.kind, downlink.key, downlink.body.decode(), downlink.target))
        written += cur.rowcount
    return written


@dataclass
class Received:
    """A message the network thread handed over, with what acknowledges it (its connection's epoch)."""
    topic: str
    payload: bytes
    mid: int
    qos: int
    epoch: int


@dataclass
class Counts:
    received: int = 0
    written: int = 0          # outbox rows
    malformed: int = 0
    acked: int = 0
    batches: int = 0
    retries: int = 0          # a batch tried again (the database was down)
    by_kind: dict[str, int] = field(default_factory=dict)


class HandheldBridge:
    def __init__(self, dsn: str, host: str, port: int, username: str, password: str, *,
                 receive_maximum: int = 500, stop_event: threading.Event | None = None) -> None:
        self.dsn = dsn
        self.host, self.port = host, port
        self.receive_maximum = receive_maximum
        self.stop_event = stop_event or threading.Event()
        self.inbox: queue.Queue[Received] = queue.Queue()
        self.counts = Counts()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._epoch = 0
        self._lock = threading.Lock()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username, protocol=MQTTProtocolVersion.MQTTv5,
                             manual_ack=True)
        client.username_pw_set(username, password)
        client.reconnect_delay_set(min_delay=1, max_delay=15)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = lambda c, u, mid, codes, p: self._on_subscribe(codes)
        client.on_message = self._on_message
        self.client = client
        self._conn = None

    # --- the broker (the network thread only hands messages over) ---------------------------------
    def start(self) -> None:
        props = mqtt.Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = self.receive_maximum
        self.client.connect_async(self.host, self.port, keepalive=30, clean_start=False, properties=props)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("the broker refused the handheld bridge's account: %s", reason_code)
            return
        with self._lock:
            self._epoch += 1
            self.connected.set()
        client.subscribe([(f, mqtt.SubscribeOptions(qos=1)) for f in handheld_downlink_filters()])
        log.info("connected to the broker (session present: %s)", flags.session_present)

    def _on_subscribe(self, codes) -> None:
        refused = [str(code) for code in codes if code.is_failure]
        if refused:
            log.error("the broker refused the handheld bridge's subscriptions: %s", ", ".join(refused))
            return
        log.info("subscribed to %s", ", ".join(handheld_downlink_filters()))
        self.subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            self._epoch += 1            # nothing received before this may be acknowledged any more
            self.connected.clear()
        log.warning("disconnected from the broker: %s", reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        self.inbox.put(Received(msg.topic, msg.payload, msg.mid, msg.qos, self._epoch))

    def _ack(self, received: Received) -> None:
        """Acknowledge a message of the current connection; one of an earlier connection comes again."""
        if received.qos == 0:
            return
        with self._lock:
            if received.epoch != self._epoch or not self.connected.is_set():
                return
            self.client.ack(received.mid, received.qos)
        self.counts.acked += 1

    # --- the loop ---------------------------------------------------------------------------------
    def run(self) -> None:
        """Take batches, write them, acknowledge them, until stopped."""
        self.start()
        try:
            while not self.stop_event.is_set():
                batch = self._next_batch()
                if batch:
                    self.handle(batch)
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            if self._conn is not None:
                self._conn.close()

    def _next_batch(self) -> list[Received]:
        try:
            first = self.inbox.get(timeout=0.5)
        except queue.Empty:
            return []
        batch, deadline = [first], time.monotonic() + BATCH_WAIT_S
        while len(batch) < BATCH:
            try:
                batch.append(self.inbox.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return batch

    def handle(self, batch: list[Received]) -> None:
        """Parse, write in one transaction (tried again while the database is away), then acknowledge
        every message of the batch, the malformed ones included."""
        self.counts.received += len(batch)
        downlinks = []
        for received in batch:
            try:
                downlinks.append(parse(received.topic, received.payload))
            except BadDownlink as error:
                self.counts.malformed += 1
                log.warning("a malformed downlink, acknowledged and not written: %s", error)
        written = self._commit(downlinks) if downlinks else 0
        if written is None:             # stopped before the database came back: the broker keeps them
            return
        self.counts.written += written
        self.counts.batches += 1
        for downlink in downlinks:
            self.counts.by_kind[downlink.kind] = self.counts.by_kind.get(downlink.kind, 0) + 1
        for received in batch:
            self._ack(received)

    def _commit(self, downlinks: list[Downlink]) -> int | None:
        while not self.stop_event.is_set():
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg2.connect(self.dsn, application_name=APPLICATION_NAME, connect_timeout=5)
                with self._conn, self._conn.cursor() as cur:
                    return write(cur, downlinks)
            except psycopg2.OperationalError as error:
                self.counts.retries += 1
                log.warning("the outbox could not be written (%s); trying the batch again", str(error).strip())
                if self._conn is not None:
                    self._conn.close()
                self.stop_event.wait(RETRY_S)
            except psycopg2.Error as error:
                # a statement refused (e.g. a body jsonb cannot take): write the rest one by one, so
                # one bad message costs only itself (logged, counted, acknowledged)
                return self._one_by_one(downlinks, error)
        return None

    def _one_by_one(self, downlinks: list[Downlink], error: Exception) -> int:
        log.warning("a batch of %d downlinks was refused (%s); writing them one by one", len(downlinks),
                    str(error).strip()[:300])
        written = 0
        for downlink in downlinks:
            try:
                with self._conn, self._conn.cursor() as cur:
                    written += write(cur, [downlink])
            except psycopg2.OperationalError:
                raise
            except psycopg2.Error as refused:
                self.counts.malformed += 1
                log.warning("downlink %s %s to %s refused by the database, acknowledged and not written: %s",
                            downlink.kind, downlink.key, downlink.target, str(refused).strip()[:300])
        return written


def main(argv: list[str] | None = None) -> int:
    from config.settings import load_settings

    parser = argparse.ArgumentParser(prog="python -m handheld.bridge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = load_settings()
    bridge = HandheldBridge(settings.pg_dsn, settings.mqtt_host, settings.mqtt_port, settings.mqtt_username,
                            settings.mqtt_password.get_secret_value(),
                            receive_maximum=settings.handheld_bridge_receive_maximum)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: bridge.stop_event.set())
    log.info("the handheld bridge: %s:%s as %s", settings.mqtt_host, settings.mqtt_port, settings.mqtt_username)
    bridge.run()
    log.info("stopped: %s", bridge.counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())

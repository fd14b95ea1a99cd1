"""What the command center tells terminals, from two outboxes published over MQTT, QoS 1:

- case notices (`case_notices`) to `gcc/v1/terminal/<id>/notice`, written in the transaction of
  their case change (cases/notices.py), so a notice exists exactly when the change does;
- announcements (`announcements`, written by the screens: dashboard/announcements.py) to
  `gcc/v1/org/<code>/announcement`, read by every terminal of that org unit's grids.

This loop takes the unsent rows in order (`FOR UPDATE SKIP LOCKED`: two engines never send the
same batch), publishes each with a message expiry (a terminal's persistent session keeps it while
the terminal is briefly offline; an offer only until it expires, an announcement until it does),
waits for the broker's PUBACK, and only then marks it sent. A crash between the two sends it again: at least
once, with the notice id for the terminal to see it twice. The broker down: nothing is marked,
the batch is tried again (the attempts are counted), nothing is lost.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cases import listening
from cases.offers import OfferPolicy
from telemetry.notices import NOTICE_EXPIRY_S, Announcement, NoticeKind
from telemetry.topics import NOTICE, org_topic, terminal_topic

log = logging.getLogger(__name__)
BATCH = 200
PUBACK_TIMEOUT_S = 10.0
IDLE_S = 30.0           # with nothing to send, look again this often (a lost NOTIFY costs this)


@dataclass(frozen=True)
class Outbox:
    """A table of messages to send: its unsent rows (id first), and what each becomes: (topic,
    payload, seconds the broker may keep it), or None when it has nothing left to deliver."""
    table: str
    columns: str
    message: Callable[[tuple, datetime], tuple[str, bytes, int] | None]
    order: str = "id"                   # which unsent rows go first


class Notifier:
    def __init__(self, dsn: str, host: str, port: int, username: str, password: str,
                 stop_event: threading.Event | None = None, policy: OfferPolicy = OfferPolicy()) -> None:
        self.dsn = dsn
        self.policy = policy            # a dispatched notice is an offer: it expires with the offer
        self.stop_event = stop_event or threading.Event()
        self.counts = {"sent": 0, "failed": 0}
        self.connected = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username, protocol=MQTTProtocolVersion.MQTTv5)
        client.username_pw_set(username, password)
        client.on_connect = lambda c, u, f, reason, p: self._on_connect(reason)
        client.on_disconnect = lambda c, u, f, reason, p: self.connected.clear()
        client.reconnect_delay_set(1, 30)
        self.client = client
        self.host, self.port = host, port

    def _on_connect(self, reason) -> None:
        if reason.is_failure:
            log.error("the broker refused the cases engine's account: %s", reason)
            return
        self.connected.set()

    def run(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        try:
            listening.keep_running(self._loop, self.stop_event, "the case notifier")
        finally:
            self.client.loop_stop()
            self.client.disconnect()

    def _loop(self) -> None:
        with listening.work_and_listen(self.dsn, "gcc-cases-notify", ("case_notice", "announcement")) as (conn,
                                                                                                        listener):
            while not self.stop_event.is_set():
                if not self.connected.wait(1.0):
                    continue
                sent, left = self.send_batch(conn)
                if not left:
                    listening.sleep(listener, IDLE_S, self.stop_event)

    @property
    def outboxes(self) -> tuple[Outbox, ...]:
        # an offer first: it expires, and an escalation's fifty notices must not hold it back
        return (Outbox("case_notices", "id, terminal_id, kind, time, body", self._notice,
                       order=f"kind <> '{NoticeKind.DISPATCHED.value}', id"),
                Outbox("announcements", "id, org_code, org_name, sender, created_at, expires_at, title, body",
                       _announcement))

    def send_batch(self, conn) -> tuple[int, bool]:
        """Each outbox in turn; (sent, whether there may be more)."""
        sent, more = 0, False
        for outbox in self.outboxes:
            n, left = self.send_outbox(conn, outbox)
            sent, more = sent + n, more or left
        return sent, more

    def send_outbox(self, conn, outbox: Outbox) -> tuple[int, bool]:
        """One transaction: up to BATCH unsent rows published and, those the broker took, marked
        sent. Returns (sent, whether there may be more)."""
        with conn, conn.cursor() as cur:
            cur.execute(f"select {outbox.columns} from {outbox.table} where sent_at is null order by {outbox.order} "
                        "limit %s for update skip locked", (BATCH,))
            rows = cur.fetchall()
            if not rows:
                return 0, False
            pending = []
            now = datetime.now(timezone.utc)
            for row in rows:
                message = outbox.message(row, now)
                if message is None:             # e.g. an offer that has run out meanwhile: nothing to deliver
                    cur.execute(f"update {outbox.table} set sent_at = %s where id = %s", (now, row[0]))
                    continue
                topic, payload, expiry = message
                props = Properties(PacketTypes.PUBLISH)
                props.MessageExpiryInterval = expiry
                pending.append((row[0], self.client.publish(topic, payload, qos=1, properties=props)))
            done, deadline = [], time.monotonic() + PUBACK_TIMEOUT_S
            for row_id, info in pending:
                with contextlib.suppress(RuntimeError, ValueError):    # not queued (disconnected): stays unsent
                    info.wait_for_publish(max(0.0, deadline - time.monotonic()))
                if info.is_published():
                    done.append(row_id)
            now = datetime.now(timezone.utc)
            cur.execute(f"update {outbox.table} set sent_at = %s, attempts = attempts + 1 where id = any(%s)",
                        (now, done))
            failed = [n for n, _ in pending if n not in set(done)]
            if failed:
                cur.execute(f"update {outbox.table} set attempts = attempts + 1 where id = any(%s)", (failed,))
                log.warning("%d of %s not acknowledged by the broker; they stay in the outbox", len(failed),
                            outbox.table)
        self.counts["sent"] += len(done)
        self.counts["failed"] += len(failed)
        if failed:
            self.stop_event.wait(listening.RETRY_S)
        return len(done), len(rows) == BATCH

    def _notice(self, row: tuple, now: datetime) -> tuple[str, bytes, int] | None:
        notice_id, terminal_id, kind, at, body = row
        expiry = self._expiry_s(kind, body, at, now)
        if expiry <= 0:
            return None
        return terminal_topic(terminal_id, NOTICE), orjson.dumps({"notice_id": notice_id, **body}), expiry

    def _expiry_s(self, kind: str, body: dict, at: datetime, now: datetime) -> int:
        """How long the broker may keep the notice for an offline terminal: a dispatched case (an
        offer) until the offer expires, anything else a day."""
        if kind != NoticeKind.DISPATCHED.value:
            return NOTICE_EXPIRY_S
        left = (self.policy.expires(body.get("urgency", "normal"), at) - now).total_seconds()
        return int(left) if left >= 1 else 0


def _announcement(row: tuple, now: datetime) -> tuple[str, bytes, int] | None:
    announcement_id, org_code, org_name, sender, at, expires, title, body = row
    left = int((expires - now).total_seconds())
    if left < 1:
        return None
    message = Announcement(announcement_id, org_code, org_name, at, expires, title, body, sender)
    return org_topic(org_code), message.payload(), left

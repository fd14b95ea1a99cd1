"""Case notices to terminals: the outbox (`case_notices`) published over MQTT, QoS 1.

A notice is written in the transaction of its case change (cases/notices.py), so it exists exactly
when the change does. This loop takes the unsent ones in order (`FOR UPDATE SKIP LOCKED`: two
engines never send the same batch), publishes each to `gcc/v1/terminal/<id>/notice` with a message
expiry (a terminal's persistent session keeps it while the terminal is briefly offline; an offer
only until it expires), waits for
the broker's PUBACK, and only then marks it sent. A crash between the two sends it again: at least
once, with the notice id for the terminal to see it twice. The broker down: nothing is marked,
the batch is tried again (the attempts are counted), nothing is lost.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from datetime import datetime, timezone

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cases import listening
from cases.offers import OfferPolicy
from telemetry.notices import NOTICE_EXPIRY_S, NoticeKind
from telemetry.topics import NOTICE, terminal_topic

log = logging.getLogger(__name__)
BATCH = 200
PUBACK_TIMEOUT_S = 10.0
IDLE_S = 30.0           # with nothing to send, look again this often (a lost NOTIFY costs this)


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
        with listening.work_and_listen(self.dsn, "gcc-cases-notify", ("case_notice",)) as (conn, listener):
            while not self.stop_event.is_set():
                if not self.connected.wait(1.0):
                    continue
                sent, left = self.send_batch(conn)
                if not left:
                    listening.sleep(listener, IDLE_S, self.stop_event)

    def send_batch(self, conn) -> tuple[int, bool]:
        """One transaction: up to BATCH unsent notices published and, those the broker took, marked
        sent. Returns (sent, whether there may be more)."""
        with conn, conn.cursor() as cur:
            cur.execute("select id, terminal_id, kind, time, body from case_notices where sent_at is null order by id "
                        "limit %s for update skip locked", (BATCH,))
            rows = cur.fetchall()
            if not rows:
                return 0, False
            pending = []
            now = datetime.now(timezone.utc)
            for notice_id, terminal_id, kind, at, body in rows:
                expiry = self._expiry_s(kind, body, at, now)
                if expiry <= 0:                 # an offer that has run out meanwhile: nothing to deliver
                    cur.execute("update case_notices set sent_at = %s where id = %s", (now, notice_id))
                    continue
                props = Properties(PacketTypes.PUBLISH)
                props.MessageExpiryInterval = expiry
                payload = orjson.dumps({"notice_id": notice_id, **body})
                pending.append((notice_id, self.client.publish(terminal_topic(terminal_id, NOTICE), payload,
                                                               qos=1, properties=props)))
            done, deadline = [], time.monotonic() + PUBACK_TIMEOUT_S
            for notice_id, info in pending:
                with contextlib.suppress(RuntimeError, ValueError):    # not queued (disconnected): stays unsent
                    info.wait_for_publish(max(0.0, deadline - time.monotonic()))
                if info.is_published():
                    done.append(notice_id)
            now = datetime.now(timezone.utc)
            cur.execute("update case_notices set sent_at = %s, attempts = attempts + 1 where id = any(%s)",
                        (now, done))
            failed = [n for n, _ in pending if n not in set(done)]
            if failed:
                cur.execute("update case_notices set attempts = attempts + 1 where id = any(%s)", (failed,))
                log.warning("%d case notices not acknowledged by the broker; they stay in the outbox", len(failed))
        self.counts["sent"] += len(done)
        self.counts["failed"] += len(failed)
        if failed:
            self.stop_event.wait(listening.RETRY_S)
        return len(done), len(rows) == BATCH

    def _expiry_s(self, kind: str, body: dict, at: datetime, now: datetime) -> int:
        """How long the broker may keep the notice for an offline terminal: a dispatched case (an
        offer) until the offer expires, anything else a day."""
        if kind != NoticeKind.DISPATCHED.value:
            return NOTICE_EXPIRY_S
        left = (self.policy.expires(body.get("urgency", "normal"), at) - now).total_seconds()
        return int(left) if left >= 1 else 0

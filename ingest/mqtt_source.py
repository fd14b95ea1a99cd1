"""The ingest workers' broker connection, and nothing else.

MQTT v5, a persistent session (so messages wait at the broker while a worker is down), QoS 1,
a shared subscription so workers split the load, and manual acknowledgement: a message is
acknowledged only when the worker says so, after its batch is committed. Receive Maximum bounds the
messages in flight: the broker sends no more until some are acknowledged. The network thread only
hands messages over (a queue); it does no processing.

QoS 0 has no such bound (nothing is acknowledged, the broker cannot be told to wait), so it is
bounded here: a QoS 0 message that arrives while the inbox holds more than `qos0_inbox_limit`
messages is dropped, counted (`on_shed`) and logged at most every SHED_LOG_EVERY_S. QoS 1 is
never dropped. "Nothing lost" is a promise for QoS 1 (docs/WIRE_FORMAT.md).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes

from ingest.model import Delivery, Inbound, Rejection
from telemetry.topics import SHARE_GROUP, uplink_filters

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 86400
SHED_LOG_EVERY_S = 10.0


@dataclass(frozen=True)
class MqttReceipt:
    """The broker's acknowledgement of one message, sent on the connection that delivered it."""
    source: MqttSource
    mid: int
    qos: int
    epoch: int

    def settle(self, rejection: Rejection | None) -> bool:
        # a refused message is acknowledged too: it is dead-lettered, and must not come back
        return self.source.ack_one(self.mid, self.qos, self.epoch)


class MqttSource:
    kind = "mqtt"

    def __init__(self, host: str, port: int, username: str, password: str, client_id: str,
                 *, receive_maximum: int = 2000, share_group: str = SHARE_GROUP,
                 filters: tuple[str, ...] = uplink_filters()) -> None:
        self.inbox: queue.Queue[Delivery] = queue.Queue()
        self.host, self.port = host, port
        self.receive_maximum = receive_maximum
        self.filters = [f"$share/{share_group}/{f}" for f in filters]
        self.connected = threading.Event()
        self.session_epoch = 0  # bumps on every new connection: older mids must not be acked
        self.redeliveries = 0
        self.received = 0
        self.reconnects = 0                     # asked for by the worker (an abandoned batch)
        self.qos0_inbox_limit = 4000            # the worker sets its own (WorkerConfig)
        self.on_shed: Callable[[], None] = lambda: None
        self.shed = 0
        self._shed_logged = (0.0, 0)            # (when, self.shed then)
        self._lock = threading.Lock()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=MQTTProtocolVersion.MQTTv5, manual_ack=True)
        client.username_pw_set(username, password)
        client.reconnect_delay_set(min_delay=1, max_delay=15)
        client.max_inflight_messages_set(100)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client

    def start(self) -> None:
        props = mqtt.Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = self.receive_maximum
        self.client.connect_async(self.host, self.port, keepalive=30, clean_start=False, properties=props)
        self.client.loop_start()

    def reconnect(self) -> None:
        """Drop the connection and connect again to the same persistent session: the broker then
        delivers every message it holds unacknowledged for us again (marked DUP). Messages of the
        old connection still in the inbox can no longer be acknowledged (see ack_one): they come
        again, and the store skips what it has."""
        with self._lock:
            self.session_epoch += 1
            self.connected.clear()
        self.client.disconnect()
        self.client.loop_stop()
        self.reconnects += 1
        self.start()

    def stop(self, end_session: bool = False) -> None:
        """Disconnect. end_session=True also discards the broker-side session (MQTT v5: session
        expiry 0 on DISCONNECT); otherwise the broker keeps queueing for this worker."""
        props = None
        if end_session:
            props = mqtt.Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
        self.client.disconnect(properties=props)
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        with self._lock:
            self.session_epoch += 1
        # (re)subscribe every time: cheap, and correct even if the broker lost the session
        client.subscribe([(f, mqtt.SubscribeOptions(qos=1)) for f in self.filters])
        self.connected.set()
        log.info("connected to the broker (session present: %s)", flags.session_present)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            self.session_epoch += 1   # nothing received before this may be acked any more
            self.connected.clear()
        log.warning("disconnected from the broker: %s", reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        self.received += 1
        if msg.qos == 0 and self.inbox.qsize() > self.qos0_inbox_limit:
            self._shed_one()
            return
        if msg.dup:
            self.redeliveries += 1
        inbound = Inbound(msg.topic, msg.payload, msg.qos, msg.retain, datetime.now(timezone.utc), msg.dup)
        self.inbox.put(Delivery(inbound, MqttReceipt(self, msg.mid, msg.qos, self.session_epoch)))

    def _shed_one(self) -> None:
        self.shed += 1
        self.on_shed()
        now = time.monotonic()
        logged_at, logged_count = self._shed_logged
        if now - logged_at >= SHED_LOG_EVERY_S:
            log.warning("inbox full (more than %d messages): dropped %d QoS 0 messages since the last report "
                        "(QoS 1 is never dropped)", self.qos0_inbox_limit, self.shed - logged_count)
            self._shed_logged = (now, self.shed)

    def ack_one(self, mid: int, qos: int, epoch: int) -> bool:
        """Acknowledge a message of the current connection. One from an earlier connection is not
        acknowledged: the broker delivers it again (and the store deduplicates it)."""
        if qos == 0:
            return False  # QoS 0: the broker expects no acknowledgement
        with self._lock:
            if epoch != self.session_epoch or not self.connected.is_set():
                return False
            self.client.ack(mid, qos)
            return True

"""Many MQTT connections on one thread: paho clients driven by one selector loop.

Real devices each hold their own connection with their own credentials (so the broker's
authentication and ACL apply as in the field), but a thread per device does not scale to
thousands. Paho supports external event loops through its socket callbacks; this module runs
every client's socket in one `selectors` loop, reconnects dropped clients with backoff, and can
drop a connection "uncleanly" so the broker publishes the device's last will.
"""
from __future__ import annotations

import contextlib
import logging
import random
import selectors
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)

MessageHandler = Callable[["DeviceConnection", mqtt.MQTTMessage], None]


class DeviceConnection:
    """One device's MQTT v5 connection, owned by a `Mux`."""

    def __init__(self, mux: Mux, device_id: str, username: str, password: str, *,
                 will: tuple[str, bytes] | None = None, subscriptions: tuple[str, ...] = (),
                 on_message: MessageHandler | None = None,
                 on_online: Callable[[DeviceConnection], None] | None = None,
                 session_expiry_s: int = 0) -> None:
        """session_expiry_s > 0: a persistent session, so QoS 1 messages for the device (tasks)
        wait at the broker while it is offline."""
        self.mux = mux
        self.session_expiry_s = session_expiry_s
        self.device_id = device_id
        self.subscriptions = subscriptions
        self.connected = False
        self.paused = False            # deliberately offline (simulating a dead terminal)
        self.retry_at = 0.0
        self.backoff = 1.0
        self.handler = on_message
        self.on_online = on_online
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username,  # the broker binds it
                             protocol=MQTTProtocolVersion.MQTTv5, reconnect_on_failure=False)
        client.username_pw_set(username, password)
        if will is not None:
            client.will_set(will[0], will[1], qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = lambda c, u, msg: self.handler and self.handler(self, msg)
        client.on_socket_open = lambda c, u, sock: mux.register(sock, self)
        client.on_socket_close = lambda c, u, sock: mux.unregister(sock)
        client.on_socket_register_write = lambda c, u, sock: mux.want_write(sock, self, True)
        client.on_socket_unregister_write = lambda c, u, sock: mux.want_write(sock, self, False)
        self.client = client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("%s: connection refused: %s", self.device_id, reason_code)
            self.mux.refused += 1
            return
        self.connected = True
        self.backoff = 1.0
        for topic in self.subscriptions:
            client.subscribe(topic, qos=1)
        if self.on_online:
            self.on_online(self)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected = False
        if not self.paused:
            self.retry_at = time.monotonic() + self.backoff * random.uniform(0.5, 1.5)
            self.backoff = min(self.backoff * 2, 30.0)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        """Publish if connected; False (and counted) when the device is offline."""
        if not self.connected:
            self.mux.unsent += 1
            return False
        result = self.client.publish(topic, payload, qos=qos, retain=retain)
        if result.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.mux.unsent += 1
            return False
        self.mux.published += 1
        return True

    def go_offline_with_will(self) -> None:
        """Drop the connection so that the broker publishes the last will (MQTT v5 reason 0x04)."""
        self.paused = True
        if self.connected:
            self.client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=4))

    def come_back(self) -> None:
        self.paused = False
        self.retry_at = time.monotonic()


class Mux:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.selector = selectors.DefaultSelector()
        self.connections: list[DeviceConnection] = []
        self.published = 0
        self.unsent = 0
        self.refused = 0
        self._last_misc = 0.0

    # --- socket bookkeeping, called back by paho -----------------------------------------------
    def register(self, sock, conn: DeviceConnection) -> None:
        self.selector.register(sock, selectors.EVENT_READ, conn)

    def unregister(self, sock) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(sock)

    def want_write(self, sock, conn: DeviceConnection, on: bool) -> None:
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if on else 0)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.modify(sock, events, conn)

    # --- life cycle -------------------------------------------------------------------------------
    def add(self, conn: DeviceConnection) -> None:
        self.connections.append(conn)
        conn.retry_at = time.monotonic()

    @property
    def online(self) -> int:
        return sum(c.connected for c in self.connections)

    def _connect_due(self, now: float, budget: int) -> None:
        """(Re)connect devices whose time has come, at most `budget` per call (no stampede)."""
        for conn in self.connections:
            if budget <= 0:
                return
            if conn.connected or conn.paused or conn.retry_at == 0 or conn.retry_at > now:
                continue
            conn.retry_at = 0
            budget -= 1
            try:
                props = mqtt.Properties(PacketTypes.CONNECT)
                if conn.session_expiry_s:
                    props.SessionExpiryInterval = conn.session_expiry_s
                conn.client.connect(self.host, self.port, keepalive=30,
                                    clean_start=not conn.session_expiry_s, properties=props)
            except OSError as exc:
                conn.retry_at = now + conn.backoff
                conn.backoff = min(conn.backoff * 2, 30.0)
                log.debug("%s: connect failed: %s", conn.device_id, exc)

    def poll(self, timeout: float, connects_per_poll: int = 20) -> None:
        """Run one round of the loop: connect what is due, move bytes, keep sessions alive."""
        now = time.monotonic()
        self._connect_due(now, connects_per_poll)
        for key, mask in self.selector.select(timeout):
            conn: DeviceConnection = key.data
            if mask & selectors.EVENT_READ:
                conn.client.loop_read()
            if mask & selectors.EVENT_WRITE:
                conn.client.loop_write()
        if now - self._last_misc >= 1.0:
            self._last_misc = now
            for conn in self.connections:
                if conn.client.socket() is not None:  # connected, or still waiting for CONNACK
                    conn.client.loop_misc()           # pings; gives up on a silent broker

    def close(self) -> None:
        for conn in self.connections:
            conn.paused = True
            if conn.connected:
                conn.client.disconnect()
        deadline = time.monotonic() + 3
        while any(c.connected for c in self.connections) and time.monotonic() < deadline:
            self.poll(0.05, connects_per_poll=0)
        self.selector.close()

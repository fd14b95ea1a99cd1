"""A small synchronous MQTT v5 client for tests: connect, publish with PUBACK reason, collect."""
from __future__ import annotations

import queue
import secrets
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion


class MqttProbe:
    def __init__(self, port: int, username: str | None = None, password: str | None = None,
                 client_id: str | None = None, clean_start: bool = True,
                 session_expiry: int = 0) -> None:
        # the broker lets an account connect only with its own client id: its username
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=client_id or username or f"probe-{secrets.token_hex(4)}",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.messages: queue.Queue = queue.Queue()
        self._connack = threading.Event()
        self._suback = threading.Event()
        self._puback: dict[int, str] = {}
        self._puback_cond = threading.Condition()
        self.connect_reason: str | None = None
        self.client.on_connect = self._on_connect
        self.disconnected = threading.Event()       # the broker closed the connection (or we did)
        self.client.on_disconnect = lambda c, u, flags, reason, props: self.disconnected.set()
        self.client.on_message = lambda c, u, msg: self.messages.put(msg)
        self.client.on_publish = self._on_publish
        self.suback_codes: list[str] = []
        self.client.on_subscribe = self._on_subscribe
        props = mqtt.Properties(mqtt.PacketTypes.CONNECT)
        if session_expiry:
            props.SessionExpiryInterval = session_expiry
        self.client.connect("127.0.0.1", port, keepalive=30, clean_start=clean_start,
                            properties=props)
        self.client.loop_start()
        if not self._connack.wait(10):
            raise TimeoutError("no CONNACK")

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self.suback_codes = [str(code) for code in reason_codes]
        self._suback.set()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connect_reason = str(reason_code)
        self._connack.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        with self._puback_cond:
            self._puback[mid] = str(reason_code)
            self._puback_cond.notify_all()

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, timeout: float = 10.0) -> str:
        """Publish and return the broker's PUBACK reason (e.g. "Success", "Not authorized")."""
        info = self.client.publish(topic, payload, qos=qos)
        with self._puback_cond:
            if not self._puback_cond.wait_for(lambda: info.mid in self._puback, timeout):
                raise TimeoutError(f"no PUBACK for {topic}")
            return self._puback.pop(info.mid)

    def subscribe(self, topic: str, qos: int = 1) -> str:
        """Subscribe and return the broker's SUBACK reason (e.g. "Granted QoS 1", "Not authorized")."""
        self._suback.clear()
        self.client.subscribe(topic, qos=qos)
        if not self._suback.wait(10):
            raise TimeoutError("no SUBACK")
        return self.suback_codes[0]

    def received(self, timeout: float) -> list:
        """Messages that arrive within `timeout` seconds."""
        out = []
        try:
            out.append(self.messages.get(timeout=timeout))
            while True:
                out.append(self.messages.get_nowait())
        except queue.Empty:
            return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_once(port: int, account, topic: str, payload: bytes | str) -> str:
    """Connect as `account`, publish once with QoS 1, disconnect: the broker's PUBACK reason."""
    probe = MqttProbe(port, account.username, account.password)
    try:
        return probe.publish(topic, payload)
    finally:
        probe.close()


def mosquitto_pub(port: int, account, topic: str, message: str, tmp_dir) -> None:
    """Publish with Debian's mosquitto_pub as `account`. The password goes in the tool's own config
    file (mode 0600), never on a command line where `ps` shows it to everyone."""
    import os
    import subprocess
    from pathlib import Path

    config = Path(tmp_dir) / ".config" / "mosquitto_pub"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f"-u {account.username}\n-P {account.password}\n-i {account.username}\n")
    config.chmod(0o600)
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv5", "-q", "1", "-t", topic,
                    "-m", message], check=True, timeout=20,
                   env={**os.environ, "HOME": str(tmp_dir), "XDG_CONFIG_HOME": str(Path(tmp_dir) / ".config")})


def device_with_will(port: int, account, topic: str, will: bytes, retain: bool) -> mqtt.Client:
    """A device's own connection (its account, its client id) that leaves a last will, connected
    and looping. Close its socket (`client.socket().close()`) to make the broker send the will."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=account.username, protocol=MQTTProtocolVersion.MQTTv5)
    client.username_pw_set(account.username, account.password)
    client.will_set(topic, will, qos=1, retain=retain)
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    return client

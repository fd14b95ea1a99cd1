"""Phone onboarding: what a member's phone needs to start reporting, made from its new credential.

- OwnTracks: the app's configuration (`_type: configuration`, the booklet's remote configuration
  keys), as an .otrc file to open on the phone and as a QR code of the app's import link
  (`owntracks:///config?inline=<base64 of the JSON, percent-encoded>`), in MQTT mode (mode 0: host, port, tls,
  username, password, deviceId, clientId, which our broker requires to be the username) or HTTP
  mode (mode 3: url of the ingest's /owntracks, with the same username and password).
- Traccar Client: the server URL to type in (the ingest's /osmand/<token>) and the device
  identifier (the device id).
- A dedicated terminal or a gateway: the broker to reach, its login (the username is the client
  id too: the broker refuses any other) and the topics it publishes to (docs/WIRE_FORMAT.md).

The addresses are the ones phones reach (GCC_PUBLIC_MQTT_HOST/PORT/TLS, GCC_PUBLIC_INGEST_URL),
not the local ones the services use.
"""
from __future__ import annotations

import base64
import io
from urllib.parse import quote

import orjson
import segno

from registry.store import Credential
from telemetry.decoders import osmand
from telemetry.topics import GATEWAY_UPLINK, TERMINAL_UPLINK, AccountKind, gateway_topic, terminal_topic

MODE_MQTT, MODE_HTTP = 0, 3     # the apps' connection modes (the booklet: 0 MQTT, 3 HTTP)


def ingest_url(settings) -> str:
    return (settings.public_ingest_url or f"http://{settings.ingest_http_host}:{settings.ingest_http_port}").rstrip("/")


def owntracks_config(credential: Credential, settings, mode: str = "mqtt", tid: str | None = None) -> dict:
    """The app's configuration for this phone (an OwnTracks account's new credential)."""
    if credential.kind is not AccountKind.OWNTRACKS:
        raise ValueError(f"{credential.device_id} is a {credential.kind.value} account, not an OwnTracks phone's")
    config = {"_type": "configuration", "username": credential.device_id, "password": credential.password,
              "deviceId": "phone", "tid": tid or credential.device_id[-2:].upper(), "auth": True}
    if mode == "http":
        return {**config, "mode": MODE_HTTP, "url": f"{ingest_url(settings)}/owntracks"}
    return {**config, "mode": MODE_MQTT, "host": settings.public_mqtt_host or settings.mqtt_host,
            "port": settings.public_mqtt_port or settings.mqtt_port, "tls": settings.public_mqtt_tls,
            "clientId": credential.device_id, "mqttProtocolLevel": 4, "cleanSession": False, "keepalive": 60}


def otrc(config: dict) -> bytes:
    """The .otrc file: the configuration as JSON (the apps open it, or import it from a link)."""
    return orjson.dumps(config, option=orjson.OPT_INDENT_2)


def import_link(config: dict) -> str:
    """Standard base64 (padded), percent-encoded: Android decodes the query with URLDecoder, which
    would turn a bare '+' into a space (the booklet's remote configuration; both apps read this)."""
    return "owntracks:///config?inline=" + quote(base64.b64encode(orjson.dumps(config)).decode(), safe="")


def qr_png(config: dict, scale: int = 6) -> bytes:
    """A QR code of the import link (segno: pure Python, no imaging library)."""
    out = io.BytesIO()
    segno.make(import_link(config), error="m").save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


def traccar_client(credential: Credential, settings) -> dict[str, str]:
    """What Traccar Client's settings take: its server URL (the token in the path) and identifier."""
    if credential.kind is not AccountKind.OSMAND:
        raise ValueError(f"{credential.device_id} is a {credential.kind.value} account, not a Traccar Client phone's")
    return {"server_url": f"{ingest_url(settings)}/{osmand.PREFIX}/{credential.password}",
            "device_identifier": credential.device_id}


def mqtt_url(settings) -> str:
    """The broker as devices reach it."""
    return f"{'mqtts' if settings.public_mqtt_tls else 'mqtt'}://{settings.public_mqtt_host or settings.mqtt_host}:" \
           f"{settings.public_mqtt_port or settings.mqtt_port}"


def mqtt_broker(credential: Credential, settings) -> dict[str, str]:
    """Where a terminal or a gateway connects and what it publishes (its topics' leaves in braces)."""
    if credential.kind is AccountKind.TERMINAL:
        topics, leaves = terminal_topic, TERMINAL_UPLINK
    elif credential.kind is AccountKind.GATEWAY:
        topics, leaves = gateway_topic, GATEWAY_UPLINK
    else:
        raise ValueError(f"{credential.device_id} is a {credential.kind.value} account, not a terminal's or gateway's")
    return {"url": mqtt_url(settings), "username": credential.device_id,
            "publishes": topics(credential.device_id, "{" + ",".join(leaves) + "}")}

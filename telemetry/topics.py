"""The MQTT topic layout (version 1) and which account may use which topic.

Uplink (device → command center)
    gcc/v1/terminal/{terminal_id}/fix        GPS fix from a member's handheld terminal (our JSON)
    gcc/v1/terminal/{terminal_id}/status     online/offline, battery, SOS; retained; the last will
    gcc/v1/terminal/{terminal_id}/incident   incident report (category, severity, place, text, photo)
    gcc/v1/terminal/{terminal_id}/task/ack   the terminal's answer to a dispatched task
    gcc/v1/gateway/{gateway_id}/senml        SenML pack (RFC 8428) from a building gateway
    gcc/v1/gateway/{gateway_id}/reading      sensor readings in our JSON, via a gateway
    gcc/v1/gateway/{gateway_id}/alarm        device alarms in our JSON, via a gateway
    gcc/v1/gateway/{gateway_id}/status       gateway online/offline; retained; the last will
    owntracks/{user}/{device}[/...]          the OwnTracks app (location, lwt, transition, ...)

Downlink (command center → device)
    gcc/v1/terminal/{terminal_id}/task       a dispatched task, QoS 1
    gcc/v1/gateway/{gateway_id}/cmd          a command for a gateway

Device ids are the broker usernames: a device's account reaches only its own topics.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

PREFIX = "gcc/v1"
SHARE_GROUP = "ingest"


class AccountKind(str, Enum):
    TERMINAL = "terminal"      # a grid member's handheld terminal
    GATEWAY = "gateway"        # a building's IoT gateway or an elevator controller
    OWNTRACKS = "owntracks"    # a phone running the OwnTracks app
    INGEST = "ingest"          # the ingest workers: read every uplink topic
    DISPATCH = "dispatch"      # the dispatcher service: send tasks, read acknowledgements


def terminal_topic(terminal_id: str, leaf: str) -> str:
    return f"{PREFIX}/terminal/{terminal_id}/{leaf}"


def gateway_topic(gateway_id: str, leaf: str) -> str:
    return f"{PREFIX}/gateway/{gateway_id}/{leaf}"


@dataclass(frozen=True)
class TopicRule:
    access: str  # "read", "write" or "readwrite", as in Mosquitto's ACL file
    topic: str


def _valid_device_id(device_id: str) -> bool:
    return bool(device_id) and not any(c in device_id for c in "/+#\0 ") and len(device_id) <= 64


def topic_rules(kind: AccountKind, username: str) -> list[TopicRule]:
    """The topics an account of this kind may use. Device accounts reach only their own topics."""
    if kind in (AccountKind.TERMINAL, AccountKind.GATEWAY, AccountKind.OWNTRACKS) \
            and not _valid_device_id(username):
        raise ValueError(f"invalid device id for a broker account: {username!r}")
    if kind is AccountKind.TERMINAL:
        return [TopicRule("write", terminal_topic(username, leaf))
                for leaf in ("fix", "status", "incident", "task/ack")] + \
               [TopicRule("read", terminal_topic(username, "task"))]
    if kind is AccountKind.GATEWAY:
        return [TopicRule("write", gateway_topic(username, leaf))
                for leaf in ("senml", "reading", "alarm", "status")] + \
               [TopicRule("read", gateway_topic(username, "cmd"))]
    if kind is AccountKind.OWNTRACKS:
        return [TopicRule("readwrite", f"owntracks/{username}/#")]
    if kind is AccountKind.INGEST:
        return [TopicRule("read", f"{PREFIX}/#"), TopicRule("read", "owntracks/#")]
    if kind is AccountKind.DISPATCH:
        return [TopicRule("write", terminal_topic("+", "task")),
                TopicRule("read", terminal_topic("+", "task/ack")),
                TopicRule("write", gateway_topic("+", "cmd"))]
    raise ValueError(f"unknown account kind {kind!r}")

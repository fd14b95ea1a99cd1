"""Pure decoders: (topic, payload bytes, received_at) -> validated messages, or DecodeError.

Routing follows the topic layout of telemetry/topics.py:

    gcc/v1/terminal/{id}/<a terminal kind's leaf>             -> gcc_json (our JSON, as the kind maps it)
    gcc/v1/gateway/{id}/<a gateway kind's leaf>               -> gcc_json (our JSON, as the kind maps it)
    gcc/v1/gateway/{id}/senml                                 -> senml (RFC 8428)
    owntracks/{user}/{device}[/event | other app sub-topics]  -> owntracks

Downlink topics (.../task, .../cmd) and anything else are refused as wrong_topic. The device id is
taken from the topic, which the broker authenticated, never from the payload. No decoder does I/O.
"""
from __future__ import annotations

from datetime import datetime, timezone

from telemetry import topics
from telemetry.decoders import gcc_json, owntracks, senml
from telemetry.decoders.errors import (
    INVALID_JSON,
    INVALID_SENML,
    INVALID_TEXT,
    REASONS,
    SCHEMA_VIOLATION,
    UNSUPPORTED_TYPE,
    WRONG_TOPIC,
    DecodeError,
)
from telemetry.messages import Message, is_valid_id
from telemetry.topics import PREFIX

__all__ = ["DecodeError", "decode", "REASONS", "INVALID_JSON", "SCHEMA_VIOLATION", "WRONG_TOPIC",
           "UNSUPPORTED_TYPE", "INVALID_SENML", "INVALID_TEXT"]

_PREFIX_PARTS = PREFIX.split("/")  # ["gcc", "v1"]


def decode(topic: str, payload: bytes, received_at: datetime,
           sensor_names: senml.SensorNames = senml.NO_NAMES) -> list[Message]:
    """Decode one MQTT message into one or more messages.

    ``received_at`` is the ingest time (timezone-aware); it anchors SenML relative times and is
    the time of messages whose format allows none (an OwnTracks lwt, a reading without ts).
    ``sensor_names``: the registry's sensors, which SenML record names are mapped by.
    Raises DecodeError (reason in REASONS) for anything that cannot be decoded.
    """
    if received_at.tzinfo is None:
        raise ValueError("received_at must be a timezone-aware datetime")
    received_at = received_at.astimezone(timezone.utc)
    parts = topic.split("/")
    if parts[0] == topics.OWNTRACKS_PREFIX:
        user, device, _ = owntracks.parse_topic(topic)
        return owntracks.decode_mqtt(user, device, payload, received_at)
    if parts[:2] != _PREFIX_PARTS or len(parts) < 5:
        raise DecodeError(WRONG_TOPIC, f"{topic!r} is not an uplink topic of {PREFIX} or owntracks")
    kind, device_id, leaf = parts[2], parts[3], "/".join(parts[4:])
    if not is_valid_id(device_id):
        raise DecodeError(WRONG_TOPIC, f"{topic!r}: invalid {kind} id {device_id!r}")
    if kind == "terminal" and leaf in topics.TERMINAL_UPLINK:
        return gcc_json.decode_terminal(device_id, leaf, payload, received_at)
    if kind == "gateway" and leaf == topics.SENML:
        return senml.decode(device_id, payload, received_at, sensor_names)
    if kind == "gateway" and leaf in topics.GATEWAY_UPLINK:
        return gcc_json.decode_gateway(device_id, leaf, payload, received_at)
    raise DecodeError(WRONG_TOPIC, f"{topic!r}: {leaf!r} is not an uplink leaf of a {kind!r} "
                                   "(downlink task/cmd topics are never decoded)")

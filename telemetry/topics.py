"""The MQTT topic layout (version 1) and which account may use which topic.

Uplink (device → command center)
    gcc/v1/terminal/{terminal_id}/<leaf>     a message kind of a member's terminal, in our JSON
    gcc/v1/gateway/{gateway_id}/<leaf>       a message kind of a building gateway, in our JSON
                                             (each kind's module in telemetry/kinds/ declares its
                                             leaf: fix, status, incident, task/ack, case, diary,
                                             announcement/read, alarm/check; reading, alarm, status;
                                             docs/WIRE_FORMAT.md shows each payload)
    gcc/v1/gateway/{gateway_id}/senml        SenML pack (RFC 8428) from a building gateway (readings)
    owntracks/{user}/{device}[/...]          the OwnTracks app (location, lwt, transition, ...)

Downlink (command center → device)
    gcc/v1/terminal/{terminal_id}/task       a dispatched task, QoS 1
    gcc/v1/terminal/{terminal_id}/notice     a case notice: dispatched to you, verify, rework, escalated…
    gcc/v1/gateway/{gateway_id}/cmd          a command for a gateway
    gcc/v1/org/{org_code}/announcement       an announcement (通知公告) to every terminal of an org
                                             unit; a terminal may read those of its own grid and
                                             of every org unit above it, no other

Device ids are the broker usernames: a device's account reaches only its own topics, and connects
only with its own client id (the broker checks subscriptions too: Mosquitto's dynamic security
plugin, told by registry/dynsec.py from `topic_rules`).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from core.orgcodes import ancestors
from telemetry import kinds
from telemetry.kinds import (
    alarm,
    announcement_read,
    case_update,
    diary_entry,
    fix,
    incident_report,
    reading,
    task_ack,
    terminal_status,
)

PREFIX = "gcc/v1"
SHARE_GROUP = "ingest"
OWNTRACKS_PREFIX = "owntracks"

# The leaves under a device's own topic, by direction: one list for the ACL, the ingest
# subscription and the decoders' routing alike. The uplink leaves are the message kinds' (each
# kind's module in telemetry/kinds/ declares its own), plus SenML, a second format of readings.
TASK, NOTICE, CMD = "task", "notice", "cmd"
SENML = "senml"
ANNOUNCEMENT = "announcement"                    # under an org unit's topic
TERMINAL_UPLINK = kinds.uplink_leaves("terminal")
TERMINAL_DOWNLINK = (TASK, NOTICE)
GATEWAY_UPLINK = (SENML, *kinds.uplink_leaves("gateway"))
GATEWAY_DOWNLINK = (CMD,)
# the leaves of kinds other rooms publish or name (spelled by their kinds)
FIX, STATUS, INCIDENT = fix.KIND.json.leaf, terminal_status.KIND.json.leaf, incident_report.KIND.json.leaf
TASK_ACK, CASE, READ = task_ack.KIND.json.leaf, case_update.KIND.json.leaf, announcement_read.KIND.json.leaf
DIARY, READING, ALARM = diary_entry.KIND.json.leaf, reading.KIND.json.leaf, alarm.KIND.json.leaf
# Sub-topics the OwnTracks apps publish under owntracks/<user>/<device>/ (the booklet's "Topics").
OWNTRACKS_UPLINK = ("event", "step", "beacon", "dump", "status", "waypoint", "waypoints", "info")


class AccountKind(str, Enum):
    TERMINAL = "terminal"      # a grid member's handheld terminal
    GATEWAY = "gateway"        # a building's IoT gateway or an elevator controller
    OWNTRACKS = "owntracks"    # a phone running the OwnTracks app
    OSMAND = "osmand"          # a phone running Traccar Client: HTTP only (the OsmAnd endpoint), no topics
    INGEST = "ingest"          # an ingest worker: reads every uplink topic (in the share group)
    DISPATCH = "dispatch"      # the dispatcher service: sends tasks, reads acknowledgements
    CASES = "cases"            # the cases engine: sends case notices and announcements (nothing else)
    HANDHELD_BRIDGE = "handheld_bridge"  # copies every terminal's notices and tasks and every announcement
    #                                      into the members' phones' outbox (handheld/bridge.py); publishes nothing
    BROKER_ADMIN = "broker_admin"  # the stack's own: adds and changes accounts at run time
    HEALTH = "health"          # may log in, and do nothing else (the broker's health check)


DEVICE_KINDS = frozenset({AccountKind.TERMINAL, AccountKind.GATEWAY, AccountKind.OWNTRACKS, AccountKind.OSMAND})
# Mosquitto's dynamic security plugin takes commands here (the broker admin's only topics).
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"


def terminal_topic(terminal_id: str, leaf: str) -> str:
    return f"{PREFIX}/terminal/{terminal_id}/{leaf}"


def gateway_topic(gateway_id: str, leaf: str) -> str:
    return f"{PREFIX}/gateway/{gateway_id}/{leaf}"


def org_topic(org_code: str, leaf: str = ANNOUNCEMENT) -> str:
    return f"{PREFIX}/org/{org_code}/{leaf}"


def owntracks_filter(user: str = "+") -> str:
    return f"{OWNTRACKS_PREFIX}/{user}/#"


def owntracks_device_topic(user: str, leaf: str | None = None, device: str = "+") -> str:
    """owntracks/<user>/<device>[/<leaf>]: where the app publishes (any device name by default)."""
    return f"{OWNTRACKS_PREFIX}/{user}/{device}" + (f"/{leaf}" if leaf else "")


def uplink_filters() -> tuple[str, ...]:
    """Every uplink topic, as subscription filters (the ingest workers subscribe to these)."""
    return (*(terminal_topic("+", leaf) for leaf in TERMINAL_UPLINK),
            *(gateway_topic("+", leaf) for leaf in GATEWAY_UPLINK), f"{OWNTRACKS_PREFIX}/#")


def handheld_downlink_filters() -> tuple[str, ...]:
    """What reaches a member's phones (the handheld bridge subscribes to these): every terminal's
    downlink leaves and every org unit's announcements."""
    return (*(terminal_topic("+", leaf) for leaf in TERMINAL_DOWNLINK), org_topic("+"))


@dataclass(frozen=True)
class TopicRule:
    """One thing an account may do: publish to a topic filter, or subscribe to one (and receive
    what matches it). `shared`: the subscription may also be made in any share group."""
    access: str                  # "publish" or "subscribe"
    topic: str
    shared: bool = False


def _valid_device_id(device_id: str) -> bool:
    return bool(device_id) and not any(c in device_id for c in "/+#\0 $") and len(device_id) <= 64


def topic_rules(kind: AccountKind, username: str, org: str = "") -> list[TopicRule]:
    """Everything an account of this kind may do; anything else is refused, subscriptions
    included. Device accounts reach only their own topics: no wildcards, no share groups. A
    terminal's `org` is its member's grid: it may read the announcements of that grid and of
    every org unit above it (community, street, district)."""
    if kind in DEVICE_KINDS and not _valid_device_id(username):
        raise ValueError(f"invalid device id for a broker account: {username!r}")
    if kind is AccountKind.TERMINAL:
        return [TopicRule("publish", terminal_topic(username, leaf)) for leaf in TERMINAL_UPLINK] + \
               [TopicRule("subscribe", terminal_topic(username, leaf)) for leaf in TERMINAL_DOWNLINK] + \
               [TopicRule("subscribe", org_topic(code)) for code in (ancestors(org) if org else [])]
    if kind is AccountKind.GATEWAY:
        return [TopicRule("publish", gateway_topic(username, leaf)) for leaf in GATEWAY_UPLINK] + \
               [TopicRule("subscribe", gateway_topic(username, leaf)) for leaf in GATEWAY_DOWNLINK]
    if kind is AccountKind.OWNTRACKS:
        # publish: only the topics the app publishes (the decoder's routing), so a phone cannot
        # flood the ingest with topics it would only dead-letter; subscribe: its own, for its cmd
        return [TopicRule("publish", owntracks_device_topic(username)),
                *(TopicRule("publish", owntracks_device_topic(username, leaf)) for leaf in OWNTRACKS_UPLINK),
                TopicRule("subscribe", owntracks_filter(username))]
    if kind is AccountKind.INGEST:
        return [TopicRule("subscribe", f, shared=True) for f in uplink_filters()]
    if kind is AccountKind.DISPATCH:
        return [TopicRule("publish", terminal_topic("+", TASK)), TopicRule("publish", gateway_topic("+", CMD)),
                TopicRule("subscribe", terminal_topic("+", TASK_ACK), shared=True)]
    if kind is AccountKind.CASES:
        return [TopicRule("publish", terminal_topic("+", NOTICE)), TopicRule("publish", org_topic("+"))]
    if kind is AccountKind.HANDHELD_BRIDGE:
        return [TopicRule("subscribe", f) for f in handheld_downlink_filters()]
    if kind is AccountKind.BROKER_ADMIN:
        return [TopicRule("publish", CONTROL_TOPIC), TopicRule("subscribe", CONTROL_TOPIC + "/response")]
    if kind in (AccountKind.HEALTH, AccountKind.OSMAND):
        return []
    raise ValueError(f"unknown account kind {kind!r}")


def bound_client_id(kind: AccountKind, username: str) -> str:
    """The only client id an account may connect with: its username, for every kind (the health
    check's account included, which may do nothing else: unbound, it could connect with an
    ingest worker's client id and take over that worker's session and its queued messages)."""
    return username

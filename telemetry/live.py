"""The live-state contract: what the ingest workers write to Redis and the screens read from it.

One owner for every piece of that knowledge: the Redis key names, the live bus, the thresholds,
the typed changes a batch makes (and the bus carries), and how the stored live state is read back.
The writer (`ingest.live`) and every reader (`dashboard.queries`, `dashboard.hub`) go through here.

Redis keys (namespace `gcc:`)
    gcc:live                 stream: the live bus, one entry per committed batch (`Envelope`)
    gcc:live:schema          the version of this key layout; a writer finding another one resets
    gcc:pos                  GEO set of terminal positions (member search by distance)
    gcc:term:<terminal_id>   hash of a terminal's live state (fields: `TerminalLive`)
    gcc:term:seen            sorted set terminal_id -> last heard (epoch s), for the silence sweep
    gcc:sensor:<sensor_id>   hash: q:<quantity> -> "<t>|<value>", grid_code
    gcc:alarms:open          hash alarm_id -> `AlarmChange` JSON (open device alarms)
    gcc:alarms:acked         hash alarm_id -> `AlarmAckChange` JSON: open alarms a person has
                             acknowledged (written by the dashboard's command; the alarm's clear
                             removes it)
    gcc:alarm:<alarm_id>     "<t>|<state>" for ordering raised/cleared (expires after ALARM_MEMORY_S)
    gcc:alarm:open:<sensor_id>:<alarm_type>   "<alarm_id>|<t>": the open alarm of that sensor and
                             type (a new one replaces it: e.g. a device restarted, lost its state)
    gcc:gw:<gateway_id>      hash: state t grid_code
    gcc:reports              sorted set report_id -> time; gcc:report:<id> `ReportChange` JSON
    gcc:lock:sweep           which worker runs the silence sweep this round

The bus is a Redis stream rather than pub/sub: a reader that lost its connection or fell behind
reads on from the last entry id it saw. Each producer numbers its envelopes, so a reader knows when
it missed some (trimmed away while it was more than STREAM_MAXLEN behind, or never written because
Redis failed mid-way): only then must its screens resynchronise from a snapshot.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, fields, replace
from typing import ClassVar

import orjson

from telemetry.catalogue import MemberState

NAMESPACE = "gcc"
SCHEMA = 2                   # the key layout above; 1 was the layout before this module
VERSION = 1                  # the bus envelope's format

SILENT_AFTER_S = 120         # a terminal not heard from for this long is silent
SWEEP_EVERY_S = 10.0         # how often one worker looks for silent terminals
ALARM_MEMORY_S = 7 * 86400   # how long an alarm id's order is remembered
REPORT_WINDOW_S = 86400      # reports stay on the screens for a day
STREAM_MAXLEN = 1200         # about a minute of batches at the demo's load (two workers)
STREAM_FIELD = "envelope"    # the one field of a bus entry


class Keys:
    """Key builders: the only place a Redis key name of ours is spelled."""
    STREAM = f"{NAMESPACE}:live"
    SCHEMA = f"{NAMESPACE}:live:schema"
    POSITIONS = f"{NAMESPACE}:pos"
    TERMINAL_PREFIX = f"{NAMESPACE}:term:"
    TERMINALS_SEEN = f"{NAMESPACE}:term:seen"
    OPEN_ALARMS = f"{NAMESPACE}:alarms:open"
    ACKED_ALARMS = f"{NAMESPACE}:alarms:acked"
    REPORTS = f"{NAMESPACE}:reports"
    SWEEP_LOCK = f"{NAMESPACE}:lock:sweep"

    @staticmethod
    def terminal(terminal_id: str) -> str:
        return Keys.TERMINAL_PREFIX + terminal_id

    @staticmethod
    def sensor(sensor_id: str) -> str:
        return f"{NAMESPACE}:sensor:{sensor_id}"

    @staticmethod
    def alarm_order(alarm_id: str) -> str:
        return f"{NAMESPACE}:alarm:{alarm_id}"

    @staticmethod
    def open_alarm_of(sensor_id: str, alarm_type: str) -> str:
        return f"{NAMESPACE}:alarm:open:{sensor_id}:{alarm_type}"

    @staticmethod
    def gateway(gateway_id: str) -> str:
        return f"{NAMESPACE}:gw:{gateway_id}"

    @staticmethod
    def report(report_id: str) -> str:
        return f"{NAMESPACE}:report:{report_id}"


# --- the changes a committed batch makes (what the bus carries) -----------------------------------
# Each change names the org unit whose screens see it (`route_code`: a member's changes go to their
# own grid, whatever grid they are walking through; everything else to where it happened) and, for
# the kinds where only the newest matters, the identity under which changes coalesce.

class _Change:
    """What every change says besides its data: its kind, the field naming the org unit whose
    screens see it, and the fields under which changes coalesce (none: every change counts)."""
    __slots__ = ()
    KIND: ClassVar[str]
    ROUTE_FIELD: ClassVar[str] = "grid_code"
    COALESCE_FIELDS: ClassVar[tuple[str, ...]] = ()

    @property
    def route_code(self) -> str | None:
        return getattr(self, self.ROUTE_FIELD)

    @property
    def coalesce_key(self):
        if not self.COALESCE_FIELDS:
            return None
        values = tuple(getattr(self, name) for name in self.COALESCE_FIELDS)
        return values[0] if len(values) == 1 else values


@dataclass(frozen=True, slots=True)
class FixChange(_Change):
    KIND = "fix"
    ROUTE_FIELD = "home_grid_code"
    COALESCE_FIELDS = ("terminal_id",)
    terminal_id: str
    member_id: str
    home_grid_code: str
    grid_code: str | None          # where the fix lies
    t: float
    lon: float
    lat: float
    battery_pct: int | None = None
    speed_mps: float | None = None
    heading_deg: float | None = None
    accuracy_m: float | None = None


@dataclass(frozen=True, slots=True)
class StatusChange(_Change):
    KIND = "status"
    ROUTE_FIELD = "home_grid_code"
    COALESCE_FIELDS = ("terminal_id",)
    terminal_id: str
    member_id: str
    home_grid_code: str
    t: float
    state: str                     # a MemberState value
    battery_pct: int | None = None
    sos: bool = False


@dataclass(frozen=True, slots=True)
class ReadingChange(_Change):
    KIND = "reading"
    COALESCE_FIELDS = ("sensor_id", "quantity")
    sensor_id: str
    grid_code: str
    t: float
    quantity: str
    value: float | None = None
    value_bool: bool | None = None
    value_text: str | None = None
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class AlarmChange(_Change):
    KIND = "alarm"
    alarm_id: str
    sensor_id: str
    building_id: str
    grid_code: str
    t: float
    alarm_type: str
    severity: int
    state: str                     # raised / cleared
    value: float | None = None
    lon: float | None = None       # the sensor's place (reference data)
    lat: float | None = None
    acknowledged_by: str | None = None   # read back from gcc:alarms:acked; never on the ingest's changes
    acknowledged_at: float | None = None


@dataclass(frozen=True, slots=True)
class AlarmAckChange(_Change):
    """A person at the command center acknowledged an open alarm."""
    KIND = "alarm_ack"
    alarm_id: str
    grid_code: str
    t: float
    acknowledged_by: str


@dataclass(frozen=True, slots=True)
class ReportChange(_Change):
    KIND = "report"
    report_id: str
    terminal_id: str
    member_id: str
    grid_code: str
    t: float
    category: str
    severity: int
    lon: float
    lat: float
    address: str | None = None
    description: str | None = None
    photo_ref: str | None = None


@dataclass(frozen=True, slots=True)
class GatewayChange(_Change):
    KIND = "gateway"
    COALESCE_FIELDS = ("gateway_id",)
    gateway_id: str
    grid_code: str
    t: float
    state: str


@dataclass(frozen=True, slots=True)
class TaskAckChange(_Change):
    KIND = "task_ack"
    ROUTE_FIELD = "home_grid_code"
    task_id: str
    terminal_id: str
    member_id: str
    home_grid_code: str
    t: float
    action: str                    # accepted / rejected / arrived / done
    note: str | None = None


Change = (FixChange | StatusChange | ReadingChange | AlarmChange | AlarmAckChange | ReportChange | GatewayChange
          | TaskAckChange)
CHANGE_TYPES: dict[str, type] = {c.KIND: c for c in (FixChange, StatusChange, ReadingChange, AlarmChange,
                                                     AlarmAckChange, ReportChange, GatewayChange, TaskAckChange)}


def as_dict(change: Change) -> dict:
    return asdict(change)


def change_from(kind: str, data: dict) -> Change:
    """A change from its JSON form; unknown fields (from a newer writer) are left out."""
    cls = CHANGE_TYPES[kind]
    names = _field_names(cls)
    return cls(**{k: v for k, v in data.items() if k in names})


_FIELD_NAMES: dict[type, frozenset[str]] = {}


def _field_names(cls: type) -> frozenset[str]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = frozenset(f.name for f in fields(cls))
    return names


# --- the bus envelope ------------------------------------------------------------------------------

class EnvelopeError(ValueError):
    """A bus entry this reader cannot use (another format version, or not an envelope at all)."""


@dataclass(frozen=True)
class Envelope:
    """One committed batch's changes, as one bus entry. A producer numbers its envelopes (`seq`,
    from 1 for each `boot` of the producer), so a reader can tell that it missed one."""
    producer: str
    changes: tuple[Change, ...]
    boot: str = ""
    seq: int = 0
    sent_at: float = 0.0
    unknown_kinds: int = 0         # changes of kinds this reader does not know (a newer writer)

    def encode(self) -> bytes:
        by_kind: dict[str, list[Change]] = {}
        for change in self.changes:
            by_kind.setdefault(change.KIND, []).append(change)
        return orjson.dumps({"v": VERSION, "producer": self.producer, "boot": self.boot, "seq": self.seq,
                             "sent_at": self.sent_at or time.time(), "changes": by_kind})

    @classmethod
    def decode(cls, raw: bytes) -> Envelope:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise EnvelopeError(f"not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("v") != VERSION:
            version = data.get("v") if isinstance(data, dict) else None
            raise EnvelopeError(f"envelope version {version!r}; this reader knows {VERSION}")
        changes: list[Change] = []
        unknown = 0
        try:
            for kind, items in data["changes"].items():
                if kind not in CHANGE_TYPES:
                    unknown += len(items)
                    continue
                changes.extend(change_from(kind, item) for item in items)
        except (KeyError, TypeError, AttributeError) as exc:
            raise EnvelopeError(f"malformed envelope: {exc!r}") from None
        return cls(str(data.get("producer", "")), tuple(changes), str(data.get("boot", "")), int(data.get("seq") or 0),
                   float(data.get("sent_at") or 0), unknown)


class BusWriter:
    """One producer's side of the bus: numbers its envelopes and appends them to the stream
    (approximately trimmed to STREAM_MAXLEN). The number goes up before the write: a write that
    failed can only make a reader see a gap it need not have (a resync), never hide one."""

    def __init__(self, r, producer: str) -> None:
        self.r = r
        self.producer = producer
        self.boot = uuid.uuid4().hex[:12]
        self.seq = 0

    def publish(self, changes: tuple[Change, ...] | list[Change], client=None) -> bytes:
        """Put the changes on the bus as one envelope; `client` may be a pipeline."""
        self.seq += 1
        envelope = Envelope(self.producer, tuple(changes), self.boot, self.seq)
        return (client or self.r).xadd(Keys.STREAM, {STREAM_FIELD: envelope.encode()}, maxlen=STREAM_MAXLEN,
                                       approximate=True)


@dataclass(frozen=True)
class BusGap:
    """Envelopes of a producer this reader never got (trimmed while it was behind, or never
    written): what it shows may be stale and must be rebuilt from the stored state (a resync)."""
    producer: str
    missed: int


class BusReader:
    """Reads the bus in order from where it left off, across lost connections. `read()` blocks up
    to `block_ms` and returns what came since the last call, in order: envelopes, entries it could
    not decode (`EnvelopeError`), and a `BusGap` where a producer's numbering jumped."""

    def __init__(self, r, *, block_ms: int = 1000, count: int = 500) -> None:
        self.r = r
        self.block_ms = block_ms
        self.count = count
        self.last_id: bytes | None = None         # None: not started; then it starts at the end
        self._last_seq: dict[tuple[str, str], int] = {}   # (producer, boot) -> last seq read

    def start_at_end(self) -> None:
        """Begin after the newest entry now on the bus (what came before is in the snapshots)."""
        newest = self.r.xrevrange(Keys.STREAM, count=1)
        self.last_id = newest[0][0] if newest else b"0-0"

    def read(self) -> list[Envelope | EnvelopeError | BusGap]:
        if self.last_id is None:
            self.start_at_end()
        reply = self.r.xread({Keys.STREAM: self.last_id}, count=self.count, block=self.block_ms)
        entries = reply[0][1] if reply else []
        out: list[Envelope | EnvelopeError | BusGap] = []
        for entry_id, values in entries:
            self.last_id = entry_id
            try:
                envelope = Envelope.decode(values.get(STREAM_FIELD.encode(), b""))
            except EnvelopeError as exc:
                out.append(exc)
                continue
            gap = self._numbering(envelope)
            if gap is not None:
                out.append(gap)
            out.append(envelope)
        return out

    def _numbering(self, envelope: Envelope) -> BusGap | None:
        key = (envelope.producer, envelope.boot)
        last = self._last_seq.get(key)
        self._last_seq[key] = max(envelope.seq, last or 0)
        if last is not None and envelope.seq > last + 1:
            return BusGap(envelope.producer, envelope.seq - last - 1)
        return None


# --- reading the stored live state back --------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TerminalLive:
    """A terminal's live state as the writer keeps it in `gcc:term:<id>`."""
    terminal_id: str
    member_id: str | None
    grid_code: str | None          # where its last fix lies
    lon: float
    lat: float
    t: float                       # its last fix's time
    state: str                     # MemberState value, silence taken into account
    state_t: float                 # when the state last changed
    battery_pct: int | None = None
    sos: bool = False


def read_terminals(r, terminal_ids: list[str], now: float | None = None) -> list[TerminalLive]:
    """The live state of these terminals, those with a known position only. A terminal the sweep
    has not reached yet but that has been quiet for SILENT_AFTER_S is already shown silent."""
    now = now if now is not None else time.time()
    pipe = r.pipeline(transaction=False)
    for terminal_id in terminal_ids:
        pipe.hgetall(Keys.terminal(terminal_id))
    out = []
    for terminal_id, raw in zip(terminal_ids, pipe.execute(), strict=True):
        if not raw or b"lon" not in raw:
            continue
        h = {k.decode(): v.decode() for k, v in raw.items()}
        state = h.get("state", MemberState.SILENT.value)
        if state == MemberState.ONLINE.value and now - float(h.get("seen") or now) > SILENT_AFTER_S:
            state = MemberState.SILENT.value
        out.append(TerminalLive(terminal_id, h.get("member_id") or None, h.get("grid_code") or None,
                                float(h["lon"]), float(h["lat"]), float(h.get("t") or 0), state,
                                float(h.get("state_t") or 0), _int(h.get("battery_pct")), h.get("sos") == "1"))
    return out


def read_open_alarms(r) -> list[AlarmChange]:
    """The open device alarms, each with its acknowledgement if a person has given one."""
    pipe = r.pipeline(transaction=False)
    pipe.hvals(Keys.OPEN_ALARMS)
    pipe.hgetall(Keys.ACKED_ALARMS)
    raw_alarms, raw_acks = pipe.execute()
    acks = {k.decode(): change_from(AlarmAckChange.KIND, orjson.loads(v)) for k, v in raw_acks.items()}
    alarms = []
    for raw in raw_alarms:
        alarm = change_from(AlarmChange.KIND, orjson.loads(raw))
        ack = acks.get(alarm.alarm_id)
        if ack is not None:
            alarm = replace(alarm, acknowledged_by=ack.acknowledged_by, acknowledged_at=ack.t)
        alarms.append(alarm)
    return alarms


def acknowledge_open_alarm(r, ack: AlarmAckChange) -> bool:
    """Record an acknowledgement in the live state, if the alarm is still open (atomically: an
    alarm cleared meanwhile is not marked). True when it was marked."""
    return bool(r.eval(_ACKNOWLEDGE, 2, Keys.OPEN_ALARMS, Keys.ACKED_ALARMS, ack.alarm_id, orjson.dumps(ack)))


_ACKNOWLEDGE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""


def read_recent_reports(r, now: float | None = None) -> list[ReportChange]:
    now = now if now is not None else time.time()
    ids = r.zrangebyscore(Keys.REPORTS, now - REPORT_WINDOW_S, "+inf")
    if not ids:
        return []
    values = r.mget([Keys.report(i.decode()) for i in ids])
    return [change_from(ReportChange.KIND, orjson.loads(v)) for v in values if v]


def _int(value: str | None) -> int | None:
    return int(value) if value not in (None, "") else None

"""The live-state contract: what the ingest workers write to Redis and the screens read from it.

One owner for every piece of that knowledge, in this package: the Redis key names, hash fields and
thresholds (`keys`), the typed changes a batch makes (`changes`: each message kind's own, declared
beside its model in telemetry/kinds/, and those the screens and the cases engine make), the live
bus that carries them (`bus`), and how the stored live state is read back (`state`). The writer (`ingest.live`) and
every reader (`dashboard.queries`, `dashboard.hub`) go through here; `from telemetry import live`
gives all of it.

Redis keys (namespace `gcc:`)
    gcc:live                 stream: the live bus, one entry per committed batch (`Envelope`)
    gcc:live:schema          the version of this key layout; a writer finding another one resets
    gcc:pos                  GEO set of terminal positions (member search by distance)
    gcc:term:<terminal_id>   hash of a terminal's live state (fields: `TerminalLive`)
    gcc:term:seen            sorted set terminal_id -> last heard (epoch s), for the silence sweep
    gcc:sensor:<sensor_id>   hash: q:<quantity> -> "<t>|<value>", grid_code
    gcc:alarms:open          hash <sensor_id>/<alarm_id> -> `AlarmChange` JSON (open device alarms)
    gcc:alarm:order:<sensor_id>/<alarm_id>   "<t>|<state>" for ordering raised/cleared (expires
                             after ALARM_MEMORY_S)
    gcc:alarm:open:<sensor_id>/<alarm_type>  hash field, t: the open alarm of that sensor and type
                             (a new one replaces it: e.g. a device restarted, lost its state)
    gcc:gw:<gateway_id>      hash: state t grid_code
    gcc:reports              sorted set <terminal_id>/<report_id> -> time; gcc:report:<that>
                             `ReportChange` JSON without its description and photo reference
                             (the bus carries them; the database keeps them)
    gcc:reports:of:<terminal_id>  that terminal's members of gcc:reports in the window, at most
                             REPORTS_PER_TERMINAL (its oldest leave the live view)
    (every key or field naming an alarm or a report names its device too: an id is its sender's)
    gcc:lock:sweep           which worker runs the silence sweep this round
    gcc:ingest:begun:<sha256 of topic and payload>   how often a redelivered message's processing
                             began without an acknowledgement (crash-loop protection; a day)

The bus is a Redis stream rather than pub/sub: a reader that lost its connection or fell behind
reads on from the last entry id it saw. Each producer numbers its envelopes, so a reader knows when
it missed some (trimmed away while it was more than STREAM_MAXLEN behind, or never written because
Redis failed mid-way): only then must its screens resynchronise from a snapshot.
"""
from __future__ import annotations

from telemetry.live.bus import BusGap, BusReader, BusWriter, Envelope, EnvelopeError
from telemetry.live.changes import (
    CHANGE_TYPES,
    AlarmAckChange,
    AlarmChange,
    CaseChange,
    Change,
    FixChange,
    GatewayChange,
    ReadChange,
    ReadingChange,
    ReportChange,
    StatusChange,
    TaskAckChange,
    change_from,
)
from telemetry.live.keys import (
    ALARM_MEMORY_S,
    NAMESPACE,
    REPORT_WINDOW_S,
    REPORTS_PER_TERMINAL,
    SCHEMA,
    SILENT_AFTER_S,
    STREAM_FIELD,
    STREAM_MAXLEN,
    SWEEP_EVERY_S,
    VERSION,
    GatewayField,
    Keys,
    SensorField,
    TerminalField,
    lua_names,
)
from telemetry.live.state import (
    TerminalLive,
    read_open_alarm,
    read_open_alarms,
    read_recent_reports,
    read_terminals,
    read_whereabouts,
)

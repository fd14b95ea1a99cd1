"""Live state in Redis, updated after each committed batch, and the changes it made.

Workers in one share group may see one device's messages out of order, so every update is a small
Lua script that applies a message only if it is not older than what Redis holds, and reports
whether anything visible changed: live events go out only for real changes.

Keys
    gcc:pos                  GEO set of terminal positions (member search by distance)
    gcc:term:<terminal_id>   hash: lon lat t grid member battery speed heading acc seen state state_t sos
    gcc:term:seen            sorted set terminal_id -> last heard (epoch s), for the silence sweep
    gcc:sensor:<sensor_id>   hash: q:<quantity> -> "<t>|<value>", grid
    gcc:alarms:open          hash alarm_id -> alarm JSON (open device alarms)
    gcc:alarm:<alarm_id>     "<t>|<state>" for ordering raised/cleared (expires after 7 days)
    gcc:alarm:open:<sensor_id>:<alarm_type>   the open alarm of that sensor and type (a new one
                             replaces it: e.g. a device restarted and lost its alarm state)
    gcc:gw:<gateway_id>      hash: state t grid
    gcc:reports              sorted set report_id -> time; gcc:report:<id> JSON (last 24 h)
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import orjson
import redis

from ingest.stages import Enriched
from telemetry.messages import DeviceAlarm, Fix, GatewayStatus, IncidentReport, SensorReading, TerminalStatus

log = logging.getLogger(__name__)

SILENT_AFTER_S = 120        # a terminal not heard from for this long is "unknown"
ALARM_MEMORY_S = 7 * 86400
REPORT_WINDOW_S = 86400

_FIX = """
local t = tonumber(ARGV[2])
redis.call('ZADD', KEYS[3], 'GT', ARGV[11], ARGV[1])
local cur = tonumber(redis.call('HGET', KEYS[1], 't') or '-1')
if t <= cur then return 0 end
redis.call('HSET', KEYS[1], 't', ARGV[2], 'lon', ARGV[3], 'lat', ARGV[4], 'grid', ARGV[5],
           'battery', ARGV[6], 'member', ARGV[7], 'speed', ARGV[8], 'heading', ARGV[9], 'acc', ARGV[10],
           'seen', ARGV[11])
redis.call('GEOADD', KEYS[2], ARGV[3], ARGV[4], ARGV[1])
local state_t = tonumber(redis.call('HGET', KEYS[1], 'state_t') or '-1')
if t > state_t and redis.call('HGET', KEYS[1], 'state') ~= 'online' then
  redis.call('HSET', KEYS[1], 'state', 'online', 'state_t', ARGV[2])
end
return 1
"""

_STATUS = """
local t = tonumber(ARGV[2])
redis.call('ZADD', KEYS[2], 'GT', ARGV[6], ARGV[1])
local state_t = tonumber(redis.call('HGET', KEYS[1], 'state_t') or '-1')
if t < state_t then return 0 end
local changed = 0
if redis.call('HGET', KEYS[1], 'state') ~= ARGV[3] or redis.call('HGET', KEYS[1], 'sos') ~= ARGV[5] then
  changed = 1
end
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'state_t', ARGV[2], 'sos', ARGV[5], 'grid', ARGV[7],
           'member', ARGV[8], 'seen', ARGV[6])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'battery', ARGV[4]) end
return changed
"""

_READING = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local new = ARGV[2] .. '|' .. ARGV[3]
local bar = cur and string.find(cur, '|', 1, true)
if bar then
  if tonumber(string.sub(cur, 1, bar - 1)) > tonumber(ARGV[2]) then return 0 end
  redis.call('HSET', KEYS[1], ARGV[1], new)
  if string.sub(cur, bar + 1) == ARGV[3] then return 0 end
  return 1
end
redis.call('HSET', KEYS[1], ARGV[1], new, 'grid', ARGV[4])
return 1
"""

_ALARM = """
-- KEYS: open alarms hash, this alarm's order key, the (sensor, type) -> open alarm id key
-- returns {changed, id of an older open alarm of the same sensor and type that this one replaces}
local prev = redis.call('GET', KEYS[2])
if prev then
  local bar = string.find(prev, '|', 1, true)
  if tonumber(string.sub(prev, 1, bar - 1)) > tonumber(ARGV[2]) then return {0, ''} end
end
redis.call('SET', KEYS[2], ARGV[2] .. '|' .. ARGV[3], 'EX', ARGV[5])
local open = redis.call('GET', KEYS[3])      -- "<alarm id>|<t>" of the sensor's open alarm of this type
local open_id, open_t = '', -1
if open then
  local bar = string.find(open, '|', 1, true)
  open_id, open_t = string.sub(open, 1, bar - 1), tonumber(string.sub(open, bar + 1))
end
if ARGV[3] == 'raised' then
  local replaced = ''
  if open_id ~= '' and open_id ~= ARGV[1] then
    if open_t > tonumber(ARGV[2]) then        -- a newer alarm is already open: this one is history
      return {0, ''}
    end
    if redis.call('HDEL', KEYS[1], open_id) == 1 then replaced = open_id end
  end
  redis.call('SET', KEYS[3], ARGV[1] .. '|' .. ARGV[2], 'EX', ARGV[5])
  return {redis.call('HSET', KEYS[1], ARGV[1], ARGV[4]), replaced}
end
if open_id == ARGV[1] then redis.call('DEL', KEYS[3]) end
return {redis.call('HDEL', KEYS[1], ARGV[1]), ''}
"""

_REPORT = """
if redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4])
return 1
"""

_SWEEP = """
-- KEYS[1] last-heard sorted set; ARGV[1] silent-before time. Marks silent online terminals unknown.
local changed = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], 0, ARGV[1])) do
  local key = 'gcc:term:' .. id
  local state, seen = unpack(redis.call('HMGET', key, 'state', 'seen'))
  if state == 'online' and tonumber(seen or '0') <= tonumber(ARGV[1]) then
    redis.call('HSET', key, 'state', 'unknown')
    local grid, member, t = unpack(redis.call('HMGET', key, 'grid', 'member', 't'))
    table.insert(changed, {id, grid or '', member or '', t or '0'})
  end
end
return changed
"""

_GATEWAY = """
local cur = tonumber(redis.call('HGET', KEYS[1], 't') or '-1')
if tonumber(ARGV[1]) < cur then return 0 end
local changed = redis.call('HGET', KEYS[1], 'state') ~= ARGV[2] and 1 or 0
redis.call('HSET', KEYS[1], 'state', ARGV[2], 't', ARGV[1], 'grid', ARGV[3])
return changed
"""


def _s(value) -> str:
    return "" if value is None else str(value)


@dataclass
class Changes:
    """What a batch changed, for the live events (plain JSON-able dicts)."""
    fixes: list[dict] = field(default_factory=list)
    statuses: list[dict] = field(default_factory=list)
    readings: list[dict] = field(default_factory=list)
    alarms: list[dict] = field(default_factory=list)
    reports: list[dict] = field(default_factory=list)
    gateways: list[dict] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any((self.fixes, self.statuses, self.readings, self.alarms, self.reports, self.gateways))


class LiveState:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self.fix = client.register_script(_FIX)
        self.status = client.register_script(_STATUS)
        self.reading = client.register_script(_READING)
        self.alarm = client.register_script(_ALARM)
        self.gateway = client.register_script(_GATEWAY)
        self.report = client.register_script(_REPORT)
        self.sweep = client.register_script(_SWEEP)

    def apply(self, items: list[Enriched], now: float | None = None) -> Changes:
        """Apply a committed batch; return only what changed. Within a batch only the newest fix of
        a terminal and the newest reading of a sensor's quantity matter for the live state."""
        now = now or time.time()
        pipe = self.r.pipeline(transaction=False)
        calls = []
        for item in _newest_only(items):
            event = event_of(item)
            kind = self._queue(pipe, item, event, now)
            if kind is not None:
                calls.append((event, kind))
        results = pipe.execute() if calls else []
        changes = Changes()
        for (event, kind), changed in zip(calls, results):
            if kind == "alarms":
                changed, replaced = changed
                if replaced:  # a device cannot have two open alarms of one type: the older one ends
                    changes.alarms.append(event | {"alarm_id": replaced.decode(), "state": "cleared"})
            if changed:
                getattr(changes, kind).append(event)
        return changes

    def _queue(self, pipe, item: Enriched, event: dict, now: float) -> str | None:
        """Queue exactly one script call for the item (results are matched to items by order)."""
        m, t = item.message, item.message.time.timestamp()
        if isinstance(m, Fix):
            self.fix(keys=[f"gcc:term:{m.terminal_id}", "gcc:pos", "gcc:term:seen"],
                     args=[m.terminal_id, t, m.lon, m.lat, _s(item.grid_code), _s(m.battery_pct),
                           _s(item.member_id), _s(m.speed_mps), _s(m.heading_deg), _s(m.accuracy_m), now],
                     client=pipe)
            return "fixes"
        if isinstance(m, TerminalStatus):
            self.status(keys=[f"gcc:term:{m.terminal_id}", "gcc:term:seen"],
                        args=[m.terminal_id, t, m.state, _s(m.battery_pct), "1" if m.sos else "0", now,
                              _s(item.grid_code), _s(item.member_id)], client=pipe)
            return "statuses"
        if isinstance(m, SensorReading):
            value = m.value if m.value is not None else (
                m.value_bool if m.value_bool is not None else (m.value_text if m.value_text is not None else m.value_sum))
            self.reading(keys=[f"gcc:sensor:{m.sensor_id}"], args=[f"q:{m.quantity}", t, _s(value), _s(item.grid_code)],
                         client=pipe)
            return "readings"
        if isinstance(m, DeviceAlarm):
            self.alarm(keys=["gcc:alarms:open", f"gcc:alarm:{m.alarm_id}",
                             f"gcc:alarm:open:{m.sensor_id}:{m.alarm_type.value}"],
                       args=[m.alarm_id, t, m.state, orjson.dumps(event), ALARM_MEMORY_S], client=pipe)
            return "alarms"
        if isinstance(m, GatewayStatus):
            self.gateway(keys=[f"gcc:gw:{m.gateway_id}"], args=[t, m.state, _s(item.grid_code)], client=pipe)
            return "gateways"
        if isinstance(m, IncidentReport):
            self.report(keys=["gcc:reports", f"gcc:report:{m.report_id}"],
                        args=[m.report_id, t, orjson.dumps(event), REPORT_WINDOW_S], client=pipe)
            return "reports"
        return None

    def sweep_silent(self, now: float | None = None) -> list[dict]:
        """Mark terminals silent for SILENT_AFTER_S as "unknown" (atomically, in Redis); return the
        status changes."""
        now = now or time.time()
        rows = self.sweep(keys=["gcc:term:seen"], args=[now - SILENT_AFTER_S])
        self.r.zremrangebyscore("gcc:reports", 0, now - REPORT_WINDOW_S)
        return [{"terminal_id": tid.decode(), "state": "unknown", "grid": grid.decode() or None,
                 "member": member.decode(), "t": now} for tid, grid, member, _ in rows]


def _newest_only(items: list[Enriched]) -> list[Enriched]:
    newest: dict[tuple, Enriched] = {}
    others: list[Enriched] = []
    for item in items:
        m = item.message
        if isinstance(m, Fix):
            key = ("fix", m.terminal_id)
        elif isinstance(m, SensorReading):
            key = ("reading", m.sensor_id, m.quantity)
        else:
            others.append(item)
            continue
        kept = newest.get(key)
        if kept is None or kept.message.time <= m.time:
            newest[key] = item
    return [*newest.values(), *others]


def event_of(item: Enriched) -> dict:
    """The compact, JSON-able form of a change that the screens receive."""
    m = item.message
    base = {"grid": item.grid_code, "t": m.time.timestamp()}
    if isinstance(m, Fix):
        return base | {"terminal_id": m.terminal_id, "member": item.member_id, "home": item.home_grid,
                       "lon": m.lon, "lat": m.lat, "battery": m.battery_pct, "speed": m.speed_mps,
                       "heading": m.heading_deg}
    if isinstance(m, TerminalStatus):
        return base | {"terminal_id": m.terminal_id, "member": item.member_id, "home": item.home_grid,
                       "state": m.state, "battery": m.battery_pct, "sos": m.sos}
    if isinstance(m, SensorReading):
        return base | {"sensor_id": m.sensor_id, "quantity": m.quantity, "value": m.value,
                       "value_bool": m.value_bool, "value_text": m.value_text, "unit": m.unit}
    if isinstance(m, DeviceAlarm):
        return base | {"alarm_id": m.alarm_id, "sensor_id": m.sensor_id, "alarm_type": m.alarm_type.value,
                       "severity": m.severity, "state": m.state, "value": m.value, "building": item.building_id}
    if isinstance(m, IncidentReport):
        return base | {"report_id": m.report_id, "terminal_id": m.terminal_id, "member": item.member_id,
                       "category": m.category, "severity": m.severity, "lon": m.lon, "lat": m.lat,
                       "address": m.address, "description": m.description, "photo_ref": m.photo_ref}
    if isinstance(m, GatewayStatus):
        return base | {"gateway_id": m.gateway_id, "state": m.state}
    return base

"""The writer of the live state in Redis (the contract, keys and shapes: telemetry.live), updated
after each committed batch; it returns the changes it made, for the live bus.

Workers in one share group may see one device's messages out of order, so every update is a small
Lua script that applies a message only if it is not older than what Redis holds, and reports
whether anything visible changed: the bus carries only real changes.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from string import Template

import orjson
import redis

from core.catalogue import MemberState
from ingest.model import Enriched
from telemetry import live
from telemetry.kinds import kind_of
from telemetry.live import Keys

log = logging.getLogger(__name__)

_FIX = """
-- returns {changed, state changed}: a fix also brings a silent terminal back online
local t = tonumber(ARGV[2])
redis.call('ZADD', KEYS[3], 'GT', ARGV[11], ARGV[1])
local cur = tonumber(redis.call('HGET', KEYS[1], '${TERM_T}') or '-1')
if t <= cur then return {0, 0} end
redis.call('HSET', KEYS[1], '${TERM_T}', ARGV[2], '${TERM_LON}', ARGV[3], '${TERM_LAT}', ARGV[4],
           '${TERM_GRID_CODE}', ARGV[5], '${TERM_BATTERY_PCT}', ARGV[6], '${TERM_MEMBER_ID}', ARGV[7],
           '${TERM_SPEED_MPS}', ARGV[8], '${TERM_HEADING_DEG}', ARGV[9], '${TERM_ACCURACY_M}', ARGV[10],
           '${TERM_SEEN}', ARGV[11])
redis.call('GEOADD', KEYS[2], ARGV[3], ARGV[4], ARGV[1])
local state_t = tonumber(redis.call('HGET', KEYS[1], '${TERM_STATE_T}') or '-1')
if t > state_t and redis.call('HGET', KEYS[1], '${TERM_STATE}') ~= ARGV[12] then
  redis.call('HSET', KEYS[1], '${TERM_STATE}', ARGV[12], '${TERM_STATE_T}', ARGV[2])
  return {1, 1}
end
return {1, 0}
"""

_STATUS = """
local t = tonumber(ARGV[2])
redis.call('ZADD', KEYS[2], 'GT', ARGV[6], ARGV[1])
local state_t = tonumber(redis.call('HGET', KEYS[1], '${TERM_STATE_T}') or '-1')
if t < state_t then return 0 end
local changed = 0
if redis.call('HGET', KEYS[1], '${TERM_STATE}') ~= ARGV[3] or redis.call('HGET', KEYS[1], '${TERM_SOS}') ~= ARGV[5] then
  changed = 1
end
redis.call('HSET', KEYS[1], '${TERM_STATE}', ARGV[3], '${TERM_STATE_T}', ARGV[2], '${TERM_SOS}', ARGV[5],
           '${TERM_MEMBER_ID}', ARGV[7], '${TERM_SEEN}', ARGV[6])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], '${TERM_BATTERY_PCT}', ARGV[4]) end
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
redis.call('HSET', KEYS[1], ARGV[1], new, '${SENSOR_GRID_CODE}', ARGV[4])
return 1
"""

_ALARM = """
-- KEYS: open alarms hash, this alarm's order key, the hash of the open alarm of this sensor and
--       type (field: its open-alarms field, t: its time)
-- ARGV: this alarm's open-alarms field (<sensor>/<alarm id>), t, state, JSON, memory (s)
-- returns {changed, the field of an older open alarm of the same sensor and type it replaces}
local prev = redis.call('GET', KEYS[2])
if prev then
  local bar = string.find(prev, '|', 1, true)
  if tonumber(string.sub(prev, 1, bar - 1)) > tonumber(ARGV[2]) then return {0, ''} end
end
redis.call('SET', KEYS[2], ARGV[2] .. '|' .. ARGV[3], 'EX', ARGV[5])
local open_field, open_t = unpack(redis.call('HMGET', KEYS[3], 'field', 't'))
open_field, open_t = open_field or '', tonumber(open_t or '-1')
if ARGV[3] == 'raised' then
  local replaced = ''
  if open_field ~= '' and open_field ~= ARGV[1] then
    if open_t > tonumber(ARGV[2]) then        -- a newer alarm is already open: this one is history
      return {0, ''}
    end
    if redis.call('HDEL', KEYS[1], open_field) == 1 then replaced = open_field end
  end
  redis.call('HSET', KEYS[3], 'field', ARGV[1], 't', ARGV[2])
  redis.call('EXPIRE', KEYS[3], ARGV[5])
  return {redis.call('HSET', KEYS[1], ARGV[1], ARGV[4]), replaced}
end
if open_field == ARGV[1] then redis.call('DEL', KEYS[3]) end
return {redis.call('HDEL', KEYS[1], ARGV[1]), ''}
"""

_REPORT = """
-- KEYS: all reports (sorted set), this report's JSON, this terminal's reports (sorted set)
-- ARGV: member, t, JSON, window (s), most kept per terminal, oldest time in the window
-- returns 1 when the report is new and stays in the live view. A terminal keeps at most ARGV[5]
-- reports in the window: its oldest leave (they stay in the database), so no terminal can fill Redis
if redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[6])
redis.call('EXPIRE', KEYS[3], ARGV[4])
local excess = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[5])
local kept = 1
if excess > 0 then
  for _, old in ipairs(redis.call('ZRANGE', KEYS[3], 0, excess - 1)) do
    redis.call('ZREM', KEYS[3], old)
    redis.call('ZREM', KEYS[1], old)
    redis.call('DEL', '${REPORT_PREFIX}' .. old)
    if old == ARGV[1] then kept = 0 end
  end
end
return kept
"""

_SWEEP = """
-- KEYS[1] last-heard sorted set; ARGV: silent-before time, terminal key prefix, online, silent.
-- Marks online terminals not heard from since then as silent; returns them (with what the screens
-- must keep showing: battery, SOS).
local changed = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], 0, ARGV[1])) do
  local key = ARGV[2] .. id
  local state, seen = unpack(redis.call('HMGET', key, '${TERM_STATE}', '${TERM_SEEN}'))
  if state == ARGV[3] and tonumber(seen or '0') <= tonumber(ARGV[1]) then
    redis.call('HSET', key, '${TERM_STATE}', ARGV[4], '${TERM_STATE_T}', ARGV[1])
    local member, battery, sos = unpack(redis.call('HMGET', key, '${TERM_MEMBER_ID}', '${TERM_BATTERY_PCT}',
                                                   '${TERM_SOS}'))
    table.insert(changed, {id, member or '', battery or '', sos or '0'})
  end
end
return changed
"""

_GATEWAY = """
local cur = tonumber(redis.call('HGET', KEYS[1], '${GW_T}') or '-1')
if tonumber(ARGV[1]) < cur then return 0 end
local changed = redis.call('HGET', KEYS[1], '${GW_STATE}') ~= ARGV[2] and 1 or 0
redis.call('HSET', KEYS[1], '${GW_STATE}', ARGV[2], '${GW_T}', ARGV[1], '${GW_GRID_CODE}', ARGV[3])
return changed
"""


def _s(value) -> str:
    return "" if value is None else str(value)


class LiveState:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        names = live.lua_names() | {"REPORT_PREFIX": Keys.REPORT_PREFIX}   # spelled once, in the contract
        self._scripts = {name: client.register_script(Template(src).substitute(names)) for name, src in (
            ("fix", _FIX), ("status", _STATUS), ("reading", _READING), ("alarm", _ALARM), ("gateway", _GATEWAY),
            ("report", _REPORT), ("sweep", _SWEEP))}
        # change type -> (its writer: exactly one script call, what that call's result says changed);
        # a change type with none is kept nowhere in Redis (a task acknowledgement, a read receipt)
        self._writers: dict[type, tuple[Callable, Callable[[live.Change, object], list[live.Change]]]] = {
            live.FixChange: (self._fix, _fix_outcome), live.StatusChange: (self._status, _changed),
            live.ReadingChange: (self._reading, _changed), live.AlarmChange: (self._alarm, _alarm_outcome),
            live.GatewayChange: (self._gateway, _changed), live.ReportChange: (self._report, _changed)}

    def ensure_schema(self) -> bool:
        """Reset the live state if Redis holds another key layout than telemetry.live's (an upgraded
        demo: the live state is rebuilt by what arrives next). True when it was reset. Workers that
        start together take turns (a short lock): the second finds the layout already right."""
        lock = self.r.lock(Keys.SCHEMA + ":lock", timeout=60, blocking_timeout=60)
        with lock:
            return self._reset_if_other_layout()

    def _reset_if_other_layout(self) -> bool:
        if self.r.get(Keys.SCHEMA) == str(live.SCHEMA).encode():
            return False
        removed = 0
        for key in self.r.scan_iter(match=f"{live.NAMESPACE}:*", count=1000):
            if key not in (Keys.STREAM.encode(), (Keys.SCHEMA + ":lock").encode()):
                removed += self.r.unlink(key)
        self.r.set(Keys.SCHEMA, live.SCHEMA)
        log.warning("live state in Redis had another layout; reset it (%d keys)", removed)
        return True

    def apply(self, items: list[Enriched], now: float | None = None) -> list[live.Change]:
        """Apply a committed batch; return only what changed. Within a batch only the newest change
        under each coalescing key (a terminal's fix, a sensor quantity's reading) matters."""
        now = now or time.time()
        pipe = self.r.pipeline(transaction=False)
        calls = []
        changes: list[live.Change] = []
        for change in _newest_only(items):
            writer = self._writers.get(type(change))
            if writer is None:
                # nothing kept in Redis (task acknowledgements): every committed one is a change;
                # a redelivery after a crash can repeat one, so readers treat them idempotently
                changes.append(change)
                continue
            write, outcome = writer
            write(pipe, change, now)
            calls.append((change, outcome))
        results = pipe.execute() if calls else []
        for (change, outcome), result in zip(calls, results, strict=True):
            changes += outcome(change, result)
        return changes

    # --- one writer per change type: exactly one script call each (results match by order) ----------
    def _fix(self, pipe, c: live.FixChange, now: float) -> None:
        self._scripts["fix"](keys=[Keys.terminal(c.terminal_id), Keys.POSITIONS, Keys.TERMINALS_SEEN],
                             args=[c.terminal_id, c.t, c.lon, c.lat, _s(c.grid_code), _s(c.battery_pct),
                                   _s(c.member_id), _s(c.speed_mps), _s(c.heading_deg), _s(c.accuracy_m), now,
                                   MemberState.ONLINE.value], client=pipe)

    def _status(self, pipe, c: live.StatusChange, now: float) -> None:
        self._scripts["status"](keys=[Keys.terminal(c.terminal_id), Keys.TERMINALS_SEEN],
                                args=[c.terminal_id, c.t, c.state, _s(c.battery_pct), "1" if c.sos else "0", now,
                                      _s(c.member_id)], client=pipe)

    def _reading(self, pipe, c: live.ReadingChange, now: float) -> None:
        value = next((v for v in (c.value, c.value_bool, c.value_text, c.value_sum) if v is not None), None)
        self._scripts["reading"](keys=[Keys.sensor(c.sensor_id)],
                                 args=[live.SensorField.quantity(c.quantity), c.t, _s(value), _s(c.grid_code)],
                                 client=pipe)

    def _alarm(self, pipe, c: live.AlarmChange, now: float) -> None:
        self._scripts["alarm"](keys=[Keys.OPEN_ALARMS, Keys.alarm_order(c.sensor_id, c.alarm_id),
                                     Keys.open_alarm_of(c.sensor_id, c.alarm_type)],
                               args=[Keys.alarm_field(c.sensor_id, c.alarm_id), c.t, c.state, orjson.dumps(c),
                                     live.ALARM_MEMORY_S], client=pipe)

    def _gateway(self, pipe, c: live.GatewayChange, now: float) -> None:
        self._scripts["gateway"](keys=[Keys.gateway(c.gateway_id)], args=[c.t, c.state, _s(c.grid_code)],
                                 client=pipe)

    def _report(self, pipe, c: live.ReportChange, now: float) -> None:
        """Kept without its free text (the bus carries it, the database keeps it): what Redis holds
        of a report stays small, whatever its description."""
        member = Keys.report_member(c.terminal_id, c.report_id)
        kept = dataclasses.replace(c, description=None, photo_ref=None)
        self._scripts["report"](keys=[Keys.REPORTS, Keys.report(member), Keys.reports_of(c.terminal_id)],
                                args=[member, c.t, orjson.dumps(kept), live.REPORT_WINDOW_S,
                                      live.REPORTS_PER_TERMINAL, now - live.REPORT_WINDOW_S], client=pipe)

    def sweep_silent(self, home_grid_of, now: float | None = None) -> list[live.StatusChange]:
        """Mark terminals not heard from for SILENT_AFTER_S as silent (atomically, in Redis) and
        forget reports older than the report window; return the status changes.
        `home_grid_of(terminal_id)` gives a member's own grid (None: not a member of this city)."""
        now = now or time.time()
        rows = self._scripts["sweep"](keys=[Keys.TERMINALS_SEEN],
                                      args=[now - live.SILENT_AFTER_S, Keys.TERMINAL_PREFIX,
                                            MemberState.ONLINE.value, MemberState.SILENT.value])
        self.r.zremrangebyscore(Keys.REPORTS, 0, now - live.REPORT_WINDOW_S)
        changes = []
        for raw_id, member, battery, sos in rows:
            terminal_id = raw_id.decode()
            home = home_grid_of(terminal_id)
            if home is not None:
                changes.append(live.StatusChange(terminal_id, member.decode(), home, now - live.SILENT_AFTER_S,
                                                 MemberState.SILENT.value, int(battery) if battery else None,
                                                 sos == b"1"))
        return changes


# --- what a script's result says changed (the script of each writer above) --------------------------
def _changed(change: live.Change, changed) -> list[live.Change]:
    return [change] if changed else []


def _fix_outcome(change: live.FixChange, result) -> list[live.Change]:
    """A fix also brings a silent terminal back online: the screens that show states (not positions)
    hear of it too."""
    changed, back_online = result
    came_back = [live.StatusChange(change.terminal_id, change.member_id, change.home_grid_code, change.t,
                                   MemberState.ONLINE.value, change.battery_pct)] if back_online else []
    return came_back + _changed(change, changed)


def _alarm_outcome(change: live.AlarmChange, result) -> list[live.Change]:
    """A device cannot have two open alarms of one type: a newer one raised ends the older one."""
    changed, replaced = result
    ended = []
    if replaced:
        _, alarm_id = Keys.alarm_of_field(replaced.decode())
        ended.append(dataclasses.replace(change, alarm_id=alarm_id, state="cleared"))
    return ended + _changed(change, changed)


def _newest_only(items: list[Enriched]) -> list[live.Change]:
    """The live changes of a batch, keeping only the newest under each coalescing key."""
    newest: dict[tuple, live.Change] = {}
    others: list[live.Change] = []
    for item in items:
        build = kind_of(item.message).change
        if build is None:
            continue
        change = build(item)
        key = change.coalesce_key
        if key is None:
            others.append(change)
            continue
        kept = newest.get((change.KIND, key))
        if kept is None or kept.t <= change.t:
            newest[(change.KIND, key)] = change
    return [*newest.values(), *others]

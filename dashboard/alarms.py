"""Acknowledging a device's alarm: the console's one command (through the command bus)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from core import freetext
from core.catalogue import ALARM_TYPE_LABELS, AuditAction
from core.roles import UserRole
from dashboard.authz import Identity
from dashboard.commands import Action, Commands, Refused, Target, Written
from telemetry import live

ACKNOWLEDGE_ALARM = Action(AuditAction.ALARM_ACKNOWLEDGE, frozenset({UserRole.DISPATCHER, UserRole.ADMIN}))


@dataclass(frozen=True)
class AcknowledgeAlarm:
    """A person has seen an open device alarm and takes it on. It stays open until the device
    clears it; an alarm is acknowledged once (the database decides who was first). An alarm is
    one sensor's: (sensor_id, alarm_id), as everywhere (two sensors may use the same alarm id)."""
    action: ClassVar[Action] = ACKNOWLEDGE_ALARM
    sensor_id: str
    alarm_id: str
    note: str | None = None

    @property
    def target_key(self) -> str:
        return f"alarm:{live.Keys.alarm_field(self.sensor_id, self.alarm_id)}"

    def locate(self, ctx: Commands) -> Target | None:
        alarm = live.read_open_alarm(ctx.r, self.sensor_id, self.alarm_id)
        if alarm is None:
            return None
        kind = ALARM_TYPE_LABELS.get(alarm.alarm_type, alarm.alarm_type)
        return Target(self.target_key, alarm.grid_code, f"{kind} · {ctx.place_name(alarm.building_id)}", alarm)

    def write(self, cur, who: Identity, now: datetime, target: Target) -> Written:
        note = None
        if self.note is not None:
            try:
                note = freetext.clean(self.note, freetext.NOTE, "a note") or None
            except ValueError as bad:
                raise Refused(str(bad)) from None
            if note is not None and len(note) > 500:
                raise Refused("a note has at most 500 characters")
        alarm: live.AlarmChange = target.subject
        cur.execute("insert into alarm_acknowledgements (alarm_id, sensor_id, acknowledged_at, actor, note) "
                    "values (%s, %s, %s, %s, %s) on conflict (sensor_id, alarm_id) do nothing",
                    (self.alarm_id, alarm.sensor_id, now, who.user, note))
        if cur.rowcount == 0:
            cur.execute("select actor from alarm_acknowledgements where sensor_id = %s and alarm_id = %s",
                        (alarm.sensor_id, self.alarm_id))
            raise Refused(f"already acknowledged by {cur.fetchone()[0]}")
        ack = live.AlarmAckChange(self.alarm_id, alarm.grid_code, now.timestamp(), who.user, alarm.sensor_id)
        return Written({"acknowledged": False}, {"acknowledged": True, "by": who.user, "note": note}, (ack,))

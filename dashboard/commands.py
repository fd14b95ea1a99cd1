"""Every write the dashboard makes goes through here: locate, authorize, validate, write, audit, tell.

    execute(identity, command, source_address)
      1. what the command is about, and where it lives   command.locate   -> Target (org unit, summary)
      2. may this identity do this action there?         authz.authorize  (the one authorization point)
      3. one transaction: the change and its audit row   command.write    (may refuse: Refused)
      4. after the commit: the live bus                  the Written changes, one envelope

A refusal (no such target, role, scope, or the database's own check inside the transaction)
changes nothing and is audited too. Screens call `execute` from their callbacks; queries.py stays
read-only.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar, Protocol

import orjson
import psycopg2
import redis

from dashboard.authz import UserRole, authorize
from telemetry import live
from telemetry.catalogue import ACTION_LABELS, ALARM_TYPE_LABELS, Label
from telemetry.city import City

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Action:
    """Something that changes data, and who may do it."""
    key: str
    roles: frozenset[UserRole]

    @property
    def name(self) -> str:
        return f"the action {self.key}"

    @property
    def label(self) -> Label:
        return ACTION_LABELS[self.key]


ACKNOWLEDGE_ALARM = Action("alarm.acknowledge", frozenset({UserRole.DISPATCHER, UserRole.ADMIN}))


@dataclass(frozen=True)
class Target:
    """What a command is about, as found when it is executed."""
    key: str                       # e.g. "alarm:gas-0101/GAS-1f2e" (the audit log's target)
    scope_code: str                # the org unit it belongs to (authorization)
    summary: str                   # what a person calls it ("Gas over threshold · Building 3, …")
    subject: Any = None            # the thing itself, for the write


@dataclass(frozen=True)
class Written:
    """What a command's write did: the target before and after, and the live changes to tell."""
    before: dict | None
    after: dict | None
    changes: tuple[live.Change, ...] = ()


class Refused(Exception):
    """Raised by a command's write to refuse inside its transaction (the database knows better
    than the live state: someone else did it first)."""


class Command(Protocol):
    action: ClassVar[Action]

    @property
    def target_key(self) -> str: ...

    def locate(self, ctx: Commands) -> Target | None:
        """The target now (None: there is no such target, or no longer)."""

    def write(self, cur, actor: str, now: datetime, target: Target) -> Written:
        """The change, inside the command's transaction; raise Refused to refuse."""


@dataclass(frozen=True)
class Result:
    ok: bool
    reason: str
    summary: str                   # what the command was about, in words


class Commands:
    def __init__(self, city: City, redis_client: redis.Redis, dsn: str, producer: str = "dashboard",
                 place_name=None) -> None:
        self.city = city
        self.r = redis_client
        self.dsn = dsn
        self.bus = live.BusWriter(redis_client, producer)
        self.place_name = place_name or (lambda building_id: building_id)

    def execute(self, identity, command: Command, source_address: str | None = None) -> Result:
        target = command.locate(self)
        if target is None:
            return self._refuse(identity, command, None, f"{command.target_key} does not exist (any more)",
                                source_address)
        decision = authorize(self.city, identity, command.action, target.scope_code)
        if not decision:
            return self._refuse(identity, command, target, decision.reason, source_address)
        now = datetime.now(timezone.utc)
        try:
            conn = psycopg2.connect(self.dsn, connect_timeout=5, application_name="gcc-dashboard")
            try:
                with conn, conn.cursor() as cur:
                    written = command.write(cur, identity.user, now, target)
                    write_audit(cur, identity, command.action.key, command.target_key, target.scope_code, "done",
                                None, written.before, written.after, source_address)
            finally:
                conn.close()
        except Refused as refused:
            return self._refuse(identity, command, target, str(refused), source_address)
        self._tell(command, written)
        return Result(True, "done", target.summary)

    def record(self, identity, action: str, outcome: str, reason: str | None, target: str | None = None,
               source_address: str | None = None, scope_code: str | None = None) -> None:
        """An audit row for what is not a command: a login, a logout, a token used, a refusal at
        the gate or of a scope. Contained: a failure is logged (the refusal itself stands)."""
        try:
            conn = psycopg2.connect(self.dsn, connect_timeout=5, application_name="gcc-dashboard")
            try:
                with conn, conn.cursor() as cur:
                    write_audit(cur, identity, action, target, scope_code if scope_code is not None
                                else getattr(identity, "scope_code", None), outcome, reason,
                                source_address=source_address)
            finally:
                conn.close()
        except psycopg2.Error as exc:
            log.error("could not audit %s %s (%s): %s", action, outcome, reason, exc)

    def _tell(self, command: Command, written: Written) -> None:
        """The live bus after the commit. Contained: the change is stored and audited, and a
        snapshot reads it from the database; a failed write leaves a gap in the bus numbering, so
        the screens resync."""
        if not written.changes:
            return
        try:
            self.bus.publish(written.changes)
        except (redis.RedisError, OSError) as exc:
            log.warning("%s is stored, but the live bus could not be told: %s", command.target_key, exc)

    def _refuse(self, identity, command: Command, target: Target | None, reason: str,
                source_address: str | None) -> Result:
        log.info("refused %s on %s for %s: %s", command.action.key, command.target_key,
                 identity.user if identity else "nobody", reason)
        self.record(identity, command.action.key, "refused", reason, command.target_key, source_address,
                    target.scope_code if target else None)
        return Result(False, reason, target.summary if target else command.target_key)


def write_audit(cur, identity, action: str, target: str | None, scope_code: str | None, outcome: str,
                reason: str | None, before=None, after=None, source_address: str | None = None) -> None:
    """One row of the audit trail (append-only: the database refuses updates and deletes)."""
    cur.execute("insert into audit_log (actor, roles, action, target, scope_code, outcome, reason, before, after, "
                "source_address) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (identity.user if identity else "?", sorted(r.value for r in identity.roles) if identity else [],
                 action, target, scope_code, outcome, reason, _json(before), _json(after), source_address))


def _json(value: Any) -> str | None:
    return orjson.dumps(value).decode() if value is not None else None


# --- the commands ------------------------------------------------------------------------------------

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

    def write(self, cur, actor: str, now: datetime, target: Target) -> Written:
        if self.note is not None and len(self.note) > 500:
            raise Refused("a note has at most 500 characters")
        alarm: live.AlarmChange = target.subject
        cur.execute("insert into alarm_acknowledgements (alarm_id, sensor_id, acknowledged_at, actor, note) "
                    "values (%s, %s, %s, %s, %s) on conflict (sensor_id, alarm_id) do nothing",
                    (self.alarm_id, alarm.sensor_id, now, actor, self.note))
        if cur.rowcount == 0:
            cur.execute("select actor from alarm_acknowledgements where sensor_id = %s and alarm_id = %s",
                        (alarm.sensor_id, self.alarm_id))
            raise Refused(f"already acknowledged by {cur.fetchone()[0]}")
        ack = live.AlarmAckChange(self.alarm_id, alarm.grid_code, now.timestamp(), actor, alarm.sensor_id)
        return Written({"acknowledged": False}, {"acknowledged": True, "by": actor, "note": self.note}, (ack,))

"""Every write the dashboard makes goes through here: validate, authorize, write, audit, tell.

    execute(identity, command, source_address)
      1. where the target lives (its org unit)         command.locate
      2. may this identity do this action there?       authz.authorize (the one authorization point)
      3. is the command valid now?                     command.validate
      4. one transaction: the change and its audit row command.write + audit_log
      5. after the commit: live state and the live bus command.live changes → telemetry.live

A refusal (by role, scope or validity) changes nothing and is audited too. Screens call
`execute` from their callbacks; queries.py stays read-only.
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
from telemetry.catalogue import Label
from telemetry.city import City

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Action:
    """Something that changes data, and who may do it."""
    key: str
    label: Label
    roles: frozenset[UserRole]

    @property
    def name(self) -> str:
        return f"the action {self.key}"


ACKNOWLEDGE_ALARM = Action("alarm.acknowledge", Label("Acknowledge", "确认"),
                           frozenset({UserRole.DISPATCHER, UserRole.ADMIN}))


@dataclass(frozen=True)
class Written:
    """What a command's write did: the target before and after, and the live changes to tell."""
    before: dict | None
    after: dict | None
    changes: tuple[live.Change, ...] = ()


class Command(Protocol):
    action: ClassVar[Action]

    @property
    def target(self) -> str: ...

    def locate(self, ctx: Commands) -> str | None:
        """The org unit the target belongs to (None: there is no such target)."""

    def validate(self, ctx: Commands) -> str | None:
        """Why the command cannot be done now, or None."""

    def write(self, cur, actor: str, now: datetime) -> Written:
        """The change, inside the command's transaction."""

    def live(self, ctx: Commands, written: Written) -> None:
        """Live state after the commit (the bus envelope is sent by execute)."""


@dataclass(frozen=True)
class Result:
    ok: bool
    reason: str


class Commands:
    def __init__(self, city: City, redis_client: redis.Redis, dsn: str, producer: str = "dashboard") -> None:
        self.city = city
        self.r = redis_client
        self.dsn = dsn
        self.bus = live.BusWriter(redis_client, producer)

    def execute(self, identity, command: Command, source_address: str | None = None) -> Result:
        scope_code = command.locate(self)
        if scope_code is None:
            return self._refuse(identity, command, None, f"{command.target} does not exist (any more)",
                                source_address)
        decision = authorize(self.city, identity, command.action, scope_code)
        if not decision:
            return self._refuse(identity, command, scope_code, decision.reason, source_address)
        reason = command.validate(self)
        if reason is not None:
            return self._refuse(identity, command, scope_code, reason, source_address)
        now = datetime.now(timezone.utc)
        conn = psycopg2.connect(self.dsn, connect_timeout=5, application_name="gcc-dashboard")
        try:
            with conn, conn.cursor() as cur:
                written = command.write(cur, identity.user, now)
                _audit(cur, identity, command, scope_code, "done", None, written.before, written.after,
                       source_address)
        except psycopg2.IntegrityError as exc:  # e.g. someone else did it first
            return self._refuse(identity, command, scope_code, f"refused by the database: {exc.pgerror or exc}",
                                source_address)
        finally:
            conn.close()
        self._tell(command, written)
        return Result(True, "done")

    def _tell(self, command: Command, written: Written) -> None:
        """Live state and bus after the commit; contained: the change is stored and audited, and
        screens catch up at their next snapshot."""
        try:
            command.live(self, written)
            if written.changes:
                self.bus.publish(written.changes)
        except (redis.RedisError, OSError) as exc:
            log.warning("%s is stored, but the live update failed: %s", command.target, exc)

    def _refuse(self, identity, command: Command, scope_code: str | None, reason: str,
                source_address: str | None) -> Result:
        log.info("refused %s on %s for %s: %s", command.action.key, command.target, identity.user, reason)
        try:
            conn = psycopg2.connect(self.dsn, connect_timeout=5, application_name="gcc-dashboard")
            try:
                with conn, conn.cursor() as cur:
                    _audit(cur, identity, command, scope_code, "refused", reason, None, None, source_address)
            finally:
                conn.close()
        except psycopg2.Error as exc:
            log.error("could not audit a refusal (%s): %s", reason, exc)
        return Result(False, reason)


def _audit(cur, identity, command: Command, scope_code, outcome, reason, before, after, source_address) -> None:
    cur.execute("insert into audit_log (actor, roles, action, target, scope_code, outcome, reason, before, after, "
                "source_address) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (identity.user, sorted(r.value for r in identity.roles), command.action.key, command.target,
                 scope_code, outcome, reason, _json(before), _json(after), source_address))


def _json(value: Any) -> str | None:
    return orjson.dumps(value).decode() if value is not None else None


# --- the commands ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AcknowledgeAlarm:
    """A person has seen an open device alarm and takes it on. It stays open until the device
    clears it; acknowledging twice is refused."""
    action: ClassVar[Action] = ACKNOWLEDGE_ALARM
    alarm_id: str
    note: str | None = None

    @property
    def target(self) -> str:
        return f"alarm:{self.alarm_id}"

    def _open(self, ctx: Commands) -> live.AlarmChange | None:
        return next((a for a in live.read_open_alarms(ctx.r) if a.alarm_id == self.alarm_id), None)

    def locate(self, ctx: Commands) -> str | None:
        alarm = self._open(ctx)
        return alarm.grid_code if alarm else None

    def validate(self, ctx: Commands) -> str | None:
        alarm = self._open(ctx)
        if alarm is None:
            return f"alarm {self.alarm_id} is no longer open"
        if alarm.acknowledged_by:
            return f"alarm {self.alarm_id} was already acknowledged by {alarm.acknowledged_by}"
        if self.note is not None and len(self.note) > 500:
            return "a note has at most 500 characters"
        return None

    def write(self, cur, actor: str, now: datetime) -> Written:
        cur.execute("select sensor_id, grid_code from device_alarms where alarm_id = %s order by time desc limit 1",
                    (self.alarm_id,))
        row = cur.fetchone()
        if row is None:
            raise psycopg2.IntegrityError(f"alarm {self.alarm_id} is not stored")
        sensor_id, grid_code = row
        cur.execute("insert into alarm_acknowledgements (alarm_id, sensor_id, acknowledged_at, actor, note) "
                    "values (%s, %s, %s, %s, %s)", (self.alarm_id, sensor_id, now, actor, self.note))
        ack = live.AlarmAckChange(self.alarm_id, grid_code.strip(), now.timestamp(), actor)
        return Written({"acknowledged": False}, {"acknowledged": True, "by": actor, "note": self.note}, (ack,))

    def live(self, ctx: Commands, written: Written) -> None:
        for change in written.changes:
            live.acknowledge_open_alarm(ctx.r, change)


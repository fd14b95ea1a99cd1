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
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar, Protocol

import psycopg2
import redis

from cases import store as case_store
from core import freetext
from core.catalogue import ACTION_LABELS, ALARM_TYPE_LABELS, Label
from core.city import City
from core.roles import USER_ROLE_LABELS, UserRole
from dashboard import accounts as logins
from dashboard.authz import Identity, authorize
from database import audit
from telemetry import live

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
_ADMIN = frozenset({UserRole.ADMIN})
ADD_USER = Action("user.add", _ADMIN)
NEW_PASSWORD = Action("user.password", _ADMIN)
DISABLE_USER = Action("user.disable", _ADMIN)
ENABLE_USER = Action("user.enable", _ADMIN)
CREATE_WALL_TOKEN = Action("wall_token.create", _ADMIN)
REVOKE_WALL_TOKEN = Action("wall_token.revoke", _ADMIN)


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
    reply: str | None = None       # shown once to the person who did it, never stored (a password, a token)
    sessions_ended: bool = False   # the session cache must look again (dashboard.accounts)


class Refused(Exception):
    """Raised by a command's write to refuse inside its transaction (the database knows better
    than the live state: someone else did it first)."""


class Command(Protocol):
    action: ClassVar[Action]

    @property
    def target_key(self) -> str: ...

    def locate(self, ctx: Commands) -> Target | None:
        """The target now (None: there is no such target, or no longer)."""

    def write(self, cur, who: Identity, now: datetime, target: Target) -> Written:
        """The change by `who`, inside the command's transaction; raise Refused to refuse."""


@dataclass(frozen=True)
class Result:
    ok: bool
    reason: str
    summary: str                   # what the command was about, in words
    reply: str | None = None       # Written.reply


class Commands:
    def __init__(self, city: City, redis_client: redis.Redis | None, dsn: str, producer: str = "dashboard",
                 place_name=None, accounts=None) -> None:
        self.city = city
        self.r = redis_client          # None: a command line that changes nothing live
        self.dsn = dsn
        self.bus = live.BusWriter(redis_client, producer)
        self.place_name = place_name or (lambda building_id: building_id)
        self.accounts = accounts       # dashboard.accounts.Accounts: its session cache looks again after a change

    def where(self, scope_code: str | None) -> str:
        """An org unit's name for a summary (the city for ""; the code itself if there is no such unit:
        authorize says so)."""
        if not scope_code:
            return self.city.name
        known = scope_code in self.city.org_by_code or scope_code in self.city.grid_by_code
        return self.city.org_name(scope_code) if known else scope_code

    def one(self, query: str, args: tuple) -> dict | None:
        """One row as a dict, or None (a command's locate reads with this)."""
        conn = psycopg2.connect(self.dsn, connect_timeout=5, application_name="gcc-dashboard")
        try:
            with conn, conn.cursor() as cur:
                cur.execute(query, args)
                row = cur.fetchone()
                return dict(zip([d[0] for d in cur.description], row, strict=True)) if row else None
        finally:
            conn.close()

    def case(self, case_id: str):
        """The case as stored now (cases.model.Case, not locked), or None."""
        conn = psycopg2.connect(self.dsn, connect_timeout=5, application_name="gcc-dashboard")
        try:
            with conn, conn.cursor() as cur:
                return case_store.load(cur, case_id, lock=False)
        finally:
            conn.close()

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
                    written = command.write(cur, identity, now, target)
                    write_audit(cur, identity, command.action.key, command.target_key, target.scope_code, "done",
                                None, written.before, written.after, source_address)
            finally:
                conn.close()
        except Refused as refused:
            return self._refuse(identity, command, target, str(refused), source_address)
        if written.sessions_ended and self.accounts is not None:
            self.accounts.forget()
        self._tell(command, written)
        return Result(True, "done", target.summary, written.reply)

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
        if not written.changes or self.r is None:
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
    """One row of the audit trail for a screen's user (database.audit writes it)."""
    audit.write_audit(cur, identity.user if identity else "?", [r.value for r in identity.roles] if identity else [],
                      action, target, scope_code, outcome, reason, before, after, source_address)


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


# --- people and wall screens (dashboard.accounts does the SQL, here in the audit row's transaction) ----

def _generated_password() -> str:
    return secrets.token_urlsafe(12)      # 16 characters, 96 bits; shown once


def _user_summary(ctx: Commands, username: str, role: str, scope_code: str) -> str:
    role_label = USER_ROLE_LABELS.get(role, role)   # a str-valued enum: the value finds it
    return f"{username} · {role_label} · {ctx.where(scope_code)}"


def _locate_user(ctx: Commands, key: str, username: str) -> Target | None:
    row = ctx.one("select username, role, scope_code, disabled from users where username = %s", (username,))
    if row is None:
        return None
    return Target(key, row["scope_code"], _user_summary(ctx, username, row["role"], row["scope_code"]), row)


@dataclass(frozen=True)
class AddUser:
    """A new login with one role over one org unit; its password is generated and shown once."""
    action: ClassVar[Action] = ADD_USER
    username: str
    display_name: str
    role: str
    scope_code: str = ""

    @property
    def target_key(self) -> str:
        return f"user:{self.username}"

    def locate(self, ctx: Commands) -> Target | None:
        # the scope is the target's: authorize refuses one outside the admin's subtree, or none at all
        return Target(self.target_key, self.scope_code, _user_summary(ctx, self.username, self.role, self.scope_code))

    def write(self, cur, who: Identity, now: datetime, target: Target) -> Written:
        display = self.display_name.strip() or self.username
        password = _generated_password()
        try:
            added = logins.insert_user(cur, self.username, display, UserRole(self.role), self.scope_code,
                                logins.hash_password(password), who.user)
        except ValueError as bad:
            raise Refused(str(bad)) from None
        if not added:
            raise Refused(f"there is already a user {self.username}")
        after = {"display_name": display, "role": self.role, "scope_code": self.scope_code}
        return Written(None, after, reply=password)


@dataclass(frozen=True)
class NewPassword:
    """A new generated password, shown once; every session of the user ends."""
    action: ClassVar[Action] = NEW_PASSWORD
    username: str

    @property
    def target_key(self) -> str:
        return f"user:{self.username}"

    def locate(self, ctx: Commands) -> Target | None:
        return _locate_user(ctx, self.target_key, self.username)

    def write(self, cur, who: Identity, now: datetime, target: Target) -> Written:
        password = _generated_password()
        if not logins.update_password(cur, self.username, logins.hash_password(password), now):
            raise Refused(f"there is no user {self.username} (any more)")
        return Written(None, {"password_changed_at": now.isoformat()}, reply=password, sessions_ended=True)


@dataclass(frozen=True)
class SetUserDisabled:
    """Disable a login (every session of it ends at once) or enable it again."""
    username: str
    disabled: bool

    @property
    def action(self) -> Action:
        return DISABLE_USER if self.disabled else ENABLE_USER

    @property
    def target_key(self) -> str:
        return f"user:{self.username}"

    def locate(self, ctx: Commands) -> Target | None:
        return _locate_user(ctx, self.target_key, self.username)

    def write(self, cur, who: Identity, now: datetime, target: Target) -> Written:
        if self.disabled and self.username == who.user:
            raise Refused("nobody disables their own login (another admin can)")
        if target.subject["disabled"] == self.disabled:
            raise Refused(f"{self.username} is already {'disabled' if self.disabled else 'enabled'}")
        logins.update_disabled(cur, self.username, self.disabled, now)
        return Written({"disabled": target.subject["disabled"]}, {"disabled": self.disabled},
                       sessions_ended=self.disabled)


@dataclass(frozen=True)
class CreateWallToken:
    """A named token for a wall screen of one scope; the token is shown once, stored hashed."""
    action: ClassVar[Action] = CREATE_WALL_TOKEN
    name: str
    scope_code: str = ""

    @property
    def target_key(self) -> str:
        return f"wall_token:{self.name}"

    def locate(self, ctx: Commands) -> Target | None:
        return Target(self.target_key, self.scope_code, f"{self.name} · {ctx.where(self.scope_code)}")

    def write(self, cur, who: Identity, now: datetime, target: Target) -> Written:
        try:
            token_id, token, name = logins.insert_wall_token(cur, self.name, self.scope_code, who.user)
        except ValueError as bad:
            raise Refused(str(bad)) from None
        return Written(None, {"id": token_id, "name": name, "scope_code": self.scope_code}, reply=token)


@dataclass(frozen=True)
class RevokeWallToken:
    """Revoke a wall screen's token: its screens are disconnected within seconds."""
    action: ClassVar[Action] = REVOKE_WALL_TOKEN
    token_id: int

    @property
    def target_key(self) -> str:
        return f"wall_token:{self.token_id}"

    def locate(self, ctx: Commands) -> Target | None:
        row = ctx.one("select id, name, scope_code, revoked_at from wall_tokens where id = %s", (self.token_id,))
        if row is None:
            return None
        return Target(self.target_key, row["scope_code"], f"{row['name']} · {ctx.where(row['scope_code'])}", row)

    def write(self, cur, who: Identity, now: datetime, target: Target) -> Written:
        if not logins.update_revoked(cur, self.token_id, who.user, now):
            raise Refused(f"wall token {self.token_id} is already revoked")
        return Written({"revoked": False}, {"revoked": True}, sessions_ended=True)

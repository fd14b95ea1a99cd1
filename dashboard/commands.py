"""The command bus: every write the dashboard makes goes through `Commands.execute`, which
authorizes, audits and runs it in one place.

    execute(identity, command, source_address)
      0. may this identity do this action at all?        the action's roles (before anything is read)
      1. what the command is about, and where it lives   command.locate   -> Target (org unit, summary)
      2. may this identity do this action there?         authz.authorize  (the one authorization point),
                                                         for the target's org unit and any other it
                                                         reaches (a move: where it goes)
      3. one transaction: the change and its audit row   command.write    (may refuse: Refused)
         or, for a command that keeps its own            command.run      (the registry: its own
         transaction and audit row                                         transaction, audit row
                                                                           and broker accounts)
      4. after the commit: the live bus                  the Written changes, one envelope

A refusal (no such target, role, scope, or the database's own check inside the transaction)
changes nothing and is audited too, once. Screens call `execute` from their callbacks; the reads
stay read-only. The commands live beside what they change: the cases' (case_actions), people and
wall screens (account_commands), alarms (alarms), announcements, the diary's rating (kpis_diary),
the registry's (registry_commands).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar, Protocol

import psycopg2
import redis

from cases import store as case_store
from core.catalogue import ACTION_LABELS, AuditAction, Label
from core.city import City
from core.roles import UserRole
from dashboard.authz import Identity, authorize
from database import audit
from telemetry import live

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Action:
    """Something that changes data, and who may do it."""
    key: AuditAction               # what the audit trail records it as (core.catalogue spells the keys)
    roles: frozenset[UserRole]

    @property
    def name(self) -> str:
        return f"the action {self.key}"

    @property
    def label(self) -> Label:
        return ACTION_LABELS[self.key]




@dataclass(frozen=True)
class Target:
    """What a command is about, as found when it is executed."""
    key: str                       # e.g. "alarm:gas-0101/GAS-1f2e" (the audit log's target)
    scope_code: str                # the org unit it belongs to (authorization)
    summary: str                   # what a person calls it ("Gas over threshold · Building 3, …")
    subject: Any = None            # the thing itself, for the write
    also: tuple[str, ...] = ()     # other org units the command reaches, each authorized too (a move: where to)


@dataclass(frozen=True)
class Written:
    """What a command's write did: the target before and after, and the live changes to tell."""
    before: dict | None
    after: dict | None
    changes: tuple[live.Change, ...] = ()
    reply: str | None = None       # shown once to the person who did it, never stored (a password, a token)
    sessions_ended: bool = False   # the session cache must look again (dashboard.accounts)
    handed: Any = None             # what the screen shows of it once (a device's credential)


class Refused(Exception):
    """Raised by a command's locate or write to refuse (inside the transaction: the database knows
    better than the live state, someone else did it first). `audited`: the refusal already has
    its audit row (a command that keeps its own, the registry's), so the bus writes none."""

    def __init__(self, reason: str, audited: bool = False) -> None:
        super().__init__(reason)
        self.audited = audited


class Command(Protocol):
    action: ClassVar[Action]

    @property
    def target_key(self) -> str: ...

    def locate(self, ctx: Commands) -> Target | None:
        """The target now (None: there is no such target, or no longer)."""

    def write(self, cur, who: Identity, now: datetime, target: Target) -> Written:
        """The change by `who`, inside the command's transaction; raise Refused to refuse."""


class OwnTransaction(Protocol):
    """A command whose change keeps its own transaction and audit row (the registry's: the broker
    is told inside the transaction, and the row is the registry's, for the page and the CLI alike).
    The bus authorizes it as any other and writes no second row: `run` does the change, once
    authorized; a refusal it has audited itself is raised as Refused(reason, audited=True)."""
    action: ClassVar[Action]

    @property
    def target_key(self) -> str: ...

    def locate(self, ctx: Commands) -> Target | None: ...

    def run(self, ctx: Commands, who: Identity, target: Target, source_address: str | None) -> Written: ...


@dataclass(frozen=True)
class Result:
    ok: bool
    reason: str
    summary: str                   # what the command was about, in words
    reply: str | None = None       # Written.reply
    handed: Any = None             # Written.handed


class Commands:
    def __init__(self, city: City, redis_client: redis.Redis | None, dsn: str, producer: str = "dashboard",
                 place_name=None, accounts=None, registry=None) -> None:
        self.city = city
        self.r = redis_client          # None: a command line that changes nothing live
        self.dsn = dsn
        self.bus = live.BusWriter(redis_client, producer)
        self.place_name = place_name or (lambda building_id: building_id)
        self.accounts = accounts       # dashboard.accounts.Accounts: its session cache looks again after a change
        self.registry = registry       # registry.store.DeviceRegistry: the registry's commands change it

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

    def execute(self, identity, command: Command | OwnTransaction, source_address: str | None = None) -> Result:
        target = self._authorized(identity, command, source_address)
        if isinstance(target, Result):
            return target
        try:
            written = self._run(identity, command, target, source_address)
        except Refused as refused:
            return self._refuse(identity, command, target, str(refused), source_address, audited=refused.audited)
        if written.sessions_ended and self.accounts is not None:
            self.accounts.forget()
        self._tell(command, written)
        return Result(True, "done", target.summary, written.reply, written.handed)

    def check(self, identity, command: Command | OwnTransaction, source_address: str | None = None) -> Result | None:
        """Steps 0-2 alone, for a screen that gives several commands as one (a member's new name
        and grid): None when `identity` may, else the refusal (audited), and nothing is changed."""
        target = self._authorized(identity, command, source_address)
        return target if isinstance(target, Result) else None

    def _authorized(self, identity, command: Command | OwnTransaction, source_address: str | None) -> Target | Result:
        """The target, located and authorized for every org unit it reaches; or the refusal, audited."""
        if identity is None or not identity.roles & command.action.roles:
            # who may not do this at all learns nothing of the target (authorize says why not)
            return self._refuse(identity, command, None, authorize(self.city, identity, command.action, "").reason,
                                source_address)
        try:
            target = command.locate(self)
        except Refused as refused:
            return self._refuse(identity, command, None, str(refused), source_address)
        if target is None:
            return self._refuse(identity, command, None, f"{command.target_key} does not exist (any more)",
                                source_address)
        for scope_code in (target.scope_code, *target.also):
            decision = authorize(self.city, identity, command.action, scope_code)
            if not decision:
                return self._refuse(identity, command, target, decision.reason, source_address)
        return target

    def _run(self, identity, command: Command | OwnTransaction, target: Target, source_address: str | None) -> Written:
        """The change and its one audit row: the command's own (`run`), or the bus's transaction."""
        if hasattr(command, "run"):
            return command.run(self, identity, target, source_address)
        now = datetime.now(timezone.utc)
        conn = psycopg2.connect(self.dsn, connect_timeout=5, application_name="gcc-dashboard")
        try:
            with conn, conn.cursor() as cur:
                written = command.write(cur, identity, now, target)
                write_audit(cur, identity, command.action.key, command.target_key, target.scope_code, "done",
                            None, written.before, written.after, source_address)
        finally:
            conn.close()
        return written

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

    def _refuse(self, identity, command: Command | OwnTransaction, target: Target | None, reason: str,
                source_address: str | None, audited: bool = False) -> Result:
        log.info("refused %s on %s for %s: %s", command.action.key, command.target_key,
                 identity.user if identity else "nobody", reason)
        if not audited:
            self.record(identity, command.action.key, "refused", reason[:2000],
                        target.key if target else command.target_key, source_address,
                        target.scope_code if target else None)
        return Result(False, reason, target.summary if target else command.target_key)


def write_audit(cur, identity, action: str, target: str | None, scope_code: str | None, outcome: str,
                reason: str | None, before=None, after=None, source_address: str | None = None) -> None:
    """One row of the audit trail for a screen's user (database.audit writes it)."""
    audit.write_audit(cur, identity.user if identity else "?", [r.value for r in identity.roles] if identity else [],
                      action, target, scope_code, outcome, reason, before, after, source_address)

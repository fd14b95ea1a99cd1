"""The registry's changes as the screens make them (the admin's pages: members, phones, gateways
and sensors, boundaries), through the command bus like every other write: the bus refuses a role
that may not, finds what the change touches and authorizes the admin for its grid (a move: for
where it goes too), then `run` has the registry do it. The registry keeps its own transaction and
its own audit row (done, or refused with the reason: one row per change, as from its CLI), with
the broker's side of it; the bus audits only the refusals the registry never saw.

Each command's `locate` reads where its target lives now (a callback is a request of its own:
nothing the page listed is trusted)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import orjson

from core.catalogue import AuditAction
from core.orgcodes import parent_of
from core.roles import UserRole
from dashboard.authz import Identity
from dashboard.commands import Action, Commands, Refused, Target, Written
from registry import boundaries, imports
from registry.store import Actor, RegistryError

ADMINS = frozenset({UserRole.ADMIN})
ADD_MEMBER = Action(AuditAction.REGISTRY_MEMBER_ADD, ADMINS)
CHANGE_MEMBER = Action(AuditAction.REGISTRY_MEMBER_CHANGE, ADMINS)
MOVE_MEMBER = Action(AuditAction.REGISTRY_MEMBER_MOVE, ADMINS)
REPLACE_TERMINAL = Action(AuditAction.REGISTRY_MEMBER_REPLACE_TERMINAL, ADMINS)
RETIRE_MEMBER = Action(AuditAction.REGISTRY_MEMBER_RETIRE, ADMINS)
ADD_DEVICE = Action(AuditAction.REGISTRY_DEVICE_ADD, ADMINS)
RETIRE_DEVICE = Action(AuditAction.REGISTRY_DEVICE_RETIRE, ADMINS)
ROTATE = Action(AuditAction.REGISTRY_CREDENTIAL_ROTATE, ADMINS)      # a device's or a gateway's credential
REVOKE = Action(AuditAction.REGISTRY_CREDENTIAL_REVOKE, ADMINS)
ADD_GATEWAY = Action(AuditAction.REGISTRY_GATEWAY_ADD, ADMINS)
MOVE_GATEWAY = Action(AuditAction.REGISTRY_GATEWAY_MOVE, ADMINS)
RETIRE_GATEWAY = Action(AuditAction.REGISTRY_GATEWAY_RETIRE, ADMINS)
ADD_SENSOR = Action(AuditAction.REGISTRY_SENSOR_ADD, ADMINS)
MOVE_SENSOR = Action(AuditAction.REGISTRY_SENSOR_MOVE, ADMINS)
RETIRE_SENSOR = Action(AuditAction.REGISTRY_SENSOR_RETIRE, ADMINS)
IMPORT_BOUNDARIES = Action(AuditAction.REGISTRY_BOUNDARIES_IMPORT, ADMINS)

# the grid of an active thing of the registry, by what it is (what an admin's scope is checked against)
_GRID_OF = {
    "member": "select grid_code from members where member_id = %s and retired_at is null",
    "device": "select m.grid_code from member_devices d join members m using (member_id) "
              "where d.device_id = %s and d.retired_at is null and m.retired_at is null",
    "gateway": "select grid_code from gateways where gateway_id = %s and retired_at is null",
    "sensor": "select grid_code from sensors where sensor_id = %s and retired_at is null",
    "building": "select grid_code from buildings where building_id = %s",
}


def _grid(ctx: Commands, what: str, key: str | None) -> str:
    """The grid of `what` `key`, or a refusal naming what is not there."""
    row = ctx.one(_GRID_OF[what], (key,)) if key else None
    if row is None:
        raise Refused(f"there is no {what} {key or ''}".rstrip())
    return row["grid_code"].strip()


def _credential_grid(ctx: Commands, device_id: str) -> str:
    """A credential's owner: a member's active device, else an active gateway."""
    try:
        return _grid(ctx, "device", device_id)
    except Refused:
        try:
            return _grid(ctx, "gateway", device_id)
        except Refused:
            raise Refused(f"there is no active device or gateway {device_id}") from None


def _actor(who: Identity, source_address: str | None) -> Actor:
    return Actor(who.user, tuple(sorted(r.value for r in who.roles)), source_address)


def _done(ctx: Commands, who: Identity, source_address: str | None, change, *args) -> Written:
    """The registry's change (`change(registry, actor, *args)`), which writes its own audit row,
    done or refused: a refusal is handed on as already audited."""
    if ctx.registry is None:
        raise Refused("the registry is not configured here")
    try:
        handed = change(ctx.registry, _actor(who, source_address), *args)
    except RegistryError as exc:
        raise Refused(str(exc), audited=True) from None
    return Written(None, None, handed=handed)


@dataclass(frozen=True)
class _OnOne:
    """A change of one thing of the registry, authorized for its grid."""
    kind: ClassVar[str]
    key: str

    @property
    def target_key(self) -> str:
        return f"{self.kind}:{self.key}"

    def locate(self, ctx: Commands) -> Target:
        grid = _grid(ctx, self.kind, self.key)
        return Target(self.target_key, grid, f"{self.key} · {ctx.where(grid)}")


# --- members and their devices ------------------------------------------------------------------

@dataclass(frozen=True)
class AddMember:
    """A member with their dedicated terminal (its password handed back once)."""
    action: ClassVar[Action] = ADD_MEMBER
    member_id: str
    name: str
    role: str
    grid_code: str
    terminal_id: str

    @property
    def target_key(self) -> str:
        return f"member:{self.member_id}"

    def locate(self, ctx: Commands) -> Target:
        return Target(self.target_key, self.grid_code, f"{self.member_id} · {ctx.where(self.grid_code)}")

    def run(self, ctx: Commands, who: Identity, target: Target, source_address: str | None) -> Written:
        return _done(ctx, who, source_address, lambda r, a: r.add_member(a, self.member_id, self.name, self.role,
                                                                          self.grid_code, self.terminal_id))


@dataclass(frozen=True)
class ImportMembers:
    """A community's members from CSV (registry.imports): authorized for every grid its lines name
    (a grid the city does not have is left to the import's own check, which names its line). Done,
    it hands back (the credentials of the members added, ImportStopped or None): an import stopped
    part-way still shows the passwords of the members added before it, each audited as added."""
    action: ClassVar[Action] = ADD_MEMBER
    text: str
    filename: str = ""

    @property
    def target_key(self) -> str:
        return f"import:{self.filename}"

    def locate(self, ctx: Commands) -> Target:
        try:
            rows = imports.rows_of(self.text)
        except RegistryError as exc:
            raise Refused(f"nothing imported from {self.filename or 'the file'}: {exc}") from None
        grids = sorted({r["grid_code"] for r in rows if r.get("grid_code") in ctx.city.grid_by_code})
        if not grids:
            raise Refused(f"nothing imported from {self.filename or 'the file'}: no line names a grid of the city")
        return Target(self.target_key, grids[0], f"{self.filename or 'the file'} · {len(rows)} lines",
                      also=tuple(grids[1:]))

    def run(self, ctx: Commands, who: Identity, target: Target, source_address: str | None) -> Written:
        if ctx.registry is None:
            raise Refused("the registry is not configured here")
        try:
            added = imports.import_members(ctx.registry, _actor(who, source_address), self.text)
        except imports.ImportStopped as stopped:     # each member added before it has its audit row
            return Written(None, None, handed=(stopped.added, stopped))
        except RegistryError as exc:                 # the lines' own check: nothing written, nor audited yet
            raise Refused(f"nothing imported from {self.filename or 'the file'}: {exc}") from None
        return Written(None, None, handed=(added, None))


@dataclass(frozen=True)
class ChangeMember(_OnOne):
    action: ClassVar[Action] = CHANGE_MEMBER
    kind: ClassVar[str] = "member"
    name: str | None = None
    role: str | None = None

    def run(self, ctx: Commands, who: Identity, target: Target, source_address: str | None) -> Written:
        return _done(ctx, who, source_address, lambda r, a: r.change_member(a, self.key, self.name, self.role))


@dataclass(frozen=True)
class MoveMember(_OnOne):
    """To another grid: authorized for both."""
    action: ClassVar[Action] = MOVE_MEMBER
    kind: ClassVar[str] = "member"
    grid_code: str = ""

    def locate(self, ctx: Commands) -> Target:
        found = super().locate(ctx)
        return Target(found.key, found.scope_code, f"{found.summary} → {ctx.where(self.grid_code)}",
                      also=(self.grid_code,))

    def run(self, ctx: Commands, who: Identity, target: Target, source_address: str | None) -> Written:
        return _done(ctx, who, source_address, lambda r, a: r.move_member(a, self.key, self.grid_code))


@dataclass(frozen=True)
class ReplaceTerminal(_OnOne):
    action: ClassVar[Action] = REPLACE_TERMINAL
    kind: ClassVar[str] = "member"
    terminal_id: str = ""

    def run(self, ctx: Commands, who: Identity, target: Target, source_address: str | None) -> Written:
        return _done(ctx, who, source_address, lambda r, a: r.replace_terminal(a, self.key, self.terminal_id))


@dataclass(frozen=True)
class RetireMember(_OnOne):
    action: ClassVar[Action] = RETIRE_MEMBER
    kind: ClassVar[str] = "member"

    def run(self, ctx: Commands, who: Identity, target: Target, source_address: str | None) -> Written:
        return _done(ctx, who, source_address, lambda r, a: r.retire_member(a, self.key))


@dataclass(frozen=True)
class _MembersDevice:
    """A phone added to a member: located at (so authorized for) the member's grid."""
    member_id: str

    @property
    def target_key(self) -> str:
        return f"member:{self.member_id}"

    def _at_member(self, ctx: Commands, name: str) -> Target:
        return Target(self.target_key, _grid(ctx, "member", self.member_id), f"{name} · {self.member_id}")


@dataclass(frozen=True)
class AddDevice(_MembersDevice):
    """A member's phone (OwnTracks, Traccar Client): its password handed back once."""
    action: ClassVar[Action] = ADD_DEVICE
    kind: str
    device_id: str
    label: str = ""

    def locate(self, ctx: Commands) -> Target:
        return self._at_member(ctx, self.device_id)

    def run(self, ctx: Commands, who: Identity, target: Target, source_address: str | None) -> Written:
        return _done(ctx, who, source_address, lambda r, a: r.add_device(a, self.member_id, self.kind, self.device_id,
                                                                          self.label))


@dataclass(frozen=True)
class EnrolHandheld(_MembersDevice):
    """A one-time code that binds a phone with the handheld app (网格通) to a member (handed back
    once, as a registry.handhelds.Enrolment); a device added, so authorized and audited as one."""
    action: ClassVar[Action] = ADD_DEVICE
    label: str = ""

    def locate(self, ctx: Commands) -> Target:
        return self._at_member(ctx, "handheld")

    def run(self, ctx: Commands, who: Identity, target: Target, source_address: str | None) -> Written:
        return _done(ctx, who, source_address, lambda r, a: r.enrol_handheld(a, self.member_id, self.label))


@dataclass(frozen=True)
class RetireDevice(_OnOne):
    action: ClassVar[Action] = RETIRE_DEVICE
    kind: ClassVar[str] = "device"

    def run(self, ctx: Commands, who: Identity, target: Target, source_address: str | None) -> Written:
        return _done(ctx, who, source_address, lambda r, a: r.retire_device(a, self.key))


@dataclass(frozen=True)
class RotateCredential(_OnOne):
    """A device's or a gateway's new password (handed back once); a revoked one is enabled again."""
    action: ClassVar[Action] = ROTATE
    kind: ClassVar[str] = "device"

    def locate(self, ctx: Commands) -> Target:
        grid = _credential_grid(ctx, self.key)
        return Target(self.target_key, grid, f"{self.key} · {ctx.where(grid)}")

    def run(self, ctx: Commands, who: Identity, target: Target, source_address: str | None) -> Written:
        return _done(ctx, who, source_address, lambda r, a: r.rotate(a, self.key))


@dataclass(frozen=True)
class RevokeCredential(RotateCredential):
    """A device's or a gateway's account disabled (lost, stolen); a new password enables it again."""
    action: ClassVar[Action] = REVOKE

    def run(self, ctx: Commands, who: Identity, target: Target, source_address: str | None) -> Written:
        return _done(ctx, who, source_address, lambda r, a: r.revoke(a, self.key))


# --- gateways and sensors -----------------------------------------------------------------------

@dataclass(frozen=True)
class AddGateway:
    """A building's gateway or elevator controller: its password handed back once."""
    action: ClassVar[Action] = ADD_GATEWAY
    gateway_id: str
    kind: str
    building_id: str
    protocol: str = "senml"

    @property
    def target_key(self) -> str:
        return f"gateway:{self.gateway_id}"

    def locate(self, ctx: Commands) -> Target:
        grid = _grid(ctx, "building", self.building_id)
        return Target(self.target_key, grid, f"{self.gateway_id} · {ctx.place_name(self.building_id)}")

    def run(self, ctx: Commands, who: Identity, target: Target, source_address: str | None) -> Written:
        return _done(ctx, who, source_address, lambda r, a: r.add_gateway(a, self.gateway_id, self.kind,
                                                                           self.building_id, self.protocol))


@dataclass(frozen=True)
class _ToBuilding(_OnOne):
    """A move to another building: authorized for the thing's grid and the building's."""
    building_id: str = ""

    def locate(self, ctx: Commands) -> Target:
        found = super().locate(ctx)
        if not self.building_id:
            raise Refused("choose the building to move to")
        return Target(found.key, found.scope_code, f"{self.key} → {ctx.place_name(self.building_id)}",
                      also=(_grid(ctx, "building", self.building_id),))


@dataclass(frozen=True)
class MoveGateway(_ToBuilding):
    """With its sensors."""
    action: ClassVar[Action] = MOVE_GATEWAY
    kind: ClassVar[str] = "gateway"

    def run(self, ctx: Commands, who: Identity, target: Target, source_address: str | None) -> Written:
        return _done(ctx, who, source_address, lambda r, a: r.move_gateway(a, self.key, self.building_id))


@dataclass(frozen=True)
class RetireGateway(_OnOne):
    """With its sensors."""
    action: ClassVar[Action] = RETIRE_GATEWAY
    kind: ClassVar[str] = "gateway"

    def run(self, ctx: Commands, who: Identity, target: Target, source_address: str | None) -> Written:
        return _done(ctx, who, source_address, lambda r, a: r.retire_gateway(a, self.key))


@dataclass(frozen=True)
class AddSensor:
    """A sensor behind a gateway, in the gateway's building unless another is named (both authorized)."""
    action: ClassVar[Action] = ADD_SENSOR
    sensor_id: str
    kind: str
    gateway_id: str
    building_id: str | None = None

    @property
    def target_key(self) -> str:
        return f"sensor:{self.sensor_id}"

    def locate(self, ctx: Commands) -> Target:
        grid = _grid(ctx, "gateway", self.gateway_id)
        also = (_grid(ctx, "building", self.building_id),) if self.building_id else ()
        return Target(self.target_key, grid, f"{self.sensor_id} → {self.gateway_id}", also=also)

    def run(self, ctx: Commands, who: Identity, target: Target, source_address: str | None) -> Written:
        return _done(ctx, who, source_address, lambda r, a: r.add_sensor(a, self.sensor_id, self.kind,
                                                                          self.gateway_id, self.building_id))


@dataclass(frozen=True)
class MoveSensor(_ToBuilding):
    action: ClassVar[Action] = MOVE_SENSOR
    kind: ClassVar[str] = "sensor"

    def run(self, ctx: Commands, who: Identity, target: Target, source_address: str | None) -> Written:
        return _done(ctx, who, source_address, lambda r, a: r.move_sensor(a, self.key, self.building_id))


@dataclass(frozen=True)
class RetireSensor(_OnOne):
    action: ClassVar[Action] = RETIRE_SENSOR
    kind: ClassVar[str] = "sensor"

    def run(self, ctx: Commands, who: Identity, target: Target, source_address: str | None) -> Written:
        return _done(ctx, who, source_address, lambda r, a: r.retire_sensor(a, self.key))


# --- boundaries -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImportBoundaries:
    """One parent's units' boundaries from GeoJSON (registry.boundaries): authorized for the parent
    the file's codes name (a community for grids, a street for communities, a district for
    streets). The file is read here to find that parent, and again by the import (a community's
    file is a few dozen polygons). Done, it hands back (a summary, the parent's code)."""
    action: ClassVar[Action] = IMPORT_BOUNDARIES
    data: bytes
    filename: str = ""

    @property
    def target_key(self) -> str:
        return f"import:{self.filename}"

    def locate(self, ctx: Commands) -> Target:
        try:
            level, units = boundaries.units_of(orjson.loads(self.data))
        except (orjson.JSONDecodeError, RegistryError) as exc:
            raise Refused(f"{self.filename or 'the file'}: {exc}") from None
        parent = parent_of(units[0]["code"])
        if parent not in ctx.city.org_by_code:
            raise Refused(f"{self.filename or 'the file'}: there is no {level.parent.value} {parent}")
        return Target(f"{level.parent.value}:{parent}", parent, f"{ctx.where(parent)} · {len(units)} {level.value}s")

    def run(self, ctx: Commands, who: Identity, target: Target, source_address: str | None) -> Written:
        try:   # the tiling's refusal has its audit row from the import itself
            summary, parent = boundaries.import_boundaries(ctx.dsn, _actor(who, source_address), self.data)
        except RegistryError as exc:
            raise Refused(f"{self.filename or 'the file'}: {exc}", audited=True) from None
        return Written(None, None, handed=(summary, parent))


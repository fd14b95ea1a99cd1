"""The registry's changes: members and their devices, gateways and sensors, each in one transaction
with its audit row, and the broker's side of it sent before the commit (so a change the broker
refuses is not stored; a commit failing after the broker took it leaves at worst an account the
registry does not know, which the ingest refuses as unknown_device).

Every change is audited (`registry.<what>.<verb>`, done or refused with the reason), before and
after. A refusal is a `RegistryError` whose message says what to do. Nothing is deleted: a retired
member, device, gateway or sensor stays in its table with `retired_at`, its broker account is
disabled, and what it still sends (or had queued) is dead-lettered as `retired_device`.

Credentials are generated here, handed back once in a `Credential`, and stored only hashed, by the
broker. A device's id is its broker username (and its topic id, OwnTracks user, OsmAnd id).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg2

from core import freetext
from core.catalogue import AuditAction, DeviceKind
from core.city import GatewayKind, MemberDeviceKind
from core.roles import Role, UserRole
from database.audit import write_audit
from registry import broker, handhelds
from registry.broker import BrokerAdmin, DynsecError, new_password
from registry.handhelds import Enrolment
from telemetry.messages import is_valid_id
from telemetry.topics import AccountKind

# the broker account a member's device of each kind logs in with (a handheld has none: it speaks HTTPS)
ACCOUNT_KINDS = {MemberDeviceKind.TERMINAL: AccountKind.TERMINAL, MemberDeviceKind.OWNTRACKS: AccountKind.OWNTRACKS,
                 MemberDeviceKind.OSMAND: AccountKind.OSMAND}
HANDHELD = MemberDeviceKind.HANDHELD.value


def _disable(devices: list[tuple[str, str]]) -> list[dict]:
    """The broker commands that disable these (device, kind)s' accounts: a handheld has none."""
    return [c for device_id, kind in devices if kind != HANDHELD for c in broker.set_disabled(device_id, True)]


class RegistryError(ValueError):
    """A change refused, with what to do about it."""


@dataclass(frozen=True)
class Actor:
    """Who changes the registry: an admin on the page, or whoever runs the CLI."""
    user: str
    roles: tuple[str, ...] = (UserRole.ADMIN.value,)
    source_address: str | None = None


@dataclass(frozen=True)
class Credential:
    """A device's new password, shown once (to put into the device); the broker keeps only its hash."""
    device_id: str
    kind: AccountKind
    password: str


@dataclass
class _Change:
    target: str
    scope: str | None
    before: Any = None
    after: Any = None
    commands: list[dict] | None = None
    credential: Credential | Enrolment | None = None   # what is handed back once


def _choice(enum, value: str, what: str):
    """The enum member named `value`, or a refusal listing the choices."""
    try:
        return enum(value)
    except ValueError:
        raise RegistryError(f"{what} {value!r}: one of {', '.join(e.value for e in enum)}") from None


def valid_id(value: str) -> bool:
    """A member, device, gateway or sensor id: it is a topic level and a broker username."""
    return is_valid_id(value) and "/" not in value


def _id(value: str, what: str) -> str:
    if not valid_id(value):
        raise RegistryError(f"{what} {value!r}: 1-64 characters, no whitespace, no / + # (they are topic characters)")
    return value


def _text(value: str | None, kind: freetext.Kind, what: str, required: bool = False) -> str:
    """A name or label as people type it (core.freetext: one line, a length limit, no control
    characters), or a refusal naming the field."""
    try:
        return freetext.clean(value, kind, what, required=required)
    except ValueError as bad:
        raise RegistryError(str(bad)) from None


class DeviceRegistry:
    """The registry's changes on one database, with the broker (None: device accounts cannot follow,
    so every change that needs them is refused)."""

    def __init__(self, dsn: str, broker_admin: BrokerAdmin | None) -> None:
        self.dsn = dsn
        self.broker = broker_admin

    # --- the frame: one transaction, its audit row, the broker before the commit ------------------
    def _apply(self, actor: Actor, action: str, target: str, change) -> _Change:
        conn = psycopg2.connect(self.dsn)
        try:
            try:
                with conn, conn.cursor() as cur:
                    done: _Change = change(cur)
                    write_audit(cur, actor.user, list(actor.roles), action, done.target, done.scope, "done", None,
                                done.before, done.after, actor.source_address)
                    if done.commands:
                        if self.broker is None:
                            raise RegistryError("no broker admin is configured (GCC_BROKER_ADMIN_USERNAME, "
                                                "GCC_BROKER_ADMIN_PASSWORD): the device's account could not follow")
                        for name in (c["username"] for c in done.commands if c["command"] == "createClient"):
                            if self.broker.exists(name):   # a service account of ours, or one made by hand
                                raise RegistryError(f"{name!r} is an account the broker has already: choose another id")
                        self.broker.send(done.commands)
                return done
            except (RegistryError, psycopg2.IntegrityError, DynsecError) as exc:
                reason = str(exc).strip().splitlines()[0]
                if isinstance(exc, DynsecError):      # nothing stored: the broker did not take the change
                    reason = f"the broker refused the change: {reason}"
                with conn, conn.cursor() as cur:
                    write_audit(cur, actor.user, list(actor.roles), action, target, None, "refused", reason,
                                source_address=actor.source_address)
                if isinstance(exc, RegistryError):
                    raise
                raise RegistryError(reason) from None
        finally:
            conn.close()

    @staticmethod
    def _one(cur, query: str, args: tuple, missing: str) -> tuple:
        cur.execute(query, args)
        row = cur.fetchone()
        if row is None:
            raise RegistryError(missing)
        return row

    def _grid(self, cur, grid_code: str) -> str:
        return self._one(cur, "select code from grids where code = %s", (grid_code,),
                         f"no grid {grid_code!r}")[0]

    def _member(self, cur, member_id: str) -> tuple:
        row = self._one(cur, "select member_id, name, role, grid_code, terminal_id, retired_at from members "
                             "where member_id = %s for update", (member_id,), f"no member {member_id!r}")
        if row[5] is not None:
            raise RegistryError(f"member {member_id!r} is retired")
        return row

    def _free_device_id(self, cur, device_id: str) -> None:
        cur.execute("select 1 from member_devices where device_id = %s union all select 1 from gateways "
                    "where gateway_id = %s", (device_id, device_id))
        if cur.fetchone():
            raise RegistryError(f"device id {device_id!r} is taken (ids are never reused, retired ones included)")

    # --- members and their devices --------------------------------------------------------------
    def add_member(self, actor: Actor, member_id: str, name: str, role: str, grid_code: str,
                   terminal_id: str) -> Credential:
        """A member with their dedicated terminal, and the terminal's broker account."""
        def change(cur) -> _Change:
            _id(member_id, "member id")
            _id(terminal_id, "terminal id")
            member_name = _text(name, freetext.NAME, "a member's name", required=True)
            role_value = _choice(Role, role, "role").value
            grid = self._grid(cur, grid_code)
            self._free_device_id(cur, terminal_id)
            cur.execute("insert into members (member_id, name, role, grid_code, terminal_id) "
                        "values (%s, %s, %s, %s, %s)",
                        (member_id, member_name, role_value, grid, terminal_id))
            cur.execute("insert into member_devices (device_id, member_id, kind) values (%s, %s, 'terminal')",
                        (terminal_id, member_id))
            password = new_password()
            return _Change(f"member:{member_id}", grid, None,
                           {"name": member_name, "role": role_value, "grid_code": grid, "terminal_id": terminal_id},
                           broker.create(terminal_id, AccountKind.TERMINAL, password, org=grid),
                           Credential(terminal_id, AccountKind.TERMINAL, password))
        return self._apply(actor, AuditAction.REGISTRY_MEMBER_ADD, f"member:{member_id}", change).credential

    def add_device(self, actor: Actor, member_id: str, kind: str, device_id: str, label: str = "") -> Credential:
        """Another device of a member's (a phone with OwnTracks or Traccar Client, a second terminal)."""
        def change(cur) -> _Change:
            device_kind = _choice(MemberDeviceKind, kind, "device kind")
            if device_kind is MemberDeviceKind.HANDHELD:
                raise RegistryError("a handheld (网格通) is enrolled with a one-time code, not added: "
                                    "enrol-handheld, or the Members' phones page")
            _id(device_id, "device id")
            device_label = _text(label, freetext.NAME, "a device's label")
            member = self._member(cur, member_id)
            self._free_device_id(cur, device_id)
            cur.execute("insert into member_devices (device_id, member_id, kind, label) values (%s, %s, %s, %s)",
                        (device_id, member_id, device_kind.value, device_label))
            account, password = ACCOUNT_KINDS[device_kind], new_password()
            return _Change(f"device:{device_id}", member[3], None,
                           {"member_id": member_id, "kind": device_kind.value, "label": device_label},
                           broker.create(device_id, account, password, org=member[3]),
                           Credential(device_id, account, password))
        return self._apply(actor, AuditAction.REGISTRY_DEVICE_ADD, f"device:{device_id}", change).credential

    def change_member(self, actor: Actor, member_id: str, name: str | None = None, role: str | None = None) -> None:
        def change(cur) -> _Change:
            member = self._member(cur, member_id)
            new_name = _text(name, freetext.NAME, "a member's name", required=True) if name is not None else member[1]
            new_role = _choice(Role, role, "role").value if role is not None else member[2]
            cur.execute("update members set name = %s, role = %s where member_id = %s", (new_name, new_role, member_id))
            return _Change(f"member:{member_id}", member[3], {"name": member[1], "role": member[2]},
                           {"name": new_name, "role": new_role})
        self._apply(actor, AuditAction.REGISTRY_MEMBER_CHANGE, f"member:{member_id}", change)

    def move_member(self, actor: Actor, member_id: str, grid_code: str) -> None:
        """To another grid: their terminals read that grid's announcements from now on."""
        def change(cur) -> _Change:
            member = self._member(cur, member_id)
            grid = self._grid(cur, grid_code)
            cur.execute("update members set grid_code = %s where member_id = %s", (grid, member_id))
            cur.execute("select device_id, kind from member_devices where member_id = %s and retired_at is null",
                        (member_id,))
            commands = [c for device_id, kind in cur.fetchall() if kind == MemberDeviceKind.TERMINAL.value
                        for c in broker.set_org(device_id, AccountKind.TERMINAL, grid)]
            return _Change(f"member:{member_id}", grid, {"grid_code": member[3]}, {"grid_code": grid}, commands)
        self._apply(actor, AuditAction.REGISTRY_MEMBER_MOVE, f"member:{member_id}", change)

    def retire_member(self, actor: Actor, member_id: str) -> None:
        """Retired with all their devices: the accounts disabled (a connected one dropped at once)."""
        def change(cur) -> _Change:
            member = self._member(cur, member_id)
            cur.execute("update members set retired_at = now() where member_id = %s", (member_id,))
            cur.execute("update member_devices set retired_at = now() where member_id = %s and retired_at is null "
                        "returning device_id, kind", (member_id,))
            devices = sorted(cur.fetchall())
            handhelds.end_sessions(cur, [d for d, kind in devices if kind == HANDHELD])
            return _Change(f"member:{member_id}", member[3], {"devices": [d for d, _ in devices]}, {"retired": True},
                           _disable(devices))
        self._apply(actor, AuditAction.REGISTRY_MEMBER_RETIRE, f"member:{member_id}", change)

    def retire_device(self, actor: Actor, device_id: str) -> None:
        """A lost or replaced phone or terminal. A member's dedicated terminal is replaced
        (`replace_terminal`), not retired alone: tasks would have nowhere to go."""
        def change(cur) -> _Change:
            member_id, kind, retired = self._one(
                cur, "select member_id, kind, retired_at from member_devices where device_id = %s for update",
                (device_id,), f"no device {device_id!r}")
            if retired is not None:
                raise RegistryError(f"device {device_id!r} is retired already")
            member = self._member(cur, member_id)
            if member[4] == device_id:
                raise RegistryError(f"{device_id!r} is member {member_id!r}'s own terminal: replace it "
                                    "(replace-terminal) or retire the member")
            cur.execute("update member_devices set retired_at = now() where device_id = %s", (device_id,))
            ended = handhelds.end_sessions(cur, [device_id]) if kind == HANDHELD else 0
            return _Change(f"device:{device_id}", member[3], {"member_id": member_id, "kind": kind},
                           {"retired": True, **({"sessions_ended": ended} if kind == HANDHELD else {})},
                           _disable([(device_id, kind)]))
        self._apply(actor, AuditAction.REGISTRY_DEVICE_RETIRE, f"device:{device_id}", change)

    def replace_terminal(self, actor: Actor, member_id: str, terminal_id: str) -> Credential:
        """A member's new dedicated terminal; the old one is retired (its account disabled)."""
        def change(cur) -> _Change:
            _id(terminal_id, "terminal id")
            member = self._member(cur, member_id)
            self._free_device_id(cur, terminal_id)
            old = member[4]
            cur.execute("insert into member_devices (device_id, member_id, kind) values (%s, %s, 'terminal')",
                        (terminal_id, member_id))
            cur.execute("update members set terminal_id = %s where member_id = %s", (terminal_id, member_id))
            cur.execute("update member_devices set retired_at = now() where device_id = %s", (old,))
            password = new_password()
            return _Change(f"member:{member_id}", member[3], {"terminal_id": old}, {"terminal_id": terminal_id},
                           [*broker.create(terminal_id, AccountKind.TERMINAL, password, org=member[3]),
                            *broker.set_disabled(old, True)],
                           Credential(terminal_id, AccountKind.TERMINAL, password))
        replaced = self._apply(actor, AuditAction.REGISTRY_MEMBER_REPLACE_TERMINAL, f"member:{member_id}", change)
        return replaced.credential

    def enrol_handheld(self, actor: Actor, member_id: str, label: str = "") -> Enrolment:
        """A one-time code (24 hours) that binds a phone running the handheld app to the member as
        a new device of kind `handheld` when the phone uses it (handheld.sessions.Sessions.enrol,
        with the PIN the member chooses). Audited as a device added (the code's device named);
        the code is handed back once and stored hashed."""
        def change(cur) -> _Change:
            device_label = _text(label, freetext.NAME, "a device's label")
            member = self._member(cur, member_id)
            enrolment = handhelds.create_enrolment(cur, member_id, device_label, actor.user)
            return _Change(f"device:{enrolment.device_id}", member[3], None,
                           {"member_id": member_id, "kind": HANDHELD, "label": device_label,
                            "enrolment_expires_at": enrolment.expires_at.isoformat()}, None, enrolment)
        return self._apply(actor, AuditAction.REGISTRY_DEVICE_ADD, f"member:{member_id}", change).credential

    # --- credentials ----------------------------------------------------------------------------
    def _account(self, cur, device_id: str) -> tuple[AccountKind | None, str | None]:
        """(the device's account kind, its org unit), for an active device; a handheld's kind is
        None (it has no broker account)."""
        cur.execute("select d.kind, m.grid_code from member_devices d join members m using (member_id) "
                    "where d.device_id = %s and d.retired_at is null and m.retired_at is null", (device_id,))
        row = cur.fetchone()
        if row is not None:
            return ACCOUNT_KINDS.get(MemberDeviceKind(row[0])), row[1]
        cur.execute("select grid_code from gateways where gateway_id = %s and retired_at is null", (device_id,))
        row = cur.fetchone()
        if row is not None:
            return AccountKind.GATEWAY, row[0]
        raise RegistryError(f"no active device or gateway {device_id!r}")

    def rotate(self, actor: Actor, device_id: str) -> Credential:
        """A new password (the old one stops working at once); a revoked account is enabled again."""
        def change(cur) -> _Change:
            kind, scope = self._account(cur, device_id)
            if kind is None:
                raise RegistryError(f"{device_id!r} is a handheld (网格通): it has no password; retire it and "
                                    "enrol the phone again")
            password = new_password()
            return _Change(f"device:{device_id}", scope, None, {"password": "new"},
                           [*broker.set_password(device_id, password), *broker.set_disabled(device_id, False)],
                           Credential(device_id, kind, password))
        return self._apply(actor, AuditAction.REGISTRY_CREDENTIAL_ROTATE, f"device:{device_id}", change).credential

    def revoke(self, actor: Actor, device_id: str) -> None:
        """The account disabled (a stolen phone), the device still registered: `rotate` gives it a
        new password and enables it again. A handheld's credentials are revoked for good and its
        sessions ended (its next request is refused); it is enrolled again, as a new device."""
        def change(cur) -> _Change:
            kind, scope = self._account(cur, device_id)
            if kind is None:
                return _Change(f"device:{device_id}", scope, None,
                               {"revoked": True, "sessions_ended": handhelds.revoke(cur, device_id)})
            return _Change(f"device:{device_id}", scope, None, {"revoked": True},
                           broker.set_disabled(device_id, True))
        self._apply(actor, AuditAction.REGISTRY_CREDENTIAL_REVOKE, f"device:{device_id}", change)

    # --- gateways and sensors -------------------------------------------------------------------
    def _building(self, cur, building_id: str) -> tuple:
        return self._one(cur, "select building_id, grid_code, lon, lat from buildings where building_id = %s",
                         (building_id,), f"no building {building_id!r}")

    def add_gateway(self, actor: Actor, gateway_id: str, kind: str, building_id: str,
                    protocol: str = "senml") -> Credential:
        def change(cur) -> _Change:
            _id(gateway_id, "gateway id")
            gateway_kind = _choice(GatewayKind, kind, "gateway kind").value
            if protocol not in ("senml", "json"):
                raise RegistryError(f"protocol {protocol!r}: senml or json")
            building = self._building(cur, building_id)
            self._free_device_id(cur, gateway_id)
            cur.execute("insert into gateways (gateway_id, kind, building_id, grid_code, protocol) "
                        "values (%s, %s, %s, %s, %s)", (gateway_id, gateway_kind, building_id, building[1], protocol))
            password = new_password()
            return _Change(f"gateway:{gateway_id}", building[1], None,
                           {"kind": gateway_kind, "building_id": building_id, "protocol": protocol},
                           broker.create(gateway_id, AccountKind.GATEWAY, password),
                           Credential(gateway_id, AccountKind.GATEWAY, password))
        return self._apply(actor, AuditAction.REGISTRY_GATEWAY_ADD, f"gateway:{gateway_id}", change).credential

    def _gateway(self, cur, gateway_id: str) -> tuple:
        row = self._one(cur, "select gateway_id, building_id, grid_code, retired_at from gateways "
                             "where gateway_id = %s "
                             "for update", (gateway_id,), f"no gateway {gateway_id!r}")
        if row[3] is not None:
            raise RegistryError(f"gateway {gateway_id!r} is retired")
        return row

    def move_gateway(self, actor: Actor, gateway_id: str, building_id: str) -> None:
        """To another building, with its sensors (a building gateway and its meters move together)."""
        def change(cur) -> _Change:
            gateway = self._gateway(cur, gateway_id)
            building = self._building(cur, building_id)
            cur.execute("update gateways set building_id = %s, grid_code = %s where gateway_id = %s",
                        (building_id, building[1], gateway_id))
            cur.execute("update sensors set building_id = %s, grid_code = %s, lon = %s, lat = %s "
                        "where gateway_id = %s and retired_at is null", (building_id, building[1], building[2],
                                                                         building[3], gateway_id))
            return _Change(f"gateway:{gateway_id}", building[1], {"building_id": gateway[1], "grid_code": gateway[2]},
                           {"building_id": building_id, "grid_code": building[1], "sensors_moved": cur.rowcount})
        self._apply(actor, AuditAction.REGISTRY_GATEWAY_MOVE, f"gateway:{gateway_id}", change)

    def retire_gateway(self, actor: Actor, gateway_id: str) -> None:
        """Retired with its sensors; its account disabled."""
        def change(cur) -> _Change:
            gateway = self._gateway(cur, gateway_id)
            cur.execute("update gateways set retired_at = now() where gateway_id = %s", (gateway_id,))
            cur.execute("update sensors set retired_at = now() where gateway_id = %s and retired_at is null",
                        (gateway_id,))
            return _Change(f"gateway:{gateway_id}", gateway[2], None,
                           {"retired": True, "sensors_retired": cur.rowcount},
                           broker.set_disabled(gateway_id, True))
        self._apply(actor, AuditAction.REGISTRY_GATEWAY_RETIRE, f"gateway:{gateway_id}", change)

    def add_sensor(self, actor: Actor, sensor_id: str, kind: str, gateway_id: str, building_id: str | None = None,
                   lon: float | None = None, lat: float | None = None) -> None:
        """A sensor behind a gateway, named as it reports (e.g. a URN: urn:dev:ow:10e2073a01080063),
        in the gateway's building unless another is named, at the building unless a place is given."""
        def change(cur) -> _Change:
            _id(sensor_id, "sensor id")
            sensor_kind = _choice(DeviceKind, kind, "sensor kind").value
            gateway = self._gateway(cur, gateway_id)
            building = self._building(cur, building_id or gateway[1])
            cur.execute("select 1 from sensors where sensor_id = %s", (sensor_id,))
            if cur.fetchone():
                raise RegistryError(f"sensor id {sensor_id!r} is taken (ids are never reused, retired ones included)")
            place = (lon if lon is not None else building[2], lat if lat is not None else building[3])
            cur.execute("insert into sensors (sensor_id, kind, building_id, gateway_id, grid_code, lon, lat) "
                        "values (%s, %s, %s, %s, %s, %s, %s)",
                        (sensor_id, sensor_kind, building[0], gateway_id, building[1], *place))
            return _Change(f"sensor:{sensor_id}", building[1], None,
                           {"kind": sensor_kind, "gateway_id": gateway_id, "building_id": building[0],
                            "grid_code": building[1]})
        self._apply(actor, AuditAction.REGISTRY_SENSOR_ADD, f"sensor:{sensor_id}", change)

    def move_sensor(self, actor: Actor, sensor_id: str, building_id: str, gateway_id: str | None = None) -> None:
        """To another building (and gateway): its readings land in the new building's grid from now on."""
        def change(cur) -> _Change:
            row = self._one(cur, "select building_id, gateway_id, grid_code, retired_at from sensors "
                                 "where sensor_id = %s for update", (sensor_id,), f"no sensor {sensor_id!r}")
            if row[3] is not None:
                raise RegistryError(f"sensor {sensor_id!r} is retired")
            building = self._building(cur, building_id)
            gateway = self._gateway(cur, gateway_id)[0] if gateway_id else row[1]
            cur.execute("update sensors set building_id = %s, gateway_id = %s, grid_code = %s, lon = %s, lat = %s "
                        "where sensor_id = %s",
                        (building_id, gateway, building[1], building[2], building[3], sensor_id))
            return _Change(f"sensor:{sensor_id}", building[1],
                           {"building_id": row[0], "gateway_id": row[1], "grid_code": row[2]},
                           {"building_id": building_id, "gateway_id": gateway, "grid_code": building[1]})
        self._apply(actor, AuditAction.REGISTRY_SENSOR_MOVE, f"sensor:{sensor_id}", change)

    def retire_sensor(self, actor: Actor, sensor_id: str) -> None:
        def change(cur) -> _Change:
            row = self._one(cur, "select grid_code, retired_at from sensors where sensor_id = %s for update",
                            (sensor_id,), f"no sensor {sensor_id!r}")
            if row[1] is not None:
                raise RegistryError(f"sensor {sensor_id!r} is retired already")
            cur.execute("update sensors set retired_at = now() where sensor_id = %s", (sensor_id,))
            return _Change(f"sensor:{sensor_id}", row[0], None, {"retired": True})
        self._apply(actor, AuditAction.REGISTRY_SENSOR_RETIRE, f"sensor:{sensor_id}", change)

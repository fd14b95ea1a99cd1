"""The grid model: the hierarchy, the grids with their "five elements", devices and members.

A `City` is reference data: it is written to a city file (JSON) by the generator, loaded into
PostgreSQL by `python -m database.citydb load`, and held in memory by the ingest workers and the
simulator. Geometry is WGS 84 longitude/latitude (GeoJSON order).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, fields
from datetime import timedelta, timezone
from enum import Enum
from functools import cached_property
from pathlib import Path

import orjson
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from core.catalogue import DeviceKind
from core.orgcodes import Level, parent_of
from core.roles import Role

FORMAT_VERSION = 1
# The reference tables whose change moves boundaries: a holder of a grid index builds it anew
# (database.citydb.CityWatch names the changed tables).
BOUNDARY_TABLES = frozenset({"org_units", "grids"})
CITY_TZ = timezone(timedelta(hours=8))  # China Standard Time: the demo city's local day and night


class GridKind(str, Enum):
    RESIDENTIAL = "residential"  # 250-500 households
    UNIT = "unit"                # a large non-residential site: campus, market, factory


class GatewayKind(str, Enum):
    BUILDING_GATEWAY = "building_gateway"        # meters and gas detectors of one building
    ELEVATOR_CONTROLLER = "elevator_controller"  # the elevators of one building


@dataclass(frozen=True)
class OrgUnit:
    """A district, street or community."""
    code: str
    name: str
    level: Level
    boundary: BaseGeometry


@dataclass(frozen=True)
class Grid:
    code: str
    name: str
    kind: GridKind
    households: int
    population: int
    boundary: BaseGeometry

    @property
    def community_code(self) -> str:
        return parent_of(self.code)


@dataclass(frozen=True)
class Building:
    building_id: str
    grid_code: str
    name: str
    lon: float
    lat: float
    floors: int
    households: int


@dataclass(frozen=True)
class Unit:
    """A shop, restaurant, school, clinic, factory ... (a "place" of the five elements)."""
    unit_id: str
    grid_code: str
    name: str
    kind: str
    lon: float
    lat: float


@dataclass(frozen=True)
class Organization:
    org_id: str
    grid_code: str
    name: str
    kind: str  # property_company, residents_committee, volunteer_group, ...


@dataclass(frozen=True)
class Gateway:
    gateway_id: str
    kind: GatewayKind
    building_id: str
    grid_code: str
    protocol: str  # "senml" or "json": what it publishes


@dataclass(frozen=True)
class Sensor:
    sensor_id: str
    kind: DeviceKind
    building_id: str
    gateway_id: str
    grid_code: str
    lon: float
    lat: float


@dataclass(frozen=True)
class Member:
    member_id: str
    name: str
    role: Role
    grid_code: str
    terminal_id: str   # the dedicated terminal: the one tasks and case notices go to


class MemberDeviceKind(str, Enum):
    TERMINAL = "terminal"      # a handheld terminal speaking our JSON over MQTT
    OWNTRACKS = "owntracks"    # a phone running the OwnTracks app (MQTT or HTTP mode)
    OSMAND = "osmand"          # a phone running Traccar Client (the OsmAnd protocol over HTTP)
    HANDHELD = "handheld"      # a phone running our app (网格通) over HTTPS: no broker account (handheld/)


@dataclass(frozen=True)
class MemberDevice:
    """One of a member's devices: the dedicated terminal, or a phone; its id is what it reports as
    (broker username, OwnTracks user, OsmAnd id)."""
    device_id: str
    member_id: str
    kind: MemberDeviceKind
    label: str = ""


@dataclass
class City:
    name: str
    seed: int
    districts: list[OrgUnit] = field(default_factory=list)
    streets: list[OrgUnit] = field(default_factory=list)
    communities: list[OrgUnit] = field(default_factory=list)
    grids: list[Grid] = field(default_factory=list)
    buildings: list[Building] = field(default_factory=list)
    units: list[Unit] = field(default_factory=list)
    organizations: list[Organization] = field(default_factory=list)
    gateways: list[Gateway] = field(default_factory=list)
    sensors: list[Sensor] = field(default_factory=list)
    members: list[Member] = field(default_factory=list)
    devices: list[MemberDevice] = field(default_factory=list)   # beyond each member's own terminal
    retired: dict[str, str] = field(default_factory=dict)       # a retired device's id -> what it was

    # --- look-ups -------------------------------------------------------------------------------
    @cached_property
    def grid_by_code(self) -> dict[str, Grid]:
        return {g.code: g for g in self.grids}

    @cached_property
    def org_by_code(self) -> dict[str, OrgUnit]:
        return {o.code: o for o in [*self.districts, *self.streets, *self.communities]}

    @cached_property
    def member_by_terminal(self) -> dict[str, Member]:
        """Every device a member reports with (their terminal and their phones) -> the member."""
        members = {m.member_id: m for m in self.members}
        return {**{d.device_id: members[d.member_id] for d in self.devices if d.member_id in members},
                **{m.terminal_id: m for m in self.members}}

    @cached_property
    def sensor_by_id(self) -> dict[str, Sensor]:
        return {s.sensor_id: s for s in self.sensors}

    @cached_property
    def gateway_by_id(self) -> dict[str, Gateway]:
        return {g.gateway_id: g for g in self.gateways}

    @cached_property
    def building_by_id(self) -> dict[str, Building]:
        return {b.building_id: b for b in self.buildings}

    def org_name(self, code: str) -> str:
        if code in self.grid_by_code:
            return self.grid_by_code[code].name
        return self.org_by_code[code].name

    # --- file form ------------------------------------------------------------------------------
    def to_json(self) -> bytes:
        return orjson.dumps({"format": FORMAT_VERSION, **{f.name: _encode(getattr(self, f.name))
                                                         for f in fields(self)}})

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(self.to_json())
        tmp.replace(path)

    @classmethod
    def from_json(cls, data: bytes) -> City:
        raw = orjson.loads(data)
        if raw.get("format") != FORMAT_VERSION:
            raise ValueError(f"city file format {raw.get('format')!r}, expected {FORMAT_VERSION}")
        org = lambda d: OrgUnit(d["code"], d["name"], Level(d["level"]), shape(d["boundary"]))  # noqa: E731
        return cls(
            name=raw["name"], seed=raw["seed"], districts=[org(d) for d in raw["districts"]],
            streets=[org(d) for d in raw["streets"]],
            communities=[org(d) for d in raw["communities"]],
            grids=[Grid(d["code"], d["name"], GridKind(d["kind"]), d["households"], d["population"],
                        shape(d["boundary"])) for d in raw["grids"]],
            buildings=[Building(**d) for d in raw["buildings"]],
            units=[Unit(**d) for d in raw["units"]],
            organizations=[Organization(**d) for d in raw["organizations"]],
            gateways=[Gateway(**{**d, "kind": GatewayKind(d["kind"])}) for d in raw["gateways"]],
            sensors=[Sensor(**{**d, "kind": DeviceKind(d["kind"])}) for d in raw["sensors"]],
            members=[Member(**{**d, "role": Role(d["role"])}) for d in raw["members"]],
            devices=[MemberDevice(**{**d, "kind": MemberDeviceKind(d["kind"])}) for d in raw.get("devices", [])],
            retired=dict(raw.get("retired", {})),
        )

    def adopt(self, other: City) -> None:
        """Take `other`'s reference data in place (a registry change, read again from the database),
        for the holders of this object in a running process. The lists are swapped first, then the
        cached look-ups dropped, each under its descriptor's lock where Python has one (3.11): a
        look-up being computed from the old lists meanwhile is dropped after it is stored."""
        for f in fields(self):
            setattr(self, f.name, getattr(other, f.name))
        for name, attribute in vars(City).items():
            if isinstance(attribute, cached_property):
                with getattr(attribute, "lock", contextlib.nullcontext()):
                    self.__dict__.pop(name, None)

    @classmethod
    def load(cls, path: Path) -> City:
        return cls.from_json(path.read_bytes())


def _encode(value):
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, BaseGeometry):
        return mapping(value)
    if hasattr(value, "__dataclass_fields__"):
        return {k: _encode(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, Enum):
        return value.value
    return value

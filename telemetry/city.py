"""The grid model: the hierarchy, the grids with their "five elements", devices and members.

A `City` is reference data: it is written to a city file (JSON) by the generator, loaded into
PostgreSQL by `python -m database.citydb load`, and held in memory by the ingest workers and the
simulator. Geometry is WGS 84 longitude/latitude (GeoJSON order).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import timedelta, timezone
from enum import Enum
from functools import cached_property
from pathlib import Path

import orjson
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from telemetry.catalogue import DeviceKind, Role  # noqa: F401 - Role: a member's role, part of the model
from telemetry.orgcodes import Level, parent_of

FORMAT_VERSION = 1
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
    terminal_id: str


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

    # --- look-ups -------------------------------------------------------------------------------
    @cached_property
    def grid_by_code(self) -> dict[str, Grid]:
        return {g.code: g for g in self.grids}

    @cached_property
    def org_by_code(self) -> dict[str, OrgUnit]:
        return {o.code: o for o in [*self.districts, *self.streets, *self.communities]}

    @cached_property
    def member_by_terminal(self) -> dict[str, Member]:
        return {m.terminal_id: m for m in self.members}

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
        )

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

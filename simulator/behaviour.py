"""How simulated members and devices behave: pure state machines, no I/O.

Each model is advanced by `step(dt, hour)` (dt in simulated seconds, hour = local hour of day) and
says what it would report. Randomness comes from the `random.Random` handed in, so a seeded run
repeats itself. A member's case work is in simulator/cases.py.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from shapely.geometry import Point, Polygon

from core.catalogue import AlarmType

METRES_PER_DEGREE_LAT = 111_320.0


def metres_to_degrees(lat: float, east_m: float, north_m: float) -> tuple[float, float]:
    return (east_m / (METRES_PER_DEGREE_LAT * math.cos(math.radians(lat))),
            north_m / METRES_PER_DEGREE_LAT)


def _point_in(poly: Polygon, rng: random.Random) -> tuple[float, float]:
    minx, miny, maxx, maxy = poly.bounds
    while True:
        x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        if poly.contains(Point(x, y)):
            return x, y


# --- members ---------------------------------------------------------------------------------------
@dataclass
class Patrol:
    """A member walking their grid: straight legs between random points inside the grid, with
    pauses. Grids are convex, so every leg stays inside. A task overrides the patrol: the member
    walks to the task's place (wherever it is), then resumes."""

    area: Polygon
    rng: random.Random
    lon: float = 0.0
    lat: float = 0.0
    speed_mps: float = 1.2
    battery_pct: float = 100.0
    pause_s: float = 0.0
    target: tuple[float, float] | None = None
    task_target: tuple[float, float] | None = None
    heading_deg: float = 0.0
    moving: bool = False

    def __post_init__(self) -> None:
        if not self.lon:
            self.lon, self.lat = _point_in(self.area, self.rng)
        self.speed_mps = self.rng.uniform(0.9, 1.5)
        self.battery_pct = self.rng.uniform(55, 100)

    def go_to(self, lon: float, lat: float) -> None:
        self.task_target = (lon, lat)
        self.pause_s = 0.0

    @property
    def arrived_at_task(self) -> bool:
        return self.task_target is not None and self.target is None and self.pause_s <= 0 \
            and (self.lon, self.lat) == self.task_target

    def step(self, dt: float) -> None:
        self.battery_pct = max(0.0, self.battery_pct - dt * 8.0 / 3600)  # ~8 % an hour
        if self.pause_s > 0:
            self.pause_s -= dt
            self.moving = False
            return
        if self.task_target is not None:
            self.target = self.task_target
        elif self.target is None:
            self.target = _point_in(self.area, self.rng)
        self._walk(dt)

    def _walk(self, dt: float) -> None:
        tx, ty = self.target
        east = (tx - self.lon) * METRES_PER_DEGREE_LAT * math.cos(math.radians(self.lat))
        north = (ty - self.lat) * METRES_PER_DEGREE_LAT
        remaining = math.hypot(east, north)
        reach = self.speed_mps * dt
        self.moving = True
        if remaining > 1e-9:
            self.heading_deg = math.degrees(math.atan2(east, north)) % 360
        if reach >= remaining:
            self.lon, self.lat = tx, ty
            self.target = None
            if self.task_target is None:
                self.pause_s = self.rng.expovariate(1 / 90)  # looks around, talks to residents
            return
        frac = reach / remaining
        self.lon += (tx - self.lon) * frac
        self.lat += (ty - self.lat) * frac

    def finish_task(self) -> None:
        self.task_target = None
        self.pause_s = 0.0

    def noisy_fix(self) -> tuple[float, float, float]:
        """(lon, lat, accuracy_m) as a phone's GPS reports it: metres of error, reported accuracy."""
        accuracy = self.rng.choice((4.0, 5.0, 8.0, 12.0, 20.0))
        d_lon, d_lat = metres_to_degrees(self.lat, self.rng.gauss(0, accuracy / 2), self.rng.gauss(0, accuracy / 2))
        return self.lon + d_lon, self.lat + d_lat, accuracy


# --- devices ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AlarmEvent:
    alarm_type: AlarmType
    state: str               # "raised" or "cleared"
    value: float | None = None


@dataclass
class GasDetector:
    """Combustible gas in %LEL: near zero, now and then a leak ramps past the alarm threshold."""
    rng: random.Random
    fault_rate: float = 1.0
    lel: float = 0.0
    ramp_per_s: float = 0.0
    alarm: bool = False
    THRESHOLD = 20.0
    CLEAR = 8.0

    def step(self, dt: float) -> list[AlarmEvent]:
        if self.ramp_per_s == 0 and self.rng.random() < dt * self.fault_rate * 0.002 / 3600:
            self.ramp_per_s = self.rng.uniform(0.05, 0.4)     # a leak starts
        if self.ramp_per_s > 0:
            self.lel += self.ramp_per_s * dt
            if self.lel > self.rng.uniform(30, 60):           # ventilated / valve shut
                self.ramp_per_s = -0.3
        elif self.ramp_per_s < 0:
            self.lel = max(0.0, self.lel + self.ramp_per_s * dt)
            if self.lel <= 0.5:
                self.ramp_per_s = 0.0
        else:
            self.lel = max(0.0, 0.6 * self.lel + 0.4 * self.rng.uniform(0, 1.5))
        events = []
        if not self.alarm and self.lel >= self.THRESHOLD:
            self.alarm = True
            events.append(AlarmEvent(AlarmType.GAS_OVER_THRESHOLD, "raised", round(self.lel, 1)))
        elif self.alarm and self.lel < self.CLEAR:
            self.alarm = False
            events.append(AlarmEvent(AlarmType.GAS_OVER_THRESHOLD, "cleared", round(self.lel, 1)))
        return events


@dataclass
class Elevator:
    """A lift between floors; door faults and people trapped between floors."""
    rng: random.Random
    floors: int
    fault_rate: float = 1.0
    floor: int = 1
    running: bool = False
    door_open: bool = False
    occupied: bool = False
    trapped_s: float = 0.0
    door_fault_s: float = 0.0

    def step(self, dt: float) -> list[AlarmEvent]:
        events: list[AlarmEvent] = []
        if self.trapped_s > 0:
            self.trapped_s -= dt
            if self.trapped_s <= 0:                          # rescued
                self.running, self.occupied = False, False
                events.append(AlarmEvent(AlarmType.ELEVATOR_ENTRAPMENT, "cleared"))
            return events
        if self.door_fault_s > 0:
            self.door_fault_s -= dt
            if self.door_fault_s <= 0:
                self.door_open = False
                events.append(AlarmEvent(AlarmType.ELEVATOR_DOOR_FAULT, "cleared"))
            return events
        rate = dt * self.fault_rate / 3600
        if self.rng.random() < rate * 0.002:
            self.running, self.occupied, self.door_open = False, True, False
            self.trapped_s = self.rng.uniform(600, 2400)
            return [AlarmEvent(AlarmType.ELEVATOR_ENTRAPMENT, "raised", float(self.floor))]
        if self.rng.random() < rate * 0.005:
            self.door_open, self.running = True, False
            self.door_fault_s = self.rng.uniform(900, 3600)
            return [AlarmEvent(AlarmType.ELEVATOR_DOOR_FAULT, "raised", float(self.floor))]
        self.running = self.rng.random() < 0.4
        self.occupied = self.running and self.rng.random() < 0.8
        self.door_open = not self.running and self.rng.random() < 0.3
        if self.running:
            self.floor = self.rng.randint(1, self.floors)
        return events


@dataclass
class Meter:
    """A water or gas meter (m3) or an electricity meter (kWh): a daily use profile, night-time
    leaks that never stop flowing, and spikes. The meter flags both itself, as smart meters do."""
    rng: random.Random
    daily_use: float
    fault_rate: float = 1.0
    total: float = field(default=0.0)
    leak_rate: float = 0.0          # units per hour, while leaking
    night_flow_h: float = 0.0
    leak_alarm: bool = False
    spike_open: bool = False

    def __post_init__(self) -> None:
        self.total = round(self.rng.uniform(100, 5000), 3)

    def step(self, dt: float, hour: float) -> tuple[float, list[AlarmEvent]]:
        """Advance; return (current rate per hour, alarm events)."""
        profile = 0.2 + 1.6 * math.exp(-((hour - 8) ** 2) / 4) + 1.8 * math.exp(-((hour - 19.5) ** 2) / 5)
        rate = self.daily_use / 24 * profile * self.rng.uniform(0.7, 1.3)
        night = hour < 5
        if night:
            rate *= 0.05
        events: list[AlarmEvent] = []
        if self.leak_rate == 0 and self.rng.random() < dt * self.fault_rate * 0.003 / 3600:
            self.leak_rate = self.daily_use / 24 * self.rng.uniform(0.1, 0.5)
        if self.leak_rate and self.rng.random() < dt / (3600 * 8):
            self.leak_rate = 0.0                               # repaired
        rate += self.leak_rate
        self.night_flow_h = self.night_flow_h + dt / 3600 if (night and self.leak_rate) else (
            self.night_flow_h if night else 0.0)
        if not self.leak_alarm and self.night_flow_h >= 2.0:
            self.leak_alarm = True
            events.append(AlarmEvent(AlarmType.METER_CONTINUOUS_FLOW, "raised", round(self.leak_rate, 4)))
        elif self.leak_alarm and self.leak_rate == 0:
            self.leak_alarm = False
            events.append(AlarmEvent(AlarmType.METER_CONTINUOUS_FLOW, "cleared"))
        if self.spike_open:
            self.spike_open = False
            events.append(AlarmEvent(AlarmType.METER_SPIKE, "cleared"))
        elif self.rng.random() < dt * self.fault_rate * 0.005 / 3600:
            self.spike_open = True
            spike = rate * self.rng.uniform(8, 20)
            events.append(AlarmEvent(AlarmType.METER_SPIKE, "raised", round(spike, 4)))
            rate = spike
        self.total = round(self.total + rate * dt / 3600, 4)
        return rate, events

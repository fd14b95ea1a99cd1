"""Simulated terminals and gateways: behaviour (behaviour.py) plus what and when they publish.

A device is handed a `send(topic, payload) -> bool` function, so the same code drives a real MQTT
connection in the simulator and a plain list in the tests.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from core.catalogue import ALARM_DEFAULT_SEVERITY, DEVICE_QUANTITIES, INCIDENT_CATEGORIES, DeviceKind
from core.city import CITY_TZ, Building, Gateway, Grid, Member, Sensor
from core.orgcodes import ancestors
from core.roles import Role
from simulator import payloads
from simulator.behaviour import AlarmEvent, Elevator, GasDetector, Meter, Patrol
from simulator.cases import BUSY_WITH_CASE, CaseAnswer, CaseWork
from telemetry.notices import Announcement
from telemetry.topics import NOTICE, TASK, org_topic, terminal_topic

CHECK_NOTES = {"confirmed": "现场核实：情况属实", "false_alarm": "现场核实：误报，已排除",
               "need_help": "现场情况紧急，需要支援"}

Send = Callable[[str, bytes], bool]


@dataclass(frozen=True)
class SimConfig:
    speedup: float = 1.0
    fix_interval_s: float = 5.0           # simulated seconds between GPS fixes
    gateway_interval_s: float = 30.0      # gas detectors and due meters, per building gateway
    elevator_interval_s: float = 10.0
    meter_interval_s: float = 900.0
    incidents_per_member_hour: float = 0.3
    offline_per_terminal_hour: float = 0.05
    fault_rate: float = 1.0               # multiplies every device fault rate
    malformed: float = 0.0                # fraction of publications replaced by malformed ones
    task_reject_fraction: float = 0.05
    # cases (simulator.cases.CaseWork): answers are timed as shares of the time left to the notice's deadline
    case_reject_fraction: float = 0.03     # dispatches rejected (not for this grid, needs specialists)
    case_silent_fraction: float = 0.05     # dispatches never answered (the offer expires)
    case_extension_fraction: float = 0.1   # handled cases with one extension asked on site
    case_late_fraction: float = 0.15       # handled cases fed back at 110-160 % of the time left
    verify_fail_fraction: float = 0.2      # verifications failed (rework) by a grid supervisor
    announcement_unread_fraction: float = 0.08   # announcements a member never opens
    announcement_read_mean_s: float = 600.0      # simulated seconds until a member reads one (exponential)
    diary_per_member_hour: float = 0.25          # people's-feelings diary entries (民情日记) a member writes
    case_no_deadline_s: float = 1800.0     # simulated seconds to plan for when a notice has no deadline


def local_hour(now: datetime) -> float:
    t = now.astimezone(CITY_TZ)
    return t.hour + t.minute / 60


class TerminalSim:
    """A grid member's handheld terminal: patrols, reports incidents, handles dispatcher tasks and
    plays its member's part in cases (simulator.cases.CaseWork). One job at a time: a terminal on a task
    rejects a dispatched case, one on a case rejects a task; see CaseWork for queued case work."""

    def __init__(self, member: Member, grid: Grid, cfg: SimConfig, rng: random.Random, send: Send,
                 addresses: list[str], malformed_gateway: str = "GW-unknown") -> None:
        self.member = member
        self.terminal_id = member.terminal_id
        self.cfg = cfg
        self.rng = rng
        self.send = send
        self.addresses = addresses or [grid.name]
        self.patrol = Patrol(grid.boundary, rng)
        self.until_fix = rng.uniform(0, cfg.fix_interval_s)
        self.reports = 0
        self.task: dict | None = None
        self.offline_for_s = 0.0
        self.connection = None  # set by the simulator that owns this terminal
        self.malformed_gateway = malformed_gateway
        self.cases = CaseWork(self.terminal_id, self.patrol, rng, verifier=member.role is Role.GRID_SUPERVISOR,
                              reject_fraction=cfg.case_reject_fraction,
                              extension_fraction=cfg.case_extension_fraction, late_fraction=cfg.case_late_fraction,
                              verify_fail_fraction=cfg.verify_fail_fraction, no_deadline_s=cfg.case_no_deadline_s,
                              speedup=cfg.speedup, silent_fraction=cfg.case_silent_fraction)
        self._notice_topic = terminal_topic(self.terminal_id, NOTICE)
        self._task_topic = terminal_topic(self.terminal_id, TASK)
        self.announcement_topics = tuple(org_topic(code) for code in ancestors(member.grid_code))
        self.to_read: dict[int, float] = {}    # announcement id -> simulated seconds until it is read
        self.seen: set[int] = set()            # delivered at least once: a repeat is not read twice
        self.checks: list[list] = []           # [simulated seconds until answered, what was asked to check]
        self.checks_seen: set[int] = set()     # check notices' ids: a repeat is not checked twice

    # --- publishing -----------------------------------------------------------------------------
    def _publish(self, publication: payloads.Publication, now: datetime) -> None:
        if self.cfg.malformed and self.rng.random() < self.cfg.malformed:
            kind = self.rng.choice(payloads.MALFORMED_KINDS)
            publication = payloads.malformed(kind, self.terminal_id, self.malformed_gateway, now, self.rng)
        self.send(*publication)

    def publish_status(self, now: datetime, state: str = "online") -> None:
        self.send(*payloads.status(self.terminal_id, now, state, round(self.patrol.battery_pct)))

    def will(self, now: datetime) -> payloads.Publication:
        """The last will, set at connect: marked as one, so the ingest times it when it arrives."""
        return payloads.status(self.terminal_id, now, "offline", will=True)

    # --- behaviour ------------------------------------------------------------------------------
    def wants_to_go_offline(self, dt: float) -> bool:
        """Now and then a terminal dies (battery, no signal) for a while; its last will tells."""
        return self.task is None and self.rng.random() < dt * self.cfg.offline_per_terminal_hour / 3600

    def drop(self, seconds: float) -> None:
        """Lose the connection for `seconds` (simulated) without saying goodbye."""
        self.offline_for_s = seconds
        self.connection.go_offline_with_will()

    def step(self, now: datetime, dt: float) -> None:
        self.patrol.step(dt)
        self._advance_task(now, dt)
        self._answer_cases(self.cases.step(now, free=self.task is None), now)
        self._read_announcements(now, dt)
        self._answer_checks(now, dt)
        self.until_fix -= dt
        if self.until_fix <= 0:
            self.until_fix += self.cfg.fix_interval_s * self.rng.uniform(0.9, 1.1)
            lon, lat, acc = self.patrol.noisy_fix()
            self._publish(payloads.fix(self.terminal_id, now, lon, lat, acc,
                                       self.patrol.speed_mps if self.patrol.moving else 0.0,
                                       self.patrol.heading_deg, round(self.patrol.battery_pct)), now)
        if self.rng.random() < dt * self.cfg.incidents_per_member_hour / 3600:
            self._report_incident(now)
        if self.rng.random() < dt * self.cfg.diary_per_member_hour / 3600:
            self.reports += 1
            category = self.rng.choice(list(payloads.DIARY_NOTES))
            self._publish(payloads.diary_entry(self.terminal_id, now, f"{self.terminal_id}-d{self.reports}", category,
                                               payloads.DIARY_NOTES[category]), now)

    def _report_incident(self, now: datetime) -> None:
        category = self.rng.choice(list(INCIDENT_CATEGORIES.values()))
        severity = max(1, min(4, category.default_severity + self.rng.choice((-1, 0, 0, 0, 1))))
        self.reports += 1
        report_id = f"{self.terminal_id}-{int(now.timestamp())}-{self.reports}"
        photo = f"photos/{now:%Y/%m/%d}/{report_id}.jpg" if self.rng.random() < 0.8 else None
        self._publish(payloads.incident(
            self.terminal_id, now, report_id, category.code, int(severity), self.patrol.lon,
            self.patrol.lat, self.rng.choice(self.addresses),
            f"{category.name_en} ({category.name_zh}) found on patrol", photo), now)

    # --- what the command center sends ---------------------------------------------------------------
    def on_downlink(self, topic: str, payload: bytes, now: datetime) -> None:
        """A message on one of the terminal's subscriptions (its task and notice topics)."""
        if topic == self._notice_topic:
            self.on_notice(payload, now)
        elif topic == self._task_topic:
            self.on_task(payload, now)
        elif topic in self.announcement_topics:
            self.on_announcement(payload)

    def on_announcement(self, payload: bytes) -> None:
        """An announcement: most members read it some minutes later; a repeat delivery is ignored."""
        try:
            announcement_id = Announcement.parse(payload).announcement_id
        except (ValueError, KeyError, TypeError):
            return
        if announcement_id in self.seen:
            return
        self.seen.add(announcement_id)
        if self.rng.random() >= self.cfg.announcement_unread_fraction:
            self.to_read[announcement_id] = self.rng.expovariate(1 / self.cfg.announcement_read_mean_s)

    def _read_announcements(self, now: datetime, dt: float) -> None:
        for announcement_id in list(self.to_read):
            self.to_read[announcement_id] -= dt
            if self.to_read[announcement_id] <= 0:
                del self.to_read[announcement_id]
                self.send(*payloads.announcement_read(self.terminal_id, now, announcement_id))

    def on_notice(self, payload: bytes, now: datetime) -> None:
        """A case notice; unreadable and duplicate ones are ignored and counted (self.cases). A
        `check` (紧急核实) is answered on alarm/check once the member has had time to get there."""
        self._plan_check(payload)
        self._answer_cases(self.cases.receive(payload, now, free=self.task is None), now)

    def _plan_check(self, payload: bytes) -> None:
        try:
            notice = orjson.loads(payload)
            if notice.get("kind") != "check" or notice.get("notice_id") in self.checks_seen:
                return
            self.checks_seen.add(notice["notice_id"])
            check = {"case_id": str(notice["case_id"]), "sensor_id": notice.get("sensor_id"),
                     "alarm_id": notice.get("alarm_id")}
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            return      # what it cannot read, CaseWork counts as unreadable
        self.checks.append([self.rng.uniform(60, 600), check])     # simulated seconds to get there and look

    def _answer_checks(self, now: datetime, dt: float) -> None:
        for due in list(self.checks):
            due[0] -= dt
            if due[0] <= 0:
                self.checks.remove(due)
                outcome = self.rng.choices(("confirmed", "false_alarm", "need_help"), (6, 3, 1))[0]
                self.send(*payloads.publication("alarm_check", self.terminal_id, now, outcome=outcome,
                                                note=CHECK_NOTES[outcome], **due[1]))

    def _answer_cases(self, answers: list[CaseAnswer], now: datetime) -> None:
        for a in answers:
            self.send(*payloads.case_update(self.terminal_id, now, a.case_id, a.action, a.note, a.reason,
                                            a.photo_refs, a.extension))

    # --- tasks from the dispatcher ---------------------------------------------------------------
    def on_task(self, payload: bytes, now: datetime) -> None:
        try:
            task = orjson.loads(payload)
            task_id, lon, lat = str(task["task_id"]), float(task["lon"]), float(task["lat"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return  # a terminal ignores what it cannot read; the dispatcher times out and moves on
        if self.task is not None or self.cases.busy or self.rng.random() < self.cfg.task_reject_fraction:
            why = "busy with another task" if self.task else BUSY_WITH_CASE if self.cases.busy else "cannot go now"
            self.send(*payloads.task_ack(self.terminal_id, now, task_id, "rejected", why))
            return
        self.task = {"id": task_id, "phase": "accepting", "wait": self.rng.uniform(5, 40),
                     "place": (lon, lat)}

    def _advance_task(self, now: datetime, dt: float) -> None:
        task = self.task
        if task is None:
            return
        task["wait"] -= dt
        if task["phase"] == "accepting" and task["wait"] <= 0:
            self.send(*payloads.task_ack(self.terminal_id, now, task["id"], "accepted"))
            self.patrol.go_to(*task["place"])
            task["phase"] = "walking"
        elif task["phase"] == "walking" and self.patrol.arrived_at_task:
            self.send(*payloads.task_ack(self.terminal_id, now, task["id"], "arrived"))
            task["phase"], task["wait"] = "handling", self.rng.uniform(300, 1200)
        elif task["phase"] == "handling" and task["wait"] <= 0:
            self.send(*payloads.task_ack(self.terminal_id, now, task["id"], "done", "handled on site"))
            self.patrol.finish_task()
            self.task = None


@dataclass
class _Device:
    sensor: Sensor
    model: GasDetector | Elevator | Meter
    until_meter: float = 0.0
    alarms: dict = field(default_factory=dict)  # alarm type -> open alarm id


class GatewaySim:
    """A building gateway (meters, gas detectors; SenML or JSON) or an elevator controller (JSON)."""

    def __init__(self, gateway: Gateway, building: Building, sensors: list[Sensor], cfg: SimConfig,
                 rng: random.Random, send: Send) -> None:
        self.gateway = gateway
        self.cfg = cfg
        self.rng = rng
        self.send = send
        self.devices = [_Device(s, self._model(s, building), rng.uniform(0, cfg.meter_interval_s))
                        for s in sensors]
        is_elevator = any(s.kind is DeviceKind.ELEVATOR for s in sensors)
        self.interval = cfg.elevator_interval_s if is_elevator else cfg.gateway_interval_s
        self.until_report = rng.uniform(0, self.interval)
        self.elapsed = 0.0
        self.alarm_seq = 0
        self.connection = None  # set by the simulator that owns this gateway

    def will(self, now: datetime) -> payloads.Publication:
        """The last will, set at connect: marked as one, so the ingest times it when it arrives."""
        return payloads.gateway_status(self.gateway.gateway_id, now, "offline", will=True)

    def _model(self, sensor: Sensor, building: Building):
        fr = self.cfg.fault_rate
        if sensor.kind is DeviceKind.ELEVATOR:
            return Elevator(self.rng, building.floors, fr)
        if sensor.kind is DeviceKind.GAS_DETECTOR:
            return GasDetector(self.rng, fr)
        daily = {DeviceKind.WATER_METER: 0.3, DeviceKind.GAS_METER: 0.8,
                 DeviceKind.ELECTRICITY_METER: 8.0}[sensor.kind]
        # the first meter of each kind measures the whole building; the others one household
        scale = max(1, building.households) if sensor.sensor_id.endswith("M1") else 1
        return Meter(self.rng, daily * scale, fr)

    def step(self, now: datetime, dt: float) -> None:
        self.elapsed += dt
        self.until_report -= dt
        if self.until_report > 0:
            return
        self.until_report += self.interval
        elapsed, self.elapsed = self.elapsed, 0.0
        readings, hour = [], local_hour(now)
        for device in self.devices:
            readings += self._read(device, now, elapsed, hour)
        if readings:
            encode = payloads.readings_senml if self.gateway.protocol == "senml" else payloads.readings_json
            publication = encode(self.gateway.gateway_id, now, readings)
            if self.cfg.malformed and self.rng.random() < self.cfg.malformed and self.gateway.protocol == "senml":
                kind = self.rng.choice(("senml_without_name", "senml_bad_version"))
                publication = payloads.malformed(kind, "T-unknown", self.gateway.gateway_id, now, self.rng)
            self.send(*publication)

    def _read(self, device: _Device, now: datetime, dt: float, hour: float) -> list:
        model, sid = device.model, device.sensor.sensor_id
        units = DEVICE_QUANTITIES[device.sensor.kind]
        if isinstance(model, Meter):
            rate, events = model.step(dt, hour)
            self._alarms(device, events, now)
            device.until_meter -= dt
            if device.until_meter > 0:
                return []
            device.until_meter += self.cfg.meter_interval_s
            quantity = "energy" if device.sensor.kind is DeviceKind.ELECTRICITY_METER else "volume"
            rate_name = "power" if quantity == "energy" else "flow"
            rate_value = rate * 1000 if quantity == "energy" else rate / 3600
            return [(sid, quantity, model.total, units[quantity]),
                    (sid, rate_name, round(rate_value, 6), units[rate_name])]
        events = model.step(dt)
        self._alarms(device, events, now)
        if isinstance(model, GasDetector):
            return [(sid, "gas_lel", round(model.lel, 1), units["gas_lel"])]
        return [(sid, "door_open", model.door_open, None), (sid, "floor", float(model.floor), None),
                (sid, "running", model.running, None), (sid, "occupied", model.occupied, None)]

    def _alarms(self, device: _Device, events: list[AlarmEvent], now: datetime) -> None:
        for event in events:
            if event.state == "raised":
                self.alarm_seq += 1
                alarm_id = f"{device.sensor.sensor_id}-{int(now.timestamp())}-{self.alarm_seq}"
                device.alarms[event.alarm_type] = alarm_id
            else:
                alarm_id = device.alarms.pop(event.alarm_type, None)
                if alarm_id is None:
                    continue
            self.send(*payloads.alarm(self.gateway.gateway_id, now, alarm_id, device.sensor.sensor_id,
                                      event.alarm_type.value, int(ALARM_DEFAULT_SEVERITY[event.alarm_type]),
                                      event.state, event.value))

"""The catalogues shared by terminals, sensors, the case workflow and the screens.

Incident categories follow the digital urban-management standard's split into **components**
(部件: public facilities) and **events** (事件). Each has a handling time limit, from local standards
(e.g. exposed garbage 1 working day, dirty road 5 working hours, illegal construction 15 working
days); the case workflow uses them to decide what is overdue and escalates it.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum


class Severity(IntEnum):
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4


class CategoryKind(str, Enum):
    COMPONENT = "component"  # 部件
    EVENT = "event"          # 事件


@dataclass(frozen=True)
class IncidentCategory:
    code: str
    kind: CategoryKind
    name_en: str
    name_zh: str
    time_limit_hours: float   # from registration to closure
    default_severity: Severity


_CATEGORIES = [
    IncidentCategory("exposed_garbage", CategoryKind.EVENT, "Exposed garbage", "暴露垃圾", 24, Severity.LOW),
    IncidentCategory("dirty_road", CategoryKind.EVENT, "Dirty road surface", "道路不洁", 5, Severity.LOW),
    IncidentCategory("illegal_construction", CategoryKind.EVENT, "Illegal construction", "违法建设", 15 * 24, Severity.MEDIUM),
    IncidentCategory("street_vending", CategoryKind.EVENT, "Unlicensed street vending", "无照经营游商", 4, Severity.LOW),
    IncidentCategory("illegal_parking", CategoryKind.EVENT, "Illegal parking", "违章停车", 2, Severity.LOW),
    IncidentCategory("blocked_fire_lane", CategoryKind.EVENT, "Blocked fire lane", "占用消防通道", 2, Severity.HIGH),
    IncidentCategory("fire_hazard", CategoryKind.EVENT, "Fire hazard", "消防隐患", 24, Severity.HIGH),
    IncidentCategory("safety_hazard", CategoryKind.EVENT, "Safety hazard", "安全隐患", 24, Severity.HIGH),
    IncidentCategory("water_leak", CategoryKind.EVENT, "Water leak", "漏水", 8, Severity.MEDIUM),
    IncidentCategory("neighbour_dispute", CategoryKind.EVENT, "Neighbour dispute", "邻里纠纷", 72, Severity.MEDIUM),
    IncidentCategory("noise", CategoryKind.EVENT, "Noise nuisance", "噪声扰民", 24, Severity.LOW),
    IncidentCategory("stray_animal", CategoryKind.EVENT, "Stray animal", "流浪动物", 24, Severity.LOW),
    IncidentCategory("flyposting", CategoryKind.EVENT, "Flyposting and graffiti", "乱张贴乱涂写", 24, Severity.LOW),
    IncidentCategory("damaged_road", CategoryKind.COMPONENT, "Damaged road", "道路破损", 72, Severity.MEDIUM),
    IncidentCategory("manhole_cover", CategoryKind.COMPONENT, "Missing or damaged manhole cover", "井盖缺损", 4, Severity.CRITICAL),
    IncidentCategory("street_light", CategoryKind.COMPONENT, "Broken street light", "路灯损坏", 48, Severity.LOW),
    IncidentCategory("elevator", CategoryKind.COMPONENT, "Elevator problem", "电梯故障", 4, Severity.HIGH),
    IncidentCategory("public_facility", CategoryKind.COMPONENT, "Damaged public facility", "公共设施损坏", 72, Severity.LOW),
]

INCIDENT_CATEGORIES: dict[str, IncidentCategory] = {c.code: c for c in _CATEGORIES}


class AlarmType(str, Enum):
    """Device alarms from building sensors."""
    ELEVATOR_FAULT = "elevator_fault"
    ELEVATOR_DOOR_FAULT = "elevator_door_fault"
    ELEVATOR_ENTRAPMENT = "elevator_entrapment"     # people trapped: the most urgent
    GAS_OVER_THRESHOLD = "gas_over_threshold"
    GAS_DETECTOR_FAULT = "gas_detector_fault"
    METER_CONTINUOUS_FLOW = "meter_continuous_flow"  # night-time flow that never stops: a leak
    METER_SPIKE = "meter_spike"
    LOW_BATTERY = "low_battery"
    TAMPER = "tamper"


ALARM_DEFAULT_SEVERITY: dict[AlarmType, Severity] = {
    AlarmType.ELEVATOR_FAULT: Severity.MEDIUM,
    AlarmType.ELEVATOR_DOOR_FAULT: Severity.MEDIUM,
    AlarmType.ELEVATOR_ENTRAPMENT: Severity.CRITICAL,
    AlarmType.GAS_OVER_THRESHOLD: Severity.CRITICAL,
    AlarmType.GAS_DETECTOR_FAULT: Severity.MEDIUM,
    AlarmType.METER_CONTINUOUS_FLOW: Severity.MEDIUM,
    AlarmType.METER_SPIKE: Severity.LOW,
    AlarmType.LOW_BATTERY: Severity.LOW,
    AlarmType.TAMPER: Severity.HIGH,
}


class DeviceKind(str, Enum):
    """IoT devices placed in buildings (the "things" of the five elements)."""
    ELEVATOR = "elevator"
    GAS_DETECTOR = "gas_detector"
    WATER_METER = "water_meter"
    ELECTRICITY_METER = "electricity_meter"
    GAS_METER = "gas_meter"


# What each device kind measures: SenML-style quantity name -> unit (RFC 8428 / RFC 8798 symbols).
DEVICE_QUANTITIES: dict[DeviceKind, dict[str, str]] = {
    DeviceKind.ELEVATOR: {"door_open": "", "floor": "", "running": "", "occupied": ""},
    DeviceKind.GAS_DETECTOR: {"gas_lel": "%"},  # % of the lower explosive limit
    DeviceKind.WATER_METER: {"volume": "m3", "flow": "m3/s"},
    DeviceKind.ELECTRICITY_METER: {"energy": "kWh", "power": "W"},
    DeviceKind.GAS_METER: {"volume": "m3", "flow": "m3/s"},
}

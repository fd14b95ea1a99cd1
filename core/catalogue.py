"""The catalogues shared by terminals, sensors, the case workflow and the screens, with the words
the screens use for each entry (English and Chinese: `Label`). This is the one place a label is
spelled; colours are the screens' (dashboard/vocabulary.py).

Incident categories follow the digital urban-management standard's split into **components**
(部件: public facilities) and **events** (事件). Each has a handling time limit, from local standards
(e.g. exposed garbage 1 working day, dirty road 5 working hours, illegal construction 15 working
days); the case workflow uses them to decide what is overdue and escalates it.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum, StrEnum


@dataclass(frozen=True)
class Label:
    en: str
    zh: str

    def __str__(self) -> str:
        return f"{self.en} {self.zh}"


class Severity(IntEnum):
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4


SEVERITY_LABELS: dict[Severity, Label] = {
    Severity.LOW: Label("low", "低"), Severity.MEDIUM: Label("medium", "一般"),
    Severity.HIGH: Label("high", "较高"), Severity.CRITICAL: Label("critical", "紧急"),
}


class MemberState(str, Enum):
    """A member's terminal as the screens show it. Terminals say online or offline (their status,
    or the broker's last will); silent is what the command center concludes from silence."""
    ONLINE = "online"
    SILENT = "silent"
    OFFLINE = "offline"


MEMBER_STATE_LABELS: dict[MemberState, Label] = {
    MemberState.ONLINE: Label("online", "在线"), MemberState.SILENT: Label("silent", "失联"),
    MemberState.OFFLINE: Label("offline", "离线"),
}

# what a people's-feelings diary entry (民情日记) is about: what a member heard from residents on patrol
DIARY_CATEGORIES: dict[str, Label] = {
    "livelihood": Label("livelihood", "民生"), "safety": Label("safety", "治安"),
    "environment": Label("environment", "环境"), "dispute": Label("dispute", "矛盾纠纷"),
    "suggestion": Label("suggestion", "意见建议"), "other": Label("other", "其他"),
}


class AuditAction(StrEnum):
    """What the audit trail records, by its action key: the one place a key is spelled. Its writers
    (the screens' commands and gates, the registry, the cases intake) name a member; a case
    command's key is `case.<its name>` (AuditAction.of_case), checked against these."""
    ALARM_ACKNOWLEDGE = "alarm.acknowledge"
    DIARY_RATE = "diary.rate"
    USER_ADD = "user.add"
    USER_PASSWORD = "user.password"
    USER_DISABLE = "user.disable"
    USER_ENABLE = "user.enable"
    REGISTRY_MEMBER_ADD = "registry.member.add"
    REGISTRY_MEMBER_CHANGE = "registry.member.change"
    REGISTRY_MEMBER_MOVE = "registry.member.move"
    REGISTRY_MEMBER_RETIRE = "registry.member.retire"
    REGISTRY_MEMBER_REPLACE_TERMINAL = "registry.member.replace_terminal"
    REGISTRY_DEVICE_ADD = "registry.device.add"
    REGISTRY_DEVICE_RETIRE = "registry.device.retire"
    REGISTRY_CREDENTIAL_ROTATE = "registry.credential.rotate"
    REGISTRY_CREDENTIAL_REVOKE = "registry.credential.revoke"
    REGISTRY_GATEWAY_ADD = "registry.gateway.add"
    REGISTRY_GATEWAY_MOVE = "registry.gateway.move"
    REGISTRY_GATEWAY_RETIRE = "registry.gateway.retire"
    REGISTRY_SENSOR_ADD = "registry.sensor.add"
    REGISTRY_SENSOR_MOVE = "registry.sensor.move"
    REGISTRY_SENSOR_RETIRE = "registry.sensor.retire"
    REGISTRY_BOUNDARIES_IMPORT = "registry.boundaries.import"
    WALL_TOKEN_CREATE = "wall_token.create"
    WALL_TOKEN_REVOKE = "wall_token.revoke"
    AUTH_LOGIN = "auth.login"
    AUTH_LOGOUT = "auth.logout"
    AUTH_TOKEN = "auth.token"
    AUTH_CSRF = "auth.csrf"
    AUTH_ORIGIN = "auth.origin"
    AUTH_ROUTE = "auth.route"
    AUTH_CALLBACK = "auth.callback"
    PAGE_OPEN = "page.open"
    SCREEN_CONNECT = "screen.connect"
    AUDIT_EXPORT = "audit.export"
    CASE_OPEN = "case.open"
    CASE_REGISTER = "case.register"
    CASE_REFUSE = "case.refuse"
    CASE_DISPATCH = "case.dispatch"
    CASE_ACCEPT = "case.accept"
    CASE_REJECT = "case.reject"
    CASE_START = "case.start"
    CASE_FEEDBACK = "case.feedback"
    CASE_VERIFY = "case.verify"
    CASE_CLOSE = "case.close"
    CASE_EVALUATE = "case.evaluate"
    CASE_RETURN = "case.return"
    CASE_REQUEST_EXTENSION = "case.request_extension"
    CASE_DECIDE_EXTENSION = "case.decide_extension"
    CASE_SUSPEND = "case.suspend"
    CASE_RESUME = "case.resume"
    CASE_REOPEN = "case.reopen"
    CASE_ACKNOWLEDGE = "case.acknowledge"
    CASE_EXPORT = "case.export"
    CASE_REASSIGN = "case.reassign"
    CASE_REQUEST_CHECK = "case.request_check"
    CASE_CHECK = "case.check"
    TIME_LIMITS_VERSION = "time_limits.version"
    CALENDAR_DAY = "calendar.day"
    ANNOUNCEMENT_SEND = "announcement.send"
    LEDGER_UNMASK = "ledger.unmask"          # a resident's ID number and phone seen in full (with a reason)
    LEDGER_GRANT = "ledger.grant"            # a ledger permission granted to a user for an org unit
    LEDGER_REVOKE = "ledger.revoke"
    LEDGER_APPROVE = "ledger.approve"        # a member's registration approved (as submitted or edited)
    LEDGER_SEND_BACK = "ledger.send_back"    # a member's registration sent back with a reason

    @classmethod
    def of_case(cls, command_name: str) -> AuditAction:
        """The key of a case command (cases.model: Register.name is "register", …)."""
        return cls(f"case.{command_name}")

    @property
    def label(self) -> Label:
        return ACTION_LABELS[self]


ACTION_LABELS: dict[AuditAction, Label] = {      # keyed by the enum, a str: a stored key looks its label up too
    AuditAction.ALARM_ACKNOWLEDGE: Label("Acknowledge", "确认"),
    AuditAction.DIARY_RATE: Label("Rate a diary entry", "民情日记评分"),
    AuditAction.USER_ADD: Label("Add user", "新增用户"),
    AuditAction.USER_PASSWORD: Label("New password", "重置密码"),
    AuditAction.USER_DISABLE: Label("Disable user", "停用用户"),
    AuditAction.USER_ENABLE: Label("Enable user", "启用用户"),
    AuditAction.REGISTRY_MEMBER_ADD: Label("Add member", "新增网格员"),
    AuditAction.REGISTRY_MEMBER_CHANGE: Label("Change member", "修改网格员"),
    AuditAction.REGISTRY_MEMBER_MOVE: Label("Move member", "调整网格"),
    AuditAction.REGISTRY_MEMBER_RETIRE: Label("Retire member", "网格员离岗"),
    AuditAction.REGISTRY_MEMBER_REPLACE_TERMINAL: Label("Replace terminal", "更换终端"),
    AuditAction.REGISTRY_DEVICE_ADD: Label("Add device", "新增设备"),
    AuditAction.REGISTRY_DEVICE_RETIRE: Label("Retire device", "停用设备"),
    AuditAction.REGISTRY_CREDENTIAL_ROTATE: Label("New device password", "重置设备密码"),
    AuditAction.REGISTRY_CREDENTIAL_REVOKE: Label("Revoke device", "吊销设备"),
    AuditAction.REGISTRY_GATEWAY_ADD: Label("Add gateway", "新增网关"),
    AuditAction.REGISTRY_GATEWAY_MOVE: Label("Move gateway", "迁移网关"),
    AuditAction.REGISTRY_GATEWAY_RETIRE: Label("Retire gateway", "停用网关"),
    AuditAction.REGISTRY_SENSOR_ADD: Label("Add sensor", "新增传感器"),
    AuditAction.REGISTRY_SENSOR_MOVE: Label("Move sensor", "迁移传感器"),
    AuditAction.REGISTRY_SENSOR_RETIRE: Label("Retire sensor", "停用传感器"),
    AuditAction.REGISTRY_BOUNDARIES_IMPORT: Label("Import grid boundaries", "导入网格边界"),
    AuditAction.WALL_TOKEN_CREATE: Label("Create wall token", "创建大屏令牌"),
    AuditAction.WALL_TOKEN_REVOKE: Label("Revoke wall token", "吊销大屏令牌"),
    AuditAction.AUTH_LOGIN: Label("Sign in", "登录"),
    AuditAction.AUTH_LOGOUT: Label("Sign out", "退出"),
    AuditAction.AUTH_TOKEN: Label("Wall token used", "大屏令牌登录"),
    AuditAction.AUTH_CSRF: Label("CSRF refused", "CSRF 拒绝"),
    AuditAction.AUTH_ORIGIN: Label("Cross-origin refused", "跨域拒绝"),
    AuditAction.AUTH_ROUTE: Label("Route refused", "路由拒绝"),
    AuditAction.AUTH_CALLBACK: Label("Callback refused", "回调拒绝"),
    AuditAction.PAGE_OPEN: Label("Page scope refused", "页面范围拒绝"),
    AuditAction.SCREEN_CONNECT: Label("Live connection", "实时连接"),
    AuditAction.AUDIT_EXPORT: Label("Audit export", "审计导出"),
    AuditAction.CASE_OPEN: Label("Enter a case", "录入案件"),
    AuditAction.CASE_REGISTER: Label("Register case", "立案"),
    AuditAction.CASE_REFUSE: Label("Refuse case", "不予立案"),
    AuditAction.CASE_DISPATCH: Label("Dispatch case", "派遣"),
    AuditAction.CASE_ACCEPT: Label("Accept case", "接单"),
    AuditAction.CASE_REJECT: Label("Reject case", "拒绝接单"),
    AuditAction.CASE_START: Label("Start handling", "开始处置"),
    AuditAction.CASE_FEEDBACK: Label("Handling feedback", "处置反馈"),
    AuditAction.CASE_VERIFY: Label("Verify case", "核查"),
    AuditAction.CASE_CLOSE: Label("Close case", "结案"),
    AuditAction.CASE_EVALUATE: Label("Evaluate case", "评价"),
    AuditAction.CASE_RETURN: Label("Return case", "回退"),
    AuditAction.CASE_REQUEST_EXTENSION: Label("Ask for an extension", "申请延期"),
    AuditAction.CASE_DECIDE_EXTENSION: Label("Decide an extension", "审批延期"),
    AuditAction.CASE_SUSPEND: Label("Suspend case", "缓办"),
    AuditAction.CASE_RESUME: Label("Resume case", "恢复办理"),
    AuditAction.CASE_REOPEN: Label("Reopen case", "重新办理"),
    AuditAction.CASE_ACKNOWLEDGE: Label("Acknowledge case", "确认知悉"),
    AuditAction.CASE_EXPORT: Label("Case list export", "案件导出"),
    AuditAction.CASE_REASSIGN: Label("Reassign case", "改派"),
    AuditAction.CASE_REQUEST_CHECK: Label("Ask a member to check on site", "请求紧急核实"),
    AuditAction.CASE_CHECK: Label("Checked on site", "紧急核实"),
    AuditAction.TIME_LIMITS_VERSION: Label("New time limits", "新版时限"),
    AuditAction.CALENDAR_DAY: Label("Calendar day", "工作日历"),
    AuditAction.ANNOUNCEMENT_SEND: Label("Send an announcement", "发布通知公告"),
    AuditAction.LEDGER_UNMASK: Label("See personal data unmasked", "查看完整个人信息"),
    AuditAction.LEDGER_GRANT: Label("Grant a ledger permission", "授予基础数据权限"),
    AuditAction.LEDGER_REVOKE: Label("Revoke a ledger permission", "撤销基础数据权限"),
    AuditAction.LEDGER_APPROVE: Label("Approve a registration", "审核通过登记"),
    AuditAction.LEDGER_SEND_BACK: Label("Send a registration back", "退回登记"),
}

# Cases: the states of a case's life (the words of DOMAIN.md), its one spelling. The case machine
# (cases/model.py) moves cases through them; SQL that needs a set of them takes it as a parameter
# (`state = any(%s)` with cases.model.values(FINISHED)); migration 0009's check lists them too.
class CaseState(str, Enum):
    REPORTED = "reported"           # 上报: arrived, not yet a case
    REGISTERED = "registered"       # 立案: a case; its clock runs
    REFUSED = "refused"             # 不予立案 / 作废, with a reason
    DISPATCHED = "dispatched"       # 派遣: sent to a handler
    ACCEPTED = "accepted"           # 接单
    HANDLING = "handling"           # 处置: on site
    HANDLED = "handled"             # 处置反馈: feedback with note and photos
    VERIFIED = "verified"           # 核查通过
    CLOSED = "closed"               # 结案
    EVALUATED = "evaluated"         # 评价
    SUSPENDED = "suspended"         # 缓办 / 挂账, with a reason: no clock

    @property
    def label(self) -> Label:
        return CASE_STATE_LABELS[self]


# keyed by the enum, which is a str: a state's value looks its label up too (CASE_STATE_LABELS["closed"])
CASE_STATE_LABELS: dict[CaseState, Label] = {
    CaseState.REPORTED: Label("reported", "上报"), CaseState.REGISTERED: Label("registered", "已立案"),
    CaseState.REFUSED: Label("refused", "不予立案"), CaseState.DISPATCHED: Label("dispatched", "已派遣"),
    CaseState.ACCEPTED: Label("accepted", "已接单"), CaseState.HANDLING: Label("handling", "处置中"),
    CaseState.HANDLED: Label("handled", "已处置"), CaseState.VERIFIED: Label("verified", "核查通过"),
    CaseState.CLOSED: Label("closed", "已结案"), CaseState.EVALUATED: Label("evaluated", "已评价"),
    CaseState.SUSPENDED: Label("suspended", "缓办"),
}
CASE_STAGE_LABELS: dict[str, Label] = {      # what the case waits for: the clock that runs
    "register": Label("to register", "待立案"), "dispatch": Label("to dispatch", "待派遣"),
    "accept": Label("to accept", "待接单"), "handle": Label("to handle", "待处置"),
    "verify": Label("to verify", "待核查"), "close": Label("to close", "待结案"),
}
URGENCY_LABELS: dict[str, Label] = {"urgent": Label("urgent", "紧急"), "normal": Label("normal", "一般")}
ORG_LEVEL_LABELS: dict[str, Label] = {
    "grid": Label("grid", "网格"), "community": Label("community", "社区"), "street": Label("street", "街道"),
    "district": Label("district", "区"),
}
CASE_SOURCE_LABELS: dict[str, Label] = {
    "report": Label("report", "上报"), "alarm": Label("alarm", "告警"), "sos": Label("SOS", "紧急求助"),
    "hotline": Label("hotline", "热线"),
}

TASK_ACTION_LABELS: dict[str, Label] = {
    "accepted": Label("accepted", "已接单"), "rejected": Label("rejected", "已拒绝"),
    "arrived": Label("arrived", "已到达"), "done": Label("done", "已完成"),
}


class CategoryKind(str, Enum):
    COMPONENT = "component"  # 部件
    EVENT = "event"          # 事件


@dataclass(frozen=True)
class IncidentCategory:
    """A kind of incident a member reports (its time limits: cases/limits.py)."""
    code: str
    kind: CategoryKind
    name_en: str
    name_zh: str
    default_severity: Severity

    @property
    def label(self) -> Label:
        return Label(self.name_en, self.name_zh)


_CATEGORIES = [
    IncidentCategory("exposed_garbage", CategoryKind.EVENT, "Exposed garbage", "暴露垃圾", Severity.LOW),
    IncidentCategory("dirty_road", CategoryKind.EVENT, "Dirty road surface", "道路不洁", Severity.LOW),
    IncidentCategory("illegal_construction", CategoryKind.EVENT, "Illegal construction", "违法建设", Severity.MEDIUM),
    IncidentCategory("street_vending", CategoryKind.EVENT, "Unlicensed street vending", "无照经营游商", Severity.LOW),
    IncidentCategory("illegal_parking", CategoryKind.EVENT, "Illegal parking", "违章停车", Severity.LOW),
    IncidentCategory("blocked_fire_lane", CategoryKind.EVENT, "Blocked fire lane", "占用消防通道", Severity.HIGH),
    IncidentCategory("fire_hazard", CategoryKind.EVENT, "Fire hazard", "消防隐患", Severity.HIGH),
    IncidentCategory("safety_hazard", CategoryKind.EVENT, "Safety hazard", "安全隐患", Severity.HIGH),
    IncidentCategory("water_leak", CategoryKind.EVENT, "Water leak", "漏水", Severity.MEDIUM),
    IncidentCategory("neighbour_dispute", CategoryKind.EVENT, "Neighbour dispute", "邻里纠纷", Severity.MEDIUM),
    IncidentCategory("noise", CategoryKind.EVENT, "Noise nuisance", "噪声扰民", Severity.LOW),
    IncidentCategory("stray_animal", CategoryKind.EVENT, "Stray animal", "流浪动物", Severity.LOW),
    IncidentCategory("flyposting", CategoryKind.EVENT, "Flyposting and graffiti", "乱张贴乱涂写", Severity.LOW),
    IncidentCategory("damaged_road", CategoryKind.COMPONENT, "Damaged road", "道路破损", Severity.MEDIUM),
    IncidentCategory("manhole_cover", CategoryKind.COMPONENT, "Missing or damaged manhole cover", "井盖缺损",
                     Severity.CRITICAL),
    IncidentCategory("street_light", CategoryKind.COMPONENT, "Broken street light", "路灯损坏", Severity.LOW),
    IncidentCategory("elevator", CategoryKind.COMPONENT, "Elevator problem", "电梯故障", Severity.HIGH),
    IncidentCategory("public_facility", CategoryKind.COMPONENT, "Damaged public facility", "公共设施损坏",
                     Severity.LOW),
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


ALARM_TYPE_LABELS: dict[AlarmType, Label] = {
    AlarmType.ELEVATOR_FAULT: Label("Elevator fault", "电梯故障"),
    AlarmType.ELEVATOR_DOOR_FAULT: Label("Elevator door fault", "电梯门故障"),
    AlarmType.ELEVATOR_ENTRAPMENT: Label("People trapped in elevator", "电梯困人"),
    AlarmType.GAS_OVER_THRESHOLD: Label("Gas over threshold", "燃气超限"),
    AlarmType.GAS_DETECTOR_FAULT: Label("Gas detector fault", "燃气探测器故障"),
    AlarmType.METER_CONTINUOUS_FLOW: Label("Continuous flow (leak)", "持续流量"),
    AlarmType.METER_SPIKE: Label("Meter spike", "用量突增"),
    AlarmType.LOW_BATTERY: Label("Low battery", "电量低"),
    AlarmType.TAMPER: Label("Tamper", "防拆"),
}

# a case's category: an incident category, an alarm type, or an SOS
CASE_CATEGORY_LABELS: dict[str, Label] = {**{code: c.label for code, c in INCIDENT_CATEGORIES.items()},
                                          **{a.value: label for a, label in ALARM_TYPE_LABELS.items()},
                                          "sos": CASE_SOURCE_LABELS["sos"]}

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

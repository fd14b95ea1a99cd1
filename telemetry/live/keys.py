"""Redis key names, hash fields and thresholds of the live state (see telemetry.live)."""
from __future__ import annotations

NAMESPACE = "gcc"
SCHEMA = 4                   # the key layout (telemetry.live); 3: alarms and reports keyed by their device;
                             # 4: reports bounded per terminal, kept without their text

VERSION = 1                  # the bus envelope's format

SILENT_AFTER_S = 120         # a terminal not heard from for this long is silent
SWEEP_EVERY_S = 10.0         # how often one worker looks for silent terminals
ALARM_MEMORY_S = 7 * 86400   # how long an alarm id's order is remembered
REPORT_WINDOW_S = 86400      # reports stay on the screens for a day
REPORTS_PER_TERMINAL = 50    # ... at most this many of one terminal: its older ones leave the live view
                             # (they stay in the database), so no terminal can fill Redis with reports
STREAM_MAXLEN = 1200         # about a minute of batches at the demo's load (two workers)
STREAM_FIELD = "envelope"    # the one field of a bus entry


class Keys:
    """Key builders: the only place a Redis key name of ours is spelled."""
    STREAM = f"{NAMESPACE}:live"
    SCHEMA = f"{NAMESPACE}:live:schema"
    POSITIONS = f"{NAMESPACE}:pos"
    TERMINAL_PREFIX = f"{NAMESPACE}:term:"
    TERMINALS_SEEN = f"{NAMESPACE}:term:seen"
    OPEN_ALARMS = f"{NAMESPACE}:alarms:open"
    REPORTS = f"{NAMESPACE}:reports"
    SWEEP_LOCK = f"{NAMESPACE}:lock:sweep"

    @staticmethod
    def terminal(terminal_id: str) -> str:
        return Keys.TERMINAL_PREFIX + terminal_id

    @staticmethod
    def sensor(sensor_id: str) -> str:
        return f"{NAMESPACE}:sensor:{sensor_id}"

    # An alarm or report is its device's: every key and field that names one names the device too
    # (ids cannot hold "/", so "<device>/<id>" splits back unambiguously).
    @staticmethod
    def alarm_field(sensor_id: str, alarm_id: str) -> str:
        """The alarm's field in OPEN_ALARMS."""
        return f"{sensor_id}/{alarm_id}"

    @staticmethod
    def alarm_of_field(field: str) -> tuple[str, str]:
        sensor_id, _, alarm_id = field.partition("/")
        return sensor_id, alarm_id

    @staticmethod
    def alarm_order(sensor_id: str, alarm_id: str) -> str:
        return f"{NAMESPACE}:alarm:order:{sensor_id}/{alarm_id}"

    @staticmethod
    def open_alarm_of(sensor_id: str, alarm_type: str) -> str:
        return f"{NAMESPACE}:alarm:open:{sensor_id}/{alarm_type}"

    @staticmethod
    def gateway(gateway_id: str) -> str:
        return f"{NAMESPACE}:gw:{gateway_id}"

    @staticmethod
    def report_member(terminal_id: str, report_id: str) -> str:
        """The report's member in REPORTS."""
        return f"{terminal_id}/{report_id}"

    REPORT_PREFIX = f"{NAMESPACE}:report:"

    @staticmethod
    def report(member: str) -> str:
        """The report's JSON, by its member in REPORTS."""
        return Keys.REPORT_PREFIX + member

    @staticmethod
    def reports_of(terminal_id: str) -> str:
        """One terminal's reports in the window (members of REPORTS -> time), to bound them."""
        return f"{NAMESPACE}:reports:of:{terminal_id}"

    @staticmethod
    def redelivery_begun(message_digest: str) -> str:
        """How often the processing of a redelivered message began (ingest.redeliveries)."""
        return f"{NAMESPACE}:ingest:begun:{message_digest}"


class TerminalField:
    """The fields of a terminal's hash, gcc:term:<terminal_id> (written by the ingest's Lua)."""
    T = "t"                        # its last fix's time
    LON = "lon"
    LAT = "lat"
    GRID_CODE = "grid_code"        # where its last fix lies
    MEMBER_ID = "member_id"
    BATTERY_PCT = "battery_pct"
    SPEED_MPS = "speed_mps"
    HEADING_DEG = "heading_deg"
    ACCURACY_M = "accuracy_m"
    SEEN = "seen"                  # when we last heard from it (receipt time)
    STATE = "state"                # a MemberState value
    STATE_T = "state_t"            # when the state last changed
    SOS = "sos"                    # "1" while the member asks for help


class SensorField:
    """The fields of a sensor's hash, gcc:sensor:<sensor_id>."""
    GRID_CODE = "grid_code"
    QUANTITY_PREFIX = "q:"         # q:<quantity> -> "<t>|<value>"

    @staticmethod
    def quantity(quantity: str) -> str:
        return SensorField.QUANTITY_PREFIX + quantity


class GatewayField:
    """The fields of a gateway's hash, gcc:gw:<gateway_id>."""
    STATE = "state"
    T = "t"
    GRID_CODE = "grid_code"


def lua_names() -> dict[str, str]:
    """The field names for the writer's Lua scripts (string.Template placeholders, e.g. ${TERM_T})."""
    names = {f"TERM_{k}": v for k, v in vars(TerminalField).items() if k.isupper()}
    names |= {f"SENSOR_{k}": v for k, v in vars(SensorField).items() if k.isupper()}
    names |= {f"GW_{k}": v for k, v in vars(GatewayField).items() if k.isupper()}
    return names

"""Our JSON (v1) through telemetry.decoders.decode: raw fixtures in, messages out, one field a test."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from core.catalogue import AlarmType
from telemetry.decoders import DecodeError, decode
from telemetry.messages import (
    AnnouncementRead,
    CaseUpdate,
    DeviceAlarm,
    DiaryEntry,
    Fix,
    GatewayStatus,
    IncidentReport,
    SensorReading,
    TaskAck,
    TerminalStatus,
)

FIXTURES = Path(__file__).parent / "fixtures" / "payloads" / "gcc"
RECEIVED_AT = datetime(2024, 5, 1, 8, 5, 0, tzinfo=timezone.utc)
UTC = timezone.utc


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def decode_one(topic: str, payload: bytes):
    messages = decode(topic, payload, RECEIVED_AT)
    assert len(messages) == 1
    return messages[0]


def decode_error(topic: str, payload: bytes) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        decode(topic, payload, RECEIVED_AT)
    return caught.value


def fix_with(**fields) -> bytes:
    body = {"ts": "2024-05-01T08:00:00Z", "lat": 31.23, "lon": 121.47, **fields}
    return orjson.dumps({k: v for k, v in body.items() if v is not ...})


# --- terminal fix ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fix() -> Fix:
    return decode_one("gcc/v1/terminal/T0001/fix", fixture("terminal_fix.json"))


def test_fix_is_a_fix(fix):
    assert isinstance(fix, Fix)


def test_fix_terminal_id_comes_from_the_topic(fix):
    assert fix.terminal_id == "T0001"


def test_fix_time_offset_is_converted_to_utc(fix):
    assert fix.time == datetime(2024, 5, 1, 8, 0, 5, tzinfo=UTC)


def test_fix_time_is_tagged_utc(fix):
    assert fix.time.utcoffset() == timedelta(0)


def test_fix_lat(fix):
    assert fix.lat == 31.230416


def test_fix_lon(fix):
    assert fix.lon == 121.473701


def test_fix_accuracy(fix):
    assert fix.accuracy_m == 4.5


def test_fix_speed(fix):
    assert fix.speed_mps == 1.3


def test_fix_heading(fix):
    assert fix.heading_deg == 87.5


def test_fix_altitude(fix):
    assert fix.altitude_m == 12.0


def test_fix_battery(fix):
    assert fix.battery_pct == 76


def test_fix_source_is_gcc(fix):
    assert fix.source == "gcc"


def test_fix_has_no_owntracks_device(fix):
    assert fix.device is None


def test_minimal_fix_equals_expected_model():
    assert decode_one("gcc/v1/terminal/T0001/fix", fixture("terminal_fix_minimal.json")) == Fix(
        terminal_id="T0001", time=datetime(2024, 5, 1, 8, 0, 5, tzinfo=UTC),
        lat=31.230416, lon=121.473701, source="gcc")


# --- the time rule -----------------------------------------------------------------------------

@pytest.mark.parametrize("ts, expected", [
    ("2024-05-01T08:00:00Z", datetime(2024, 5, 1, 8, 0, tzinfo=UTC)),
    ("2024-05-01T16:00:00+08:00", datetime(2024, 5, 1, 8, 0, tzinfo=UTC)),
    ("2024-05-01T08:00:00.250Z", datetime(2024, 5, 1, 8, 0, 0, 250000, tzinfo=UTC)),
    (1714550400, datetime(2024, 5, 1, 8, 0, tzinfo=UTC)),
    (1714550400.5, datetime(2024, 5, 1, 8, 0, 0, 500000, tzinfo=UTC)),
])
def test_ts_is_iso_with_timezone_or_epoch_seconds(ts, expected):
    assert decode_one("gcc/v1/terminal/T0001/fix", fix_with(ts=ts)).time == expected


@pytest.mark.parametrize("ts, why", [
    ("2024-05-01T08:00:00", "no timezone"),
    ("yesterday", "not an ISO 8601 time"),
    (True, "expected an ISO 8601 string"),
    ([1714550400], "expected an ISO 8601 string"),
    (1714550400000, "milliseconds"),
    ("9999-12-31T23:59:59-01:00", "out of range"),
    (..., "field required"),
])
def test_bad_ts_is_a_schema_violation_naming_ts(ts, why):
    error = decode_error("gcc/v1/terminal/T0001/fix", fix_with(ts=ts))
    assert (error.reason, error.detail.startswith("ts:"), why in error.detail) == \
        ("schema_violation", True, True)


# --- terminal status, incident, task ack ---------------------------------------------------------

def test_status_equals_expected_model():
    assert decode_one("gcc/v1/terminal/T0001/status", fixture("terminal_status.json")) == \
        TerminalStatus(terminal_id="T0001", time=datetime(2024, 5, 1, 8, 0, 5, tzinfo=UTC),
                       state="online", battery_pct=76, sos=True, source="gcc")


def test_status_source_is_gcc():
    payload = b'{"ts": 1714550400, "state": "offline"}'
    assert decode_one("gcc/v1/terminal/T0001/status", payload).source == "gcc"


def test_status_sos_defaults_to_false():
    payload = b'{"ts": 1714550400, "state": "offline"}'
    assert decode_one("gcc/v1/terminal/T0001/status", payload).sos is False


def test_incident_equals_expected_model():
    assert decode_one("gcc/v1/terminal/T0001/incident", fixture("terminal_incident.json")) == \
        IncidentReport(report_id="T0001-20240501-0001", terminal_id="T0001",
                       time=datetime(2024, 5, 1, 8, 1, tzinfo=UTC), category="manhole_cover",
                       severity=4, lat=31.2301, lon=121.4741, address="黄浦区南京东路100号门前",
                       description="井盖缺失，已设临时围挡",
                       photo_ref="photos/T0001/20240501-0001.jpg")


def test_task_ack_equals_expected_model():
    assert decode_one("gcc/v1/terminal/T0001/task/ack", fixture("terminal_task_ack.json")) == \
        TaskAck(task_id="task-20240501-42", terminal_id="T0001",
                time=datetime(2024, 5, 1, 8, 1, 40, 250000, tzinfo=UTC), action="arrived",
                note="已到达现场")


def test_an_announcement_read_receipt_decodes():
    assert decode_one("gcc/v1/terminal/T0001/announcement/read",
                      b'{"ts": "2024-05-01T08:30:00Z", "announcement_id": 17}') == \
        AnnouncementRead(announcement_id=17, terminal_id="T0001", time=datetime(2024, 5, 1, 8, 30, tzinfo=UTC))


def test_a_diary_entry_decodes_with_its_category_and_text():
    assert decode_one("gcc/v1/terminal/T0001/diary", orjson.dumps({
        "ts": "2024-05-01T08:30:00Z", "entry_id": "d-17", "category": "livelihood",
        "text": "3号楼居民反映电梯维修后仍有异响"})) == DiaryEntry(
        entry_id="d-17", terminal_id="T0001", time=datetime(2024, 5, 1, 8, 30, tzinfo=UTC), category="livelihood",
        text="3号楼居民反映电梯维修后仍有异响")


@pytest.mark.parametrize("change", [{"category": "gossip"}, {"text": ""}, {"text": "很" * 501}, {"entry_id": None}])
def test_a_diary_entry_out_of_bounds_is_refused_with_the_field_named(change):
    payload = {"ts": "2024-05-01T08:30:00Z", "entry_id": "d-17", "category": "safety", "text": "夜间路灯不亮", **change}
    error = decode_error("gcc/v1/terminal/T0001/diary", orjson.dumps({k: v for k, v in payload.items()
                                                                        if v is not None}))
    assert error.reason == "schema_violation" and next(iter(change)) in error.detail


def test_a_case_update_decodes_with_its_photos_and_extension():
    payload = orjson.dumps({"ts": "2024-05-01T08:30:00Z", "case_id": "C20240501-000042", "action": "extension",
                            "reason": "零件待到货", "extension": "1wd"})
    assert decode_one("gcc/v1/terminal/T0001/case", payload) == CaseUpdate(
        case_id="C20240501-000042", terminal_id="T0001", time=datetime(2024, 5, 1, 8, 30, tzinfo=UTC),
        action="extension", reason="零件待到货", extension="1wd")
    feedback = decode_one("gcc/v1/terminal/T0001/case", orjson.dumps({
        "ts": 1714552200, "case_id": "C1", "action": "feedback", "note": "已更换井盖", "photo_refs": ["p/1.jpg"]}))
    assert feedback.photo_refs == ["p/1.jpg"] and feedback.note == "已更换井盖"


@pytest.mark.parametrize("change, field", [({"action": "close"}, "action"), ({"extension": "2 weeks"}, "extension"),
                                           ({"photo_refs": [""]}, "photo_refs"),
                                           ({"photo_refs": [f"p{i}" for i in range(11)]}, "photo_refs"),
                                           ({"case_id": "C 1"}, "case_id"), ({"cover": "x"}, "cover")])
def test_a_case_update_out_of_bounds_is_refused_naming_the_field(change, field):
    payload = {"ts": 1714552200, "case_id": "C1", "action": "feedback", "note": "done", **change}
    with pytest.raises(DecodeError) as refused:
        decode_one("gcc/v1/terminal/T0001/case", orjson.dumps(payload))
    assert field in refused.value.detail


# --- gateway reading, alarm, status --------------------------------------------------------------

@pytest.fixture(scope="module")
def readings() -> list:
    return decode("gcc/v1/gateway/gw-bldg-07/reading", fixture("gateway_reading.json"), RECEIVED_AT)


def test_reading_count(readings):
    assert len(readings) == 3


def test_numeric_reading_equals_expected_model(readings):
    assert readings[0] == SensorReading(
        sensor_id="gas-0101", time=datetime(2024, 5, 1, 8, 0, tzinfo=UTC), quantity="gas_lel",
        value=3.5, unit="%", gateway_id="gw-bldg-07")


def test_boolean_reading_keeps_its_own_ts(readings):
    assert readings[1].time == datetime(2024, 5, 1, 7, 59, 30, tzinfo=UTC)


def test_boolean_reading_value(readings):
    assert readings[1].value_bool is False


def test_text_reading_value(readings):
    assert readings[2].value_text == "B1"


def test_reading_gateway_id_comes_from_the_topic(readings):
    assert {r.gateway_id for r in readings} == {"gw-bldg-07"}


def test_reading_without_any_ts_is_stamped_received_at():
    payload = b'{"readings": [{"sensor_id": "s1", "quantity": "flow", "value": 0.1}]}'
    assert decode_one("gcc/v1/gateway/G1/reading", payload).time == RECEIVED_AT


def test_alarm_equals_expected_model():
    assert decode_one("gcc/v1/gateway/gw-bldg-07/alarm", fixture("gateway_alarm.json")) == \
        DeviceAlarm(alarm_id="gas-0101-7731", sensor_id="gas-0101",
                    time=datetime(2024, 5, 1, 8, 2, tzinfo=UTC),
                    alarm_type=AlarmType.GAS_OVER_THRESHOLD, severity=4, state="raised",
                    value=27.5, detail={"threshold_lel": 25, "room": "B2-kitchen"},
                    gateway_id="gw-bldg-07")


def test_gateway_status_equals_expected_model():
    assert decode_one("gcc/v1/gateway/gw-bldg-07/status", fixture("gateway_status.json")) == \
        GatewayStatus(gateway_id="gw-bldg-07", time=datetime(2024, 5, 1, 8, 0, tzinfo=UTC),
                      state="offline")


# --- schema violations name the field ------------------------------------------------------------

@pytest.mark.parametrize("topic, payload, field", [
    ("gcc/v1/terminal/T1/fix", fix_with(acc=5), "acc"),                 # a typo: unknown field
    ("gcc/v1/terminal/T1/fix", fix_with(terminal_id="T2"), "terminal_id"),  # identity is the topic's
    ("gcc/v1/terminal/T1/fix", fix_with(source="owntracks"), "source"),
    ("gcc/v1/terminal/T1/fix", fix_with(lat=91), "lat"),
    ("gcc/v1/terminal/T1/fix", fix_with(lon=...), "lon"),
    ("gcc/v1/terminal/T1/fix", fix_with(lat="31.23"), "lat"),
    ("gcc/v1/terminal/T1/fix", fix_with(heading_deg=360), "heading_deg"),
    ("gcc/v1/terminal/T1/fix", fix_with(battery_pct=101), "battery_pct"),
    ("gcc/v1/terminal/T1/status", b'{"ts": 1714550400, "state": "away"}', "state"),
    ("gcc/v1/terminal/T1/incident",
     b'{"ts": 1714550400, "report_id": "r1", "category": "ufo", "severity": 2, "lat": 31,'
     b' "lon": 121}', "category"),
    ("gcc/v1/terminal/T1/incident",
     b'{"ts": 1714550400, "report_id": "r1", "category": "noise", "severity": 5, "lat": 31,'
     b' "lon": 121}', "severity"),
    ("gcc/v1/terminal/T1/task/ack",
     b'{"ts": 1714550400, "task_id": "k1", "action": "maybe"}', "action"),
    ("gcc/v1/terminal/T1/announcement/read", b'{"ts": 1714550400, "announcement_id": "17"}', "announcement_id"),
    ("gcc/v1/terminal/T1/announcement/read", b'{"ts": 1714550400, "announcement_id": 0}', "announcement_id"),
    ("gcc/v1/gateway/G1/alarm",
     b'{"ts": 1714550400, "alarm_id": "a1", "sensor_id": "s1", "alarm_type": "ghost",'
     b' "severity": 2, "state": "raised"}', "alarm_type"),
    ("gcc/v1/gateway/G1/alarm",
     b'{"ts": 1714550400, "alarm_id": "a1", "sensor_id": "s1", "alarm_type": "tamper",'
     b' "severity": 2, "state": "raised", "detail": ["not", "an", "object"]}', "detail"),
    ("gcc/v1/gateway/G1/reading", b'{"readings": []}', "readings"),
    ("gcc/v1/gateway/G1/reading", b'{"readings": {"sensor_id": "s1"}}', "readings"),
    ("gcc/v1/gateway/G1/reading",
     b'{"readings": [{"sensor_id": "s1", "quantity": "q", "value": 1},'
     b' {"sensor_id": "s1", "quantity": "q", "value": "high"}]}', "readings[1].value"),
    ("gcc/v1/gateway/G1/reading",
     b'{"readings": [{"sensor_id": "s 1", "quantity": "q", "value": 1}]}',
     "readings[0].sensor_id"),
    ("gcc/v1/gateway/G1/reading",
     b'{"readings": [{"sensor_id": "s1", "quantity": "q", "value": 1, "value_text": "x"}]}',
     "readings[0]"),
    ("gcc/v1/gateway/G1/reading",
     b'{"readings": [{"sensor_id": "s1", "quantity": "q", "value": 1, "ts": "noon"}]}',
     "readings[0].ts"),
    ("gcc/v1/gateway/G1/status", b'{"state": "online"}', "ts"),
])
def test_schema_violation_names_the_offending_field(topic, payload, field):
    error = decode_error(topic, payload)
    assert (error.reason, error.detail.startswith(field + ":")) == ("schema_violation", True), \
        error.detail


def test_schema_violation_detail_quotes_the_value_and_why():
    error = decode_error("gcc/v1/terminal/T1/fix", fix_with(lat=91))
    assert error.detail == "lat: Input should be less than or equal to 90 (got 91)"


def test_too_many_readings_are_refused():
    item = {"sensor_id": "s1", "quantity": "q", "value": 1}
    error = decode_error("gcc/v1/gateway/G1/reading", orjson.dumps({"readings": [item] * 1001}))
    assert (error.reason, "1001 items" in error.detail) == ("schema_violation", True)


def test_alarm_detail_over_4_kib_is_refused():
    payload = orjson.dumps({"ts": 1714550400, "alarm_id": "a1", "sensor_id": "s1",
                            "alarm_type": "tamper", "severity": 3, "state": "raised",
                            "detail": {"blob": "x" * 4100}})
    error = decode_error("gcc/v1/gateway/G1/alarm", payload)
    assert (error.reason, error.detail.startswith("detail:"), "4096" in error.detail) == \
        ("schema_violation", True, True)


@pytest.mark.parametrize("payload", [b"[1, 2]", b"42", b'"fix"', b"null"])
def test_json_that_is_not_an_object_is_a_schema_violation(payload):
    error = decode_error("gcc/v1/terminal/T1/fix", payload)
    assert (error.reason, error.detail.startswith("payload:")) == ("schema_violation", True)


@pytest.mark.parametrize("payload", [b"", b"{", b"lat=31", b'{"ts": NaN}', b"\xff\xfe{}",
                                     b'{"ts": "\xe4\xb8"}'])
def test_not_json_or_not_utf8_is_invalid_json(payload):
    assert decode_error("gcc/v1/terminal/T1/fix", payload).reason == "invalid_json"


# --- topics --------------------------------------------------------------------------------------

@pytest.mark.parametrize("topic", [
    "gcc/v1/terminal/T1/task",          # downlink
    "gcc/v1/gateway/G1/cmd",            # downlink
    "gcc/v1/terminal/T1/location",      # unknown leaf
    "gcc/v1/terminal/T1/task/nack",
    "gcc/v1/gateway/G1/fix",            # a terminal leaf under a gateway
    "gcc/v1/terminal/T1/senml",         # a gateway leaf under a terminal
    "gcc/v1/building/B1/status",
    "gcc/v1/terminal//fix",             # no id
    "gcc/v1/terminal/T1",
    "gcc/v2/terminal/T1/fix",
    "gcc/v1/terminal/T1/fix/extra",
    "traccar/T1/fix",
    "",
])
def test_a_topic_outside_the_uplink_layout_is_wrong_topic(topic):
    error = decode_error(topic, fix_with())
    assert (error.reason, repr(topic) in error.detail) == ("wrong_topic", True), error.detail


def test_a_naive_received_at_is_a_programming_error():
    with pytest.raises(ValueError):
        decode("gcc/v1/terminal/T1/fix", fix_with(), datetime(2024, 5, 1, 8, 0))

"""The validated message types: what they accept, what they refuse, and that they are immutable."""
from __future__ import annotations

import math
import typing
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from core.catalogue import AlarmType, Severity
from telemetry.decoders import REASONS, DecodeError
from telemetry.kinds import KINDS
from telemetry.messages import (
    AnnouncementRead,
    CaseUpdate,
    DeviceAlarm,
    DiaryEntry,
    Fix,
    GatewayStatus,
    IncidentReport,
    Message,
    RegionTransition,
    SensorReading,
    TaskAck,
    TerminalStatus,
    is_valid_id,
    utc_from_epoch,
)

UTC = timezone.utc
T = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def fix(**fields) -> Fix:
    return Fix(**{"terminal_id": "T0001", "time": T, "lat": 31.23, "lon": 121.47,
                  "source": "gcc", **fields})


def reading(**fields) -> SensorReading:
    return SensorReading(**{"sensor_id": "gas-0101", "time": T, "quantity": "gas_lel", **fields})


def alarm(**fields) -> DeviceAlarm:
    return DeviceAlarm(**{"alarm_id": "a1", "sensor_id": "gas-0101", "time": T,
                          "alarm_type": "gas_over_threshold", "severity": 4, "state": "raised",
                          **fields})


def incident(**fields) -> IncidentReport:
    return IncidentReport(**{"report_id": "r1", "terminal_id": "T0001", "time": T,
                             "category": "noise", "severity": 1, "lat": 31.23, "lon": 121.47,
                             **fields})


def failing_fields(build, **fields) -> list[tuple]:
    with pytest.raises(ValidationError) as caught:
        build(**fields)
    return [error["loc"] for error in caught.value.errors()]


# --- time ----------------------------------------------------------------------------------------

def test_naive_time_is_refused():
    assert failing_fields(fix, time=datetime(2024, 5, 1, 8, 0)) == [("time",)]


def test_offset_time_is_converted_to_utc():
    assert fix(time=datetime(2024, 5, 1, 16, 0, tzinfo=timezone(timedelta(hours=8)))).time \
        .tzinfo is UTC


def test_offset_time_keeps_its_instant():
    assert fix(time=datetime(2024, 5, 1, 16, 0, tzinfo=timezone(timedelta(hours=8)))).time == T


def test_time_out_of_range_in_utc_is_refused():
    late = datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-2)))
    assert failing_fields(fix, time=late) == [("time",)]


def test_time_must_be_a_datetime_not_a_number():
    assert failing_fields(fix, time=1714550400) == [("time",)]


@pytest.mark.parametrize("seconds, expected", [
    (0, datetime(1970, 1, 1, tzinfo=UTC)),
    (1714550400, T),
    (1.276020076001e+09, datetime(2010, 6, 8, 18, 1, 16, 1000, tzinfo=UTC)),
])
def test_utc_from_epoch(seconds, expected):
    assert utc_from_epoch(seconds) == expected


@pytest.mark.parametrize("seconds", [True, "1714550400", math.inf, math.nan, 1e20])
def test_utc_from_epoch_refuses_non_times(seconds):
    with pytest.raises(ValueError):
        utc_from_epoch(seconds)


# --- ids -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("good", ["T0001", "urn:dev:ow:10e2073a01080063", "gw.bldg-7_a", "网格员01",
                                  "x" * 64])
def test_valid_ids(good):
    assert fix(terminal_id=good).terminal_id == good


@pytest.mark.parametrize("bad", ["", "x" * 65, "T 1", "T\t1", "T/1", "T+1", "T#1", "T\x001",
                                 "T\u200b1", "T\n"])
def test_invalid_ids_are_refused(bad):
    assert failing_fields(fix, terminal_id=bad) == [("terminal_id",)]


@pytest.mark.parametrize("value, expected", [("G1", True), ("G/1", False), ("", False),
                                             (None, False), (7, False)])
def test_is_valid_id(value, expected):
    assert is_valid_id(value) is expected


# --- Fix -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [
    ("lat", 90.0001), ("lat", -90.5), ("lon", 180.1), ("lon", -181), ("accuracy_m", -1),
    ("speed_mps", -0.1), ("heading_deg", 360), ("heading_deg", -1), ("battery_pct", 101),
    ("battery_pct", -1), ("battery_pct", 50.5), ("source", "traccar"), ("lat", "31.23"),
    ("lat", math.nan), ("altitude_m", math.inf), ("lat", True),
])
def test_fix_refuses_out_of_range_or_mistyped(field, value):
    assert failing_fields(fix, **{field: value}) == [(field,)]


@pytest.mark.parametrize("field, value", [("lat", 90), ("lat", -90), ("lon", 180), ("lon", -180),
                                          ("heading_deg", 0), ("heading_deg", 359.99),
                                          ("battery_pct", 0), ("battery_pct", 100),
                                          ("altitude_m", -12.5), ("accuracy_m", 0)])
def test_fix_accepts_the_range_limits(field, value):
    assert getattr(fix(**{field: value}), field) == value


def test_fix_refuses_unknown_fields():
    assert failing_fields(fix, accuracy=5) == [("accuracy",)]


def test_messages_are_immutable():
    message = fix()
    with pytest.raises(ValidationError):
        message.lat = 0.0  # type: ignore[misc]


def test_messages_are_hashable_values():
    assert len({fix(), fix()}) == 1


# --- SensorReading: exactly one value, or only a sum --------------------------------------------

@pytest.mark.parametrize("values", [{"value": 1.5}, {"value_text": "B1"}, {"value_bool": False},
                                    {"value_sum": 12.5}, {"value": 1.5, "value_sum": 12.5}])
def test_reading_with_one_value_or_a_sum(values):
    assert reading(**values).model_dump(include=set(values)) == values


@pytest.mark.parametrize("values", [{}, {"value": 1.0, "value_text": "1"},
                                    {"value_text": "x", "value_bool": True}])
def test_reading_with_no_or_two_values_is_refused(values):
    assert failing_fields(reading, **values) == [()]


def test_reading_refuses_nan():
    assert failing_fields(reading, value=math.nan) == [("value",)]


def test_reading_quantity_follows_the_id_rule():
    assert failing_fields(reading, value=1.0, quantity="gas lel") == [("quantity",)]


# --- DeviceAlarm ---------------------------------------------------------------------------------

def test_alarm_type_string_becomes_the_enum():
    assert alarm().alarm_type is AlarmType.GAS_OVER_THRESHOLD


def test_alarm_type_must_be_in_the_catalogue():
    assert failing_fields(alarm, alarm_type="ghost") == [("alarm_type",)]


@pytest.mark.parametrize("severity", [0, 5])
def test_alarm_severity_is_1_to_4(severity):
    assert failing_fields(alarm, severity=severity) == [("severity",)]


def test_alarm_severity_accepts_the_catalogue_enum():
    assert alarm(severity=Severity.CRITICAL).severity == 4


def test_alarm_detail_up_to_4_kib():
    detail = {"blob": "x" * (4096 - len('{"blob":""}'))}
    assert alarm(detail=detail).detail == detail


def test_alarm_detail_over_4_kib_is_refused():
    detail = {"blob": "x" * (4097 - len('{"blob":""}'))}
    assert failing_fields(alarm, detail=detail) == [("detail",)]


def test_alarm_detail_must_be_an_object():
    assert failing_fields(alarm, detail=[1, 2]) == [("detail",)]


def test_alarm_state():
    assert failing_fields(alarm, state="open") == [("state",)]


# --- IncidentReport, TaskAck, statuses, transition ----------------------------------------------

def test_incident_category_must_be_in_the_catalogue():
    assert failing_fields(incident, category="ufo") == [("category",)]


@pytest.mark.parametrize("field, limit", [("address", 200), ("description", 2000),
                                          ("photo_ref", 512)])
def test_incident_text_limits(field, limit):
    assert failing_fields(incident, **{field: "x" * (limit + 1)}) == [(field,)]


def test_incident_text_at_its_limit_is_accepted():
    assert len(incident(description="问" * 2000).description) == 2000


def test_task_ack_note_limit():
    with pytest.raises(ValidationError):
        TaskAck(task_id="k1", terminal_id="T1", time=T, action="done", note="x" * 501)


def test_task_ack_action():
    with pytest.raises(ValidationError):
        TaskAck(task_id="k1", terminal_id="T1", time=T, action="ignored")


def test_terminal_status_sos_defaults_false():
    assert TerminalStatus(terminal_id="T1", time=T, state="online", source="gcc").sos is False


def test_gateway_status_state():
    with pytest.raises(ValidationError):
        GatewayStatus(gateway_id="G1", time=T, state="rebooting")


def test_region_transition_without_coordinates():
    assert RegionTransition(terminal_id="jane", time=T, event="leave").lat is None


def test_region_transition_event():
    with pytest.raises(ValidationError):
        RegionTransition(terminal_id="jane", time=T, event="pass")


# --- the union and the error type ---------------------------------------------------------------

def test_message_union_holds_every_kinds_model():
    assert set(typing.get_args(Message)) == set(KINDS)
    assert set(KINDS) >= {Fix, TerminalStatus, SensorReading, DeviceAlarm, IncidentReport, TaskAck, CaseUpdate,
                          GatewayStatus, RegionTransition, AnnouncementRead, DiaryEntry}


def test_decode_error_carries_reason_and_detail():
    error = DecodeError("schema_violation", "lat: too big")
    assert (error.reason, error.detail, str(error)) == \
        ("schema_violation", "lat: too big", "schema_violation: lat: too big")


def test_decode_error_reasons_are_the_documented_codes():
    assert {"invalid_json", "schema_violation", "wrong_topic", "unsupported_type",
                       "invalid_senml", "invalid_text"} == REASONS


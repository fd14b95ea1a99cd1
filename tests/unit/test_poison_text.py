"""A NUL (U+0000) in any free text is refused at decode as `invalid_text`, naming the field:
PostgreSQL can store it neither in text nor in jsonb, and one such message used to make the whole
batch fail at commit."""
from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest

from telemetry.decoders import INVALID_TEXT, REASONS, DecodeError, decode, owntracks

NOW = datetime(2026, 11, 21, 8, 0, tzinfo=timezone.utc)
TS = NOW.isoformat()
INCIDENT = {"ts": TS, "report_id": "R1", "category": "manhole_cover", "severity": 2, "lat": 26.08, "lon": 119.3}
ALARM = {"ts": TS, "alarm_id": "a1", "sensor_id": "s1", "alarm_type": "gas_over_threshold", "severity": 4,
         "state": "raised"}


def _refusal(topic: str, body) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        decode(topic, orjson.dumps(body), NOW)
    return caught.value


@pytest.mark.parametrize("topic, body, field", [
    ("gcc/v1/terminal/T1/incident", {**INCIDENT, "description": "井盖\u0000缺失"}, "description"),
    ("gcc/v1/terminal/T1/incident", {**INCIDENT, "address": "\u0000"}, "address"),
    ("gcc/v1/terminal/T1/incident", {**INCIDENT, "photo_ref": "p/\u0000.jpg"}, "photo_ref"),
    ("gcc/v1/terminal/T1/incident", {**INCIDENT, "category": "manhole\u0000cover"}, "category"),
    ("gcc/v1/terminal/T1/task/ack", {"ts": TS, "task_id": "t1", "action": "done", "note": "ok\u0000"}, "note"),
    ("gcc/v1/gateway/G1/alarm", {**ALARM, "detail": {"room": "B2\u0000"}}, "detail"),
    ("gcc/v1/gateway/G1/reading", {"readings": [{"sensor_id": "s1", "quantity": "floor", "value_text": "B\u00001"}]},
     "readings[0].value_text"),
    ("gcc/v1/gateway/G1/reading", {"readings": [{"sensor_id": "s1", "quantity": "t", "value": 1.0,
                                                 "unit": "\u0000C"}]}, "readings[0].unit"),
    ("gcc/v1/gateway/G1/senml", [{"bn": "s1/", "n": "floor", "vs": "B\u00001"}], "value_text"),
    ("gcc/v1/gateway/G1/senml", [{"bn": "s1/", "n": "t", "u": "\u0000", "v": 20.5}], "unit"),
    ("owntracks/alice/phone/event", {"_type": "transition", "tst": int(NOW.timestamp()), "event": "enter",
                                     "desc": "home\u0000"}, "desc"),
])
def test_a_nul_in_free_text_is_refused_as_invalid_text_naming_the_field(topic, body, field):
    error = _refusal(topic, body)
    assert error.reason == INVALID_TEXT
    assert error.detail.startswith(f"{field}: must not contain NUL") or f": {field}: must not" in error.detail


def test_a_nul_deep_inside_an_alarm_detail_is_found_and_its_place_named():
    error = _refusal("gcc/v1/gateway/G1/alarm", {**ALARM, "detail": {"rooms": [1, {"name": "x\u0000"}]}})
    assert error.reason == INVALID_TEXT
    assert "detail['rooms'][1]['name']" in error.detail


def test_a_nul_in_a_key_of_an_alarm_detail_is_refused_too():
    error = _refusal("gcc/v1/gateway/G1/alarm", {**ALARM, "detail": {"ro\u0000om": 1}})
    assert error.reason == INVALID_TEXT
    assert "in the key" in error.detail


def test_an_alarm_detail_nested_deeper_than_json_allows_is_a_schema_violation_not_our_bug():
    nested = b'{"x":' * 1000 + b"{}" + b"}" * 1000          # orjson reads 1,024 levels, writes 255
    payload = orjson.dumps({**ALARM, "detail": None}).replace(b'"detail":null', b'"detail":' + nested)
    with pytest.raises(DecodeError) as caught:
        decode("gcc/v1/gateway/G1/alarm", payload, NOW)
    assert caught.value.reason in REASONS
    assert "detail" in caught.value.detail and "Recursion limit" in caught.value.detail


def test_a_nul_in_owntracks_http_mode_is_refused_too():
    body = {"_type": "transition", "tst": int(NOW.timestamp()), "event": "leave", "desc": "\u0000"}
    with pytest.raises(DecodeError) as caught:
        owntracks.decode_http(orjson.dumps(body), "alice", "phone", NOW)
    assert caught.value.reason == INVALID_TEXT


def test_text_without_nul_but_with_other_control_characters_is_kept():
    [report] = decode("gcc/v1/terminal/T1/incident", orjson.dumps({**INCIDENT, "description": "line 1\nline 2\t!"}),
                      NOW)
    assert report.description == "line 1\nline 2\t!"


def test_invalid_text_is_a_published_reason_code():
    assert INVALID_TEXT == "invalid_text" and INVALID_TEXT in REASONS


def test_a_nul_beside_another_error_is_still_invalid_text_and_both_are_named():
    error = _refusal("gcc/v1/terminal/T1/incident", {**INCIDENT, "severity": 9, "description": "\u0000"})
    assert error.reason == INVALID_TEXT
    assert "severity" in error.detail and "description" in error.detail

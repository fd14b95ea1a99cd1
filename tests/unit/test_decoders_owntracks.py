"""OwnTracks payloads (the booklet's examples as raw fixtures), over MQTT and in HTTP mode."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from telemetry.decoders import DecodeError, decode
from telemetry.decoders.owntracks import decode_http
from telemetry.messages import Fix, RegionTransition, TerminalStatus

FIXTURES = Path(__file__).parent / "fixtures" / "payloads" / "owntracks"
RECEIVED_AT = datetime(2024, 5, 1, 8, 5, 0, tzinfo=timezone.utc)
UTC = timezone.utc
TOPIC = "owntracks/jane/phone"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def decode_one(payload: bytes, topic: str = TOPIC):
    messages = decode(topic, payload, RECEIVED_AT)
    assert len(messages) == 1
    return messages[0]


def decode_error(payload: bytes, topic: str = TOPIC) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        decode(topic, payload, RECEIVED_AT)
    return caught.value


def location(**fields) -> bytes:
    body = {"_type": "location", "lat": 31.23, "lon": 121.47, "tst": 1714550405, **fields}
    return orjson.dumps({k: v for k, v in body.items() if v is not ...})


# --- the booklet's location example ------------------------------------------------------------

@pytest.fixture(scope="module")
def fix() -> Fix:
    return decode_one(fixture("location_booklet.json"))


def test_location_is_a_fix(fix):
    assert isinstance(fix, Fix)


def test_location_terminal_id_is_the_topic_user(fix):
    assert fix.terminal_id == "jane"


def test_location_device_is_the_topic_device(fix):
    assert fix.device == "phone"


def test_location_tst_is_the_time(fix):
    assert fix.time == datetime(2013, 8, 17, 4, 55, 17, tzinfo=UTC)


def test_location_lat(fix):
    assert fix.lat == 48.858330


def test_location_lon(fix):
    assert fix.lon == 2.295130


def test_location_acc_is_accuracy_in_metres(fix):
    assert fix.accuracy_m == 75


def test_location_alt_is_altitude_in_metres(fix):
    assert fix.altitude_m == 13


def test_location_vel_km_per_h_becomes_metres_per_second(fix):
    assert fix.speed_mps == 15.0  # 54 km/h


def test_location_cog_is_the_heading(fix):
    assert fix.heading_deg == 270


def test_location_batt_is_the_battery(fix):
    assert fix.battery_pct == 67


def test_location_source_is_owntracks_over_mqtt(fix):
    assert fix.source == "owntracks"


def test_greenwich_location_equals_expected_model():
    assert decode_one(fixture("location_greenwich.json")) == Fix(
        terminal_id="jane", device="phone", time=datetime(2014, 7, 31, 10, 51, 34, tzinfo=UTC),
        lat=48.858330, lon=2.295130, altitude_m=160, heading_deg=0, speed_mps=12 * 5 / 18,
        source="owntracks")


def test_absent_elements_are_unknown():
    assert decode_one(fixture("location_minimal.json")) == Fix(
        terminal_id="jane", device="phone", time=datetime(2024, 5, 1, 8, 0, 5, tzinfo=UTC),
        lat=31.230416, lon=121.473701, source="owntracks")


def test_absent_vel_is_an_unknown_speed_not_zero():
    assert decode_one(location(vel=...)).speed_mps is None


def test_cog_360_is_north():
    assert decode_one(location(cog=360)).heading_deg == 0


@pytest.mark.parametrize("element, field", [("vel", "speed_mps"), ("cog", "heading_deg"),
                                            ("acc", "accuracy_m")])
def test_negative_sentinel_is_unknown(element, field):
    assert getattr(decode_one(location(**{element: -1})), field) is None


def test_negative_altitude_is_kept():
    assert decode_one(location(alt=-4)).altitude_m == -4


def test_unknown_elements_are_ignored():
    fix = decode_one(location(vac=3, SSID="home", BSSID="aa:bb", inregions=["Home"], m=2,
                              created_at=1714550406, future_field={"x": 1}))
    assert fix.lat == 31.23


# --- lwt and transition --------------------------------------------------------------------------

def test_lwt_is_an_offline_status_at_reception():
    # The lwt's tst is when the app connected, not when the broker published the will.
    assert decode_one(fixture("lwt_booklet.json")) == TerminalStatus(
        terminal_id="jane", time=RECEIVED_AT, state="offline", source="owntracks")


def test_booklet_transition_equals_expected_model():
    assert decode_one(fixture("transition_booklet.json"), TOPIC + "/event") == RegionTransition(
        terminal_id="jane", time=datetime(2015, 3, 29, 13, 10, 3, tzinfo=UTC), event="enter",
        region="my Indian restaurant", lat=12.34, lon=44.5, accuracy_m=130)


def test_transition_without_coordinates_or_region():
    payload = b'{"_type":"transition","tst":1714550405,"event":"leave","t":"b","wtst":1}'
    assert decode_one(payload, TOPIC + "/event") == RegionTransition(
        terminal_id="jane", time=datetime(2024, 5, 1, 8, 0, 5, tzinfo=UTC), event="leave")


def test_transition_with_unknown_event_names_event():
    error = decode_error(b'{"_type":"transition","tst":1714550405,"event":"pass"}', TOPIC + "/event")
    assert (error.reason, error.detail.startswith("event:")) == ("schema_violation", True)


# --- refused payloads ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["cmd", "card", "waypoint", "waypoints", "configuration", "beacon",
                                  "steps", "encrypted", "request", "status", "dump"])
def test_unhandled_type_is_unsupported_and_named(kind):
    error = decode_error(orjson.dumps({"_type": kind, "tst": 1714550405}))
    assert (error.reason, repr(kind) in error.detail) == ("unsupported_type", True)


def test_booklet_cmd_example_is_unsupported():
    assert decode_error(fixture("cmd_booklet.json")).reason == "unsupported_type"


def test_missing_type_is_a_schema_violation_naming_type():
    error = decode_error(b'{"lat": 31.23, "lon": 121.47, "tst": 1714550405}')
    assert (error.reason, error.detail.startswith("_type:")) == ("schema_violation", True)


@pytest.mark.parametrize("fields, element", [
    ({"tst": ...}, "tst"),
    ({"tst": "2024-05-01T08:00:00"}, "tst"),       # a naive ISO time is not an epoch
    ({"tst": "yesterday"}, "tst"),
    ({"tst": True}, "tst"),
    ({"tst": 1714550405000}, "tst"),               # milliseconds
    ({"lat": 91}, "lat"),
    ({"lon": -180.5}, "lon"),
    ({"lat": ...}, "lat"),
    ({"lat": "31.23"}, "lat"),
    ({"vel": "54"}, "vel"),
    ({"acc": [1]}, "acc"),
    ({"cog": 400}, "cog"),
    ({"batt": 101}, "batt"),
    ({"batt": 50.5}, "batt"),
])
def test_bad_element_is_a_schema_violation_naming_it(fields, element):
    error = decode_error(location(**fields))
    assert (error.reason, error.detail.startswith(element + ":")) == ("schema_violation", True), \
        error.detail


def test_json_that_is_not_an_object_is_a_schema_violation():
    error = decode_error(b'[{"_type": "location"}]')
    assert (error.reason, error.detail.startswith("payload:")) == ("schema_violation", True)


def test_not_json_is_invalid_json():
    assert decode_error(b"_type=location").reason == "invalid_json"


@pytest.mark.parametrize("topic", ["owntracks/jane", "owntracks/jane/phone/cmd",
                                   "owntracks/jane/phone/event/extra", "owntracks/jane/phone/gps",
                                   "owntracks//phone", "owntracks/jane/ph one"])
def test_topic_outside_owntracks_layout_is_wrong_topic(topic):
    error = decode_error(location(), topic)
    assert (error.reason, repr(topic) in error.detail) == ("wrong_topic", True)


@pytest.mark.parametrize("leaf", ["event", "waypoint", "status", "step"])
def test_app_sub_topics_are_decoded_by_their_type(leaf):
    assert decode_one(location(), f"{TOPIC}/{leaf}").terminal_id == "jane"


# --- HTTP mode -----------------------------------------------------------------------------------

def http_one(payload: bytes, user: str | None, device: str | None):
    messages = decode_http(payload, user, device, RECEIVED_AT)
    assert len(messages) == 1
    return messages[0]


def test_http_identity_from_the_headers():
    fix = http_one(fixture("location_http.json"), "bob", "tablet")
    assert (fix.terminal_id, fix.device) == ("bob", "tablet")


def test_http_source_is_owntracks_http():
    assert http_one(fixture("location_http.json"), "bob", "tablet").source == "owntracks-http"


def test_http_identity_falls_back_to_the_payload_topic():
    fix = http_one(fixture("location_http.json"), None, None)
    assert (fix.terminal_id, fix.device) == ("jane", "phone")


def test_http_empty_headers_count_as_absent():
    fix = http_one(fixture("location_http.json"), "", "")
    assert (fix.terminal_id, fix.device) == ("jane", "phone")


def test_http_user_without_device_takes_the_tid():
    fix = http_one(location(tid="ph"), "bob", None)
    assert (fix.terminal_id, fix.device) == ("bob", "ph")


def test_http_user_without_device_or_tid_has_no_device():
    assert http_one(location(), "bob", None).device is None


def test_http_location_equals_expected_model():
    assert http_one(fixture("location_http.json"), None, None) == Fix(
        terminal_id="jane", device="phone", time=datetime(2024, 5, 1, 8, 0, 5, tzinfo=UTC),
        lat=31.230416, lon=121.473701, accuracy_m=12, speed_mps=5.0, battery_pct=54,
        source="owntracks-http")


def test_http_lwt_is_offline_from_http():
    status = http_one(fixture("lwt_booklet.json"), "bob", "tablet")
    assert (status.state, status.source) == ("offline", "owntracks-http")


@pytest.mark.parametrize("payload", [location(), location(topic="owntracks/jane"),
                                     location(topic=42)])
def test_http_without_any_identity_is_a_schema_violation(payload):
    with pytest.raises(DecodeError) as caught:
        decode_http(payload, None, "tablet", RECEIVED_AT)
    assert (caught.value.reason, caught.value.detail.startswith("no identity")) == \
        ("schema_violation", True)


def test_http_unsupported_type():
    with pytest.raises(DecodeError) as caught:
        decode_http(fixture("cmd_booklet.json"), "bob", "tablet", RECEIVED_AT)
    assert caught.value.reason == "unsupported_type"

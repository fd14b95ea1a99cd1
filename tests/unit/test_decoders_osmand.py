"""The OsmAnd protocol (Traccar Client), against Traccar's own decoder test requests
(fixtures/payloads/osmand, verbatim from OsmAndProtocolDecoderTest.java at traccar 9e5c458)."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from telemetry.decoders import DecodeError, osmand
from telemetry.messages import Fix, TerminalStatus

FIXTURES = Path(__file__).parent / "fixtures" / "payloads" / "osmand"
QUERIES = (FIXTURES / "traccar_queries.txt").read_text().splitlines()
NOW = datetime(2026, 12, 3, 8, 0, tzinfo=timezone.utc)
UTC = timezone.utc


def query(n: int) -> list:
    """Traccar's query fixture n (1-based), decoded as its request would be."""
    uri = QUERIES[n - 1]
    params = osmand.form_parameters(uri.partition("?")[2], b"")
    return osmand.decode_form(uri.partition("?")[2].encode(), osmand.claimed_id(params) or "?", NOW)


def body(n: int) -> list:
    payload = (FIXTURES / f"traccar_json_{n}.json").read_bytes()
    return osmand.decode_json(payload, osmand.json_claimed_id(payload), NOW)


def test_there_are_the_eleven_query_requests_of_traccars_test():
    assert len(QUERIES) == 11 and all(q.startswith("/?") for q in QUERIES)


def test_q1_cells_and_wifi_without_a_position_is_a_heartbeat_at_its_time():
    assert query(1) == [TerminalStatus(terminal_id="123456", time=datetime(2013, 8, 22, 13, 14, 27, tzinfo=UTC),
                                       state="online", source="osmand")]


def test_q2_without_an_id_claims_no_device():
    assert osmand.claimed_id(osmand.form_parameters(QUERIES[1].partition("?")[2], b"")) is None


def test_q3_iso_timestamp_with_its_zone():
    fix = query(3)[0]
    assert (fix.terminal_id, fix.time, fix.lat, fix.lon, fix.altitude_m, fix.speed_mps) == \
        ("902064", datetime(2016, 1, 27, 18, 55, 47, tzinfo=UTC), 42.06288, -88.23412, 224.0, 0.0)


def test_q4_a_timestamp_above_2_31_is_milliseconds():
    assert query(4)[0].time == datetime(2015, 9, 12, 14, 38, 6, 579000, tzinfo=UTC)


def test_q5_date_and_time_with_a_plus_for_the_space_and_the_id_last():
    fix = query(5)[0]
    assert (fix.terminal_id, fix.time, fix.altitude_m) == \
        ("353861053849681", datetime(2014, 6, 4, 9, 10, 11, tzinfo=UTC), 384.7)


def test_q6_bearing_and_altitude_zero_are_kept():
    fix = query(6)[0]
    assert (fix.heading_deg, fix.altitude_m, fix.speed_mps) == (0.0, 0.0, 0.0)


def test_q7_the_minimal_request():
    assert query(7) == [Fix(terminal_id="123456", time=datetime(2013, 8, 22, 13, 14, 27, tzinfo=UTC), lat=60.0,
                            lon=30.0, source="osmand")]


def test_q8_deviceid_and_heading_aliases_and_no_timestamp_is_now():
    fix = query(8)[0]
    assert (fix.terminal_id, fix.heading_deg, fix.time) == ("123456", 0.0, NOW)


def test_q9_battery_in_percent():
    fix = query(9)[0]
    assert (fix.battery_pct, fix.altitude_m, fix.lat, fix.lon) == (87, 350.059479, 41.666667, -0.883333)


def test_q10_location_is_lat_comma_lon():
    assert (query(10)[0].lat, query(10)[0].lon) == (60.0, 30.0)


def test_q11_speed_is_in_knots():
    fix = query(11)[0]
    assert (round(fix.speed_mps, 4), round(fix.heading_deg, 5), fix.time) == \
        (round(40 * 1852 / 3600, 4), 7.19890, datetime(2017, 9, 7, 5, 56, 50, tzinfo=UTC))


def test_j1_json_coordinates_battery_fraction_and_no_heading():
    fix = body(1)[0]
    assert (fix.terminal_id, fix.time, fix.lat, fix.lon, fix.accuracy_m, fix.speed_mps, fix.heading_deg,
            fix.altitude_m, fix.battery_pct) == \
        ("48241179", datetime(2025, 6, 15, 13, 45, 12, 862000, tzinfo=UTC), 37.4219983, -122.084, 5.0, 0.0, None,
         5.0, 100)


def test_j2_extras_are_ignored():
    assert body(2) == body(1)


def test_j3_negative_speed_heading_and_battery_are_unknown():
    fix = body(3)[0]
    assert (fix.terminal_id, fix.speed_mps, fix.heading_deg, fix.battery_pct, fix.lat) == \
        ("658765", None, None, None, 37.785834000000001)


def test_j4_json_speed_is_metres_per_second():
    fix = body(4)[0]
    assert (fix.speed_mps, fix.heading_deg, fix.accuracy_m, fix.altitude_m, fix.battery_pct) == \
        (18.67, 63.0, 3.8, 35.7, 79)


def test_an_sos_alarm_adds_an_sos_status():
    messages = osmand.decode_form(b"id=p1&lat=26.08&lon=119.3&timestamp=1764748800&alarm=sos&batt=40", "p1", NOW)
    assert [type(m).__name__ for m in messages] == ["Fix", "TerminalStatus"]
    assert (messages[1].sos, messages[1].battery_pct) == (True, 40)


def test_a_fix_the_device_calls_invalid_is_only_a_heartbeat():
    assert [type(m).__name__ for m in osmand.decode_form(b"id=p1&lat=1&lon=2&valid=false", "p1", NOW)] == \
        ["TerminalStatus"]


def test_the_body_is_read_only_when_the_uri_has_no_parameters():
    assert osmand.form_parameters("", b"id=a&lat=1") == {"id": ["a"], "lat": ["1"]}
    assert osmand.form_parameters("id=b", b"id=a&lat=1") == {"id": ["b"]}


@pytest.mark.parametrize(("payload", "named"), [
    (b"id=p1&lat=NaN&lon=2", "lat"), (b"id=p1&lat=abc&lon=2", "lat"), (b"id=p1&lat=91&lon=2", "lat"),
    (b"id=p1&lat=1&lon=2&timestamp=2026-13-01", "timestamp"),
    (b"id=p1&lat=1&lon=2&timestamp=2026-12-01T08:00:00", "timestamp"),
    (b"id=p1&lat=1&lon=2&batt=120", "batt")])
def test_what_no_device_means_is_refused_naming_the_parameter(payload, named):
    with pytest.raises(DecodeError) as caught:
        osmand.decode_form(payload, "p1", NOW)
    error = caught.value
    assert (error.reason, error.detail.startswith(named)) == ("schema_violation", True), error.detail


def test_a_json_array_is_refused():
    with pytest.raises(DecodeError) as caught:
        osmand.decode_json(b'[{"id": "p1", "lat": 1, "lon": 2}]', "p1", NOW)
    assert caught.value.reason == "schema_violation"

"""SenML (RFC 8428): the resolver against the RFC's own examples, then our decoder and naming rule."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from telemetry.decoders import DecodeError, decode
from telemetry.decoders.senml import ResolvedRecord, resolve
from telemetry.messages import SensorReading, utc_from_epoch

FIXTURES = Path(__file__).parent / "fixtures" / "payloads" / "senml"
NOW = datetime(2024, 5, 1, 8, 5, 0, tzinfo=timezone.utc)
UTC = timezone.utc
TOPIC = "gcc/v1/gateway/gw-bldg-07/senml"
URN = "urn:dev:ow:10e2073a01080063"


def pack(name: str) -> list:
    return orjson.loads((FIXTURES / name).read_bytes())


def resolve_error(records: list) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        resolve(records, NOW)
    return caught.value


def decode_error(payload: bytes) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        decode(TOPIC, payload, NOW)
    return caught.value


# --- the resolver, against RFC 8428 section 5 ---------------------------------------------------

def test_5_1_1_single_datapoint_is_taken_roughly_now():
    assert resolve(pack("rfc8428_5_1_1_single_datapoint.json"), NOW) == [
        ResolvedRecord(name=URN, time=NOW, unit="Cel", value=23.1)]


def test_5_1_2_base_name_is_prepended():
    assert [r.name for r in resolve(pack("rfc8428_5_1_2_multiple_datapoints.json"), NOW)] == \
        [f"{URN}:voltage", f"{URN}:current"]


def test_5_1_2_records_without_time_are_now():
    assert {r.time for r in resolve(pack("rfc8428_5_1_2_multiple_datapoints.json"), NOW)} == {NOW}


def test_5_1_2_relative_times_add_to_an_absolute_base_time():
    records = resolve(pack("rfc8428_5_1_2_relative_times.json"), NOW)
    base = utc_from_epoch(1.276020076001e+09)  # Tue Jun 8 18:01:16.001 UTC 2010
    currents = [r.time for r in records if r.name.endswith(":current")]
    assert currents == [base + timedelta(seconds=s) for s in (-5, -4, -3, -2, -1, 0)]


def test_5_1_2_base_time_is_the_rfc_date():
    records = resolve(pack("rfc8428_5_1_2_relative_times.json"), NOW)
    assert records[-1].time == datetime(2010, 6, 8, 18, 1, 16, 1000, tzinfo=UTC)


def test_5_1_2_unit_overrides_base_unit():
    records = resolve(pack("rfc8428_5_1_2_relative_times.json"), NOW)
    assert {r.name.rsplit(":", 1)[1]: r.unit for r in records} == {"voltage": "V", "current": "A"}


def test_5_1_3_resolves_to_the_rfc_5_1_4_resolved_data():
    expected = [ResolvedRecord(name=r["n"], unit=r["u"], time=utc_from_epoch(r["t"]), value=r["v"])
                for r in pack("rfc8428_5_1_4_resolved_data.json")]
    assert resolve(pack("rfc8428_5_1_3_multiple_measurements.json"), NOW) == expected


def test_5_1_3_resolved_first_time_is_the_rfc_date():
    first = resolve(pack("rfc8428_5_1_3_multiple_measurements.json"), NOW)[0]
    assert first.time == datetime(2011, 10, 31, 13, 24, 24, tzinfo=UTC)  # Mon Oct 31 13:24:24 2011


def test_5_1_5_multiple_data_types():
    assert resolve(pack("rfc8428_5_1_5_multiple_data_types.json"), NOW) == [
        ResolvedRecord(name=f"{URN}:temp", time=NOW, unit="Cel", value=23.1),
        ResolvedRecord(name=f"{URN}:label", time=NOW, value_text="Machine Room"),
        ResolvedRecord(name=f"{URN}:open", time=NOW, value_bool=False),
        ResolvedRecord(name=f"{URN}:nfv-reader", time=NOW, value_text="aGkgCg"),
    ]


def test_5_1_6_later_base_name_replaces_the_earlier_base_time_carries_on():
    t = utc_from_epoch(1.320078429e+09)
    assert resolve(pack("rfc8428_5_1_6_collection_of_resources.json"), NOW) == [
        ResolvedRecord(name="2001:db8::2/temperature", time=t, unit="Cel", value=25.2),
        ResolvedRecord(name="2001:db8::2/humidity", time=t, unit="%RH", value=30),
        ResolvedRecord(name="2001:db8::1/temperature", time=t, unit="Cel", value=12.3),
        ResolvedRecord(name="2001:db8::1/humidity", time=t, unit="%RH", value=67),
    ]


def test_5_1_7_a_base_only_record_is_context_not_a_measurement():
    assert resolve(pack("rfc8428_5_1_7_setting_an_actuator.json"), NOW) == [
        ResolvedRecord(name=f"{URN}:temp", time=NOW, unit="Cel", value=23.1),
        ResolvedRecord(name=f"{URN}:heat", time=NOW, unit="/", value=1),
        ResolvedRecord(name=f"{URN}:fan", time=NOW, unit="/", value=0),
    ]


def test_5_1_7_lights_on_share_base_time_and_unit():
    t = utc_from_epoch(1.320078429e+09)
    assert resolve(pack("rfc8428_5_1_7_lights_on.json"), NOW) == [
        ResolvedRecord(name="2001:db8::3", time=t, unit="/", value=1),
        ResolvedRecord(name="2001:db8::4", time=t, unit="/", value=1),
    ]


def test_5_1_7_lights_off_100_ms_later():
    records = resolve(pack("rfc8428_5_1_7_lights_off.json"), NOW)
    assert [r.time for r in records[2:]] == [datetime(2011, 10, 31, 16, 27, 9, 100000, tzinfo=UTC)] * 2


# --- resolution rules beyond the examples --------------------------------------------------------

def test_base_value_adds_to_value():
    assert resolve([{"bn": "m/", "bv": 1000, "n": "volume", "v": 5}], NOW)[0].value == 1005


def test_base_value_does_not_create_a_value():
    records = resolve([{"bn": "m/", "bv": 1000, "n": "volume", "v": 5}, {"n": "label", "vs": "x"}],
                      NOW)
    assert records[1].value is None


def test_base_sum_adds_to_sum():
    assert resolve([{"bn": "m/", "bs": 100, "n": "volume", "s": 2.5}], NOW)[0].value_sum == 102.5


def test_base_sum_alone_gives_a_sum():  # RFC 8428 4.5.4: a missing Sum counts as zero
    records = resolve([{"bn": "m/", "bs": 100, "n": "volume", "s": 1}, {"n": "volume", "v": 3}], NOW)
    assert records[1].value_sum == 100


def test_record_with_only_a_sum():
    assert resolve([{"n": "m/volume", "s": 12.5}], NOW) == [
        ResolvedRecord(name="m/volume", time=NOW, value_sum=12.5)]


def test_update_time_is_kept():
    assert resolve([{"n": "m/flow", "v": 1, "ut": 300}], NOW)[0].update_time == 300


@pytest.mark.parametrize("t, expected", [
    (-60, NOW - timedelta(seconds=60)),
    (0, NOW),
    (2.5, NOW + timedelta(seconds=2.5)),
    (2 ** 28 - 1, NOW + timedelta(seconds=2 ** 28 - 1)),
    (2 ** 28, datetime(1978, 7, 4, 21, 24, 16, tzinfo=UTC)),   # the smallest absolute time
    (1714550400, datetime(2024, 5, 1, 8, 0, tzinfo=UTC)),
])
def test_time_below_2_pow_28_is_relative_to_now(t, expected):
    assert resolve([{"n": "m/flow", "v": 1, "t": t}], NOW)[0].time == expected


def test_relative_now_given_with_an_offset_resolves_in_utc():
    now = NOW.astimezone(timezone(timedelta(hours=8)))
    assert resolve([{"n": "m/flow", "v": 1}], now)[0].time.utcoffset() == timedelta(0)


def test_resolved_records_are_in_chronological_order():
    records = resolve([{"bn": "m/", "n": "a", "v": 1, "t": -1}, {"n": "b", "v": 2, "t": -3},
                       {"n": "c", "v": 3, "t": -2}], NOW)
    assert [r.name for r in records] == ["m/b", "m/c", "m/a"]


def test_unknown_fields_are_ignored():
    assert resolve([{"n": "m/flow", "v": 1, "foo": "bar", "xyz": {"a": 1}}], NOW)[0].value == 1


def test_bver_up_to_10_is_accepted():
    assert len(resolve([{"bver": 10, "n": "m/flow", "v": 1}, {"n": "m/flow", "v": 2}], NOW)) == 2


def test_an_empty_pack_resolves_to_nothing():
    assert resolve([], NOW) == []


# --- resolver errors name the field --------------------------------------------------------------

@pytest.mark.parametrize("records, mentions", [
    ({"n": "m/flow", "v": 1}, "pack"),                                   # not an array
    ([["n", "m/flow"]], "record 0"),                                     # record not an object
    ([{"v": 1}], "no name"),
    ([{"n": "m/flow rate", "v": 1}], "'m/flow rate'"),                   # a space
    ([{"n": "-m/flow", "v": 1}], "'-m/flow'"),                           # must start alnum
    ([{"bn": "水表/", "n": "flow", "v": 1}], "'水表/flow'"),
    ([{"n": "m/flow", "v": 1, "vs": "1"}], "v and vs"),
    ([{"n": "m/flow", "vb": True, "vd": "aGk"}], "vb and vd"),
    ([{"n": "m/flow"}], "no value"),
    ([{"n": "m/flow", "t": 5, "u": "m3"}], "no value"),
    ([{"bver": 11, "n": "m/flow", "v": 1}], "bver"),
    ([{"bver": 5, "n": "m/flow", "v": 1}, {"bver": 10, "n": "m/flow", "v": 1}], "bver"),
    ([{"n": "m/flow", "v": 1}, {"bver": 5, "n": "m/flow", "v": 1}], "bver"),
    ([{"bver": 0, "n": "m/flow", "v": 1}], "bver"),
    ([{"n": "m/flow", "v": 1, "crit_": 1}], "crit_"),
    ([{"n": "m/flow", "v": "1"}], "v:"),
    ([{"n": "m/flow", "v": True}], "v:"),
    ([{"n": "m/flow", "vb": "true"}], "vb:"),
    ([{"n": 5, "v": 1}], "n:"),
    ([{"bt": "now", "n": "m/flow", "v": 1}], "bt:"),
    ([{"n": "m/flow", "v": float("nan")}], "v:"),
    ([{"n": "m/flow", "vd": "aGk=Cg"}], "vd"),                          # padding, not base64url
    ([{"n": "m/flow", "vd": "aGkgC"}], "vd"),                           # 5 chars: no such length
    ([{"n": "m/flow", "v": 1, "t": 1e300}], "t:"),
    ([{"n": "m/flow", "v": 1, "t": -1e300}], "t:"),
])
def test_broken_senml_is_invalid_senml_naming_the_field(records, mentions):
    error = resolve_error(records)
    assert (error.reason, mentions in error.detail) == ("invalid_senml", True), error.detail


def test_error_names_the_record_position():
    error = resolve_error([{"n": "m/a", "v": 1}, {"n": "m/b", "v": 2}, {"n": "m/c"}])
    assert error.detail.startswith("record 2")


# --- the decoder without a registry: the name split at its last '/' -------------------------------------

@pytest.fixture(scope="module")
def readings() -> list[SensorReading]:
    return decode(TOPIC, (FIXTURES / "gateway_pack.json").read_bytes(), NOW)


def test_one_reading_per_resolved_record(readings):
    assert len(readings) == 5


def test_relative_flow_comes_first_in_time(readings):
    assert readings[0] == SensorReading(
        sensor_id="wm-0203", quantity="flow", time=datetime(2024, 5, 1, 7, 59, 30, tzinfo=UTC),
        value=0.0002, unit="m3/s", gateway_id="gw-bldg-07")


def test_name_is_split_into_sensor_and_quantity(readings):
    assert (readings[1].sensor_id, readings[1].quantity) == ("gas-0101", "gas_lel")


def test_absolute_base_time_is_the_time(readings):
    assert readings[1].time == datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def test_unit(readings):
    assert readings[2].unit == "m3"


def test_value(readings):
    assert readings[2].value == 123.456


def test_boolean_value(readings):
    assert readings[3].value_bool is False


def test_string_value(readings):
    assert readings[4].value_text == "B1"


def test_gateway_id_comes_from_the_topic(readings):
    assert {r.gateway_id for r in readings} == {"gw-bldg-07"}


def test_urn_sensor_id_is_allowed():
    reading = decode(TOPIC, b'[{"bn": "urn:dev:ow:10e2073a01080063/", "n": "temp", "v": 23.1}]',
                     NOW)[0]
    assert reading.sensor_id == URN


def test_split_is_at_the_last_slash():
    error = decode_error(b'[{"n": "bldg-7/meter-2/volume", "v": 1}]')
    assert (error.reason, error.detail.startswith("name 'bldg-7/meter-2/volume': sensor_id:")) == \
        ("schema_violation", True), error.detail


def test_rfc_collection_decodes_with_our_naming_rule():
    readings = decode(TOPIC, (FIXTURES / "rfc8428_5_1_6_collection_of_resources.json").read_bytes(),
                      NOW)
    assert [(r.sensor_id, r.quantity) for r in readings] == [
        ("2001:db8::2", "temperature"), ("2001:db8::2", "humidity"),
        ("2001:db8::1", "temperature"), ("2001:db8::1", "humidity")]


def test_sum_only_record_becomes_a_sum_only_reading():
    reading = decode(TOPIC, b'[{"n": "wm-1/volume", "u": "m3", "s": 12.5}]', NOW)[0]
    assert (reading.value, reading.value_sum) == (None, 12.5)


def test_data_value_is_kept_as_text():
    assert decode(TOPIC, b'[{"n": "reader-1/tag", "vd": "aGkgCg"}]', NOW)[0].value_text == "aGkgCg"


@pytest.mark.parametrize("name", [URN + ":temp", "dev/", "temp"])
def test_name_of_no_registered_sensor_without_a_slash_or_unit_is_invalid_senml(name):
    error = decode_error(orjson.dumps([{"n": name, "v": 1}]))
    assert (error.reason, "it has no unit" in error.detail, repr(name) in error.detail) == \
        ("invalid_senml", True, True)


@pytest.mark.parametrize("payload", [b"[]", b'[{"bn": "m/"}]'])
def test_pack_without_measurements_is_invalid_senml(payload):
    error = decode_error(payload)
    assert (error.reason, error.detail.startswith("pack:")) == ("invalid_senml", True)


def test_too_long_sensor_id_is_a_schema_violation_naming_it():
    error = decode_error(orjson.dumps([{"n": "s" * 65 + "/flow", "v": 1}]))
    assert (error.reason, "sensor_id:" in error.detail) == ("schema_violation", True)


def test_not_json_is_invalid_json():
    assert decode_error(b"<senml/>").reason == "invalid_json"


def test_an_object_instead_of_a_pack_is_invalid_senml():
    error = decode_error(b'{"n": "m/flow", "v": 1}')
    assert (error.reason, error.detail.startswith("pack:")) == ("invalid_senml", True)

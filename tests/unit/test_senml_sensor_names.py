"""SenML record names -> (sensor, quantity) by the registry's sensor names (issue 14): RFC 8428's own
section 5.1 packs, for sensors registered under their URNs."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from telemetry.decoders import DecodeError, decode
from telemetry.decoders.senml import SensorNames

FIXTURES = Path(__file__).parent / "fixtures" / "payloads" / "senml"
NOW = datetime(2024, 5, 1, 8, 5, 0, tzinfo=timezone.utc)
TOPIC = "gcc/v1/gateway/gw-rfc/senml"
URN = "urn:dev:ow:10e2073a01080063"
NAMES = SensorNames({URN, "urn:dev:ow:10e2073a0108006", "bldg-7", "bldg-7:meter-2"})


def readings(fixture: str, names: SensorNames = NAMES) -> list[tuple]:
    found = decode(TOPIC, (FIXTURES / fixture).read_bytes(), NOW, names)
    return [(r.sensor_id, r.quantity, r.unit) for r in found]


def test_5_1_1_a_sensors_own_name_takes_its_quantity_from_the_unit():
    assert readings("rfc8428_5_1_1_single_datapoint.json") == [(URN, "temperature", "Cel")]


def test_5_1_2_the_rest_after_the_registered_name_and_a_colon_is_the_quantity():
    assert readings("rfc8428_5_1_2_multiple_datapoints.json") == [(URN, "voltage", "V"), (URN, "current", "A")]


def test_5_1_2_relative_times_map_to_the_urn_the_rfc_writes():
    found = readings("rfc8428_5_1_2_relative_times.json")
    assert {r[0] for r in found} == {"urn:dev:ow:10e2073a0108006"}
    assert [r[1] for r in found] == ["current"] * 5 + ["voltage", "current"]   # chronological; voltage at bt


def test_5_1_3_one_name_reports_what_each_unit_measures():
    assert sorted({r[1:] for r in readings("rfc8428_5_1_3_multiple_measurements.json")}) == [
        ("battery_level", "%EL"), ("humidity", "%RH"), ("latitude", "lat"), ("longitude", "lon")]


def test_5_1_4_resolved_data_maps_as_the_pack_it_resolves():
    assert readings("rfc8428_5_1_4_resolved_data.json") == readings("rfc8428_5_1_3_multiple_measurements.json")


def test_5_1_5_each_data_type_under_its_own_quantity():
    found = decode(TOPIC, (FIXTURES / "rfc8428_5_1_5_multiple_data_types.json").read_bytes(), NOW, NAMES)
    assert [(r.quantity, r.value, r.value_text, r.value_bool) for r in found] == [
        ("temp", 23.1, None, None), ("label", None, "Machine Room", None), ("open", None, None, False),
        ("nfv-reader", None, "aGkgCg", None)]


def test_the_longest_registered_name_wins():
    found = decode(TOPIC, b'[{"n": "bldg-7:meter-2:volume", "u": "m3", "v": 1}]', NOW, NAMES)[0]
    assert (found.sensor_id, found.quantity) == ("bldg-7:meter-2", "volume")


@pytest.mark.parametrize("separator", [":", "/", "."])
def test_each_separator_of_the_rfcs_names_splits(separator):
    found = decode(TOPIC, orjson.dumps([{"n": f"{URN}{separator}co2", "v": 400}]), NOW, NAMES)[0]
    assert (found.sensor_id, found.quantity) == (URN, "co2")


def test_a_registered_name_followed_by_no_separator_is_not_that_sensor():
    found = decode(TOPIC, orjson.dumps([{"n": URN + "9", "u": "Cel", "v": 1}]), NOW, NAMES)[0]
    assert found.sensor_id == URN + "9"          # an unknown sensor: the ingest refuses it as unknown_device


def test_a_sensors_own_name_with_a_unit_outside_the_registry_is_refused_naming_both():
    with pytest.raises(DecodeError) as caught:
        decode(TOPIC, orjson.dumps([{"n": URN, "u": "furlong", "v": 1}]), NOW, NAMES)
    assert (caught.value.reason, "'furlong'" in caught.value.detail, URN in caught.value.detail) == \
        ("invalid_senml", True, True)


def test_what_rfc_8428_refuses_is_still_refused_with_a_registry():
    bad = [b'[{"n": "urn:dev:ow:10e2073a01080063", "v": 1, "vs": "x"}]',    # two values
           b'[{"bn": "urn:dev:ow:10e2073a01080063:", "n": "a b", "v": 1}]',  # a space in the name
           b'[{"n": "urn:dev:ow:10e2073a01080063", "v": 1, "foo_": 1}]']     # must-understand field
    for payload in bad:
        with pytest.raises(DecodeError) as caught:
            decode(TOPIC, payload, NOW, NAMES)
        assert caught.value.reason == "invalid_senml"

"""RFC 8428's own section 5.1.1-5.1.5 packs, re-timed, stored for sensors registered under the URNs
the RFC names (issue 14): the names, units and times as the RFC resolves them."""
from __future__ import annotations

import time
import uuid
from pathlib import Path

import orjson
import pytest

from registry.broker import BrokerAdmin
from registry.store import Actor, DeviceRegistry, RegistryError

from .ingest_helpers import ThreadWorker, owner_rows
from .mqtt_helpers import MqttProbe
from .test_registry import wait_for

FIXTURES = Path(__file__).parents[1] / "unit" / "fixtures" / "payloads" / "senml"
URN, URN_5_1_2 = "urn:dev:ow:10e2073a01080063", "urn:dev:ow:10e2073a0108006"   # the RFC writes both


@pytest.fixture(scope="module")
def gateway(stack, city):
    """A gateway of the city with the RFC's two sensors registered behind it (once per session)."""
    gateway = city.gateways[1]
    settings = stack.settings()
    registry = DeviceRegistry(settings.pg_dsn, BrokerAdmin.from_settings(settings))
    for urn in (URN, URN_5_1_2):
        try:
            registry.add_sensor(Actor("test:senml"), urn, "electricity_meter", gateway.gateway_id)
        except RegistryError as exc:
            assert "is taken" in str(exc)
    with ThreadWorker(stack, index=77, share_group=f"sm{uuid.uuid4().hex[:6]}"):
        yield gateway


def _pack(name: str, now: float) -> bytes:
    """The RFC's pack, its times moved to just before `now` (relative times stay as they are)."""
    records = orjson.loads((FIXTURES / name).read_bytes())
    first = next((r["bt"] for r in records if "bt" in r), None) or min((r["t"] for r in records if "t" in r),
                                                                        default=None)
    for record in records:
        if "bt" in record:
            record["bt"] = record["bt"] - first + now
        elif "t" in record and record["t"] >= 2 ** 28:     # 5.1.4: absolute times on every record
            record["t"] = record["t"] - first + now
    return orjson.dumps(records)


@pytest.mark.parametrize(("fixture", "sensor", "expected"), [
    ("rfc8428_5_1_1_single_datapoint.json", URN, [("temperature", "Cel", 23.1)]),
    ("rfc8428_5_1_2_multiple_datapoints.json", URN, [("current", "A", 1.2), ("voltage", "V", 120.1)]),
    ("rfc8428_5_1_2_relative_times.json", URN_5_1_2,
     [("current", "A", v) for v in (1.2, 1.3, 1.4, 1.5, 1.6, 1.7)] + [("voltage", "V", 120.1)]),
    ("rfc8428_5_1_3_multiple_measurements.json", URN,
     [("battery_level", "%EL", 98.0)] + [("humidity", "%RH", v) for v in (20.0, 20.3, 20.7, 21.2)] +
     [("latitude", "lat", v) for v in (60.07965, 60.07965, 60.07966, 60.07967)] +
     [("longitude", "lon", v) for v in (24.30621, 24.30622, 24.30623, 24.30628)]),
    ("rfc8428_5_1_4_resolved_data.json", URN,
     [("battery_level", "%EL", 98.0)] + [("humidity", "%RH", v) for v in (20.0, 20.3, 20.7, 21.2)] +
     [("latitude", "lat", v) for v in (60.07965, 60.07965, 60.07966, 60.07967)] +
     [("longitude", "lon", v) for v in (24.30621, 24.30622, 24.30623, 24.30628)]),
])
def test_an_rfc_pack_is_stored_for_the_sensor_registered_under_its_urn(stack, gateway, fixture, sensor, expected):
    account = stack.account(gateway.gateway_id)
    probe = MqttProbe(stack.mosquitto.port, account.username, account.password)
    timed = any(k in r for r in orjson.loads((FIXTURES / fixture).read_bytes()) for k in ("bt", "t"))
    hours = {"rfc8428_5_1_2_relative_times.json": 1, "rfc8428_5_1_3_multiple_measurements.json": 2,
             "rfc8428_5_1_4_resolved_data.json": 3}
    now = time.time() - 3600 * hours[fixture] if timed else time.time()   # a window each (keys: sensor + time)
    try:
        assert probe.publish(f"gcc/v1/gateway/{gateway.gateway_id}/senml", _pack(fixture, round(now))) == "Success"
    finally:
        probe.close()
    query = ("select quantity, unit, value from sensor_readings where sensor_id = %s and gateway_id = %s "
             "and quantity = any(%s) and received_at > now() - interval '1 minute' "
             "and time between to_timestamp(%s) - interval '10 minutes' and to_timestamp(%s) + interval '10 minutes' "
             "order by quantity, value")
    rows = wait_for(query, sensor, gateway.gateway_id, sorted({e[0] for e in expected}), round(now), round(now),
                    stack=stack,
                    want=lambda rows: len(rows) >= len(expected))
    assert sorted(rows) == sorted(expected)


def test_5_1_5_each_data_type_is_stored_in_its_column(stack, gateway):
    account = stack.account(gateway.gateway_id)
    probe = MqttProbe(stack.mosquitto.port, account.username, account.password)
    try:
        assert probe.publish(f"gcc/v1/gateway/{gateway.gateway_id}/senml",
                             (FIXTURES / "rfc8428_5_1_5_multiple_data_types.json").read_bytes()) == "Success"
    finally:
        probe.close()
    rows = wait_for("select quantity, value, value_text, value_bool, unit from sensor_readings "
                    "where sensor_id = %s and quantity in ('temp', 'label', 'open', 'nfv-reader') "
                    "and received_at > now() - interval '1 minute'",
                    URN, stack=stack, want=lambda rows: len(rows) >= 4)
    assert sorted(rows, key=lambda r: r[0]) == [("label", None, "Machine Room", None, None),
                                               ("nfv-reader", None, "aGkgCg", None, None),
                                               ("open", None, None, False, None), ("temp", 23.1, None, None, "Cel")]
    assert owner_rows(stack, "select grid_code from sensors where sensor_id = %s", URN) == [(gateway.grid_code,)]

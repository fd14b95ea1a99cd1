"""The chain's pure stages: batch processing agrees with one-at-a-time processing."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from ingest.model import Inbound
from ingest.stages import Registry, process, process_batch
from simulator.citygen import SCALES, generate

NOW = datetime(2026, 11, 21, 8, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def registry():
    return Registry(generate(SCALES["demo"], seed=7))


def _fix(terminal: str, lon: float, lat: float, seconds: int = 0) -> Inbound:
    body = {"ts": (NOW - timedelta(seconds=seconds)).isoformat(), "lat": lat, "lon": lon}
    return Inbound(f"gcc/v1/terminal/{terminal}/fix", orjson.dumps(body), 1, False, NOW)


def test_batch_processing_gives_the_same_outcomes_as_one_at_a_time(registry):
    rng = random.Random(4)
    city = registry.city
    minx, miny, maxx, maxy = city.districts[0].boundary.bounds
    inbounds = []
    for i in range(400):
        member = rng.choice(city.members)
        inbounds.append(_fix(member.terminal_id, rng.uniform(minx - 0.01, maxx + 0.01),
                             rng.uniform(miny - 0.01, maxy + 0.01), seconds=i))
    report = {"ts": NOW.isoformat(), "report_id": "R1", "category": "exposed_garbage", "severity": 2,
              "lon": minx - 0.5, "lat": miny - 0.5}                  # a report outside every grid is refused
    inbounds.append(Inbound(f"gcc/v1/terminal/{city.members[0].terminal_id}/incident", orjson.dumps(report), 1,
                            False, NOW))
    inbounds.append(Inbound("gcc/v1/terminal/T-NOBODY/fix", inbounds[0].payload, 1, False, NOW))
    inbounds.append(Inbound(inbounds[0].topic, b"{", 1, False, NOW))
    one = [process(i, registry) for i in inbounds]
    many = process_batch(inbounds, registry)
    assert [(o.rejection, [e.grid_code for e in o.accepted]) for o in one] == \
           [(o.rejection, [e.grid_code for e in o.accepted]) for o in many]
    reasons = {o.rejection.reason for o in one if o.rejection}
    assert {"outside_city", "unknown_device", "invalid_json"} <= reasons
    assert any(o.accepted for o in one)
    outside = [e for o in one for e in o.accepted if e.grid_code is None]
    assert outside and all(type(e.message).__name__ == "Fix" for e in outside)   # fixes out of area: kept


def test_a_fix_is_tagged_with_its_grid_and_member(registry):
    member = registry.city.members[10]
    p = registry.city.grid_by_code[member.grid_code].boundary.representative_point()
    outcome = process(_fix(member.terminal_id, p.x, p.y), registry)
    assert outcome.rejection is None
    assert outcome.accepted[0].grid_code == member.grid_code
    assert outcome.accepted[0].member_id == member.member_id


def test_a_sensor_reading_through_the_wrong_gateway_is_refused(registry):
    sensor = registry.city.sensors[0]
    other = next(g for g in registry.city.gateways if g.gateway_id != sensor.gateway_id)
    body = {"ts": NOW.isoformat(), "readings": [{"sensor_id": sensor.sensor_id, "quantity": "volume", "value": 1.0}]}
    outcome = process(Inbound(f"gcc/v1/gateway/{other.gateway_id}/reading", orjson.dumps(body), 1, False, NOW),
                      registry)
    assert outcome.rejection.reason == "unknown_device"
    assert sensor.gateway_id in outcome.rejection.detail

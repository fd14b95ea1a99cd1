"""Simulated members and devices behave like the real ones: pure state machines, no broker."""
from __future__ import annotations

import random

import pytest
from shapely.geometry import Point

from core.catalogue import AlarmType
from simulator.behaviour import Elevator, GasDetector, Meter, Patrol, metres_to_degrees
from simulator.citygen import SCALES, generate


@pytest.fixture(scope="module")
def city():
    return generate(SCALES["demo"], seed=7)


def test_a_patrolling_member_stays_inside_their_grid(city):
    for grid in city.grids[:20]:
        patrol = Patrol(grid.boundary, random.Random(grid.code))
        for _ in range(2 * 3600 // 5):  # two hours of 5-second steps
            patrol.step(5.0)
            assert grid.boundary.covers(Point(patrol.lon, patrol.lat)), grid.code


def test_a_patrolling_member_walks_at_walking_speed(city):
    grid = city.grids[0]
    patrol = Patrol(grid.boundary, random.Random(1))
    patrol.pause_s = 0
    lon, lat = patrol.lon, patrol.lat
    patrol.step(1.0)
    d_lon, d_lat = metres_to_degrees(lat, 1.0, 1.0)
    metres = ((patrol.lon - lon) / d_lon) ** 2 + ((patrol.lat - lat) / d_lat) ** 2
    assert 0.8 <= metres ** 0.5 <= 1.6
    assert 0.9 <= patrol.speed_mps <= 1.5


def test_a_task_sends_the_member_to_the_place_and_they_arrive(city):
    grid = city.grids[0]
    patrol = Patrol(grid.boundary, random.Random(2))
    place = grid.boundary.representative_point()
    patrol.go_to(place.x, place.y)
    for _ in range(3600):
        patrol.step(1.0)
        if patrol.arrived_at_task:
            break
    assert patrol.arrived_at_task


def test_gps_noise_is_metres_not_kilometres(city):
    patrol = Patrol(city.grids[0].boundary, random.Random(3))
    for _ in range(200):
        lon, lat, acc = patrol.noisy_fix()
        d_lon, d_lat = metres_to_degrees(patrol.lat, 1, 1)
        error = (((lon - patrol.lon) / d_lon) ** 2 + ((lat - patrol.lat) / d_lat) ** 2) ** 0.5
        assert error < 5 * acc


def test_battery_drains_while_patrolling(city):
    patrol = Patrol(city.grids[0].boundary, random.Random(4))
    before = patrol.battery_pct
    for _ in range(3600):
        patrol.step(1.0)
    assert 5 <= before - patrol.battery_pct <= 10


def test_a_gas_leak_ramps_past_the_threshold_raises_then_clears_the_alarm():
    detector = GasDetector(random.Random(5), fault_rate=1.0)
    detector.ramp_per_s = 0.2  # a leak has started
    events, peak = [], 0.0
    for _ in range(3600):
        events += detector.step(1.0)
        peak = max(peak, detector.lel)
    assert [e.state for e in events] == ["raised", "cleared"]
    assert events[0].alarm_type is AlarmType.GAS_OVER_THRESHOLD
    assert events[0].value >= GasDetector.THRESHOLD
    assert peak >= 30


def test_gas_stays_near_zero_without_a_leak():
    detector = GasDetector(random.Random(6), fault_rate=0.0)
    for _ in range(1000):
        assert detector.step(30.0) == []
        assert detector.lel < 2.0


def test_an_elevator_entrapment_is_raised_and_cleared_after_rescue():
    elevator = Elevator(random.Random(7), floors=18, fault_rate=2000.0)
    events = []
    for _ in range(20000):
        events += elevator.step(10.0)
        if any(e.state == "cleared" for e in events):
            break
    kinds = {e.alarm_type for e in events}
    assert kinds & {AlarmType.ELEVATOR_ENTRAPMENT, AlarmType.ELEVATOR_DOOR_FAULT}
    raised = [e for e in events if e.state == "raised"]
    cleared = [e for e in events if e.state == "cleared"]
    assert raised and cleared and raised[0].alarm_type is cleared[0].alarm_type


def test_a_night_time_leak_on_a_meter_raises_continuous_flow():
    meter = Meter(random.Random(8), daily_use=0.3)
    meter.leak_rate = 0.05
    events = []
    for minute in range(0, 5 * 60):  # 00:00 to 05:00
        _, ev = meter.step(60.0, minute / 60)
        events += ev
    assert AlarmType.METER_CONTINUOUS_FLOW in {e.alarm_type for e in events if e.state == "raised"}


def test_meter_totals_only_grow():
    meter = Meter(random.Random(9), daily_use=8.0, fault_rate=50)
    last = meter.total
    for step in range(2000):
        meter.step(300.0, (step * 5 / 60) % 24)
        assert meter.total >= last
        last = meter.total

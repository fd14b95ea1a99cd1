"""The simulator against the real broker: each device logs in with its own account, terminals
patrol and answer tasks, a dropped terminal's last will reports it offline."""
from __future__ import annotations

import time

import orjson
import pytest

from simulator.devices import SimConfig
from simulator.run import Simulator
from telemetry.topics import terminal_topic

from .mqtt_helpers import MqttProbe

GRIDS = 3


@pytest.fixture
def listener(ingest_listener):
    return ingest_listener


@pytest.fixture
def sim(request, stack, city):
    speedup = getattr(request, "param", 20)
    passwords = {a.username: a.password for a in stack.accounts.values()}
    grids = {g.code for g in city.grids[:GRIDS]}
    members = sum(m.grid_code in grids for m in city.members)
    gateways = sum(g.grid_code in grids for g in city.gateways)
    cfg = SimConfig(speedup=speedup, fix_interval_s=5, offline_per_terminal_hour=0, task_reject_fraction=0,
                    incidents_per_member_hour=0)
    simulator = Simulator(city, passwords, "127.0.0.1", stack.mosquitto.port, cfg,
                          max_members=members, max_gateways=gateways)
    assert simulator.missing_accounts == 0
    yield simulator
    simulator.mux.close()


def pump(sim: Simulator, seconds: float, until=None) -> None:
    """Run the simulator's loop on this thread for a while (or until a condition holds)."""
    end = last = time.monotonic()
    end += seconds
    while time.monotonic() < end:
        sim.mux.poll(0.02)
        now = time.monotonic()
        if now - last >= 0.2:
            sim.step(now - last)
            last = now
        if until is not None and until():
            return


def _wait_connected(sim):
    pump(sim, 20, until=lambda: sim.mux.online == len(sim.mux.connections))
    assert sim.mux.online == len(sim.mux.connections) and sim.mux.refused == 0


def test_every_simulated_terminal_reports_fixes_inside_the_city(sim, listener, city):
    _wait_connected(sim)
    pump(sim, 4)
    fixes = [m for m in listener.received(2) if m.topic.endswith("/fix")]
    reporters = {m.topic.split("/")[3] for m in fixes}
    assert reporters == {t.terminal_id for t in sim.terminals}
    district = city.districts[0].boundary.buffer(0.001)
    from shapely.geometry import Point
    for message in fixes:
        body = orjson.loads(message.payload)
        assert district.contains(Point(body["lon"], body["lat"]))


def test_gateways_report_in_their_own_protocol(sim, listener):
    _wait_connected(sim)
    pump(sim, 4)
    got = listener.received(2)
    by_gateway = {}
    for m in got:
        if m.topic.startswith("gcc/v1/gateway/"):
            by_gateway.setdefault(m.topic.split("/")[3], set()).add(m.topic.split("/")[4])
    for gw in sim.gateways:
        leafs = by_gateway.get(gw.gateway.gateway_id, set())
        expected = "senml" if gw.gateway.protocol == "senml" else "reading"
        assert expected in leafs, (gw.gateway.gateway_id, leafs)


def test_a_dropped_terminal_is_reported_offline_by_its_last_will(sim, listener):
    _wait_connected(sim)
    terminal = sim.terminals[0]
    listener.received(0.5)
    terminal.drop(3600)
    pump(sim, 3)
    statuses = [orjson.loads(m.payload) for m in listener.received(1)
                if m.topic == terminal_topic(terminal.terminal_id, "status")]
    assert statuses and statuses[-1]["state"] == "offline"
    terminal.offline_for_s = 0
    pump(sim, 5, until=lambda: terminal.connection.connected)
    pump(sim, 1)
    statuses = [orjson.loads(m.payload) for m in listener.received(1)
                if m.topic == terminal_topic(terminal.terminal_id, "status")]
    assert statuses and statuses[-1]["state"] == "online"


@pytest.mark.parametrize("sim", [400], indirect=True)  # handling a task takes 5-20 simulated minutes
def test_a_terminal_accepts_a_task_walks_there_and_reports_done(stack, sim, city):
    _wait_connected(sim)
    terminal = sim.terminals[1]
    dispatch = stack.account("dispatch")
    dispatcher = MqttProbe(stack.mosquitto.port, dispatch.username, dispatch.password)
    try:
        dispatcher.subscribe(terminal_topic("+", "task/ack"))
        place = city.grid_by_code[terminal.member.grid_code].boundary.representative_point()
        task = {"task_id": "TASK-1", "lon": place.x, "lat": place.y, "category": "exposed_garbage"}
        assert dispatcher.publish(terminal_topic(terminal.terminal_id, "task"), orjson.dumps(task)) == "Success"
        actions = []
        deadline = time.monotonic() + 60
        while "done" not in actions and time.monotonic() < deadline:
            pump(sim, 0.5)
            actions += [orjson.loads(m.payload)["action"] for m in dispatcher.received(0.05)]
        assert actions[:1] == ["accepted"]
        assert "arrived" in actions and actions[-1] == "done"
    finally:
        dispatcher.close()

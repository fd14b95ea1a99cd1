"""Everything the simulator publishes decodes with the telemetry decoders; its deliberately
malformed payloads are all refused with a reason."""
from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from simulator import payloads
from simulator.citygen import SCALES, generate
from simulator.devices import GatewaySim, SimConfig, TerminalSim
from telemetry import messages
from telemetry.decoders import REASONS, DecodeError, decode
from telemetry.notices import Announcement

T0 = datetime(2026, 11, 21, 16, 0, tzinfo=timezone.utc)  # midnight in Fuzhou: meters see the night


@pytest.fixture(scope="module")
def city():
    return generate(SCALES["demo"], seed=7)


def _run_fleet(city, cfg: SimConfig, minutes: int):
    sent: list[tuple[str, bytes]] = []
    send = lambda topic, payload: sent.append((topic, payload)) or True  # noqa: E731
    rng = random.Random(1)
    grids = {g.code for g in city.grids[:8]}
    terminals = [TerminalSim(m, city.grid_by_code[m.grid_code], cfg, random.Random(rng.random()), send, [])
                 for m in city.members if m.grid_code in grids]
    sensors = {}
    for s in city.sensors:
        sensors.setdefault(s.gateway_id, []).append(s)
    gateways = [GatewaySim(g, city.building_by_id[g.building_id], sensors[g.gateway_id], cfg,
                           random.Random(rng.random()), send)
                for g in city.gateways if g.grid_code in grids]
    now = T0
    for t in terminals:
        t.publish_status(now)
        sent.append(t.will(now))
        t.on_task(b'{"task_id": "K1", "lon": 119.29, "lat": 26.1}', now)
    for _ in range(minutes * 6):
        now += timedelta(seconds=10)
        for sim in (*terminals, *gateways):
            sim.step(now, 10.0)
    return sent, now


def test_every_well_formed_simulated_message_decodes(city):
    cfg = SimConfig(fault_rate=300, incidents_per_member_hour=20, malformed=0.0)
    sent, now = _run_fleet(city, cfg, minutes=120)
    kinds = Counter()
    for topic, payload in sent:
        for message in decode(topic, payload, now):
            kinds[type(message).__name__] += 1
    for kind in (messages.Fix, messages.TerminalStatus, messages.IncidentReport, messages.TaskAck,
                 messages.SensorReading, messages.DeviceAlarm):
        assert kinds[kind.__name__] > 0, kinds
    assert {t.split("/")[-1] for t, _ in sent} >= {"fix", "status", "incident", "ack", "senml", "reading", "alarm"}


def test_simulated_alarms_come_in_raised_then_cleared_pairs_per_alarm_id(city):
    sent, now = _run_fleet(city, SimConfig(fault_rate=300), minutes=120)
    states: dict[str, list[str]] = {}
    for topic, payload in sent:
        if topic.endswith("/alarm"):
            alarm = decode(topic, payload, now)[0]
            states.setdefault(alarm.alarm_id, []).append(alarm.state)
    assert states
    for sequence in states.values():
        assert sequence in (["raised"], ["raised", "cleared"])


@pytest.mark.parametrize("kind", payloads.MALFORMED_KINDS)
def test_each_malformed_kind_is_refused_with_a_reason(kind):
    topic, payload = payloads.malformed(kind, "T350102001001001-1", "GW-B350102001001001-01", T0,
                                        random.Random(1))
    with pytest.raises(DecodeError) as refused:
        decode(topic, payload, T0)
    assert refused.value.reason in REASONS
    assert refused.value.detail


def test_a_malformed_fraction_of_publications_is_refused_and_the_rest_decode(city):
    sent, now = _run_fleet(city, SimConfig(malformed=0.2), minutes=10)
    refused = 0
    for topic, payload in sent:
        try:
            decode(topic, payload, now)
        except DecodeError:
            refused += 1
    assert 0.05 < refused / len(sent) < 0.4


def test_a_terminal_reads_an_announcement_of_its_grid_once_and_sends_its_receipt(city):
    sent: list[tuple[str, bytes]] = []
    member = city.members[0]
    cfg = SimConfig(announcement_unread_fraction=0.0, announcement_read_mean_s=30.0)
    sim = TerminalSim(member, city.grid_by_code[member.grid_code], cfg, random.Random(3),
                      lambda topic, payload: sent.append((topic, payload)) or True, [])
    street = member.grid_code[:9]
    assert f"gcc/v1/org/{street}/announcement" in sim.announcement_topics
    now = datetime(2026, 12, 2, 9, 0, tzinfo=timezone.utc)
    body = Announcement(41, street, "Street", now, now, "Typhoon", "Check the drains", "d1").payload()
    sim.on_downlink(f"gcc/v1/org/{street}/announcement", body, now)
    sim.on_downlink(f"gcc/v1/org/{street}/announcement", body, now)          # delivered twice: read once
    sim.on_downlink(f"gcc/v1/org/{street}/announcement", b"{", now)          # unreadable: ignored
    for _ in range(600):
        sim._read_announcements(now, 1.0)
    assert [orjson.loads(p)["announcement_id"] for t, p in sent if t.endswith("/announcement/read")] == [41]
    [(topic, payload)] = [(t, p) for t, p in sent if t.endswith("/announcement/read")]
    assert topic == f"gcc/v1/terminal/{member.terminal_id}/announcement/read"
    [message] = decode(topic, payload, now)
    assert isinstance(message, messages.AnnouncementRead) and message.announcement_id == 41

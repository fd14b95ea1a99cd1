"""The live-state contract (telemetry.live) and the message kinds' declarations (telemetry.kinds): one
owner for each key, change and route, agreed on by the writer and every reader."""
from __future__ import annotations

import dataclasses
import re
import subprocess
from datetime import datetime, timezone

import orjson
import pytest

from config.settings import REPO_ROOT
from core.catalogue import AlarmType
from ingest.model import Enriched
from telemetry import live, topics
from telemetry.decoders import DecodeError, decode
from telemetry.kinds import KINDS
from telemetry.kinds.alarm_check import AlarmCheckChange
from telemetry.messages import CaseUpdate, DeviceAlarm, Fix, TaskAck

GRID = "350102001001001"
T = datetime(2026, 11, 21, 8, 0, tzinfo=timezone.utc)


def _fix_change(**over) -> live.FixChange:
    base = {"terminal_id": "T1", "member_id": "M1", "home_grid_code": GRID, "grid_code": "350102001002003", "t": 1.5,
                "lon": 119.3, "lat": 26.1, "battery_pct": 80}
    return live.FixChange(**(base | over))


def test_an_envelope_round_trips_with_every_kind_of_change():
    changes = (_fix_change(),
               live.StatusChange("T1", "M1", GRID, 2.0, "offline", 40, True),
               live.ReadingChange("S1", GRID, 3.0, "gas_lel", 1.5, unit="%"),
               live.AlarmChange("A1", "S1", "B1", GRID, 4.0, "gas_over_threshold", 4, "raised", 27.5, 119.3, 26.1),
               live.AlarmAckChange("A1", GRID, 4.5, "duty", "S1"),
               live.ReportChange("R1", "T1", "M1", GRID, 5.0, "noise", 1, 119.3, 26.1, "Gate 2", "loud", "p.jpg"),
               live.GatewayChange("G1", GRID, 6.0, "online"),
               live.TaskAckChange("K1", "T1", "M1", GRID, 7.0, "accepted"), live.ReadChange(12, "T1", GRID, 7.5),
               AlarmCheckChange("S1", "A1", "T1", "M1", GRID, 7.7, "false_alarm", "steam from a kettle"),
               live.CaseChange("C20261201-000001", GRID, GRID, 8.0, "reported", "noise", "normal", "report",
                               "Noise nuisance", "Gate 2", "register", 9.0, 8.8, "community", None))
    assert {c.KIND for c in changes} == set(live.CHANGE_TYPES)  # every kind is covered here
    decoded = live.Envelope.decode(live.Envelope("ingest-1", changes, "b00t", 41).encode())
    assert (decoded.producer, decoded.boot, decoded.seq) == ("ingest-1", "b00t", 41)
    assert sorted(decoded.changes, key=lambda c: c.t) == list(changes)


def test_an_envelope_of_another_version_is_refused_with_the_reason():
    with pytest.raises(live.EnvelopeError, match="version 2"):
        live.Envelope.decode(orjson.dumps({"v": 2, "producer": "x", "changes": {}}))
    with pytest.raises(live.EnvelopeError, match="not JSON"):
        live.Envelope.decode(b"{")


@pytest.mark.parametrize("field", [{"seq": "abc"}, {"sent_at": "soon"}, {"seq": [1]}])
def test_an_envelope_with_numbers_that_are_not_numbers_is_refused_not_raised(field):
    """What the hub's bus reader gets for it is an EnvelopeError to skip, never an exception."""
    with pytest.raises(live.EnvelopeError, match="malformed"):
        live.Envelope.decode(orjson.dumps({"v": live.VERSION, "producer": "x", "changes": {}} | field))


def test_kinds_and_fields_from_a_newer_writer_are_skipped_and_counted():
    raw = orjson.dumps({"v": live.VERSION, "producer": "x", "changes": {
        "fix": [dataclasses.asdict(_fix_change()) | {"altitude_m": 12.0}], "case_escalated": [{"case_id": "C1"}]}})
    envelope = live.Envelope.decode(raw)
    assert envelope.changes == (_fix_change(),)
    assert envelope.unknown_kinds == 1


def test_a_members_changes_route_to_their_own_grid_everything_else_to_where_it_happened():
    assert _fix_change().route_code == GRID                    # walking through another grid
    assert live.StatusChange("T1", "M1", GRID, 1.0, "online").route_code == GRID
    assert live.TaskAckChange("K", "T1", "M1", GRID, 1.0, "done").route_code == GRID
    alarm = live.AlarmChange("A1", "S1", "B1", "350102001002003", 1.0, "tamper", 3, "raised")
    assert alarm.route_code == "350102001002003"


def test_only_latest_state_kinds_coalesce():
    assert _fix_change().coalesce_key == "T1"
    assert live.ReadingChange("S1", GRID, 1.0, "flow").coalesce_key == ("S1", "flow")
    assert live.AlarmChange("A1", "S1", "B1", GRID, 1.0, "tamper", 3, "raised").coalesce_key is None
    assert live.ReportChange("R", "T", "M", GRID, 1.0, "noise", 1, 1.0, 2.0).coalesce_key is None


def test_each_redis_key_name_is_spelled_in_one_place_only():
    """A grep for each key of the contract finds its definition in telemetry/live/keys.py and nowhere
    else in the code (tests and docs may name keys); hash fields likewise."""
    keys_py = (REPO_ROOT / "telemetry" / "live" / "keys.py").read_text()
    names = re.findall(r'f?"\{NAMESPACE\}:([a-z:]+)', keys_py)
    assert {"live", "pos", "term:", "alarms:open", "reports", "lock:sweep"} <= set(names)
    code = subprocess.run(["git", "grep", "-n", "-I", "-E", r"[\"'](gcc:[a-z]+)", "--", "*.py", "*.js", "*.lua"],
                          cwd=REPO_ROOT, capture_output=True, text=True).stdout.splitlines()
    outside = [line for line in code if not line.startswith(("telemetry/live/keys.py", "tests/"))]
    assert outside == []
    # the writer's Lua names hash fields only through the contract's placeholders
    writer = (REPO_ROOT / "ingest" / "live.py").read_text()
    for field in ("seen", "state_t", "battery_pct", "member_id", "grid_code", "sos"):
        assert f"'{field}'" not in writer, field


def test_every_message_type_has_one_kind_entry_whose_row_matches_its_columns():
    from telemetry.messages import Message

    assert set(KINDS) == set(Message.__args__)
    samples = {Fix: Fix(terminal_id="T1", time=T, lat=26.1, lon=119.3, source="gcc"),
               DeviceAlarm: DeviceAlarm(alarm_id="A", sensor_id="S", time=T, alarm_type=AlarmType.TAMPER,
                                        severity=3, state="raised"),
               TaskAck: TaskAck(task_id="K", terminal_id="T1", time=T, action="done"),
               CaseUpdate: CaseUpdate(case_id="C1", terminal_id="T1", time=T, action="feedback", note="done",
                                      photo_refs=["p.jpg"])}
    for message_type, kind in KINDS.items():
        assert set(kind.natural_key) <= set(kind.columns), kind.table
        assert kind.columns[0] == "time" and "received_at" in kind.columns
        if message_type in samples:
            row = kind.row(Enriched(samples[message_type], GRID, "M1", "B1", GRID, (119.3, 26.1)), T)
            assert len(row) == len(kind.columns)
            if kind.change is not None:
                change = kind.change(Enriched(samples[message_type], GRID, "M1", "B1", GRID, (119.3, 26.1)))
                assert type(change) is kind.change_type and live.CHANGE_TYPES[change.KIND] is kind.change_type


@pytest.mark.parametrize("leaf", topics.TERMINAL_UPLINK)
def test_every_terminal_uplink_leaf_reaches_a_decoder(leaf):
    with pytest.raises(DecodeError) as refused:
        decode(topics.terminal_topic("T1", leaf), b"{}", T)
    assert refused.value.reason != "wrong_topic"


@pytest.mark.parametrize("leaf", topics.GATEWAY_UPLINK)
def test_every_gateway_uplink_leaf_reaches_a_decoder(leaf):
    with pytest.raises(DecodeError) as refused:
        decode(topics.gateway_topic("G1", leaf), b"{}", T)
    assert refused.value.reason != "wrong_topic"


@pytest.mark.parametrize("leaf", topics.TERMINAL_DOWNLINK)
def test_downlink_leaves_are_never_decoded(leaf):
    with pytest.raises(DecodeError) as refused:
        decode(topics.terminal_topic("T1", leaf), b"{}", T)
    assert refused.value.reason == "wrong_topic"


def test_the_ingest_account_may_read_exactly_what_the_workers_subscribe_to():
    rules = topics.topic_rules(topics.AccountKind.INGEST, "ingest-1")
    assert [r.topic for r in rules] == list(topics.uplink_filters())
    assert all(r.access == "subscribe" and r.shared for r in rules)


def test_only_its_kind_spells_a_kinds_topic_leaf_in_production_code():
    """A kind's leaf is its module's (telemetry/kinds/): the ACL, the subscription, the decoders and the
    simulator build topics from it; no production code writes one out (the benchmarks and tests may)."""
    from telemetry import kinds

    leaves = "|".join(re.escape(leaf) for leaf in sorted({k.json.leaf for k in kinds.KINDS.values() if k.json}))
    spelled = rf"(_topic\([^)]*[\"']({leaves})[\"']|[}}+]/({leaves})[\"'])"   # terminal_topic(t, "fix"), …/{t}/fix"
    code = subprocess.run(["git", "grep", "-n", "-I", "-E", spelled, "--", "*.py", "*.js"], cwd=REPO_ROOT,
                          capture_output=True, text=True).stdout.splitlines()
    assert [line for line in code if not line.startswith(("telemetry/kinds/", "tests/", "bench/"))] == []

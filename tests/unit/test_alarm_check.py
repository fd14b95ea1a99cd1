"""An alarm checked on site (telemetry/kinds/alarm_check.py): the decoders, the simulator's payloads
and the ingest's table read its declaration; nothing else names it."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ingest.model import Enriched
from simulator import payloads
from telemetry.decoders import SCHEMA_VIOLATION, DecodeError, decode
from telemetry.kinds import TABLES, kind_of
from telemetry.kinds.alarm_check import AlarmCheck, AlarmCheckChange

T = datetime(2026, 12, 7, 8, 0, tzinfo=timezone.utc)
GRID = "350102001001001"


def test_a_check_decodes_with_its_terminal_from_the_topic():
    topic, payload = payloads.publication("alarm_check", "T1", T, sensor_id="gas-0101", alarm_id="gas-0101-7731",
                                          outcome="need_help", note="smell of gas on the stairs")
    [check] = decode(topic, payload, T)
    assert check == AlarmCheck(terminal_id="T1", time=T, sensor_id="gas-0101", alarm_id="gas-0101-7731",
                               outcome="need_help", note="smell of gas on the stairs")


def test_an_outcome_the_kind_does_not_know_is_refused_with_the_field_named():
    topic, payload = payloads.publication("alarm_check", "T1", T, sensor_id="S", alarm_id="A", outcome="maybe")
    with pytest.raises(DecodeError) as refused:
        decode(topic, payload, T)
    assert refused.value.reason == SCHEMA_VIOLATION and "outcome" in refused.value.detail


def test_the_simulator_cannot_send_a_field_the_kind_does_not_declare():
    with pytest.raises(ValueError, match="no payload field"):
        payloads.publication("alarm_check", "T1", T, sensor_id="S", alarm_id="A", outcome="confirmed", lat=26.1)


def test_its_row_fills_its_table_and_its_change_goes_to_the_members_grid():
    check = AlarmCheck(terminal_id="T1", time=T, sensor_id="S", alarm_id="A", outcome="confirmed")
    kind = kind_of(check)
    assert TABLES["alarm_checks"] is kind
    tagged = Enriched(check, GRID, "M1", home_grid_code=GRID, received_at=T)
    assert dict(zip(kind.columns, kind.row(tagged, T), strict=True)) == {
        "time": T, "terminal_id": "T1", "member_id": "M1", "grid_code": GRID, "sensor_id": "S", "alarm_id": "A",
        "outcome": "confirmed", "note": None, "photo_ref": None, "received_at": T, "case_id": None,
        "photo_refs": "{}"}
    change = kind.change(tagged)
    assert change == AlarmCheckChange("S", "A", "T1", "M1", GRID, T.timestamp(), "confirmed")
    assert change.route_code == GRID and change.coalesce_key is None


def test_a_kind_declaring_a_field_its_model_lacks_or_anothers_topic_is_refused_at_import():
    import dataclasses

    from telemetry.kinds import JsonTopic, register
    from telemetry.kinds.alarm_check import KIND

    class Other(AlarmCheck):
        pass

    typo = dataclasses.replace(KIND, name="alarm_check_2", model=Other, table="alarm_checks_2",
                               json=JsonTopic("terminal", "alarm/check2", frozenset({"sensor_id", "outcom"})))
    with pytest.raises(ValueError, match=r"no field\(s\) \['outcom'\]"):
        register(typo)
    with pytest.raises(ValueError, match="topic belong"):
        register(dataclasses.replace(KIND, name="alarm_check_3", model=Other, table="alarm_checks_3"))

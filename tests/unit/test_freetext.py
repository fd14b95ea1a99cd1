"""People's free text at the door (core.freetext): a length limit per kind of field, no control
characters (but line feeds and tabs in multi-line text), no bidirectional overrides; markup is
data, stored as typed. The doors with no server: the case machine's reasons and notes, the
terminals' messages, a boundary file's names, and what a screen takes of a name stored long."""
from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest

from cases.calendar import WorkCalendar
from cases.limits import LimitTable, Urgency
from cases.machine import Rules, apply, open_case
from cases.model import Actor, ActorKind, Refuse, Source
from core import freetext
from registry.boundaries import units_of
from registry.store import RegistryError
from telemetry.decoders import INVALID_TEXT, DecodeError, decode

NOW = datetime(2026, 12, 7, 8, 0, tzinfo=timezone.utc)
MARKUP = "<img src=x onerror=alert(1)><script>alert(1)</script>javascript:alert(1)"
HOSTILE = {"RTL override": "abc\u202egpj.exe", "isolate": "a\u2066b", "bell": "a\u0007b", "escape": "a\u001b[31m",
           "C1 control": "a\u0085b", "DEL": "a\u007fb", "10,000 characters": "x" * 10_000}


@pytest.mark.parametrize("what", sorted(HOSTILE))
def test_every_kind_refuses_control_characters_overrides_and_what_is_too_long(what):
    for kind in (freetext.NAME, freetext.LINE, freetext.NOTE):
        with pytest.raises(ValueError) as refused:
            freetext.clean(HOSTILE[what], kind, "the field")
        assert str(refused.value).startswith("the field ")


def test_markup_is_data_and_is_kept_as_typed():
    assert freetext.clean(f"  {MARKUP} ", freetext.LINE, "a title") == MARKUP


def test_a_name_is_one_line_and_a_note_may_have_lines_and_tabs():
    with pytest.raises(ValueError, match="control character U\\+000A"):
        freetext.clean("Li\nSi", freetext.NAME, "a name")
    with pytest.raises(ValueError, match="one line"):
        freetext.clean("Li\u2028Si", freetext.NAME, "a name")
    assert freetext.clean("gate 2\r\n\tleft open", freetext.NOTE, "a note") == "gate 2\n\tleft open"


def test_the_limits_are_the_kinds_own():
    assert freetext.problem("x" * 100, freetext.NAME) is None and freetext.problem("x" * 101, freetext.NAME)
    assert freetext.problem("x" * 2000, freetext.NOTE) is None and freetext.problem("x" * 2001, freetext.NOTE)
    with pytest.raises(ValueError, match="is required"):
        freetext.clean("   ", freetext.NAME, "a name", required=True)


def test_a_name_stored_long_is_cut_for_the_screens():
    assert freetext.shown("x" * 10_000, freetext.NAME) == "x" * 99 + "…"
    assert freetext.shown("王小明", freetext.NAME) == "王小明"


def test_the_case_machine_refuses_a_reason_with_an_override_naming_it():
    rules = Rules({1: LimitTable.defaults()}, WorkCalendar())
    case = open_case("C1", "exposed_garbage", Urgency.NORMAL, Source.REPORT, None, "350102001001001",
                     Actor.system("intake"), NOW, rules).case
    dispatcher = Actor(ActorKind.USER, "d", frozenset({"dispatcher"}), "")
    refused = apply(case, Refuse("duplicate \u202eetacilpud"), dispatcher, NOW, rules)
    assert refused.code == "invalid" and "bidirectional control U+202E" in refused.reason
    assert apply(case, Refuse(f"duplicate of {MARKUP}"), dispatcher, NOW, rules).case.state.value == "refused"


@pytest.mark.parametrize("topic, body, field", [
    ("gcc/v1/terminal/T1/incident", {"description": "gate\u202e2"}, "description"),
    ("gcc/v1/terminal/T1/incident", {"address": "No.\u00073"}, "address"),
    ("gcc/v1/terminal/T1/diary", {"category": "livelihood", "entry_id": "e1", "text": "a\u001bb"}, "text"),
])
def test_a_terminals_text_with_a_control_character_is_a_dead_letter_naming_the_field(topic, body, field):
    base = {"ts": NOW.isoformat(), "report_id": "R1", "category": "manhole_cover", "severity": 2,
            "lat": 26.08, "lon": 119.3} if topic.endswith("incident") else {"ts": NOW.isoformat()}
    with pytest.raises(DecodeError) as caught:
        decode(topic, orjson.dumps({**base, **body}), NOW)
    assert caught.value.reason == INVALID_TEXT and field in caught.value.detail


def test_a_terminals_markup_and_lines_are_taken_as_data():
    body = {"ts": NOW.isoformat(), "report_id": "R1", "category": "manhole_cover", "severity": 2, "lat": 26.08,
            "lon": 119.3, "description": f"{MARKUP}\nsecond line"}
    [message] = decode("gcc/v1/terminal/T1/incident", orjson.dumps(body), NOW)
    assert message.description == f"{MARKUP}\nsecond line"


def test_a_boundary_files_name_with_an_override_is_refused_naming_the_feature():
    square = {"type": "Polygon", "coordinates": [[[119.30, 26.08], [119.31, 26.08], [119.31, 26.09],
                                                  [119.30, 26.09], [119.30, 26.08]]]}
    document = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": square, "properties": {"code": "350102001001001", "name": "Grid \u202e1"}}]}
    with pytest.raises(RegistryError, match="feature 0 .*properties.name must not contain the bidirectional"):
        units_of(document)

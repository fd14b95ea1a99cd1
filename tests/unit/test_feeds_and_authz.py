"""Feeds, rooms and the one authorization point, without servers: which room gets which change,
how frames merge, and who may open what at which scope."""
from __future__ import annotations

from collections import defaultdict

import pytest

from core.catalogue import AlarmType, MemberState, Severity
from core.roles import EVERYONE, Role, UserRole
from dashboard.alarms import ACKNOWLEDGE_ALARM
from dashboard.authz import Identity, Scope, authorize, scope_of
from dashboard.declarations import pages as declared
from dashboard.feeds import Frame
from dashboard.hub import Room, route, scopes_seeing, watch_index
from dashboard.pages.dispatch import FEED as DISPATCH
from dashboard.pages.wall import FEED as WALL
from dashboard.pages.wall import WALL_REPORTS_MAX, member_key, report_key, wall_reports
from dashboard.vocabulary import MEMBER_STATE_COLOURS, ROLE_COLOURS, SEVERITY_COLOURS, for_browser
from simulator.citygen import SCALES, generate
from telemetry import live

EVERY_ROLE = Identity("demo", EVERYONE)     # every role over the whole city

GRID = "350102001001001"
OTHER_STREET_GRID = "350102002001001"


@pytest.fixture(scope="module")
def city():
    return generate(SCALES["demo"], seed=7)


def _fix(terminal_id: str, t: float, home: str = GRID) -> live.FixChange:
    return live.FixChange(terminal_id, "M-" + terminal_id, home, home, t, 119.3, 26.1)


def test_a_change_reaches_every_level_above_its_grid_and_the_city():
    assert scopes_seeing(GRID) == ("", "350102", "350102001", "350102001001", GRID)
    assert scopes_seeing(None) == ("",)


def _rooms(*specs) -> dict[str, Room]:
    rooms = {}
    for feed, code in specs:
        scope = Scope(code, code or "city")
        rooms[feed.room(scope)] = Room(feed, scope, viewers=1)
    return rooms


def test_each_feed_gets_only_its_kinds_for_its_scope():
    rooms = _rooms((WALL, "350102001"), (DISPATCH, "350102001"), (WALL, "350102002"), (DISPATCH, ""))
    pending = defaultdict(Frame)
    ack = live.TaskAckChange("K1", "T1", "M1", GRID, 5.0, "accepted")
    status = live.StatusChange("T1", "M1", GRID, 5.0, "offline")
    reading = live.ReadingChange("S1", GRID, 5.0, "gas_lel", 1.0)
    route(watch_index(rooms), [_fix("T1", 1.0), ack, status, reading], pending)
    kinds = {room: sorted({c.KIND for c in (*f.coalesced.values(), *f.events)}) for room, f in pending.items()}
    assert kinds == {"wall@350102001": ["fix", "status"],            # no task acks, no readings on the wall
                     "dispatch@350102001": ["status", "task_ack"],    # no 2 Hz fixes on the console
                     "dispatch@city": ["status", "task_ack"]}         # the other street's wall saw nothing


def test_a_room_without_screens_gets_nothing():
    rooms = _rooms((WALL, ""))
    rooms["wall@city"].viewers = 0
    pending = defaultdict(Frame)
    route(watch_index(rooms), [_fix("T1", 1.0)], pending)
    assert not pending


def test_a_frame_keeps_the_newest_fix_of_a_terminal_and_every_alarm_in_order():
    frame = Frame()
    for change in (_fix("T1", 3.0), _fix("T1", 9.0), _fix("T1", 6.0), _fix("T2", 1.0)):
        frame.add(change)
    raised = live.AlarmChange("A1", "S1", "B1", GRID, 1.0, "tamper", 3, "raised")
    cleared = live.AlarmChange("A1", "S1", "B1", GRID, 2.0, "tamper", 3, "cleared")
    frame.add(raised)
    frame.add(cleared)

    class Names:
        def building_name(self, building_id):
            return f"Building {building_id}"

        def org_name(self, code):
            return code

        def own_terminal(self, device_id):
            return device_id

    body = frame.encode(WALL, Names(), Scope("", "city"), seq=7)
    assert body["seq"] == 7 and body["feed"] == "wall"
    assert [(f[0], f[3]) for f in body["changes"]["fix"]] == [(member_key("T1"), 9.0), (member_key("T2"), 1.0)]
    assert [a["state"] for a in body["changes"]["alarm"]] == ["raised", "cleared"]
    assert body["changes"]["alarm"][0]["where"] == "Building B1"


def test_the_wall_feed_carries_no_report_text_photo_or_terminal_id():
    report = live.ReportChange("R1", "T-SECRET", "M1", GRID, 1.0, "noise", 1, 119.3, 26.1, "Gate 2",
                               "my neighbour's name", "photos/secret.jpg")

    class Names:
        def org_name(self, code):
            return code

    wired = WALL.wire["report"](Names(), report)
    assert "T-SECRET" not in str(wired) and "neighbour" not in str(wired) and "secret.jpg" not in str(wired)
    assert wired["where"] == "Gate 2"


def test_the_wall_feed_carries_no_terminal_id_in_fixes_or_statuses_and_the_console_does():
    fix, status = _fix("T-SECRET", 1.0), live.StatusChange("T-SECRET", "M1", GRID, 5.0, "offline")
    class Devices:
        def own_terminal(self, device_id):
            return device_id

    wall = [WALL.wire["fix"](Devices(), fix), WALL.wire["status"](Devices(), status)]
    assert "T-SECRET" not in str(wall)
    assert wall[0][0] == wall[1]["member"] == member_key("T-SECRET") != member_key("T-OTHER")
    assert DISPATCH.wire["status"](None, status)["terminal_id"] == "T-SECRET"   # dispatchers' screen only


def test_a_decoy_with_anothers_report_or_alarm_id_is_a_different_item_on_the_screens():
    class Names:
        def org_name(self, code):
            return code

        def building_name(self, building_id):
            return building_id

    victim = live.ReportChange("R1", "T-VICTIM", "M1", GRID, 1.0, "fire", 4, 119.3, 26.1)
    decoy = live.ReportChange("R1", "T-DECOY", "M2", GRID, 2.0, "noise", 1, 119.3, 26.1)
    keys = [WALL.wire["report"](Names(), r)["key"] for r in (victim, decoy, victim)]
    assert keys[0] != keys[1] and keys[0] == keys[2]
    alarms = [live.AlarmChange("A1", sensor, "B1", GRID, 4.0, "gas_over_threshold", 4, "raised", 1.0, 119.3, 26.1)
              for sensor in ("S-VICTIM", "S-DECOY")]
    assert [WALL.wire["alarm"](Names(), a)["key"] for a in alarms] == ["S-VICTIM/A1", "S-DECOY/A1"]


def test_a_flood_of_reports_leaves_the_wall_its_most_severe_and_newest_ones():
    flood = [live.ReportChange(f"R{i}", "T1", "M1", GRID, float(i), "noise", 1, 119.3, 26.1) for i in range(5000)]
    severe = [live.ReportChange(f"S{i}", "T2", "M2", GRID, float(i), "fire", 4, 119.3, 26.1) for i in range(3)]

    class Reports:
        def recent_reports(self, scope):
            return flood + severe

        def org_name(self, code):
            return code

    wired = wall_reports(Reports(), Scope("", "city"))
    assert wired["reports_total"] == 5003 and len(wired["reports"]) == WALL_REPORTS_MAX == wired["reports_max"]
    kept = [r["key"] for r in wired["reports"]]
    assert kept[:3] == [report_key(severe[i]) for i in (2, 1, 0)] and kept[3] == report_key(flood[4999])
    assert report_key(flood[0]) not in kept


def test_pages_declare_unique_paths_and_feeds():
    pages = declared()
    paths = [p.path for p in pages] + [a for p in pages for a in p.aliases]
    assert len(paths) == len(set(paths)) and "/" in paths
    feeds = [p.feed.name for p in pages if p.feed]
    assert len(feeds) == len(set(feeds))
    assert all(p.roles and str(p.label) for p in pages)


def test_the_demo_identity_may_open_every_page_anywhere_in_the_city(city):
    for page in declared():
        for code in ("", city.districts[0].code, city.communities[3].code, city.grids[5].code):
            decision = authorize(city, EVERY_ROLE, page, code)
            assert decision and decision.scope.code == code


def test_an_org_code_the_city_does_not_have_is_not_found(city):
    decision = authorize(city, EVERY_ROLE, declared()[0], "350102099")
    assert not decision and decision.status == 404 and "350102099" in decision.reason


def test_a_street_identity_is_refused_the_city_and_other_streets_but_not_its_own_subtree(city):
    street = city.streets[0]
    viewer = Identity("wall-1", frozenset({UserRole.WALL_VIEWER}), street.code)
    wall = declared()[0]
    assert authorize(city, viewer, wall, street.code)
    assert authorize(city, viewer, wall, city.communities[0].code)       # a community of that street
    for outside in ("", city.streets[1].code):
        decision = authorize(city, viewer, wall, outside)
        assert not decision and decision.status == 403


def test_a_role_without_the_page_or_action_is_refused(city):
    viewer = Identity("wall-1", frozenset({UserRole.WALL_VIEWER}), "")
    dispatch = next(p for p in declared() if p.path == "/dispatch")
    assert not authorize(city, viewer, dispatch, "")
    assert not authorize(city, viewer, ACKNOWLEDGE_ALARM, GRID)
    dispatcher = Identity("d-1", frozenset({UserRole.DISPATCHER}), "")
    assert authorize(city, dispatcher, ACKNOWLEDGE_ALARM, GRID)


def test_a_grid_is_a_scope_too(city):
    grid = city.grids[0]
    assert scope_of(city, grid.code).name == grid.name


def test_every_value_the_changes_carry_has_a_label_and_the_drawn_ones_a_colour():
    vocabulary = for_browser()
    labels = vocabulary["labels"]
    assert set(labels["alarm_type"]) == {a.value for a in AlarmType}
    assert set(labels["member_state"]) == {s.value for s in MemberState}
    assert set(labels["role"]) == {r.value for r in Role}
    assert set(labels["severity"]) == {str(s.value) for s in Severity}
    assert set(MEMBER_STATE_COLOURS) == set(MemberState) and set(ROLE_COLOURS) == set(Role)
    assert set(SEVERITY_COLOURS) == set(Severity)
    assert all(" " in text for text in labels["member_state"].values())  # "English 中文"


def test_a_phones_fix_moves_its_members_marker_but_its_status_is_not_the_walls():
    class Devices:
        def own_terminal(self, device_id):
            return {"ot-M1-1": "T1"}.get(device_id, device_id)

    assert WALL.wire["fix"](Devices(), _fix("ot-M1-1", 1.0))[0] == member_key("T1")
    assert WALL.wire["status"](Devices(), live.StatusChange("ot-M1-1", "M1", GRID, 5.0, "silent")) is None
    assert WALL.wire["status"](Devices(), live.StatusChange("T1", "M1", GRID, 5.0, "offline"))["member"] == \
        member_key("T1")


def test_every_callback_declares_who_may_run_it_where_it_is_defined():
    """The pages' callbacks and the shell's are declared with their roles by the decorator that
    registers them with Dash: none of Dash's callbacks lacks a declaration, and a callback that
    changes data is open to no role that all of its actions refuse (the bus checks each again)."""
    from dash._callback import GLOBAL_CALLBACK_MAP

    import dashboard.app  # noqa: F401  (the shell's own callbacks)
    from dashboard import declarations

    declared()
    known = declarations.callbacks()
    assert GLOBAL_CALLBACK_MAP and set(GLOBAL_CALLBACK_MAP) - set(known) == set()
    wider = {key: sorted(r.value for r in entry.roles - frozenset().union(*(a.roles for a in entry.changes)))
             for key, entry in known.items() if entry.changes}
    assert {key: roles for key, roles in wider.items() if roles} == {}
    assert all(entry.roles and entry.why for entry in known.values())
    assert {a.key for entry in known.values() for a in entry.changes} >= {"alarm.acknowledge", "user.add",
                                                                          "wall_token.revoke", "registry.member.add"}


def test_pages_are_found_by_their_modules_alone():
    """Every module of dashboard/pages/ that declares a page is served, in its declared order."""
    import pkgutil

    import dashboard.pages

    pages = declared()
    modules = {m.name for m in pkgutil.iter_modules(dashboard.pages.__path__)}
    assert {p.layout.__module__.rsplit(".", 1)[1] for p in pages} == modules - {"export"}
    assert pages[0].path == "/wall" and [p.order for p in pages] == sorted(p.order for p in pages)


def test_the_readmes_table_of_roles_lists_the_pages_each_role_may_open():
    """README's page table says what the pages declare (a page is one module: the table is the one
    other place its roles are written, so a test keeps the two in step)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| (wall viewer|dispatcher|leader|admin) \| ([^|]*) \|",
                                                        readme, re.M)}
    assert set(rows) == {"wall viewer", "dispatcher", "leader", "admin"}
    pages = declared()
    for label, role in (("wall viewer", UserRole.WALL_VIEWER), ("dispatcher", UserRole.DISPATCHER),
                        ("leader", UserRole.LEADER), ("admin", UserRole.ADMIN)):
        listed = {"/" + m.group(1) for m in re.finditer(r"`/([a-z]+(?:/[a-z]+)*)[^`]*`", rows[label])}
        may_open = {p.path for p in pages if role in p.roles}
        if label == "admin":           # "every page, and …": at least the pages only an admin may open are named
            assert {p.path for p in pages if p.roles == frozenset({UserRole.ADMIN})} <= listed <= may_open
        else:
            assert listed == may_open, label

"""The candidates' scope filter without servers (issue 23, item 3): a viewer of an org unit is shown
only the members whose own grid lies inside it; the whole city is shown every terminal (a stranger
is then left out by the search as "not a member", and counted)."""
from __future__ import annotations

from core.orgcodes import Level, ancestor
from dispatch.candidates import visible
from simulator.citygen import SCALES, generate

CITY = generate(SCALES["demo"], seed=7)


def _members_of(code: str) -> list:
    return [m for m in CITY.members if m.grid_code.startswith(code)]


def test_a_streets_viewer_is_shown_its_own_members_and_none_of_the_next_streets():
    street, next_street = CITY.streets[0].code, CITY.streets[1].code
    ours, theirs = _members_of(street), _members_of(next_street)
    assert ours and theirs
    assert all(visible(CITY, street, m.terminal_id) for m in ours)
    assert not any(visible(CITY, street, m.terminal_id) for m in theirs)


def test_a_grid_or_community_scope_keeps_its_members_only_and_a_district_all_of_its_own():
    member = CITY.members[0]
    community = ancestor(member.grid_code, Level.COMMUNITY)
    assert visible(CITY, member.grid_code, member.terminal_id)
    assert visible(CITY, community, member.terminal_id)
    neighbour = next(m for m in CITY.members if m.grid_code != member.grid_code
                     and ancestor(m.grid_code, Level.COMMUNITY) == community)
    assert not visible(CITY, member.grid_code, neighbour.terminal_id)
    assert visible(CITY, community, neighbour.terminal_id)
    district = CITY.districts[0].code
    assert all(visible(CITY, district, m.terminal_id) for m in _members_of(district))


def test_a_terminal_that_is_no_members_is_shown_city_wide_only():
    assert visible(CITY, "", "T-nobody")                     # the search then leaves it out, counted
    assert not visible(CITY, CITY.streets[0].code, "T-nobody")
    assert all(visible(CITY, "", m.terminal_id) for m in CITY.members)

"""The wall's compact wire format has one owner: a fix travels as a list of values whose order only
dashboard.pages.wall spells (FIX_FIELDS, sent with the snapshot); the browser reads them by name."""
from __future__ import annotations

from config.settings import REPO_ROOT
from dashboard.pages.wall import FIX_FIELDS, member_key, wire_fix
from telemetry import live

GRID = "350102001001001"


class _Queries:
    @staticmethod
    def own_terminal(terminal_id: str) -> str:
        return terminal_id


def test_a_fix_on_the_wire_holds_the_values_its_fields_name():
    change = live.FixChange("T1", "M1", GRID, "350102001002003", 1.5, 119.3, 26.1, battery_pct=80)
    sent = dict(zip(FIX_FIELDS, wire_fix(_Queries(), change), strict=True))
    assert sent == {"member": member_key("T1"), "lon": 119.3, "lat": 26.1, "t": 1.5, "battery_pct": 80,
                    "grid_code": "350102001002003"}


def test_the_browser_reads_a_fix_by_field_name_never_by_position():
    wall_js = (REPO_ROOT / "assets" / "wall.js").read_text()
    assert "s.fix_fields" in wall_js
    for name in FIX_FIELDS:
        assert f"at.{name}]" in wall_js, name
    assert "([id, lon, lat" not in wall_js and "x[3]" not in wall_js


def test_a_feed_naming_a_change_kind_nobody_declares_is_refused_when_its_page_is_defined():
    import pytest

    from dashboard.feeds import Feed

    with pytest.raises(ValueError, match="alarm_checked"):
        Feed("console", wire={"alarm_checked": lambda q, c: c}, snapshot=lambda q, scope: {})
    assert Feed("console", wire={"alarm_check": lambda q, c: c}, snapshot=lambda q, scope: {}).kinds == \
        {"alarm_check"}

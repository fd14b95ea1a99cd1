"""The "who needs help first" panel (在场需关注人员) of the case page and the dispatcher console, and
the wall's count per alarm: ledger.scene decides who sees names (its module says the rule); this
module only reads it for the person asking and draws what it was given. A viewer who may not see
names is sent the count, never a name (the panel is drawn on the server: nothing else travels).
"""
from __future__ import annotations

import logging

import psycopg2
from dash import html

from core.catalogue import Label
from core.ledger import NEEDS_HELP_FIRST, TAG_LABELS, Tag
from ledger import scene as ledger_scene
from ledger.scene import CountCache, Person, Scene

log = logging.getLogger(__name__)
TITLE = Label("Who needs help first", "在场需关注人员")
TAG_CLASS = {Tag.ELDERLY_ALONE: "scene-tag-elderly", Tag.DISABLED: "scene-tag-disabled",
             Tag.LEFT_BEHIND_CHILD: "scene-tag-child"}
COMPACT_ROWS = 4         # the console lists this many; the case page all (up to ledger.scene.SHOWN_MAX)
WALL_COUNTS = CountCache(ttl_s=60.0)      # the wall's and the console's alarm feeds: counts at most a minute old


def count_words(count: int) -> str:
    """'3 位需关注人员 · 3 people who need help first' (the one wording, the wall's too)."""
    return f"{count} 位需关注人员 · {count} {'person who needs' if count == 1 else 'people who need'} help first"


def case_scene(state, case, identity) -> Scene | None:
    """The scene of a case's building as this identity may see it, or None (no building found)."""
    building = ledger_scene.building_of_case(state.queries.rows, case.case_id)
    if building is None:
        return None
    return ledger_scene.scene(state.queries.rows, building, identity.role if identity else None,
                              identity.scope_code if identity else None)


def panel(found: Scene | None, prefix: str, compact: bool = False):
    """The panel: a table of who needs help first for a viewer who may see names, else the count
    and the count per tag; a line saying so when the case is at no building of the ledger."""
    body = _body(found, prefix, compact)
    if compact:      # the console's column is short: the title and the building on one line
        where = f" · {found.building_name}" if found is not None else ""
        title = html.H3([TITLE.zh, html.Span(where, className="scene-building")], className="scene-title")
    else:
        title = html.H2(str(TITLE), className="scene-title")
    return html.Section(className="scene-panel" + (" scene-compact" if compact else ""), id=f"{prefix}-scene",
                        children=[title, *body])


def _body(found: Scene | None, prefix: str, compact: bool) -> list:
    if found is None:
        return [html.P(str(Label("Not at a building of the ledger.", "未关联到台账中的楼栋。")), className="audit-dim",
                       id=f"{prefix}-scene-none")]
    where = None if compact else html.Div(found.building_name, className="scene-building",
                                          id=f"{prefix}-scene-building")
    if found.count == 0:
        return [where, html.P(str(Label("Nobody here needs help first.", "本楼无需关注人员。")),
                              className="audit-dim", id=f"{prefix}-scene-count")]
    words = f"{found.count} 位需关注人员 · need help first" if compact else count_words(found.count)
    counted = html.Div(className="scene-count", id=f"{prefix}-scene-count", children=[
        html.Strong(words), " ",
        *[html.Span(f"{TAG_LABELS[tag].zh} {found.by_tag[tag]}", className=f"scene-tag {TAG_CLASS[tag]}")
          for tag in NEEDS_HELP_FIRST if found.by_tag.get(tag)]])
    if found.people is None:
        hidden = (Label("names: another org unit's building", "他单位楼栋，不显示姓名") if compact else
                  Label("Names only for the dispatchers and leaders of this building's org unit.",
                        "姓名仅向本楼所属单位的调度员和领导显示。"))
        return [where, counted, html.P(str(hidden), className="audit-dim", id=f"{prefix}-scene-names-hidden")]
    shown = found.people[:COMPACT_ROWS] if compact else found.people
    more = found.count - len(shown)
    return [where, counted, _table(shown, prefix, compact),
            html.P(f"+{more} " + (str(Label("more on the case's page", "人：见案件页")) if compact else
                                  str(Label("more: see the building on the basic-data page",
                                            "人未列出：请在基础数据中查看本楼"))),
                   className="audit-dim", id=f"{prefix}-scene-more") if more > 0 else None]


def _table(people: tuple[Person, ...], prefix: str, compact: bool):
    head = [Label("Floor", "楼层"), Label("House", "房号"), Label("Name", "姓名"), Label("Age", "年龄"),
            Label("Needs", "类别"), Label("Phone", "电话")]
    if compact:
        head = [h for h in head if h.en != "Phone"]
    rows, several = [], len({p.entrance for p in people}) > 1
    for n, person in enumerate(people):
        house = f"{person.entrance}单元 {person.house_number}" if several else person.house_number
        cells = [f"{person.floor}F", house, html.Bdi(person.name), "–" if person.age is None else str(person.age),
                 html.Span([html.Span(TAG_LABELS[t].zh, className=f"scene-tag {TAG_CLASS[t]}") for t in person.tags])]
        if not compact:
            cells.append(person.phone_masked or "–")
        rows.append(html.Tr([html.Td(c) for c in cells], id=f"{prefix}-scene-row-{n}", className="scene-row"))
    return html.Table(className="scene-table", id=f"{prefix}-scene-table", children=[
        html.Thead(html.Tr([html.Th(f"{h.zh} · {h.en}" if not compact else h.zh) for h in head])),
        html.Tbody(rows)])


def alarm_count(q, building_id: str | None) -> int | None:
    """How many need help first in an alarm's building (the wall's and the console's feeds); None
    when the ledger cannot be read now (logged: the alarm still travels, without its count)."""
    rows = getattr(q, "rows", None)      # a reader without the database (the feeds' unit tests): no count
    if rows is None:
        return None
    try:
        return WALL_COUNTS.count(rows, building_id)
    except psycopg2.Error as failed:
        log.warning("the count of who needs help first in %s could not be read: %s", building_id, failed)
        return None


def prime_counts(q, building_ids) -> None:
    """The counts of many alarms' buildings in one query (a snapshot's alarms); a failure is left
    to each alarm's own count (alarm_count)."""
    try:
        WALL_COUNTS.counts(q.rows, building_ids)
    except psycopg2.Error as failed:
        log.warning("the counts of who needs help first could not be read: %s", failed)

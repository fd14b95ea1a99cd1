"""What a signed-in phone reads (docs/HANDHELD_API.md "Reads"): who it is, its grid's map, the
catalogue, its tasks, what it may verify, one case, the announcements it is sent, its grid's patrol
coverage today. Each answer is scoped by the caller on the server: its member's terminal (the
tasks, the cases it handles or was offered) and home grid (the grid's cases, the announcements of
the grid and the org units above it); nothing is taken from the request but a case's id.

The city (reference data: grids, buildings, org names) is the caller's process's own copy, kept
current by database.citydb.CityWatch; cases, offers and events come from the case tables
(cases.reads: the case history and its photos); coverage from what the patrol maintainer folds
(`patrol_daily`, kpis/patrol.py), never recomputed here.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timezone

import orjson
from shapely.geometry import mapping

from cases import store as case_store
from cases.model import FINISHED, Case, State, values
from cases.reads import SELECT_CASES, CaseReads
from core import freetext
from core.catalogue import (
    CASE_CATEGORY_LABELS,
    CASE_STATE_LABELS,
    DIARY_CATEGORIES,
    INCIDENT_CATEGORIES,
    SEVERITY_LABELS,
    URGENCY_LABELS,
    Label,
)
from core.city import CITY_TZ
from core.http import Reply, Request, Route, refusal
from core.orgcodes import ancestors, level_of
from core.roles import ROLE_LABELS
from handheld.caller import Caller

API = "/handheld/api/v1"
CASES_PATH = f"{API}/cases/"
MAX_LISTED = 200                       # cases in one list, announcements in one answer
_CASE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_PRIVATE = (("Cache-Control", "private, no-cache"),)    # the service worker may keep it for offline, revalidated


def shown(label: Label) -> str:
    """A label as the phone shows it: Chinese first, then English."""
    return f"{label.zh} {label.en}"


def answer(doc: dict) -> Reply:
    return Reply(200, orjson.dumps(doc), headers=_PRIVATE)


def _cut(text: str | None, kind: freetext.Kind) -> str | None:
    """Stored text as the phone may show it (core.freetext.shown): a value stored before a limit,
    or written past the door, must not make a task card 40,000 pixels tall."""
    return None if text is None else freetext.shown(text, kind)


def case_item(case: Case, deadline: datetime | None = None, offered_at: datetime | None = None) -> dict:
    """A case as the phone's lists show it (its stage's deadline, or an offer's own)."""
    item = {"case_id": case.case_id, "state": case.state.value, "state_label": shown(CASE_STATE_LABELS[case.state]),
            "category": case.category,
            "category_label": shown(CASE_CATEGORY_LABELS.get(case.category, Label(case.category, case.category))),
            "urgency": case.urgency.value, "title": _cut(case.title, freetext.LINE),
            "place": _cut(case.place, freetext.LINE), "lat": case.lat,
            "lon": case.lon, "deadline": deadline or case.deadline, "grid_code": case.grid_code}
    if offered_at is not None:
        item["offered_at"] = offered_at
    return item


class HandheldReads(CaseReads):
    """The phone's reads, on the reads' pool (database.reads.Reads) of the device-facing server."""

    # --- who, where, what ---------------------------------------------------------------------------
    def me(self, caller: Caller, request: Request) -> Reply:
        grid = self.city.grid_by_code.get(caller.grid_code)
        return answer({
            "device_id": caller.device_id, "member_id": caller.member_id, "name": caller.name,
            "role": caller.role.value, "role_label": shown(ROLE_LABELS[caller.role]), "terminal_id": caller.terminal_id,
            "grid_code": caller.grid_code, "grid_name": grid.name if grid else "",
            "org_path": [{"code": code, "name": self._org_name(code), "level": level_of(code).value}
                         for code in ancestors(caller.grid_code)],
            "server_time": datetime.now(timezone.utc)})

    def _org_name(self, code: str) -> str:
        try:
            return self.city.org_name(code)
        except KeyError:                # an org unit the city does not hold (yet): its code stands
            return code

    def map(self, caller: Caller, request: Request) -> Reply:
        """The member's grid and its buildings, for a map drawn on the phone without tiles."""
        grid = self.city.grid_by_code.get(caller.grid_code)
        if grid is None:
            return refusal(404, "not_found")
        west, south, east, north = grid.boundary.bounds
        buildings = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [b.lon, b.lat]},
                      "properties": {"id": b.building_id, "name": b.name}}
                     for b in self.city.buildings if b.grid_code == grid.code]
        return answer({"grid": {"type": "Feature", "geometry": mapping(grid.boundary),
                                "properties": {"id": grid.code, "name": grid.name}},
                       "buildings": {"type": "FeatureCollection", "features": buildings},
                       "bounds": [[south, west], [north, east]]})

    def catalogue(self, caller: Caller, request: Request) -> Reply:
        """What a report, a diary entry and an urgency may be, with their words (core.catalogue);
        `icon` is the category's key, which the app's icon set is keyed by."""
        return answer({
            "incident_categories": [{"key": c.code, "kind": c.kind.value, "label_zh": c.name_zh, "label_en": c.name_en,
                                     "icon": c.code, "severity": int(c.default_severity)}
                                    for c in INCIDENT_CATEGORIES.values()],
            "diary_categories": [{"key": key, "label_zh": label.zh, "label_en": label.en}
                                 for key, label in DIARY_CATEGORIES.items()],
            "severities": [{"severity": int(severity), "label_zh": label.zh, "label_en": label.en}
                           for severity, label in SEVERITY_LABELS.items()],
            "urgencies": [{"key": key, "label_zh": label.zh, "label_en": label.en}
                          for key, label in URGENCY_LABELS.items()]})

    # --- my work --------------------------------------------------------------------------------------
    def tasks(self, caller: Caller, request: Request) -> Reply:
        """The offers made to my terminal that are still open (each with the offer's own deadline),
        and the open cases I handle (with their stage's deadline)."""
        columns = ", ".join(f"c.{c}" for c in case_store.CASE_COLUMNS)
        offers = self.rows(f"select {columns}, o.offered_at, o.expires_at from case_offers o join cases c "
                           "using (case_id) where o.terminal_id = %s and o.outcome is null and o.expires_at > now() "
                           "and c.state = %s order by o.expires_at limit %s",
                           (caller.terminal_id, State.DISPATCHED.value, MAX_LISTED))
        n = len(case_store.CASE_COLUMNS)
        mine = self.rows(f"{SELECT_CASES} where handler = %s and state <> all(%s) "
                         "order by deadline nulls last limit %s",
                         (caller.terminal_id, values(FINISHED | {State.DISPATCHED}), MAX_LISTED))
        return answer({"offers": [case_item(case_store.from_row(row[:n]), deadline=row[n + 1], offered_at=row[n])
                                  for row in offers],
                       "open": [case_item(case_store.from_row(row)) for row in mine]})

    def verify(self, caller: Caller, request: Request) -> Reply:
        """My grid's cases waiting for verification on site, but not those I handled myself."""
        rows = self.rows(f"{SELECT_CASES} where state = %s and grid_code = %s and handler is distinct from %s "
                         "order by deadline nulls last limit %s",
                         (State.HANDLED.value, caller.grid_code, caller.terminal_id, MAX_LISTED))
        return answer({"cases": [case_item(case_store.from_row(row)) for row in rows]})

    def case(self, caller: Caller, request: Request) -> Reply:
        """One case, if it is mine (I handle it, or it was offered to me) or my grid's; its report,
        photos by stage and history (what happened, not who at the screens did it)."""
        case_id = request.path.split("?", 1)[0][len(CASES_PATH):]
        if not _CASE_ID.fullmatch(case_id):
            return refusal(400, "bad_case_id")
        found = self.rows(f"{SELECT_CASES} where case_id = %s", (case_id,))
        if not found:
            return refusal(404, "not_found")
        case = case_store.from_row(found[0])
        if not self._may_see(caller, case):
            return refusal(403, "outside_grid")
        history = self.case_history(case_id)
        reports = [{"time": s["time"], "description": _cut(s["description"], freetext.NOTE),
                    "address": _cut(s["address"], freetext.LINE)} for s in history["sources"] if s["kind"] == "report"]
        events = [{"time": e["time"], "command": e["command"], "actor_kind": e["actor_kind"],
                   "from_state": e["from_state"], "to_state": e["to_state"], "reason": _cut(e["reason"], freetext.NOTE)}
                  for e in history["events"]]
        photos = [{"ref": p["ref"], "stage": p["stage"]} for p in self.case_photos(case_id)]
        return answer({**case_item(case), "opened_at": case.opened_at,
                       "handler_is_me": case.handler == caller.terminal_id, "reports": reports, "photos": photos,
                       "history": events})

    def _may_see(self, caller: Caller, case: Case) -> bool:
        if case.handler == caller.terminal_id or case.grid_code == caller.grid_code:
            return True
        return bool(self.rows("select 1 from case_offers where case_id = %s and terminal_id = %s limit 1",
                              (case.case_id, caller.terminal_id)))

    # --- what I am told, what I walked ------------------------------------------------------------------
    def announcements(self, caller: Caller, request: Request) -> Reply:
        """The announcements to my grid and every org unit above it that have not expired, newest
        first, each with whether my terminal has sent its read receipt."""
        rows = self.rows("select a.id, a.org_code, a.org_name, a.title, a.body, a.sender, a.created_at, a.expires_at, "
                         "exists (select 1 from announcement_reads r where r.announcement_id = a.id "
                         "and r.terminal_id = %s) from announcements a where a.org_code = any(%s) "
                         "and a.expires_at > now() order by a.created_at desc, a.id desc limit %s",
                         (caller.terminal_id, ancestors(caller.grid_code), MAX_LISTED))
        names = ("announcement_id", "org_code", "org_name", "title", "body", "sender", "ts", "expires", "read")
        cuts = {"org_name": freetext.NAME, "title": freetext.LINE, "body": freetext.NOTE, "sender": freetext.NAME}
        return answer({"announcements": [{name: _cut(value, cuts[name]) if name in cuts else value
                                          for name, value in zip(names, row, strict=True)} for row in rows]})

    def coverage(self, caller: Caller, request: Request) -> Reply:
        """Today's (city time) patrol coverage of my grid as the patrol maintainer has folded it:
        the share of the grid's cells walked by any of its members, my own share, what I walked."""
        start = datetime.now(CITY_TZ).replace(hour=0, minute=0, second=0, microsecond=0)
        rows = self.rows("select terminal_id, cells, cells_total, distance_m, last_time from patrol_daily "
                         "where day = %s and grid_code = %s", (start.date(), caller.grid_code))
        total = max((r[2] for r in rows), default=0)
        walked = set().union(*(r[1] for r in rows)) if rows else set()
        mine = next((r for r in rows if r[0] == caller.terminal_id), None)
        return answer({"covered_pct": _pct(len(walked), total),
                       "my_covered_pct": _pct(len(mine[1]) if mine else 0, total),
                       "walked_m": round(mine[3], 1) if mine else 0.0, "cells_total": total,
                       "since": start, "upto": max((r[4] for r in rows if r[4]), default=None)})

    def routes(self, signed_in: Callable[[Callable[[Caller, Request], Reply]], Callable[[Request], Reply]]
               ) -> list[Route]:
        """Every read behind the session check (GET, no body)."""
        paths = {"me": self.me, "map": self.map, "catalogue": self.catalogue, "tasks": self.tasks,
                 "verify": self.verify, "announcements": self.announcements, "coverage": self.coverage}
        return [*(Route("GET", f"{API}/{name}", signed_in(respond), max_body=0) for name, respond in paths.items()),
                Route("GET", CASES_PATH, signed_in(self.case), max_body=0)]


def _pct(part: int, total: int) -> float:
    return round(100.0 * part / total, 1) if total else 0.0

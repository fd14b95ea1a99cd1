"""Who may reach what: every Flask route and every Dash callback of the app, in two tables.

`dashboard.auth` enforces both tables before any view runs, and refuses (403) what they do not
name. A test walks the app's registered routes and callbacks and fails when one is missing here,
so a new page cannot forget to say who may use it.

- A route is PUBLIC (no login: the login page, static assets, the health check) or SIGNED_IN
  (any role; the page routes then ask authz.authorize for the page and the scope), or names the
  roles it needs (and the view asks authz for the scope).
- A callback is keyed by the id of its first output. `changes` names the actions it performs
  (dashboard/commands.py authorizes and audits it again for its target's scope); `clientside`
  callbacks run in the browser and never reach the server, but are listed all the same.
"""
from __future__ import annotations

from dataclasses import dataclass

from cases.model import Dispatch, Register, Return
from core.roles import EVERYONE, UserRole
from dashboard.announcements import ANNOUNCE
from dashboard.case_actions import CASE_ACTIONS, NEW_LIMITS, OPEN_CASE, REASSIGN, SET_CALENDAR_DAY
from dashboard.commands import ACKNOWLEDGE_ALARM, Action
from dashboard.kpis_diary import RATE_DIARY
from dashboard.pages import (
    admin,
    announcements,
    audit,
    boundaries,
    case,
    cases,
    devices,
    gateways,
    kpis,
    members,
    replay,
    rules,
)


@dataclass(frozen=True)
class Route:
    roles: frozenset[UserRole] | None      # None: public
    why: str

    @property
    def public(self) -> bool:
        return self.roles is None


@dataclass(frozen=True)
class Callback:
    roles: frozenset[UserRole]
    why: str
    changes: tuple[Action, ...] = ()       # the data-changing actions it may perform
    clientside: bool = False


def _public(why: str) -> Route:
    return Route(None, why)


def _signed_in(why: str) -> Route:
    return Route(EVERYONE, why)


ROUTES: dict[str, Route] = {
    "/login": _public("the login form (GET) and a login (POST, CSRF token)"),
    "/logout": _signed_in("logout of this session, or of all of them (POST, CSRF token)"),
    "/healthz": _public("the process answers (no data)"),
    "/assets/<path:filename>": _public("our stylesheets and scripts (no data; the login page's style)"),
    "/static/<path:filename>": _public("Flask's static folder (unused, nothing in it)"),
    "/_favicon.ico": _public("the icon"),
    "/_dash-component-suites/<string:package_name>/<path:fingerprinted_path>": _signed_in("Dash's scripts"),
    "/_dash-layout": _signed_in("the shell's layout (no data: the pages come from route())"),
    "/_dash-dependencies": _signed_in("the callback graph"),
    "/_dash-update-component": _signed_in("every server callback; each is checked against CALLBACKS"),
    "/_reload-hash": _signed_in("Dash's hot reload (off in production)"),
    audit.EXPORT_PATH: Route(audit.PAGE.roles, "the audit trail as CSV (authorizes the scope; audited)"),
    cases.EXPORT_PATH: Route(cases.PAGE.roles, "the case list as CSV (authorizes the scope; audited)"),
    kpis.EXPORT_PATH: Route(kpis.PAGE.roles, "a KPI table as CSV (authorizes the scope; audited)"),
    kpis.REPORT_PATH: Route(kpis.PAGE.roles, "the assessment report as PDF (authorizes the scope; audited)"),
    "/": _signed_in("the shell; route() authorizes the page and the scope"),
    "/<path:path>": _signed_in("the shell; route() authorizes the page and the scope"),
}

CALLBACKS: dict[str, Callback] = {
    "shell-page-root": Callback(EVERYONE, "the router: header and page from the URL (authorizes the page and scope)"),
    "shell-url": Callback(EVERYONE, "the org selector writes the scope into the URL (route() checks it)"),
    "dispatch-result": Callback(ACKNOWLEDGE_ALARM.roles,
                                "the Acknowledge buttons; offering a case, registering it, withdrawing an offer, "
                                "reassigning it",
                                changes=(ACKNOWLEDGE_ALARM, CASE_ACTIONS[Dispatch], CASE_ACTIONS[Register],
                                         CASE_ACTIONS[Return], REASSIGN)),
    "dispatch-candidates": Callback(frozenset({UserRole.DISPATCHER, UserRole.ADMIN}),
                                    "the candidates for the case chosen (authorizes the case's org unit)"),
    "dispatch-selected": Callback(frozenset({UserRole.DISPATCHER, UserRole.ADMIN}), "the case chosen",
                                  clientside=True),
    "audit-rows": Callback(audit.PAGE.roles, "the audit trail's rows for the filter (authorizes the scope)"),
    "cases-rows": Callback(cases.PAGE.roles, "the case list's rows for the filter (authorizes the scope)"),
    "cases-new-result": Callback(OPEN_CASE.roles, "enter a case by hand (authorized for its org unit)",
                                 changes=(OPEN_CASE,)),
    "cases-pushed": Callback(cases.PAGE.roles, "the list's live pushes (which cases changed)", clientside=True),
    "cases-conn": Callback(cases.PAGE.roles, "connection state", clientside=True),
    "case-head": Callback(case.PAGE.roles, "a case's page, drawn again when it changes (authorizes the case's "
                                           "org unit)"),
    "case-map-box": Callback(case.PAGE.roles, "a case's small map and its live feed's socket (authorizes the "
                                              "case's org unit)"),
    "case-pushed": Callback(case.PAGE.roles, "the case page's live pushes (this case changed)", clientside=True),
    "case-conn": Callback(case.PAGE.roles, "connection state", clientside=True),
    "case-actions": Callback(case.PAGE.roles, "the actions offered (authorizes the case's org unit)"),
    "case-result": Callback(case.PAGE.roles, "a case action (each authorized for the case's org unit)",
                            changes=tuple(CASE_ACTIONS.values())),
    "admin-user-result": Callback(admin.PAGE.roles, "add a user, new password, disable, enable",
                                  changes=admin.USER_ACTIONS),
    "admin-token-result": Callback(admin.PAGE.roles, "create or revoke a wall token", changes=admin.TOKEN_ACTIONS),
    "devices-result": Callback(devices.PAGE.roles, "add a member's phone; a device's new password, revoke, retire "
                               "(authorized for the member's grid)", changes=devices.DEVICE_ACTIONS),
    "members-result": Callback(members.PAGE.roles, "add, import, change, move, new terminal, retire a member "
                               "(each authorized for the member's grid, a move for both)",
                               changes=members.MEMBER_ACTIONS),
    "members-table": Callback(members.PAGE.roles, "the members of the scope, searched (authorizes the scope)"),
    "members-edit-name": Callback(members.PAGE.roles, "the member chosen, in the editor (authorizes their grid)"),
    "members-edit": Callback(members.PAGE.roles, "a row's Change… picks the member (no data)", clientside=True),
    "gateways-result": Callback(gateways.PAGE.roles, "add, move, new password, revoke, retire a gateway; add, move, "
                                "retire a sensor (each authorized for the building's grid, a move for both)",
                                changes=gateways.GATEWAY_ACTIONS),
    "gateways-table": Callback(gateways.PAGE.roles, "the gateways of the scope, searched (authorizes the scope)"),
    "gateways-sensors": Callback(gateways.PAGE.roles, "the gateway chosen and its sensors (authorizes its grid)"),
    "gateways-add-building": Callback(gateways.PAGE.roles, "the buildings matching what is typed (the admin's scope)"),
    "gateways-pick": Callback(gateways.PAGE.roles, "a row's Sensors… picks the gateway (no data)", clientside=True),
    "boundaries-result": Callback(boundaries.PAGE.roles, "import a community's grids, a street's communities or a "
                                  "district's streets (authorized for that parent)", changes=(boundaries.IMPORT,)),
    "boundaries-download": Callback(boundaries.PAGE.roles, "an org unit's units as GeoJSON and on the map "
                                    "(authorizes the org unit)"),
    "rules-limits": Callback(rules.PAGE.roles, "the time limits, the calendar, the held intake rows"),
    "rules-limits-result": Callback(NEW_LIMITS.roles, "a new version of the time limits", changes=(NEW_LIMITS,)),
    "rules-calendar-result": Callback(SET_CALENDAR_DAY.roles, "an admin's calendar day", changes=(SET_CALENDAR_DAY,)),
    "kpis-error": Callback(kpis.PAGE.roles, "the KPIs of the scope and period: cards, ranking, charts, lists "
                                            "(authorizes the scope)"),
    "kpis-sort": Callback(kpis.PAGE.roles, "the ranking's sort column (no data)"),
    "kpis-diary-result": Callback(RATE_DIARY.roles, "a leader rates a diary entry (authorized for its grid)",
                                  changes=(RATE_DIARY,)),
    "replay-track": Callback(replay.PAGE.roles, "a member's track, stops, events and coverage (authorizes the "
                                                "member's org unit)"),
    "replay-who": Callback(replay.PAGE.roles, "who was where at a moment (authorizes the scope)"),
    "replay-play": Callback(replay.PAGE.roles, "the player (in the browser; no data)", clientside=True),
    "ann-result": Callback(ANNOUNCE.roles, "send an announcement (authorized for the org unit chosen)",
                           changes=(ANNOUNCE,)),
    "ann-list": Callback(announcements.PAGE.roles, "the announcements sent in the scope, with their read counts "
                                                   "(authorizes the scope)"),
    "ann-reads": Callback(announcements.PAGE.roles, "the page's live receipts", clientside=True),
    "ann-conn": Callback(announcements.PAGE.roles, "connection state", clientside=True),
    "dispatch-alarms": Callback(frozenset({UserRole.DISPATCHER, UserRole.ADMIN}), "the console's live lists",
                                clientside=True),
    "dispatch-conn": Callback(frozenset({UserRole.DISPATCHER, UserRole.ADMIN}), "connection state", clientside=True),
    "wall-members": Callback(EVERYONE, "the wall's live layers and lists", clientside=True),
    "wall-conn": Callback(EVERYONE, "connection state", clientside=True),
    "wall-heat": Callback(EVERYONE, "the heat map's periodic push", clientside=True),
}


def callback_output_ids(key: str) -> list[str]:
    """The component ids of a callback's outputs, from Dash's callback map key
    ("..a.children...b.className.." or "a.children"; "a.data@<hash>" for an output that another
    callback shares; pattern ids are JSON)."""
    parts = [p for p in key.strip(".").split("...") if p]
    return [p.split("@", 1)[0].rsplit(".", 1)[0] for p in parts]

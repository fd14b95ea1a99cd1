"""The review queue (审核, issue 26): the members' registrations from the handheld (采集登记) wait here
until the community's staff approve them, edit and approve them, or send them back with a reason.

Who: `LEDGER_ROLES` (leaders and admins) over the org selector's scope, as on the basic-data page.
A grid member, the grid supervisor (网格监督员) included, registers from the phone and never reviews:
the queue is the community's, decided by its staff at the screens, and nobody decides their own
registration (ledger.review). A scope above a community lists its communities with how many
registrations wait in each; a community's (or a grid's) scope shows its queue, oldest first.

- **The queue**: kind, member, grid, when submitted on the phone and received, the target named,
  duplicates (same ID number, same name in the house, another waiting registration) in red with
  what they repeat. It is read again every REFRESH_MS and after each decision, so a registration
  another reviewer decided leaves it.
- **A registration**: its fields as ledger.submissions shows them (ID number and phone masked;
  restricted tags only for a viewer granted them over its grid), the photos' thumbnails.
- **Decisions** through the command bus, each its own audited command
  (dashboard.ledger_commands.ApproveSubmission / SendBackSubmission: the role, the submission's
  grid and, inside the transaction, the viewer's scope checked again; a stale decision refused
  already_decided). Edit and approve sends only the fields the reviewer changed: a masked field
  left as its mask stays as the member typed it.

Every callback authorizes the identity and the scope again; a submission outside it is refused.
What the page draws (rows, particulars, forms, the edits) is dashboard/ledger_review_view.py.
"""
from __future__ import annotations

from datetime import datetime

from dash import ALL, Input, Output, State, ctx, dcc, html, no_update
from flask import current_app, request

from core.catalogue import AuditAction, Label
from core.ledger import Permission, Registration, SubmissionKind, SubmissionState
from core.orgcodes import Level, level_of, parent_of
from dashboard.authz import Scope, asked_scope, authorize, current_identity
from dashboard.declarations import callback, page, query_params
from dashboard.ledger_commands import APPROVE, LEDGER_ROLES, SEND_BACK, ApproveSubmission, SendBackSubmission
from dashboard.ledger_review_view import communities_list, detail, duplicates_of, edits_of, queue_table
from dashboard.pages.ledger import ledger, section_links
from dashboard.state import app_state
from database.reads import Reads
from ledger import grants, privacy, submissions

TITLE = Label("Review queue", "审核")
REFRESH_MS = 5000
_EXTENSION = "gcc.ledger_review"       # the app's ReviewReads, made at first use


class ReviewReads(Reads):
    """The page's reads (the queue itself is ledger.submissions'), each within a scope."""

    def communities(self, scope: Scope) -> list[tuple[str, int]]:
        """(community code, registrations waiting) in a scope above a community."""
        return self.rows("select community_code, count(*) from ledger_submissions where state = %s"
                         " and org_contains(%s, grid_code) group by 1 order by 1",
                         (SubmissionState.PENDING.value, scope.code))

    def queue(self, scope: Scope) -> list[dict]:
        """The scope's community's pending registrations within the scope, oldest first."""
        community = scope.code if level_of(scope.code) is Level.COMMUNITY else parent_of(scope.code)
        with self._cursor() as cur:
            return [s for s in submissions.pending(cur, community, submissions.MAX_QUEUE)
                    if scope.covers(s["grid_code"])]

    def one(self, scope: Scope, submission_id) -> dict | None:
        with self._cursor() as cur:
            return submissions.one(cur, submission_id, scope.code)

    def duplicates(self, sealer, shown: dict, id_number: str) -> list[dict]:
        """What a registration would repeat with `id_number` in place of the member's (flagged
        before approving: ledger.submissions.duplicates_of; the number is indexed, never kept)."""
        fields = {**shown["fields"], "id_number": id_number}
        with self._cursor() as cur:
            return submissions.duplicates_of(cur, sealer, {"submission_id": shown["submission_id"],
                                                           "kind": shown["kind"], "fields": fields})

    def may_see_restricted(self, viewer: str, grid_code: str) -> bool:
        with self._cursor() as cur:
            return grants.holds(cur, viewer, Permission.RESTRICTED_TAGS, grid_code)

    def names(self, scope: Scope, shown: list[dict]) -> dict[str, str]:
        """What a person calls the houses, households and residents these registrations name (and
        their duplicates), keyed "house:1", "household:2", "resident:3"; only those in the scope."""
        houses, households, residents = set(), set(), set()
        for s in shown:
            f = s["fields"]
            houses |= {int(f["house_id"])} if str(f.get("house_id", "")).isdigit() else set()
            households |= {int(f["household_id"])} if str(f.get("household_id", "")).isdigit() else set()
            residents |= {int(v) for k in ("resident_id", "head_id") if str(v := f.get(k, "")).isdigit()}
            residents |= {int(d["record_id"]) for d in s["duplicates"] or () if str(d.get("record_id", "")).isdigit()}
        named: dict[str, str] = {}
        for key, sql, ids in (
                ("house", "select h.house_id, b.name || ' · ' || h.entrance || '单元 · ' || h.number from houses h"
                          " join buildings b using (building_id) where h.house_id = any(%s)"
                          " and org_contains(%s, h.grid_code)", houses),
                ("household", "select hh.household_id, b.name || ' · ' || h.entrance || '单元 · ' || h.number"
                              " from households hh join houses h using (house_id) join buildings b using"
                              " (building_id) where hh.household_id = any(%s) and org_contains(%s, h.grid_code)",
                 households),
                ("resident", "select r.resident_id, r.name || coalesce(' · ' || b.name || ' · ' || h.number, '')"
                             " from residents r left join households hh using (household_id) left join houses h"
                             " using (house_id) left join buildings b using (building_id)"
                             " where r.resident_id = any(%s) and org_contains(%s, r.grid_code)", residents)):
            if ids:
                named |= {f"{key}:{i}": text for i, text in self.rows(sql, (sorted(ids), scope.code))}
        return named


def reads() -> ReviewReads:
    found = current_app.extensions.get(_EXTENSION)
    if found is None:
        state = app_state()
        found = current_app.extensions[_EXTENSION] = ReviewReads(state.city, state.settings.pg_dsn)
    return found


# --- the layout ------------------------------------------------------------------------------------

def layout(state, scope: Scope, kiosk: bool = False):
    return html.Div(className="audit ledger-review", id="review", children=[
        html.Div(className="dispatch-head", children=[
            html.H1(str(TITLE)), html.Div(scope.name, className="dispatch-scope"),
            html.Div(str(Label("members' registrations change the ledger only once approved; ID numbers and phones "
                               "masked", "网格员采集的信息经审核通过后才写入基础数据；身份证号与手机号已脱敏")),
                     className="audit-dim"),
            section_links(scope, "/ledger/review", "review-links")]),
        dcc.Interval(id="review-tick", interval=REFRESH_MS),
        dcc.Store(id="review-picked"), dcc.Store(id="review-decided"),
        html.Div(className="admin-columns", style={"gridTemplateColumns": "minmax(0, 3fr) minmax(0, 2fr)"},
                 children=[
                     html.Section(className="wall-panel", children=[
                         html.H2(str(Label("Waiting for review, oldest first", "待审核（按上报时间）"))),
                         html.Div(id="review-queue", style={"overflowX": "auto"})]),
                     html.Section(className="wall-panel", children=[
                         html.H2(str(Label("Registration", "登记详情"))),
                         html.Div(id="review-result", role="status"),
                         html.Div(id="review-detail", children=html.P(str(Label(
                             "Pick a registration in the queue.", "请在左侧选择一条登记。")),
                             className="placeholder"))]),
                 ]),
    ])


PAGE = page("/ledger/review", TITLE, LEDGER_ROLES, layout, order=66, nav=False)


def _asked(url_search: str | None):
    """(who asks, the scope of the URL they may see) or (who, the refusal's words)."""
    identity = current_identity()
    decision = authorize(app_state().city, identity, PAGE, asked_scope(identity, query_params(url_search)))
    return (identity, decision.scope) if decision else (identity, decision.reason)


def _refused(reason: str):
    return html.P(f"{str(Label('Refused', '已拒绝'))}: {reason}", className="admin-refused")




# --- callbacks ---------------------------------------------------------------------------------------

@callback(Output("review-queue", "children"),
          Input("review-tick", "n_intervals"), Input("review-decided", "data"), Input("review-picked", "data"),
          State("shell-url", "search"), roles=PAGE.roles,
          why="the scope's registrations waiting for review (masked; authorizes the scope)")
def show_queue(_tick, _decided, picked, url_search):
    identity, scope = _asked(url_search)
    if not isinstance(scope, Scope):
        return _refused(scope)
    if scope.code == "" or level_of(scope.code) in (Level.DISTRICT, Level.STREET):
        return communities_list(reads().communities(scope), PAGE.path)
    shown = reads().queue(scope)
    return queue_table(shown, reads().names(scope, shown), picked if isinstance(picked, str) else None)


@callback(Output("review-picked", "data"), Input({"type": "review-pick", "submission": ALL}, "n_clicks"),
          prevent_initial_call=True, roles=PAGE.roles, why="a registration picked (the detail reads it, authorized)")
def pick(_clicks):
    trigger = ctx.triggered_id
    if trigger is None or not ctx.triggered[0]["value"]:
        return no_update
    return str(trigger.get("submission"))


@callback(Output("review-detail", "children"), Output("review-result", "children"),
          Input("review-picked", "data"), Input("review-decided", "data"), State("shell-url", "search"),
          prevent_initial_call=True, roles=PAGE.roles, why="a registration's details (masked; authorizes the scope)")
def show_detail(picked, decided, url_search):
    identity, scope = _asked(url_search)
    if not isinstance(scope, Scope):
        return _refused(scope), no_update
    if not isinstance(picked, str):
        return no_update, no_update
    try:
        found = reads().one(scope, picked)
    except ValueError:
        found = None
    if found is None:       # unknown, or another scope's: the same answer, and a row in the trail
        app_state().commands.record(identity, AuditAction.AUTH_CALLBACK.value, "refused",
                                    f"no registration {picked[:60]!r} in {scope.code or 'the city'}",
                                    f"submission:{picked[:60]}", request.remote_addr, scope.code)
        return _refused(str(Label("no such registration in this scope", "本范围内无此登记"))), None
    restricted = reads().may_see_restricted(identity.user, found["grid_code"])
    result = no_update if ctx.triggered_id == "review-decided" else None
    return detail(found, reads().names(scope, [found]), restricted), result


@callback(Output("review-edit-duplicates", "children"),
          Input({"type": "review-field", "field": "id_number"}, "value"), State("review-picked", "data"),
          State("shell-url", "search"), prevent_initial_call=True, roles=PAGE.roles,
          why="the duplicates of an ID number the reviewer retyped (flagged before approving; never logged)")
def preview_duplicates(typed, picked, url_search):
    """A retyped ID number's duplicates in red (or its problem), for a registration of the scope;
    nothing for the mask left as it is."""
    identity, scope = _asked(url_search)
    if not isinstance(scope, Scope):
        return _refused(scope)
    if not isinstance(typed, str) or not typed.strip() or "*" in typed or not isinstance(picked, str):
        return None
    try:
        found = reads().one(scope, picked)
    except ValueError:
        found = None
    if found is None or SubmissionKind(found["kind"]) is not SubmissionKind.NEW_RESIDENT:
        return _refused(str(Label("no such registration in this scope", "本范围内无此登记")))
    sealer = ledger().sealer
    if sealer is None:
        return _refused(str(Label("the ledger's key is not configured here", "未配置基础数据密钥")))
    problem = privacy.check_id_number(privacy.normalize_id_number(typed))
    if problem and found["fields"].get("registration") != Registration.FOREIGN.value:
        return html.P(problem, className="audit-error")
    shown = {**found, "duplicates": reads().duplicates(sealer, found, typed)}
    return duplicates_of(shown, reads().names(scope, [shown])) or html.P(
        str(Label("no duplicate found", "未发现重复")), className="audit-dim", id="review-no-duplicate")


@callback(Output("review-result", "children", allow_duplicate=True), Output("review-decided", "data"),
          Input("review-approve", "n_clicks"), Input("review-edit-approve", "n_clicks"),
          Input("review-send-back", "n_clicks"), State("review-picked", "data"),
          State({"type": "review-field", "field": ALL}, "value"), State("review-reason", "value"),
          State("shell-url", "search"), prevent_initial_call=True, roles=PAGE.roles,
          why="a registration approved, edited and approved, or sent back (through the bus, audited)",
          changes=(APPROVE, SEND_BACK))
def decide(_approve, _edit, _back, picked, values, reason, url_search):
    """One decision through the bus; the queue and the detail are read again after it (and after a
    stale one: the other reviewer's decision is shown)."""
    trigger = ctx.triggered_id
    if trigger is None or not ctx.triggered[0]["value"]:
        return no_update, no_update
    identity, scope = _asked(url_search)
    if not isinstance(scope, Scope):
        return _refused(scope), no_update
    if not isinstance(picked, str):
        return _refused(str(Label("pick a registration first", "请先选择登记"))), no_update
    command = _command(trigger, picked, values, reason, scope, identity)
    if isinstance(command, str):
        return _refused(command), no_update
    result = app_state().commands.execute(identity, command, request.remote_addr)
    stamp = {"submission": picked, "at": datetime.now().isoformat()}
    if not result.ok:
        return _refused(result.reason), stamp if "already_decided" in result.reason else no_update
    done = Label("Approved: the ledger is changed", "已通过，基础数据已更新") if trigger != "review-send-back" \
        else Label("Sent back to the member", "已退回网格员")
    return html.P(str(done), className="admin-done", id="review-done"), stamp


def _command(trigger: str, picked: str, values, reason, scope: Scope, identity):
    """The bus command a decision's button asks for, or why it cannot be asked as typed."""
    if trigger == "review-send-back":
        return SendBackSubmission(picked, reason if isinstance(reason, str) else "")
    sealer = ledger().sealer
    if trigger == "review-approve":
        return ApproveSubmission(picked, None, sealer)
    try:
        found = reads().one(scope, picked)
    except ValueError:          # ledger.model.Refused: not a submission's id
        found = None
    if found is None:
        return str(Label("no such registration in this scope", "本范围内无此登记"))
    kind = SubmissionKind(found["kind"])
    typed = {s["id"]["field"]: v for s, v in zip(ctx.states_list[1], values or [], strict=False)}
    try:
        edits = edits_of(kind, found["fields"], typed, reads().may_see_restricted(identity.user, found["grid_code"]))
    except ValueError as bad:
        return str(bad)
    if not edits:
        return str(Label("nothing was changed: approve it as submitted", "未修改任何内容：请直接审核通过"))
    return ApproveSubmission(picked, edits, sealer)


"""What the review queue page (dashboard/pages/ledger_review.py) draws: the queue's rows, a
registration's particulars (masked as ledger.submissions shows them; restricted tags only for a
viewer granted them), the decision forms, and `edits_of`, which turns the edit form's values into
the fields the reviewer changed (a masked field left as its mask is no edit). No reads and no
authorization here: the page's callbacks read within the viewer's scope and hand the rows over."""
from __future__ import annotations

from datetime import datetime

from dash import dcc, html

from core import freetext
from core.catalogue import Label
from core.city import CITY_TZ
from core.ledger import (
    GENDER_LABELS,
    HOUSE_USE_LABELS,
    REGISTRATION_LABELS,
    RELATION_LABELS,
    RESTRICTED_TAGS,
    SUBMISSION_KIND_LABELS,
    SUBMISSION_STATE_LABELS,
    TAG_LABELS,
    THING_STATE_LABELS,
    Gender,
    HouseUse,
    Registration,
    Relation,
    SubmissionKind,
    SubmissionState,
    Tag,
    ThingState,
)
from dashboard import photos
from dashboard.state import app_state
from ledger import review
from ledger.submissions import FIELDS, PERSONAL

DUPLICATE_COLOUR = "#ff453a"
_WORDS = {"relation": (Relation, RELATION_LABELS), "gender": (Gender, GENDER_LABELS),
          "registration": (Registration, REGISTRATION_LABELS), "use": (HouseUse, HOUSE_USE_LABELS),
          "state": (ThingState, THING_STATE_LABELS)}
_NUMBERS = frozenset({"lon", "lat", "area_m2"})
_NOT_EDITED = frozenset({"house_id", "household_id", "resident_id", "head_id", "relations", "building_id",
                         "thing_id", "fire_key_unit"})       # what the record is: a new registration, not an edit
FIELD_LABELS = {
    "house_id": Label("house", "房屋"), "household_id": Label("household", "户"),
    "relation": Label("relation to the head", "与户主关系"), "name": Label("name", "姓名"),
    "gender": Label("gender", "性别"), "birth_date": Label("birth date", "出生日期"),
    "registration": Label("registration", "户籍类型"), "id_number": Label("ID number", "身份证号"),
    "phone": Label("phone", "手机号"), "moved_in": Label("moved in", "迁入日期"), "tags": Label("tags", "标签"),
    "resident_id": Label("resident", "人员"), "moved_out": Label("moved out", "迁出日期"),
    "head_id": Label("new head", "新户主"), "relations": Label("relations", "成员关系"),
    "use": Label("use", "房屋用途"), "area_m2": Label("area m²", "面积 m²"), "kind": Label("kind", "类型"),
    "building_id": Label("building", "楼栋"), "licence": Label("licence", "统一社会信用代码"),
    "contact_name": Label("contact", "联系人"), "contact_phone": Label("contact phone", "联系电话"),
    "fire_key_unit": Label("fire-safety key unit", "消防重点单位"), "lon": Label("longitude", "经度"),
    "lat": Label("latitude", "纬度"), "thing_id": Label("part", "部件"), "state": Label("state", "状态"),
    "note": Label("note", "说明"),
}
assert {k for required, optional in FIELDS.values() for k in required | optional} <= set(FIELD_LABELS)
_ORDER = {k: n for n, k in enumerate(("name", "gender", "birth_date", "id_number", "phone", "registration", "relation",
                                      "house_id", "household_id", "moved_in", "moved_out", "tags", "resident_id",
                                      "head_id", "relations", "use", "area_m2", "kind", "building_id", "licence",
                                      "contact_name", "contact_phone", "fire_key_unit", "lon", "lat", "thing_id",
                                      "state", "note"))}


def _ordered(keys) -> list[str]:
    """A form's fields in the order a person reads them (who, then where, then the rest)."""
    return sorted(keys, key=lambda k: (_ORDER.get(k, len(_ORDER)), k))
_WHY = {"same_id_number": Label("same ID number as", "身份证号重复："),
        "same_name_in_house": Label("same name in this house as", "同房屋同名："),
        "pending_same_id_number": Label("same ID number as another waiting registration",
                                        "与另一待审核登记身份证号重复")}


def _name(text: str):
    """A member's or a stored text as text, cut and isolated (<bdi>): a planted bidirectional
    override turns only itself."""
    return html.Bdi(freetext.shown(text, freetext.NAME))


def _when(value: datetime | None) -> str:
    return "–" if value is None else value.astimezone(CITY_TZ).strftime("%m-%d %H:%M")


_MEMBERS: dict[int, dict] = {}      # id(the app's city) -> its members by id (the registry's watch swaps the city)


def _members() -> dict:
    city = app_state().city
    found = _MEMBERS.get(id(city))
    if found is None:
        _MEMBERS.clear()
        found = _MEMBERS[id(city)] = {m.member_id: m for m in city.members}
    return found


def _member(member_id: str) -> str:
    member = _members().get(member_id)
    return member_id if member is None else f"{member.name} · {member_id}"


def _member_name(member_id: str) -> str:
    member = _members().get(member_id)
    return member_id if member is None else member.name


def _grid(grid_code: str) -> str:
    city = app_state().city
    return city.grid_by_code[grid_code].name if grid_code in city.grid_by_code else grid_code


def target_of(s: dict, named: dict[str, str]):
    """What a registration is about, as a person names it."""
    f, kind = s["fields"], SubmissionKind(s["kind"])
    if kind is SubmissionKind.NEW_RESIDENT:
        return [_name(f.get("name") or ""), " → ", named.get(f"house:{f.get('house_id')}", f"#{f.get('house_id')}")]
    if kind is SubmissionKind.MOVED_OUT:
        return named.get(f"resident:{f.get('resident_id')}", f"#{f.get('resident_id')}")
    if kind is SubmissionKind.HOUSEHOLD_CHANGED:
        return named.get(f"household:{f.get('household_id')}", f"#{f.get('household_id')}")
    if kind is SubmissionKind.HOUSE_USE_CHANGED:
        return named.get(f"house:{f.get('house_id')}", f"#{f.get('house_id')}")
    if kind is SubmissionKind.NEW_SHOP:
        return _name(f.get("name") or "")
    return str(f.get("thing_id") or "–")


def duplicates_of(s: dict, named: dict[str, str]):
    """The red flags of a registration's duplicates (what each repeats), or None."""
    if not s["duplicates"]:
        return None
    flags = []
    for d in s["duplicates"]:
        elsewhere = str(Label("a resident outside this scope", "本范围外人员"))
        what = named.get(f"resident:{d.get('record_id')}", elsewhere) if d.get("record_id") else ""
        flags.append(html.Div(["⚠ ", str(_WHY.get(d.get("why"), Label("possible duplicate", "疑似重复"))), " ",
                               _name(what)], className="review-duplicate"))
    return html.Div(flags, style={"color": DUPLICATE_COLOUR, "fontWeight": 600})


def queue_table(shown: list[dict], named: dict[str, str], picked: str | None):
    if not shown:
        return html.P(str(Label("Nothing waits for review here.", "本范围内暂无待审核登记。")), className="placeholder")
    head = [Label("Registration", "登记"), Label("Member", "网格员"), Label("About", "对象")]
    rows = [html.Tr(className="review-row" + (" picked" if s["submission_id"] == picked else ""), children=[
        html.Td([html.Button(str(SUBMISSION_KIND_LABELS[SubmissionKind(s["kind"])]), className="button small",
                             id={"type": "review-pick", "submission": s["submission_id"]},
                             style={"border": "2px solid #0a84ff"} if s["submission_id"] == picked else None),
                 html.Div(_when(s["submitted_at"]), className="audit-dim",
                          title=f"{Label('received', '接收')} {_when(s['received_at'])}")],
                style={"whiteSpace": "nowrap"}),
        html.Td([html.Div(_member_name(s["member_id"]), title=s["member_id"]),
                 html.Div(_grid(s["grid_code"]), className="audit-dim")]),
        html.Td([html.Div(target_of(s, named)), duplicates_of(s, named)],
                style={"minWidth": "180px", "overflowWrap": "anywhere"})]) for s in shown]
    return [html.Div(f"{len(shown)} {str(Label('waiting', '条待审核'))}", className="audit-dim"),
            html.Table(id="review-queue-table", className="data-table",
                       children=[html.Thead(html.Tr([html.Th(str(h)) for h in head])), html.Tbody(rows)])]


def communities_list(found: list[tuple[str, int]], path: str):
    """A scope above a community: where registrations wait (review happens per community)."""
    if not found:
        return html.P(str(Label("Nothing waits for review in this scope.", "本范围内暂无待审核登记。")),
                      className="placeholder")
    city = app_state().city
    return [html.P(str(Label("Each community reviews its own queue: pick one.", "审核按社区进行：请选择社区。")),
                   className="audit-dim"),
            html.Ul(id="review-communities", children=[html.Li(html.A(
                f"{city.org_name(code) if code in city.org_by_code else code} · {n}",
                href=f"{path}?scope={code}")) for code, n in found])]


# --- a registration's details and its forms ---------------------------------------------------------

def _shown_value(key: str, value, named: dict[str, str], restricted: bool):
    if value is None or value == "" or value == []:
        return "–"
    if key in _WORDS:
        words, labels = _WORDS[key]
        return str(labels[words(value)]) if value in set(words) else str(value)
    if key == "tags":
        return " · ".join(str(TAG_LABELS[Tag(t)]) for t in value if t in set(Tag) and (restricted or Tag(t)
                                                                                        not in RESTRICTED_TAGS))
    if key in ("house_id", "household_id", "resident_id", "head_id"):
        return named.get(f"{key[:-3]}:{value}", f"#{value}")
    if key == "relations" and isinstance(value, dict):
        return "; ".join(f"{named.get(f'resident:{r}', r)}: {RELATION_LABELS.get(v, v)}" for r, v in value.items())
    return _name(str(value))


def _field_input(key: str, value, restricted: bool):
    ident = {"type": "review-field", "field": key}
    if key in _WORDS:
        words, labels = _WORDS[key]
        return dcc.Dropdown(id=ident, value=value, clearable=False, style={"color": "#111"},
                            options=[{"label": str(labels[w]), "value": w.value} for w in words])
    if key == "tags":
        offered = [t for t in Tag if restricted or t not in RESTRICTED_TAGS]
        return dcc.Checklist(id=ident, value=[t for t in value or [] if Tag(t) in offered], inline=True,
                             labelStyle={"marginRight": "14px", "color": "var(--text)", "whiteSpace": "nowrap"},
                             options=[{"label": str(TAG_LABELS[t]), "value": t.value} for t in offered])
    return dcc.Input(id=ident, value="" if value is None else str(value), autoComplete="off",
                     debounce=key == "id_number",      # its duplicates are looked for when it is typed out
                     type="date" if key in ("birth_date", "moved_in", "moved_out") else "text")


def detail(s: dict, named: dict[str, str], restricted: bool):
    kind, state = SubmissionKind(s["kind"]), SubmissionState(s["state"])
    fields = s["fields"]
    rows = [html.Tr([html.Th(str(FIELD_LABELS[k])), html.Td(_shown_value(k, fields[k], named, restricted))],
                    className="review-field") for k in _ordered(fields)]
    meta = [(Label("Member", "网格员"), _member(s["member_id"])), (Label("Grid", "网格"), _grid(s["grid_code"])),
            (Label("Submitted on the phone", "采集时间"), _when(s["submitted_at"])),
            (Label("Received", "接收时间"), _when(s["received_at"])), (Label("About", "对象"), target_of(s, named))]
    thumbs = [html.A(html.Img(src=photos.url(r, thumb=True), className="photo-thumb", referrerPolicy="no-referrer"),
                     href=photos.url(r), target="_blank", rel="noopener noreferrer", className="photo-link")
              for r in s["photo_refs"] or () if photos.url(r)]
    return html.Div(id="review-view", **{"data-submission": s["submission_id"]}, children=[
        html.H2(f"{SUBMISSION_KIND_LABELS[kind]} · {SUBMISSION_STATE_LABELS[state]}", id="review-view-title"),
        duplicates_of(s, named),
        html.Table(className="data-table", id="review-fields", children=html.Tbody(
            [html.Tr([html.Th(str(k), style={"width": "38%"}), html.Td(v)]) for k, v in meta] + rows)),
        html.Div(thumbs, className="photo-thumbs", id="review-photos") if thumbs else None,
        _decision_forms(s, restricted) if state is SubmissionState.PENDING else _decided_note(s)])


def _decided_note(s: dict):
    """Who decided it and when (and why it went back): a registration is decided once."""
    reason = s.get("reason")
    return html.Div(id="review-decided-note", style={"marginTop": "8px"}, children=[
        html.Div(f"{SUBMISSION_STATE_LABELS[SubmissionState(s['state'])]} · {s.get('reviewed_by') or ''}"
                 f" · {_when(s.get('reviewed_at'))}", className="audit-dim"),
        html.Div([f"{Label('Reason', '退回原因')}: ", html.Bdi(reason)]) if reason else None])


def _decision_forms(s: dict, restricted: bool):
    kind = SubmissionKind(s["kind"])
    required, optional = FIELDS[kind]
    editable = [k for k in _ordered(required | optional) if k not in _NOT_EDITED]
    personal = PERSONAL.get(kind, {})
    form_rows = [html.Label(className="review-edit-row", style={"display": "grid", "alignItems": "center",
                                                                "gridTemplateColumns": "minmax(0, 38%) 1fr"},
                            children=[html.Span([str(FIELD_LABELS[k]), html.Div(str(Label(
                                "masked: retype to change", "已脱敏，重新输入才修改")), className="audit-dim")
                                if k in personal else None]),
                                _field_input(k, s["fields"].get(k), restricted)]) for k in editable]
    return html.Div(id="review-actions", children=[
        html.Button(str(Label("Approve", "审核通过")), id="review-approve", className="button"),
        html.Details(id="review-edit", children=[
            html.Summary(str(Label("Edit, then approve", "修改后通过"))),
            html.Div(form_rows, className="admin-form", style={"flexDirection": "column", "alignItems": "stretch"}),
            html.Div(id="review-edit-duplicates", role="status"),
            html.Button(str(Label("Approve with these edits", "按修改内容通过")), id="review-edit-approve",
                        className="button")]),
        html.Div(className="admin-form", style={"marginTop": "10px", "flexWrap": "nowrap"}, children=[
            dcc.Input(id="review-reason", maxLength=review.MAX_REASON, autoComplete="off",
                      style={"flex": "1", "minWidth": "0"},
                      placeholder=str(Label("why it goes back (required; the member reads it)",
                                            "退回原因（必填，网格员可见）"))),
            html.Button(str(Label("Send back", "退回")), id="review-send-back", className="button small")])])


def edits_of(kind: SubmissionKind, shown: dict, typed: dict, restricted: bool = False) -> dict:
    """The fields the reviewer changed, as the queue takes them: a masked field left as its mask is
    not an edit; an emptied optional field is cleared (None); numbers as numbers; the restricted tags
    a reviewer not granted them never saw (`restricted` False) are kept. ValueError names a number
    that is not one."""
    edits = {}
    for key, value in typed.items():
        if key not in FIELDS[kind][0] | FIELDS[kind][1] or key in _NOT_EDITED:
            continue
        before = shown.get(key)
        if isinstance(value, str):
            value = value.strip() or None
        if key == "tags":
            hidden = [] if restricted else [t for t in before or [] if Tag(t) in RESTRICTED_TAGS]
            value = sorted(set(value or []) | set(hidden)) or None
            before = sorted(before) if before else None
        if key in _NUMBERS and value is not None:
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"{FIELD_LABELS[key]}: {value[:30]!r} is not a number") from None
        if value != before:      # a masked field left as its mask is its mask: no edit
            edits[key] = value
    return edits

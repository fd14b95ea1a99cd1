"""The dashboard's gate against the real process (gunicorn), PostgreSQL and the broker: where a
login sends the browser (the Location header the server sends, for every known open-redirect
bypass, through the login page's link and through the form's own `next`), the callback gate
resolving a callback as Dash dispatches it (`output`, not the client's `outputs`), and the members
import checking the role in the callback itself (the gate switched off)."""
from __future__ import annotations

import base64
import http.client
import json
import re
import urllib.error
import urllib.parse
import uuid
from datetime import datetime, timezone

import pytest

from ..unit.test_auth_redirects import HOSTILE, assert_same_origin_path
from .ingest_helpers import count
from .screens import TEST_PASSWORD, ensure_logins, post_callback, session_cookie

pytestmark = pytest.mark.slow
REDIRECTED = "t-redirected"


def _request(board, method: str, path: str, fields: dict | None = None, cookie: str | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", board.port, timeout=10)
    headers = {"Origin": board.url} if method == "POST" else {}
    if fields is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if cookie:
        headers["Cookie"] = cookie
    conn.request(method, path, body=urllib.parse.urlencode(fields) if fields is not None else None, headers=headers)
    response = conn.getresponse()
    response.body = response.read()
    conn.close()
    return response


def _hidden(body: bytes, name: str) -> str:
    import html

    return html.unescape(re.search(rf"name='{name}' value='([^']*)'", body.decode()).group(1))


def _location_after_login(board, next_in_link: str | None, next_in_form: str | None) -> str:
    """Open /login?next=… (the link the gate sends to), sign in with the form (its hidden `next`,
    or the one given instead, as a forged form would): the Location the server sends."""
    link = "/login" + ("?" + urllib.parse.urlencode({"next": next_in_link}) if next_in_link is not None else "")
    form = _request(board, "GET", link)
    assert form.status == 200, (next_in_link, form.status)
    cookie = form.getheader("Set-Cookie").split(";", 1)[0]
    fields = {"csrf_token": _hidden(form.body, "csrf_token"), "username": REDIRECTED, "password": TEST_PASSWORD,
              "next": _hidden(form.body, "next") if next_in_form is None else next_in_form}
    answer = _request(board, "POST", "/login", fields, cookie)
    assert answer.status == 302, (next_in_link, next_in_form, answer.status)
    return answer.getheader("Location")


@pytest.fixture(scope="module")
def redirected(stack, dashboard):
    ensure_logins(stack.settings().pg_dsn, {REDIRECTED: ("leader", "")})
    return dashboard


@pytest.mark.parametrize("value", HOSTILE)
def test_a_login_never_redirects_off_the_site_whatever_next_says(redirected, value):
    for link, form in ((value, None), (None, value)):
        location = _location_after_login(redirected, link, form)
        assert_same_origin_path(location, redirected.url + "/login")
        assert location == "/wall", (value, location)


def test_a_login_still_goes_back_to_the_page_of_ours_it_came_from(redirected):
    assert _location_after_login(redirected, "/cases?q=%E4%B8%AD", None) == "/cases?q=%E4%B8%AD"
    assert _location_after_login(redirected, None, "/dispatch") == "/dispatch"


# --- the callback gate ------------------------------------------------------------------------------
def _member_import_body(output: str | None, outputs: list, csv_text: str) -> dict:
    """The members page's CSV import, as a browser would send it, with `output` and `outputs` as given."""
    contents = "data:text/csv;base64," + base64.b64encode(csv_text.encode()).decode()
    inputs = [("members-add", "n_clicks", None), ("members-save", "n_clicks", None),
              ("members-replace", "n_clicks", None), ("members-retire", "submit_n_clicks", None),
              ("members-upload", "contents", contents), ("members-rotate", "submit_n_clicks", None),
              ("members-revoke", "submit_n_clicks", None)]
    state = [("members-id", "value", None), ("members-name", "value", None), ("members-role", "value", None),
             ("members-grid", "value", None), ("members-terminal", "value", None), ("members-edit", "value", None),
             ("members-edit-name", "value", None), ("members-edit-role", "value", None),
             ("members-edit-grid", "value", None), ("members-new-terminal", "value", None),
             ("members-upload", "filename", "forged.csv"), ("members-changed", "data", 0)]
    body = {"outputs": outputs, "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
            "changedPropIds": ["members-upload.contents"],
            "state": [{"id": i, "property": p, "value": v} for i, p, v in state]}
    if output is not None:
        body["output"] = output
    return body


MEMBERS_RESULT = "..members-result.children...members-changed.data.."
MEMBERS_OUTPUTS = [{"id": "members-result", "property": "children"}, {"id": "members-changed", "property": "data"}]


def _one_member_csv(city) -> tuple[str, str]:
    member_id = f"M-F{uuid.uuid4().hex[:6]}"
    return member_id, (f"member_id,name,role,grid_code,terminal_id\n"
                       f"{member_id},伪造,grid_administrator,{city.grids[0].code},T-{member_id}\n")


def _status(base_url: str, cookie: str, body: dict) -> int:
    try:
        post_callback(base_url, cookie, body)
    except urllib.error.HTTPError as err:
        return err.code
    return 200


def test_the_callback_gate_judges_the_callback_dash_will_run_not_the_outputs_the_client_names(dashboard, city,
                                                                                             db):
    cookie = session_cookie(dashboard.url, "t-dispatcher")      # a dispatcher may not import members
    member_id, csv_text = _one_member_csv(city)
    shell_url = [{"id": "shell-url", "property": "search"}]       # a callback every role may run
    forged = [_member_import_body(MEMBERS_RESULT, shell_url, csv_text),            # outputs[0] says shell-url
              _member_import_body(None, shell_url, csv_text),                      # no output at all
              _member_import_body("..nothing-here.children..", shell_url, csv_text),   # no such callback
              _member_import_body(["shell-url.search"], shell_url, csv_text),      # not a string
              _member_import_body("..shell-url.search...members-changed.data..", MEMBERS_OUTPUTS, csv_text)]
    assert [_status(dashboard.url, cookie, body) for body in forged] == [403] * len(forged)
    assert count(db, "select count(*) from members where member_id = %s", member_id) == 0
    assert count(db, "select count(*) from audit_log where actor = 't-dispatcher' and action = 'auth.callback' "
                     "and outcome = 'refused' and target = 'members-result'") >= 1
    # the same request with the admin's session runs: the gate lets through what it should
    admin = session_cookie(dashboard.url, "t-admin")
    answer = json.loads(post_callback(dashboard.url, admin, _member_import_body(MEMBERS_RESULT, MEMBERS_OUTPUTS,
                                                                               csv_text)))
    assert "members-imported" in json.dumps(answer), answer
    assert count(db, "select count(*) from members where member_id = %s", member_id) == 1


# --- the import checks the role itself (the gate switched off) -------------------------------------------
@pytest.fixture(scope="module")
def ungated(stack, city):
    """The dashboard's app in this process with its gate taken off (as if a route or a callback
    had slipped past it): what the callbacks check themselves is all that stands."""
    from dash import _callback

    from dashboard.app import create_app
    from dashboard.state import EXTENSION

    ensure_logins(stack.settings().pg_dsn)
    saved = dict(_callback.GLOBAL_CALLBACK_MAP), list(_callback.GLOBAL_CALLBACK_LIST)
    app, _, _ = create_app(stack.app_settings("dashboard"))
    hooks = app.server.before_request_funcs[None]
    hooks[:] = [f for f in hooks if f.__name__ != "gate"]
    try:
        yield app.server, app.server.extensions[EXTENSION]
    finally:
        _callback.GLOBAL_CALLBACK_MAP.update(saved[0])    # the next app in this process finds them again
        _callback.GLOBAL_CALLBACK_LIST[:] = saved[1]
        app.server.extensions[EXTENSION].accounts.close()


def test_a_role_that_may_not_import_members_is_refused_by_the_import_itself(ungated, city, db):
    server, state = ungated
    client = server.test_client()
    login = state.accounts.login("t-dispatcher", TEST_PASSWORD, "127.0.0.1", "test", datetime.now(timezone.utc))
    with client.session_transaction() as session:
        session["_user_id"] = login.session_id
    member_id, csv_text = _one_member_csv(city)
    answer = client.post("/_dash-update-component", json=_member_import_body(MEMBERS_RESULT, MEMBERS_OUTPUTS,
                                                                              csv_text))
    assert answer.status_code == 200, answer.status_code
    shown = json.dumps(answer.get_json())
    assert "members-imported" not in shown and "admin-refused" in shown, shown
    assert count(db, "select count(*) from members where member_id = %s", member_id) == 0
    assert count(db, "select count(*) from audit_log where actor = 't-dispatcher' and action = 'registry.member.add' "
                     "and outcome = 'refused' and target = 'import:forged.csv'") == 1

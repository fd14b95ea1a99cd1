"""Logins on the dashboard's Flask server: who is asking, on every request, before any view runs.

- Sessions: Flask-Login keeps the session id (dashboard.accounts) in Flask's signed cookie
  (`HttpOnly`, `SameSite=Strict`, `Secure` behind TLS: GCC_DASHBOARD_SECURE_COOKIES); the id
  is looked up on every request, so a logout, an expiry, a disabled user or a revoked token ends
  it at once. A login clears the old cookie and starts a new session (no fixation).
- The gate (`before_request`): every route must be declared where it is registered
  (dashboard.declarations: who may use it; else 403); a non-public one without a session goes to
  the login page (a page) or gets 401 (anything else); every Dash callback, resolved as Dash
  dispatches it (its `output`), must be a server callback declared with its roles
  (declarations.callback) and the caller must hold one of them; a request that changes something
  must come from our own origin (Origin, else Referer), and the login and logout forms carry a
  CSRF token (Flask-WTF). Dash's callbacks carry none: they are same-origin fetches with a
  `SameSite=Strict` cookie, checked by origin.
- After a login the browser goes to `next` only when a browser would read it as a path of ours
  (`_safe_next`), else to the wall.
- Wall screens: `/wall?token=…` once; the token opens a long session for its scope, and the
  browser is sent on to the same URL without the token.
- Every login, failed login, logout, token use and refusal is a row of the audit trail.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Container
from datetime import datetime, timedelta, timezone
from html import escape
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from flask import Flask, abort, redirect, request, session
from flask_login import LoginManager, current_user, login_user, logout_user
from flask_wtf.csrf import CSRFError, CSRFProtect, generate_csrf
from werkzeug.middleware.proxy_fix import ProxyFix

from core.catalogue import AuditAction
from core.roles import EVERYONE
from dashboard.accounts import Accounts, Login, Session, normalize_username
from dashboard.authz import Identity
from dashboard.authz import current_identity as signed_in_identity
from dashboard.declarations import PUBLIC, callback_declared, output_ids, route, routes
from dashboard.vocabulary import LOGIN_FAILED

log = logging.getLogger(__name__)
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
_PAGE_RULES = ("/", "/<path:path>")        # the shell's pages: where a browser is sent to sign in


class SignedIn:
    """Flask-Login's user: one live session."""
    is_authenticated = True
    is_active = True
    is_anonymous = False

    def __init__(self, session_id: str, found: Session) -> None:
        self.session_id = session_id
        self.found = found

    @property
    def identity(self) -> Identity:
        return self.found.identity

    def get_id(self) -> str:
        return self.session_id


def install(server: Flask, accounts: Accounts, audit, secret_key: str, secure_cookies: bool,
            absolute: timedelta, callbacks: Callable[[], Container[str]] | None = None) -> None:
    """Logins on `server`: cookie settings, Flask-Login, CSRF, the gate, /login, /logout.
    `audit(identity_or_None, action, outcome, reason, target, source_address)` writes a row;
    `callbacks()` the outputs Dash dispatches callbacks on (by default the Dash app's callback map)."""
    known = callbacks or _dash_callbacks
    server.config.update(SECRET_KEY=secret_key, SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict",
                         SESSION_COOKIE_SECURE=secure_cookies, SESSION_COOKIE_NAME="gcc_session",
                         PERMANENT_SESSION_LIFETIME=absolute, REMEMBER_COOKIE_DURATION=timedelta(0),
                         WTF_CSRF_TIME_LIMIT=None, WTF_CSRF_CHECK_DEFAULT=False)
    manager = LoginManager(server)
    manager.session_protection = None     # our own sessions end server-side; no remember-me cookie

    @manager.user_loader
    def load(session_id: str):
        found = accounts.session(session_id, _now())
        return SignedIn(session_id, found) if found is not None else None

    csrf = CSRFProtect(server)

    @server.errorhandler(CSRFError)
    def refused_csrf(error):
        audit(signed_in_identity(), AuditAction.AUTH_CSRF, "refused", error.description, request.path, _address())
        body = f"<p>{escape(error.description)}</p><p><a href='/login'>Sign in 登录</a></p>"
        return _page("Refused 已拒绝", body), 400

    @server.before_request
    def gate():
        rule = request.url_rule.rule if request.url_rule is not None else None
        declared = routes(server).get(rule) if rule else None
        if rule is None:
            return None                      # 404 follows
        if declared is None:
            log.error("refused %s: the route %s declares nobody who may use it", request.path, rule)
            abort(403)
        if request.method in _UNSAFE and not _same_origin():
            audit(signed_in_identity(), AuditAction.AUTH_ORIGIN, "refused", "cross-origin request", request.path,
                  _address())
            abort(403)
        if declared.public:
            return None
        page = request.method == "GET" and rule in _PAGE_RULES
        token = request.args.get("token")
        if token and page:
            return _open_with_token(accounts, audit, token)
        identity = signed_in_identity()
        if identity is None:
            if page:
                return redirect("/login?" + urlencode({"next": _here()}))
            abort(401)
        if not identity.roles & declared.roles:
            audit(identity, AuditAction.AUTH_ROUTE, "refused",
                  f"{rule} needs one of {sorted(r.value for r in declared.roles)}", request.path, _address())
            abort(403)
        if rule == "/_dash-update-component":
            return _check_callback(identity, audit, known)
        return None

    @route(server, "/login", PUBLIC, "the login form (GET) and a login (POST, CSRF token)", methods=["GET", "POST"])
    def login_page():
        target = _safe_next(request.values.get("next"))
        if request.method == "GET":
            return _login_form(target, "")
        csrf.protect()
        username = request.form.get("username", "")
        outcome = accounts.login(username, request.form.get("password", ""), _address(),
                                 request.headers.get("User-Agent"), _now())
        if not outcome.ok:
            attempted = normalize_username(username) or "?"
            audit(Identity(attempted, frozenset()), AuditAction.AUTH_LOGIN, "refused", outcome.reason,
                  f"user:{attempted}", _address())
            return _login_form(target, str(LOGIN_FAILED)), 401
        _start(outcome)
        audit(outcome.identity, AuditAction.AUTH_LOGIN, "done", None, f"user:{outcome.identity.user}", _address())
        return redirect(target)

    @route(server, "/logout", EVERYONE, "logout of this session, or of all of them (POST, CSRF token)",
           methods=["POST"])
    def logout_page():
        csrf.protect()
        identity = signed_in_identity()
        if identity is not None:
            everywhere = request.form.get("everywhere") == "1"
            accounts.logout(current_user.session_id, _now(), everywhere=everywhere)
            audit(identity, AuditAction.AUTH_LOGOUT, "done", "everywhere" if everywhere else None,
                  f"user:{identity.user}", _address())
        logout_user()
        session.clear()
        return redirect("/login")

    @route(server, "/healthz", PUBLIC, "the process answers (no data)")
    def healthz():
        return "ok\n"


def trust_proxies(server: Flask, hops: int) -> None:
    """Believe the X-Forwarded-* headers of `hops` reverse proxies (and no more: a client could
    write them itself): the source address the throttle and the audit trail see, the scheme and
    host the same-origin check compares."""
    if hops:
        server.wsgi_app = ProxyFix(server.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)


def _start(outcome: Login) -> None:
    session.clear()                          # nothing of the session before the login survives
    session.permanent = True
    login_user(SignedIn(outcome.session_id, outcome.session))


def _open_with_token(accounts: Accounts, audit, token: str):
    """A wall screen's first visit: its token opens a session; the URL drops the token."""
    outcome = accounts.open_with_token(token, _address(), request.headers.get("User-Agent"), _now())
    if not outcome.ok:
        audit(Identity("wall:?", frozenset()), AuditAction.AUTH_TOKEN, "refused", outcome.reason, request.path,
              _address())
        return _page("Refused 已拒绝", "<p>This wall token is not valid (any more). 此大屏令牌无效。</p>"), 403
    _start(outcome)
    audit(outcome.identity, AuditAction.AUTH_TOKEN, "done", None, f"wall_token:{outcome.session.wall_token_id}",
          _address())
    query = urlencode([(k, v) for k, v in parse_qsl(request.query_string.decode()) if k != "token"])
    return redirect(request.path + (f"?{query}" if query else ""))


def _dash_callbacks() -> Container[str]:
    """The keys Dash dispatches a callback request on (the app's callback map, complete once
    Dash's own before-request hook, registered before the gate, has run)."""
    from dash import get_app

    return get_app().callback_map


def _check_callback(identity: Identity, audit, known: Callable[[], Container[str]]):
    """The callback this request will run, resolved as Dash resolves it (`dispatch()` runs
    `callback_map[body["output"]]`; the client's `outputs` only shape the answer), must be a
    server callback declared with its roles (declarations.callback records it under the same
    key), open to one of the caller's roles. No `output`, or one that names no callback of the
    app: refused."""
    body = request.get_json(silent=True)
    output = body.get("output") if isinstance(body, dict) else None
    if not isinstance(output, str) or output not in known():
        log.error("refused a callback request for %.200r: no callback of the app has that output", output)
        abort(403)
    entry = callback_declared(output)
    if entry is None or entry.clientside:
        log.error("refused a callback for %.200r: not a server callback declared with its roles", output)
        abort(403)
    if not identity.roles & entry.roles:
        first = output_ids(output)[0]          # the audit trail names the callback by its first output
        audit(identity, AuditAction.AUTH_CALLBACK, "refused",
              f"{first} needs one of {sorted(r.value for r in entry.roles)}", first, _address())
        abort(403)
    return None


def _same_origin() -> bool:
    source = request.headers.get("Origin") or request.headers.get("Referer")
    return bool(source) and urlsplit(source).netloc == request.host


_HOME = "/wall"
_DECODINGS = 3      # how many layers of percent-encoding a `next` path is looked through


def _plain(text: str) -> bool:
    """Printable ASCII with no space and no backslash: what a browser reads as it is written (it
    drops tabs and newlines, strips controls and spaces, reads a backslash as a slash; Werkzeug
    drops a tab from a header too)."""
    return text.isascii() and text.isprintable() and " " not in text and "\\" not in text


def _safe_next(value: str | None) -> str:
    """Where a login sends the browser: `value` when it is a path of ours, else the wall.

    Decided on the URL the browser will make of it, not on the string: the whole value must be
    plain (`_plain`: so the browser and Werkzeug take it exactly as we checked it, and a CR/LF
    never reaches a header), start with one "/" (a path on this origin, not //host, not a
    scheme), and its path, percent-decoded up to `_DECODINGS` times, must stay plain and start
    with one "/" (so /%2F%2Fevil, /%09/evil or an encoded unicode slash are refused too, whatever
    a later hop decodes). The query and fragment may carry encoded text (a search in Chinese):
    they cannot change the origin."""
    if not value or not _plain(value) or not value.startswith("/") or value.startswith("//"):
        return _HOME
    path = urlsplit(value).path
    for _ in range(_DECODINGS):
        decoded = unquote(path)
        if not _plain(decoded) or not decoded.startswith("/") or decoded.startswith("//"):
            return _HOME
        if decoded == path:
            return value
        path = decoded
    return _HOME


def _here() -> str:
    return request.full_path.rstrip("?")


def _address() -> str | None:
    return request.remote_addr


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _page(title: str, body: str) -> str:
    return ("<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'><title>Grid Command Center</title>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            "<link rel='stylesheet' href='/assets/wall.css'></head><body class='login-body'>"
            f"<main class='login'><h1>Grid Command Center 网格化指挥中心</h1><h2>{escape(title)}</h2>{body}</main>"
            "</body></html>")


def _login_form(target: str, message: str) -> str:
    error = f"<p class='login-error' role='alert'>{escape(message)}</p>" if message else ""
    return _page("Sign in 登录", f"""{error}
<form method='post' action='/login' class='login-form'>
  <input type='hidden' name='csrf_token' value='{escape(generate_csrf())}'>
  <input type='hidden' name='next' value='{escape(target)}'>
  <label>Username 用户名 <input name='username' autocomplete='username' required autofocus></label>
  <label>Password 密码 <input name='password' type='password' autocomplete='current-password' required></label>
  <button type='submit'>Sign in 登录</button>
</form>""")

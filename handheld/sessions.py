"""Who a phone is: enrolment with a one-time code, sign-in with the member's PIN, bearer sessions
checked at every request (docs/HANDHELD_API.md, "Identity").

- `enrol(code, pin, label, source)`: the code an admin made (registry.store.DeviceRegistry
  .enrol_handheld) is used once, through the database's `handheld_redeem` (migration 0028: the
  device, its credentials, the code marked used and the audit row in one transaction, the only
  door by which the device-facing server's role makes a device). The phone gets its device id and
  a device secret (256 bits, shown this once); the PIN it chose is kept as an Argon2id hash.
- `sign_in(device_id, device_secret, pin, source)`: a session of 12 hours (its token's sha256 is
  stored). Attempts are counted before they are checked, by the ingest's own login rule
  (core.throttle.LoginThrottle, keyed by the device id and the source), so PIN guesses slow down
  as password guesses do; a throttled one is refused unchecked.
- `authenticate(request)`: the `Authorization: Bearer` token, its session and its device, read in
  one query by the token's hash at every request: a phone revoked or retired a moment ago is
  refused at its very next request, whatever its session.

Refusals are `core.http.Refused` with the contract's reason: `400 bad_code` / `bad_pin` / …,
`401 no_session` / `bad_session` / `bad_credentials`, `403 revoked_device`, `429
too_many_failed_logins`, `503 database_unavailable`."""
from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

import orjson
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from psycopg2.pool import ThreadedConnectionPool

from core import freetext
from core.city import MemberDeviceKind
from core.http import Refused, Reply, Request, Route, refusal
from core.roles import ROLE_LABELS, Role
from core.sources import throttle_source
from core.throttle import LoginThrottle
from database.pool import WaitingPool, transaction
from handheld.caller import Caller
from handheld.reads import shown
from registry.handhelds import digest
from telemetry.fields import is_valid_id

API = "/handheld/api/v1"
ENROL_PATH, SESSION_PATH = f"{API}/enrol", f"{API}/session"
SESSION_VALID = timedelta(hours=12)
SECRET_BYTES = 32               # a device secret and a session token: 256 bits, url-safe base64
MAX_SECRET = 128                # characters of a code, a secret or a token that are worth reading
PIN = re.compile(r"[0-9]{6}")   # ASCII digits only ("١٢٣٤٥٦".isdigit() is True)
POOL_SIZE = 16                  # connections of its own pool (past it, a request waits; 10 s: 503 database_unavailable)
HANDHELD = MemberDeviceKind.HANDHELD.value

_hasher = PasswordHasher()      # argon2-cffi's defaults (RFC 9106's second recommendation), as dashboard.accounts

# one query by the token's hash (the sessions' primary key): the session, its device, the member
_SESSION = """
    select s.device_id, s.expires_at <= now(), s.ended_at is not null,
           d.retired_at is not null or c.revoked_at is not null or m.retired_at is not null,
           m.member_id, m.terminal_id, m.grid_code, m.role, m.name
      from handheld_sessions s join member_devices d using (device_id) join members m using (member_id)
      left join handheld_credentials c using (device_id)
     where s.token_sha256 = %s"""
_DEVICE = """
    select c.secret_sha256, c.pin_hash,
           d.retired_at is not null or c.revoked_at is not null or m.retired_at is not null,
           m.member_id, m.terminal_id, m.grid_code, m.role, m.name
      from member_devices d join members m using (member_id) join handheld_credentials c using (device_id)
     where d.device_id = %s and d.kind = %s"""


def _json_reply(status: int, value) -> Reply:
    return Reply(status, orjson.dumps(value))


def _unauthorized(reason: str) -> Refused:
    """`401 reason`, with the challenge RFC 6750 asks for (no token: none; a bad one: invalid_token)."""
    challenge = "Bearer" if reason == "no_session" else 'Bearer error="invalid_token"'
    return Refused(refusal(401, reason, [("WWW-Authenticate", challenge)]))


def _field(body: dict, name: str, reason: str, limit: int = MAX_SECRET) -> str:
    """A required string field of the body, at most `limit` characters, else `400 reason`."""
    value = body.get(name)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise Refused(refusal(400, reason))
    return value


def _pin(body: dict) -> str:
    pin = body.get("pin")
    if not isinstance(pin, str) or not PIN.fullmatch(pin):
        raise Refused(refusal(400, "bad_pin"))     # the PIN is 6 digits, as a string
    return pin


def _body(request: Request) -> dict:
    """The request's JSON object, or `400 bad_json` (the framing's own refusals pass through)."""
    try:
        value = orjson.loads(request.body())
    except orjson.JSONDecodeError:
        raise Refused(refusal(400, "bad_json")) from None
    if not isinstance(value, dict):
        raise Refused(refusal(400, "bad_json"))
    return value


def database_unavailable() -> Refused:
    """What a request is answered when the database cannot be reached (the phone sends again)."""
    return Refused(refusal(503, "database_unavailable", [("Retry-After", "1")]))


def bearer(request: Request) -> str:
    """The request's bearer token, or `401 no_session` (none) / `401 bad_session` (not one of ours)."""
    header = request.headers.get("Authorization") or ""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("no_session")
    token = token.strip()
    if len(token) > MAX_SECRET or not token.isascii():
        raise _unauthorized("bad_session")
    return token


def me(caller: Caller) -> dict:
    """Who the phone speaks as, as the enrolment answers it (GET /me says more)."""
    return {"device_id": caller.device_id, "member_id": caller.member_id, "name": caller.name,
            "role": caller.role.value, "role_label": shown(ROLE_LABELS[caller.role]),
            "terminal_id": caller.terminal_id, "grid_code": caller.grid_code}


class Sessions:
    """The handheld's identity on one database (a DSN, or a pool the caller shares), with the login
    throttle the device-facing server shares among its endpoints. Every method is blocking (the
    server runs endpoints off its event loop)."""

    def __init__(self, db: str | ThreadedConnectionPool, throttle: LoginThrottle | None = None) -> None:
        self.pool = WaitingPool(0, POOL_SIZE, db, connect_timeout=5) if isinstance(db, str) else db
        self.throttle = throttle or LoginThrottle()
        self._dummy_pin_hash: str | None = None

    # --- the database ------------------------------------------------------------------------------
    def _cursor(self):
        """A cursor in a transaction (committed on leaving), or `503 database_unavailable`."""
        return transaction(self.pool, database_unavailable)

    def _caller(self, device_id: str, row) -> Caller:
        member_id, terminal_id, grid_code, role, name = row
        return Caller(device_id, member_id, terminal_id, grid_code.strip(), Role(role), name)

    def _throttled(self) -> Refused:
        return Refused(refusal(429, "too_many_failed_logins",
                               [("Retry-After", str(int(self.throttle.policy.pair_delay_s)))]))

    # --- enrolment -----------------------------------------------------------------------------------
    def enrol(self, code: str, pin: str, label: str, source: str) -> tuple[str, str, Caller]:
        """The one-time `code` used: a new handheld of the code's member, with `pin` (6 digits) and
        `label`; (device id, device secret, the caller it is). A code unknown, used, expired (or
        whose member retired) is `400 bad_code`, attempts throttled per source."""
        if not isinstance(code, str) or not code or len(code) > MAX_SECRET:
            raise Refused(refusal(400, "bad_code"))
        if not isinstance(pin, str) or not PIN.fullmatch(pin):
            raise Refused(refusal(400, "bad_pin"))
        try:
            device_label = freetext.clean(label, freetext.NAME, "label")
        except ValueError as wrong:      # what was wrong, and where, as the other doors say it
            raise Refused(Reply(400, orjson.dumps({"error": "bad_label", "detail": str(wrong)}),
                                refused="bad_label")) from None
        # each code its own "username": a source's budget is what slows a guesser down
        user, counted = f"enrol:{digest(code).hex()[:32]}", throttle_source(source)
        if self.throttle.reserve(user, counted) is not None:
            raise self._throttled()
        secret = secrets.token_urlsafe(SECRET_BYTES)
        with self._cursor() as cur:
            cur.execute("select device_id, member_id from handheld_redeem(%s, %s, %s, %s, %s)",
                        (digest(code), digest(secret), _hasher.hash(pin), device_label, source))
            made = cur.fetchone()
            if made is None:
                raise Refused(refusal(400, "bad_code"))
            cur.execute("select member_id, terminal_id, grid_code, role, name from members where member_id = %s",
                        (made[1],))
            member = cur.fetchone()
        self.throttle.succeeded(user, counted)
        return made[0], secret, self._caller(made[0], member)

    # --- sessions ------------------------------------------------------------------------------------
    def sign_in(self, device_id: str, device_secret: str, pin: str, source: str) -> tuple[str, datetime]:
        """A new session's (token, expiry) for the phone whose secret and PIN these are. Counted
        before it is checked (`429 too_many_failed_logins` when the device's or the source's budget
        is spent); anything wrong is `401 bad_credentials`, the same work whether the device exists
        or not; a phone whose secret is right but which is revoked or retired is `403 revoked_device`."""
        if not is_valid_id(device_id):
            raise Refused(refusal(400, "bad_device_id"))
        if not isinstance(device_secret, str) or not device_secret or len(device_secret) > MAX_SECRET:
            raise Refused(refusal(400, "bad_device_secret"))
        if not isinstance(pin, str) or not PIN.fullmatch(pin):
            raise Refused(refusal(400, "bad_pin"))
        counted = throttle_source(source)
        if self.throttle.reserve(device_id, counted) is not None:
            raise self._throttled()
        with self._cursor() as cur:
            cur.execute(_DEVICE, (device_id, HANDHELD))
            row = cur.fetchone()
        secret_right = row is not None and secrets.compare_digest(bytes(row[0]), digest(device_secret))
        pin_right = self._verify(row[1] if row is not None else None, pin)
        if not (secret_right and pin_right):
            raise Refused(refusal(401, "bad_credentials"))
        if row[2]:
            raise Refused(refusal(403, "revoked_device"))
        token = secrets.token_urlsafe(SECRET_BYTES)
        with self._cursor() as cur:
            cur.execute("insert into handheld_sessions (token_sha256, device_id, expires_at, source) "
                        "values (%s, %s, now() + %s, %s) returning expires_at",
                        (digest(token), device_id, SESSION_VALID, source))
            expires = cur.fetchone()[0]
        self.throttle.succeeded(device_id, counted)
        return token, expires

    def _verify(self, pin_hash: str | None, pin: str) -> bool:
        """The PIN against its hash; an unknown device is checked against a dummy (the same work)."""
        if pin_hash is None and self._dummy_pin_hash is None:
            self._dummy_pin_hash = _hasher.hash(secrets.token_hex(8))
        try:
            return _hasher.verify(pin_hash or self._dummy_pin_hash, pin) and pin_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    def authenticate(self, request: Request) -> Caller:
        """The caller whose bearer token the request carries, checked against the database now:
        `401 no_session` (none), `401 bad_session` (unknown, expired or ended), `403 revoked_device`
        (the phone or its member is revoked or retired, whatever its session)."""
        token = bearer(request)
        with self._cursor() as cur:
            cur.execute(_SESSION, (digest(token),))
            row = cur.fetchone()
        if row is None:
            raise _unauthorized("bad_session")
        device_id, expired, ended, revoked, *member = row
        if revoked:
            raise Refused(refusal(403, "revoked_device"))
        if expired or ended:
            raise _unauthorized("bad_session")
        return self._caller(device_id, member)

    def sign_out(self, token: str) -> bool:
        """The session ended (True), or it was not open (False)."""
        with self._cursor() as cur:
            cur.execute("update handheld_sessions set ended_at = now() where token_sha256 = %s and ended_at is null",
                        (digest(token),))
            return cur.rowcount == 1

    def signed_in(self, respond: Callable[[Caller, Request], Reply]) -> Callable[[Request], Reply]:
        """An endpoint for signed-in phones only: `respond(caller, request)` once the request's
        session and device are checked; a refusal (of the session, or raised by `respond`) is its reply."""
        def endpoint(request: Request) -> Reply:
            try:
                return respond(self.authenticate(request), request)
            except Refused as refused:
                return refused.reply
        return endpoint

    # --- the endpoints -------------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        return [Route("POST", ENROL_PATH, self._enrol_endpoint),
                Route("POST", SESSION_PATH, self._sign_in_endpoint),
                Route("DELETE", SESSION_PATH, self._sign_out_endpoint)]

    def _enrol_endpoint(self, request: Request) -> Reply:
        try:
            body = _body(request)
            code = _field(body, "code", "bad_code")
            pin = _pin(body)
            label = body.get("label", "")
            if not isinstance(label, str):
                raise Refused(refusal(400, "bad_label"))
            device_id, secret, caller = self.enrol(code, pin, label, request.source)
        except Refused as refused:
            return refused.reply
        return _json_reply(201, {"device_id": device_id, "device_secret": secret, "member": me(caller)})

    def _sign_in_endpoint(self, request: Request) -> Reply:
        try:
            body = _body(request)
            device_id = _field(body, "device_id", "bad_device_id", 64)
            secret = _field(body, "device_secret", "bad_device_secret")
            token, expires = self.sign_in(device_id, secret, _pin(body), request.source)
        except Refused as refused:
            return refused.reply
        return _json_reply(200, {"token": token, "expires": expires.isoformat()})

    def _sign_out_endpoint(self, request: Request) -> Reply:
        try:
            self.authenticate(request)
            self.sign_out(bearer(request))
        except Refused as refused:
            return refused.reply
        return _json_reply(200, {"signed_out": True})

"""The handheld's security through the real device-facing service (`python -m ingest.http`: gunicorn,
the ingest chain, the handheld's sessions, reads, photos, outbox and app), with phones enrolled and
signed in over HTTP as a member's phone is: what one member's phone may not read, do or send.

- Another member's work: B's offers never appear in A's /tasks; a case of another grid is `403
  outside_grid` to read, and A's case update for it is stored (the chain takes a well-formed
  message) but refused by the cases engine, audited, the case unchanged, while B's own goes through.
- Photos outside the scope: another grid's case's photo and another device's upload that no
  visible case names are `404`, the same answer as for no photo (a grid mate of B's sees the case's
  photo, not B's loose upload).
- Another phone's outbox rows cannot be acknowledged (nor listed).
- Tokens: a retired phone's, an expired or ended session's, a device secret or another scheme
  instead of a session token, another phone's secret with my device id: refused.
- Upload limits: 8 MB + 1 byte `413`; a PNG sent as image/jpeg is kept as what it is (decoded as
  PNG, stored as a fresh JPEG); HTML, SVG and a GIF polyglot as image/jpeg `415`; a JPEG carrying
  markup is stored without it; a decompression bomb `413 image_too_large`; a phone past its day's
  bytes `429 over_quota` with Retry-After (bytes already stored still `200`).
- Paths: `..`, encoded, hidden, back-slashed and unknown paths under /handheld/ are `404`; a body
  over 64 KB on /messages is `413`; the API sends no CORS header (another origin cannot read it)."""
from __future__ import annotations

import contextlib
import http.client
import io
import secrets
import struct
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone

import orjson
import psycopg2
import pytest
from PIL import Image

from cases import store
from cases.engine import Engine
from cases.intake import Intake, IntakeSettings
from cases.model import State
from registry.broker import BrokerAdmin
from registry.handhelds import digest
from registry.store import Actor, DeviceRegistry

from .ingest_helpers import HttpService, owner_rows
from .test_cases_engine import seeded
from .test_handheld_api import API, call, jpeg
from .test_handheld_reads import a_case, offer

pytestmark = pytest.mark.slow

PIN = "246810"
MB = 1024 * 1024


@dataclass(frozen=True)
class Phone:
    member: object
    device_id: str
    secret: str
    token: str


@pytest.fixture(scope="module")
def service(stack, city, tmp_path_factory):
    with HttpService(stack, tmp_path_factory.mktemp("handheld-security") / "ingest-http.log") as running:
        yield running


@pytest.fixture(scope="module")
def registry(stack):
    settings = stack.app_settings("dashboard")
    return DeviceRegistry(settings.pg_dsn, BrokerAdmin.from_settings(settings))


@pytest.fixture(scope="module")
def cases_settings(stack, city):
    return seeded(stack)


def enrol(service, registry, member, pin: str = PIN) -> Phone:
    """A phone of `member`, enrolled with an admin's one-time code and signed in with its PIN."""
    code = registry.enrol_handheld(Actor("t-hh-security"), member.member_id, "security test").code
    status, enrolled, _ = call(service.port, "POST", f"{API}/enrol",
                               orjson.dumps({"code": code, "pin": pin, "label": "security test"}))
    assert status == 201, enrolled
    status, session, _ = call(service.port, "POST", f"{API}/session", orjson.dumps(
        {"device_id": enrolled["device_id"], "device_secret": enrolled["device_secret"], "pin": pin}))
    assert status == 200, session
    return Phone(member, enrolled["device_id"], enrolled["device_secret"], session["token"])


@pytest.fixture(scope="module")
def phones(service, registry, city):
    """A: a member of a grid of the first street; B and C: two members of one grid of another street."""
    a_grid = next(g for g in city.grids if g.code.startswith(city.streets[0].code))
    a = next(m for m in city.members if m.grid_code == a_grid.code)
    other = next(g for g in city.grids if not g.code.startswith(city.streets[0].code)
                 and sum(m.grid_code == g.code for m in city.members) >= 2)
    b, c = [m for m in city.members if m.grid_code == other.code][:2]
    return {name: enrol(service, registry, member) for name, member in (("A", a), ("B", b), ("C", c))}


def get(service, phone: Phone, path: str):
    return call(service.port, "GET", f"{API}{path}", token=phone.token)


def post(service, phone: Phone, path: str, doc: dict):
    return call(service.port, "POST", f"{API}{path}", orjson.dumps(doc), phone.token)


def upload(service, phone: Phone, data: bytes, content_type: str = "image/jpeg"):
    return call(service.port, "POST", f"{API}/photos", data, phone.token, content_type)


def engine_step(cases_settings, city) -> Engine:
    """One pass of the cases engine over what the ingest stored (its inbox), as the engine runs it."""
    engine = Engine(cases_settings.pg_dsn, Intake(city, IntakeSettings()), lambda cur: store.load_rules(cur))
    conn = psycopg2.connect(cases_settings.pg_dsn)
    try:
        engine.once(conn)
    finally:
        conn.close()
    return engine


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


# --- another member's work -------------------------------------------------------------------------

def test_another_members_offers_never_appear_in_my_tasks(stack, service, phones, cases_settings):
    a, b = phones["A"], phones["B"]
    offered_to_b = a_case(stack, b.member, State.DISPATCHED, b.member.terminal_id, "offered to B")
    offer(stack, offered_to_b, b.member.terminal_id)
    handled_by_b = a_case(stack, b.member, State.HANDLING, b.member.terminal_id, "handled by B")
    status, mine, _ = get(service, a, "/tasks")
    assert status == 200
    listed = {c["case_id"] for c in mine["offers"] + mine["open"]}
    assert not listed & {offered_to_b, handled_by_b}
    status, theirs, _ = get(service, b, "/tasks")
    assert offered_to_b in {c["case_id"] for c in theirs["offers"]}           # B's phone does see them
    assert handled_by_b in {c["case_id"] for c in theirs["open"]}


def test_a_case_of_another_grid_is_refused_to_read(stack, service, phones, cases_settings):
    a, b = phones["A"], phones["B"]
    elsewhere = a_case(stack, b.member, State.HANDLING, b.member.terminal_id, "B's grid's case")
    assert get(service, a, f"/cases/{elsewhere}")[:2] == (403, {"error": "outside_grid"})
    assert get(service, b, f"/cases/{elsewhere}")[0] == 200
    status, verify, _ = get(service, a, "/verify")
    assert status == 200 and all(c["grid_code"] == a.member.grid_code for c in verify["cases"])


def test_a_case_update_for_another_grids_case_is_refused_by_the_engine_and_audited(stack, city, service, phones,
                                                                                  cases_settings):
    a, b = phones["A"], phones["B"]
    case_id = a_case(stack, b.member, State.DISPATCHED, b.member.terminal_id, "offered to B, answered by A")
    offer(stack, case_id, b.member.terminal_id)
    at = now_iso()
    # the body names B's terminal: the server makes the topic from A's session, never from the body
    status, answer, _ = post(service, a, "/messages/case", {"ts": at, "case_id": case_id, "action": "accept",
                                                             "terminal_id": b.member.terminal_id})
    if status == 200:
        assert owner_rows(stack, "select terminal_id from case_updates where case_id = %s", case_id) == \
            [(a.member.terminal_id,)]
    else:
        assert status == 400, answer                  # a field the message does not have: refused, named
    status, answer, _ = post(service, a, "/messages/case", {"ts": now_iso(), "case_id": case_id, "action": "accept"})
    assert (status, answer) == (200, {"stored": True})
    assert owner_rows(stack, "select count(*) from case_updates where case_id = %s and terminal_id = %s",
                      case_id, b.member.terminal_id) == [(0,)]
    engine = engine_step(cases_settings, city)
    assert engine.counts["refused"] >= 1
    assert owner_rows(stack, "select state, handler from cases where case_id = %s", case_id) == \
        [("dispatched", b.member.terminal_id)]
    audited = owner_rows(stack, "select actor, outcome, reason from audit_log where target = %s", f"case:{case_id}")
    assert audited and {(actor, outcome) for actor, outcome, _ in audited} == {(a.member.terminal_id, "refused")}
    assert all(reason for _, _, reason in audited)                         # each refusal says why
    # B's own accept of the same case goes through the same door and the same engine
    assert post(service, b, "/messages/case", {"ts": now_iso(), "case_id": case_id, "action": "accept"})[0] == 200
    engine_step(cases_settings, city)
    assert owner_rows(stack, "select state from cases where case_id = %s", case_id) == [("accepted",)]


def _report_naming(stack, city, cases_settings, service, phone: Phone, ref: str) -> str:
    """An incident report of `phone` naming `ref`, in its grid; the case the engine makes of it."""
    report_id = f"r-sec-{uuid.uuid4().hex[:8]}"
    inside = city.grid_by_code[phone.member.grid_code].boundary.representative_point()
    status, answer, _ = post(service, phone, "/messages/incident", {
        "ts": now_iso(), "report_id": report_id, "category": "street_light", "severity": 2, "lat": inside.y,
        "lon": inside.x, "description": "路灯不亮", "photo_refs": [ref]})
    assert status == 200, answer
    engine_step(cases_settings, city)
    [(case_id, grid)] = owner_rows(stack, "select s.case_id, c.grid_code from case_sources s join cases c using "
                                          "(case_id) where s.kind = 'report' and s.key = %s",
                                   f"{phone.member.terminal_id}/{report_id}")
    assert grid.strip() == phone.member.grid_code
    return case_id


def test_photos_outside_the_scope_are_not_found_as_no_photo_is(stack, city, service, phones, cases_settings):
    a, b, c = phones["A"], phones["B"], phones["C"]
    status, named, _ = upload(service, b, jpeg((11, 120, 200)))
    assert status == 201, named
    status, loose, _ = upload(service, b, jpeg((201, 12, 99)))
    assert status == 201, loose
    _report_naming(stack, city, cases_settings, service, b, named["ref"])
    named_hex, loose_hex = named["ref"].split(":")[1], loose["ref"].split(":")[1]
    nothing = get(service, a, f"/photos/{secrets.token_hex(32)}")
    assert nothing[:2] == (404, {"error": "not_found", "detail": "no photo of that ref that you may see"})
    for hex_digest in (named_hex, loose_hex):                  # another grid's case's, another device's upload
        for thumb in ("", "?thumb=1"):
            assert get(service, a, f"/photos/{hex_digest}{thumb}")[:2] == nothing[:2]
    assert get(service, c, f"/photos/{named_hex}")[0] == 200         # B's grid mate sees the case's photo
    assert get(service, c, f"/photos/{loose_hex}")[:2] == nothing[:2]  # not B's upload no case names
    assert get(service, b, f"/photos/{loose_hex}")[0] == 200          # B's own
    status, answer, _ = get(service, a, "/photos/NOT-HEX")
    assert (status, answer["error"]) == (400, "bad_photo_ref")


def test_another_phones_outbox_rows_cannot_be_acknowledged(stack, service, phones):
    a, b = phones["A"], phones["B"]
    [(seq,)] = owner_rows(stack, "insert into handheld_outbox (device_id, kind, key, body) values (%s, 'notice', %s, "
                                 "'{\"kind\": \"dispatched\"}') returning seq", b.device_id, f"sec-{uuid.uuid4().hex}")
    assert seq not in {i["seq"] for i in get(service, a, "/outbox")[1]["items"]}
    assert post(service, a, "/outbox/ack", {"seqs": [seq]})[:2] == (200, {"acked": 0})
    assert owner_rows(stack, "select acked_at from handheld_outbox where seq = %s", seq) == [(None,)]
    assert seq in {i["seq"] for i in get(service, b, "/outbox")[1]["items"]}
    assert post(service, b, "/outbox/ack", {"seqs": [seq]})[:2] == (200, {"acked": 1})
    assert post(service, a, "/outbox/ack", {"seqs": [-1]})[:2] == (400, {"error": "bad_seqs"})


# --- tokens ------------------------------------------------------------------------------------------

def _refused(service, token: str | None, path: str = "/me", headers: dict | None = None):
    status, answer, got = call(service.port, "GET", f"{API}{path}", token=token) if headers is None else \
        _raw(service, "GET", f"{API}{path}", headers=headers)
    return status, answer.get("error") if isinstance(answer, dict) else answer, got


def test_tokens_of_a_retired_phone_an_expired_session_or_another_kind_are_refused(stack, city, service, registry,
                                                                                  phones):
    a, b = phones["A"], phones["B"]
    retired = enrol(service, registry, a.member)
    assert get(service, retired, "/me")[0] == 200
    registry.retire_device(Actor("t-hh-security"), retired.device_id)
    for path in ("/me", "/tasks", "/outbox", "/cases/C-anything"):
        assert _refused(service, retired.token, path)[:2] == (403, "revoked_device")
    status, answer, _ = call(service.port, "POST", f"{API}/photos", jpeg((1, 2, 3)), retired.token, "image/jpeg")
    assert (status, answer["error"]) == (403, "revoked_device")
    status, answer, _ = call(service.port, "POST", f"{API}/messages/fix", orjson.dumps(
        {"ts": now_iso(), "lat": 26.08, "lon": 119.29}), retired.token)
    assert (status, answer["error"]) == (403, "revoked_device")
    status, answer, _ = call(service.port, "POST", f"{API}/session", orjson.dumps(
        {"device_id": retired.device_id, "device_secret": retired.secret, "pin": PIN}))
    assert (status, answer["error"]) == (403, "revoked_device")

    status, second, _ = call(service.port, "POST", f"{API}/session", orjson.dumps(
        {"device_id": a.device_id, "device_secret": a.secret, "pin": PIN}))
    assert status == 200
    owner_rows(stack, "update handheld_sessions set expires_at = now() - interval '1 second' "
                      "where token_sha256 = %s returning 1", digest(second["token"]))
    status, reason, got = _refused(service, second["token"])
    assert (status, reason) == (401, "bad_session") and got["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert get(service, a, "/me")[0] == 200                        # A's own session is untouched

    assert _refused(service, a.secret)[:2] == (401, "bad_session")            # a device secret is no session
    assert _refused(service, b.secret)[:2] == (401, "bad_session")
    assert _refused(service, None, headers={"Authorization": "Basic " + "dGVzdDp0ZXN0"})[:2] == (401, "no_session")
    assert _refused(service, None, headers={"Cookie": "gcc_session=" + a.token})[:2] == (401, "no_session")
    assert _refused(service, a.token + "x")[:2] == (401, "bad_session")
    # another phone's secret (and its PIN) with my device id: the same refusal as a wrong PIN
    status, answer, _ = call(service.port, "POST", f"{API}/session", orjson.dumps(
        {"device_id": a.device_id, "device_secret": b.secret, "pin": PIN}))
    assert (status, answer) == (401, {"error": "bad_credentials"})

    ended = enrol(service, registry, b.member)
    assert call(service.port, "DELETE", f"{API}/session", token=ended.token)[:2] == (200, {"signed_out": True})
    assert _refused(service, ended.token)[:2] == (401, "bad_session")


# --- uploads -----------------------------------------------------------------------------------------

def _png(width: int, height: int, rows: int | None = None) -> bytes:
    """A greyscale PNG of width × height whose pixels are all zero (a bomb: tiny, huge decoded)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    squeeze = zlib.compressobj(9)
    row = b"\0" * (width + 1)
    data = b"".join(squeeze.compress(row) for _ in range(height if rows is None else rows)) + squeeze.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def _raw(service, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """A request sent as written (no client normalises its path); (status, JSON or bytes, headers).
    A server that answers before reading all of a large body may close the connection while it is
    still being sent: the answer is read all the same."""
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=60)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        if body is not None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                conn.sock.sendall(body)
        response = conn.getresponse()
        raw = response.read()
        is_json = (response.getheader("Content-Type") or "").startswith("application/json")
        return response.status, (orjson.loads(raw) if is_json and raw else raw), response.headers
    finally:
        conn.close()


def test_uploads_are_held_to_their_size_and_to_what_their_bytes_are(stack, service, phones):
    a = phones["A"]
    auth = {"Authorization": f"Bearer {a.token}", "Content-Type": "image/jpeg"}
    status, answer, _ = _raw(service, "POST", f"{API}/photos", b"\xff\xd8\xff" + b"\0" * (8 * MB - 2), auth)
    assert (status, answer["error"]) == (413, "payload_too_large")
    status, answer, _ = upload(service, a, b"\xff\xd8\xff" + b"\0" * (8 * MB - 3))   # 8 MB: size ok, not decodable
    assert (status, answer["error"]) == (400, "bad_image"), answer

    png = io.BytesIO()
    Image.new("RGB", (300, 200), (10, 200, 30)).save(png, "PNG")
    status, kept, _ = upload(service, a, png.getvalue(), "image/jpeg")             # a PNG said to be a JPEG
    assert status == 201 and (kept["width"], kept["height"]) == (300, 200), kept
    status, stored, headers = get(service, a, f"/photos/{kept['ref'].split(':')[1]}")
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and headers["X-Content-Type-Options"] == "nosniff"
    assert Image.open(io.BytesIO(stored)).format == "JPEG" and stored[:3] == b"\xff\xd8\xff"

    for what, body, found in (
            ("HTML", b"<!doctype html><script>parent.gccXss()</script>", "markup"),
            ("SVG", b'  <svg xmlns="http://www.w3.org/2000/svg" onload="gccXss()"/>', "markup"),
            ("a GIF/JS polyglot", b"GIF89a/*\x01\x00\x01\x00\x00\x00\x00;*/=1;gccXss();", "GIF"),
            ("PDF", b"%PDF-1.4\n<script>gccXss()</script>", "PDF"),
            ("HEIC", b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", "HEIF/AVIF")):
        status, answer, _ = upload(service, a, body)
        assert (status, answer["error"]) == (415, "unsupported_media_type"), what
        assert found in answer["detail"], (what, answer)
    status, answer, _ = upload(service, a, jpeg((5, 5, 5)), "image/svg+xml")
    assert (status, answer["error"]) == (415, "unsupported_media_type") and "image/svg+xml" in answer["detail"]

    with_markup = io.BytesIO()                              # a real JPEG with markup in its comment segment
    Image.new("RGB", (64, 48), (90, 90, 200)).save(with_markup, "JPEG", comment=b"<script>gccXss()</script>")
    assert b"<script>" in with_markup.getvalue()
    status, kept, _ = upload(service, a, with_markup.getvalue())
    assert status == 201, kept
    stored = owner_rows(stack, "select bytes, thumb from photos where ref = %s", kept["ref"])[0]
    assert not any(b"<script>" in bytes(b) for b in stored)                 # made again from the pixels

    for width, height in ((7000, 7000), (20000, 20000)):                    # ours (40 MP), Pillow's (80 MP)
        bomb = _png(width, height, rows=None if width * height <= 50_000_000 else 64)
        assert len(bomb) < 200_000
        status, answer, _ = upload(service, a, bomb, "image/png")
        assert (status, answer["error"]) == (413, "image_too_large"), answer
        assert f"{width}" in answer["detail"] or "pixels" in answer["detail"]
    assert owner_rows(stack, "select count(*) from photos where width > 1600 or height > 1600") == [(0,)]


def test_a_phone_past_its_days_quota_is_told_when_to_come_back(stack, service, registry, phones):
    spender = enrol(service, registry, phones["C"].member)
    status, first, _ = upload(service, spender, jpeg((77, 1, 1)))
    assert status == 201
    owner_rows(stack, "update photos set size_uploaded = 300 * 1024 * 1024 where ref = %s returning 1", first["ref"])
    status, answer, headers = upload(service, spender, jpeg((77, 2, 2)))
    assert (status, answer["error"]) == (429, "over_quota"), answer
    assert "300 MB" in answer["detail"]
    retry = headers["Retry-After"]
    assert retry.isdigit() and 0 < int(retry) <= 86_401
    assert upload(service, spender, jpeg((77, 1, 1)))[0] == 200               # bytes already stored cost nothing
    assert upload(service, phones["C"], jpeg((77, 2, 2)))[0] == 201          # the quota is the device's


# --- paths, bodies, origins --------------------------------------------------------------------------

ODD_PATHS = ("/handheld/../ingest/http/app.py", "/handheld/js/../../handheld/api.py", "/handheld/%2e%2e/api.py",
             "/handheld/..%2f..%2fetc%2fpasswd", "/handheld/.git/config", "/handheld/.hidden.js",
             "/handheld/js%2fmain.js", "/handheld/js\\main.js", "/handheld//etc/passwd", "/handheld/index.html%00.js",
             "/handheld/tools/make_icons.py", "/handheld/api/v1/nothing", "/handheld/api/v1/../../app.css",
             "/handheld/app.css/", "/handheld/js/", "/handheld/%2fetc%2fpasswd", "/handheld/./index.html")


@pytest.mark.parametrize("path", ODD_PATHS)
def test_odd_paths_under_the_app_are_not_found(service, path):
    status, answer, _ = _raw(service, "GET", path)
    assert (status, answer) == (404, {"error": "not_found"}), (path, status, answer)


def test_a_message_body_over_64_kb_is_refused_before_it_is_read(service, phones):
    a = phones["A"]
    body = orjson.dumps({"ts": now_iso(), "entry_id": "d-big", "category": "livelihood", "text": "x" * 64 * 1024})
    status, answer, _ = _raw(service, "POST", f"{API}/messages/diary", body,
                             {"Authorization": f"Bearer {a.token}", "Content-Type": "application/json"})
    assert (status, answer["error"]) == (413, "payload_too_large")
    status, answer, _ = _raw(service, "POST", f"{API}/outbox/ack", b'{"seqs": [' + b"1," * 40_000 + b"1]}",
                             {"Authorization": f"Bearer {a.token}", "Content-Type": "application/json"})
    assert (status, answer["error"]) == (413, "payload_too_large")


def test_the_api_sends_no_cors_header_so_another_origin_cannot_read_it(service, phones):
    a = phones["A"]
    evil = {"Origin": "https://evil.example", "Authorization": f"Bearer {a.token}"}
    for method, path in (("GET", "/me"), ("GET", "/tasks"), ("GET", "/outbox")):
        status, _, headers = _raw(service, method, f"{API}{path}", headers=evil)
        assert status == 200
        assert not [h for h in headers if h.lower().startswith("access-control-")], (path, dict(headers))
    status, _, headers = _raw(service, "OPTIONS", f"{API}/me", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    assert status >= 400 and not [h for h in headers if h.lower().startswith("access-control-")]
    status, _, headers = _raw(service, "GET", "/handheld/")
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]

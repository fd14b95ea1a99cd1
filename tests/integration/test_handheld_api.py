"""The handheld's whole API through the real device-facing service (`python -m ingest.http` as the
stack runs it: gunicorn, the ingest chain, the handheld's sessions, reads, photos, outbox and app):
an admin's one-time code enrols a phone, the member signs in with a PIN, the phone reads who it is,
uploads a photo and reports an incident naming it (stored once however often it is sent), reads
the app's files, and is refused at its very next request once an admin retires it."""
from __future__ import annotations

import io
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from email.message import Message

import orjson
import pytest
from PIL import Image

from registry.broker import BrokerAdmin
from registry.store import Actor, DeviceRegistry

from .ingest_helpers import HttpService, owner_rows

API = "/handheld/api/v1"


def call(port: int, method: str, path: str, body: bytes | None = None, token: str | None = None,
         content_type: str = "application/json") -> tuple[int, dict | bytes, Message]:
    headers = {"Content-Type": content_type} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw, got = response.status, response.read(), response.headers
    except urllib.error.HTTPError as err:
        status, raw, got = err.code, err.read(), err.headers
    is_json = got.get("Content-Type", "").startswith("application/json")
    return status, (orjson.loads(raw) if is_json and raw else raw), got


@pytest.fixture(scope="module")
def service(stack, city, tmp_path_factory):
    with HttpService(stack, tmp_path_factory.mktemp("handheld-api") / "ingest-http.log") as running:
        yield running


@pytest.fixture(scope="module")
def registry(stack):
    settings = stack.app_settings("dashboard")
    return DeviceRegistry(settings.pg_dsn, BrokerAdmin.from_settings(settings))


@pytest.fixture
def phone(service, registry, city):
    """A member's phone, enrolled with an admin's code and signed in: (member, device id, token)."""
    member = city.members[21]
    enrolment = registry.enrol_handheld(Actor("t-hh-api"), member.member_id, "test phone")
    status, enrolled, _ = call(service.port, "POST", f"{API}/enrol",
                               orjson.dumps({"code": enrolment.code, "pin": "135790", "label": "test phone"}))
    assert status == 201, enrolled
    status, again, _ = call(service.port, "POST", f"{API}/enrol",
                            orjson.dumps({"code": enrolment.code, "pin": "135790", "label": "second"}))
    assert (status, again["error"]) == (400, "bad_code")           # the code works once
    status, session, _ = call(service.port, "POST", f"{API}/session", orjson.dumps(
        {"device_id": enrolled["device_id"], "device_secret": enrolled["device_secret"], "pin": "135790"}))
    assert status == 200, session
    return member, enrolled["device_id"], session["token"]


def jpeg(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (640, 480), colour).save(out, "JPEG")
    return out.getvalue()


def test_a_phone_enrols_signs_in_and_reads_who_it_is(service, phone):
    member, device_id, token = phone
    status, me, _ = call(service.port, "GET", f"{API}/me", token=token)
    assert status == 200, me
    assert (me["device_id"], me["member_id"], me["terminal_id"], me["grid_code"]) == \
        (device_id, member.member_id, member.terminal_id, member.grid_code)
    assert call(service.port, "GET", f"{API}/me")[0] == 401
    assert call(service.port, "GET", f"{API}/me", token="not-a-token")[0] == 401


def test_a_report_names_its_uploaded_photos_and_is_stored_once(stack, city, service, phone):
    member, device_id, token = phone
    refs = []
    for colour in ((200, 30, 30), (30, 200, 30)):
        status, uploaded, _ = call(service.port, "POST", f"{API}/photos", jpeg(colour), token, "image/jpeg")
        assert status == 201, uploaded
        refs.append(uploaded["ref"])
    assert call(service.port, "POST", f"{API}/photos", jpeg((200, 30, 30)), token, "image/jpeg")[0] == 200
    report_id = f"hh-{uuid.uuid4().hex[:10]}"
    inside = city.grid_by_code[member.grid_code].boundary.representative_point()
    body = orjson.dumps({"ts": datetime.now(timezone.utc).isoformat(), "report_id": report_id,
                         "category": "manhole_cover", "severity": 3, "lat": inside.y, "lon": inside.x,
                         "description": "井盖缺失", "photo_refs": refs})
    for _ in range(2):                                            # a lost answer: the phone sends it again
        status, answer, _ = call(service.port, "POST", f"{API}/messages/incident", body, token)
        assert (status, answer) == (200, {"stored": True})
    rows = owner_rows(stack, "select terminal_id, photo_refs from incident_reports where report_id = %s", report_id)
    assert rows == [(member.terminal_id, refs)]
    status, photo, headers = call(service.port, "GET", f"{API}/photos/{refs[0].split(':')[1]}?thumb=1", token=token)
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(photo)).size[0] <= 320


def test_the_app_is_served_with_its_security_policy(service):
    status, page, headers = call(service.port, "GET", "/handheld/")
    assert status == 200 and b"<html" in page.lower()
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    status, _, _ = call(service.port, "GET", "/handheld/../../etc/passwd")
    assert status == 404


def test_a_retired_phone_is_refused_at_its_next_request(service, registry, phone):
    _, device_id, token = phone
    assert call(service.port, "GET", f"{API}/me", token=token)[0] == 200
    registry.retire_device(Actor("t-hh-api"), device_id)
    status, answer, _ = call(service.port, "GET", f"{API}/me", token=token)
    assert (status, answer["error"]) == (403, "revoked_device")
    status, answer, _ = call(service.port, "POST", f"{API}/messages/fix", orjson.dumps(
        {"ts": datetime.now(timezone.utc).isoformat(), "lat": 26.08, "lon": 119.29}), token)
    assert (status, answer["error"]) == (403, "revoked_device")


"""The handheld's uplinks (POST /handheld/api/v1/messages/{leaf}) through the real device-facing
service (`python -m ingest.http`, gunicorn) and the same ingest chain as MQTT: answered 200 after the
commit, a repeat is a duplicate, the chain's rejection comes back with its reason and detail, a
terminal's report budget answers 429 with Retry-After, and only a signed-in phone, on a terminal
uplink leaf, gets in.

The sign-in is the handheld's sessions' (handheld/sessions.py); here a small real one over a file of
bearer tokens (`token_routes`, run inside the service's process) stands in for it, since what is
tested is the uplink."""
from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import psycopg2
import pytest

from core.http import Refused, Request, refusal
from core.roles import Role
from handheld.caller import Caller

from ..support import wait_for
from .ingest_helpers import HttpService, owner_rows

TOKENS_ENV = "GCC_TEST_HANDHELD_TOKENS"     # a JSON file: bearer token -> the Caller's fields


class TokenAuth:
    """authenticate(request) -> Caller over a dict of bearer tokens; 401 otherwise."""

    def __init__(self, callers: dict[str, Caller]) -> None:
        self.callers = callers

    def __call__(self, request: Request) -> Caller:
        header = request.headers.get("Authorization") or ""
        if not header.startswith("Bearer "):
            raise Refused(refusal(401, "no_session"))
        caller = self.callers.get(header[len("Bearer "):])
        if caller is None:
            raise Refused(refusal(401, "bad_session"))
        return caller


def token_routes(deliver):
    """The service's extra routes in the test: the uplinks, signed in by TokenAuth."""
    from ingest.http.handheld import uplink_routes

    raw = json.loads(Path(os.environ[TOKENS_ENV]).read_text(encoding="utf-8"))
    callers = {token: Caller(**{**fields, "role": Role(fields["role"])}) for token, fields in raw.items()}
    return uplink_routes(deliver, TokenAuth(callers))


@pytest.fixture(scope="module")
def phone(stack, city, tmp_path_factory):
    """A signed-in phone of a member (its token) and the service, whose report budget is two."""
    member = city.members[11]
    token = uuid.uuid4().hex
    caller = {"device_id": f"hh-{uuid.uuid4().hex[:8]}", "member_id": member.member_id,
              "terminal_id": member.terminal_id, "grid_code": member.grid_code, "role": member.role.value,
              "name": member.name}
    folder = tmp_path_factory.mktemp("handheld")
    (folder / "tokens.json").write_text(json.dumps({token: caller}))
    with HttpService(stack, folder / "ingest-http.log", routes=f"{__name__}:token_routes",
                     env={TOKENS_ENV: str(folder / "tokens.json")},
                     ingest_report_rate_per_min=0.01, ingest_report_burst=2) as service:
        yield service, token, member, city.grid_by_code[member.grid_code]


def _post(port: int, leaf: str, body: bytes, token: str | None):
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/handheld/api/v1/messages/{leaf}", data=body,
                                     method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, orjson.loads(response.read()), response.headers
    except urllib.error.HTTPError as err:
        return err.code, orjson.loads(err.read()), err.headers


def _ts(seconds_ago: int) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "Z")


def test_a_fix_from_the_phone_is_stored_as_its_terminals_before_the_answer(phone):
    service, token, member, grid = phone
    p = grid.boundary.representative_point()
    ts = _ts(30)
    status, body, _ = _post(service.port, "fix", orjson.dumps({"ts": ts, "lat": p.y, "lon": p.x}), token)
    assert (status, body) == (200, {"stored": True})
    rows = owner_rows(service.stack, "select member_id, grid_code from positions where terminal_id = %s "
                                     "and time = %s", member.terminal_id, ts)    # no waiting: committed
    assert rows == [(member.member_id, grid.code)]


def test_an_incident_sent_again_is_one_report_and_the_budget_answers_429(phone):
    service, token, member, grid = phone
    p = grid.boundary.representative_point()
    report = {"ts": _ts(20), "report_id": f"R-{uuid.uuid4().hex[:10]}", "category": "manhole_cover",
              "severity": 3, "lat": p.y, "lon": p.x, "description": "井盖缺失"}
    first = _post(service.port, "incident", orjson.dumps(report), token)
    again = _post(service.port, "incident", orjson.dumps(report), token)     # the answer was lost: sent again
    assert first[:2] == again[:2] == (200, {"stored": True}), (first, again)
    assert owner_rows(service.stack, "select count(*), min(terminal_id) from incident_reports where report_id = %s",
                      report["report_id"]) == [(1, member.terminal_id)]
    other = {**report, "report_id": f"R-{uuid.uuid4().hex[:10]}"}    # a third message: past the budget of 2
    status, body, headers = _post(service.port, "incident", orjson.dumps(other), token)
    assert (status, body["error"], headers.get("Retry-After")) == (429, "rate_limited", "10")


def test_a_message_the_chain_refuses_comes_back_with_its_reason_and_detail(phone):
    service, token, member, _ = phone
    status, body, _ = _post(service.port, "fix", orjson.dumps({"ts": _ts(10), "lat": "north"}), token)
    assert status == 400 and body["error"] == "schema_violation" and body["detail"], body
    assert owner_rows(service.stack, "select count(*) from dead_letters where topic = %s and reason = %s",
                      f"gcc/v1/terminal/{member.terminal_id}/fix", "schema_violation")[0][0] >= 1


def test_only_a_signed_in_phone_on_a_terminal_uplink_leaf_gets_in(phone):
    service, token, _, _ = phone
    fix = orjson.dumps({"ts": _ts(5), "lat": 26.08, "lon": 119.3})
    assert _post(service.port, "fix", fix, None)[:2] == (401, {"error": "no_session"})
    assert _post(service.port, "fix", fix, "not-a-token")[:2] == (401, {"error": "bad_session"})
    for leaf in ("notice", "task", "senml", "fix/extra", ""):        # downlinks, a gateway's, none of ours
        assert _post(service.port, leaf, fix, token)[:2] == (404, {"error": "not_found"}), leaf
    assert 'reason="bad_session"' in service.metrics()


def test_requests_waiting_for_their_commit_hold_no_handler(stack, city, tmp_path):
    """With two handlers, twelve phones' fixes wait together for a commit the test holds back (a
    lock on the positions table): each request's own work is done at once and its wait takes no
    handler, so none is turned away as too busy, and all are answered once the commit comes."""
    members = city.members[130:142]
    callers = {uuid.uuid4().hex: {"device_id": f"hh-{uuid.uuid4().hex[:8]}", "member_id": m.member_id,
                                  "terminal_id": m.terminal_id, "grid_code": m.grid_code, "role": m.role.value,
                                  "name": m.name} for m in members}
    (tmp_path / "tokens.json").write_text(json.dumps(callers))
    blocker = psycopg2.connect(stack.settings().pg_dsn)
    with HttpService(stack, tmp_path / "ingest-http.log", routes=f"{__name__}:token_routes",
                     env={TOKENS_ENV: str(tmp_path / "tokens.json")}, ingest_http_max_handlers=2,
                     ingest_http_connections_per_source=32) as service:
        try:
            with blocker.cursor() as cur:
                cur.execute("lock table positions in share mode")     # the chain's insert waits for it
            answers: list = []
            ts = _ts(15)
            inside = {m.terminal_id: city.grid_by_code[m.grid_code].boundary.representative_point() for m in members}
            posts = [threading.Thread(target=lambda t=token, p=inside[m.terminal_id]: answers.append(_post(
                service.port, "fix", orjson.dumps({"ts": ts, "lat": p.y, "lon": p.x}), t)))
                for token, m in zip(callers, members, strict=True)]
            for n, post in enumerate(posts, 1):      # one after another: each one's own work done before the next
                post.start()
                wait_for(lambda n=n: _waiting(service) == n, 30, f"{n} requests waiting for their commit",
                         explain=lambda: f"{_waiting(service)} waiting; answered: {answers}")
            assert answers == []                                     # nobody turned away, nobody answered yet
        finally:
            blocker.rollback()                                       # the lock goes: the commit comes
            blocker.close()
        for post in posts:
            post.join(30)
    assert sorted(status for status, _, _ in answers) == [200] * len(members), answers
    assert owner_rows(stack, "select count(*) from positions where time = %s and terminal_id = any(%s)",
                      ts, [m.terminal_id for m in members]) == [(len(members),)]



def _waiting(service) -> int:
    """How many of the service's requests wait for their commit (its first process's gauge)."""
    for line in service.metrics().splitlines():
        if line.startswith("gcc_ingest_http_waiting_for_commit"):
            return int(float(line.split()[-1]))
    raise AssertionError("the service has no gcc_ingest_http_waiting_for_commit gauge")

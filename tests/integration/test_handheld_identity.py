"""The handheld's identity (issue 25) against the real database: an admin's one-time code enrols a
phone once, the phone signs in with its PIN (guesses slowed down as the ingest's logins are), every
request is checked against the database (a revoked or retired phone is refused at its very next
request), and no code, secret, PIN or token is stored in clear. The sessions run as the ingest's
database role (the device-facing server's) and the registry as the dashboard's (the admin page's)."""
from __future__ import annotations

import orjson
import psycopg2
import pytest

from core.http import Refused
from core.throttle import LoginThrottle, ThrottlePolicy
from handheld.sessions import Sessions
from registry.broker import BrokerAdmin
from registry.devices import registry_accounts
from registry.store import Actor, DeviceRegistry, RegistryError

from ..support import EndpointRequest
from .ingest_helpers import owner_rows

ADMIN = Actor("t-hh-admin")


def bearer(token: str) -> EndpointRequest:
    return EndpointRequest("GET", "/handheld/api/v1/me", {"Authorization": f"Bearer {token}"})


def refused(call, *args) -> tuple[int, str]:
    with pytest.raises(Refused) as caught:
        call(*args)
    return caught.value.reply.status, caught.value.reply.refused


@pytest.fixture(scope="module")
def registry(stack, city):
    """The admin page's registry, with the broker (retiring a member disables their terminal's account)."""
    app_settings = stack.app_settings("dashboard")
    return DeviceRegistry(app_settings.pg_dsn, BrokerAdmin.from_settings(app_settings))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def sessions(stack, city, clock):
    made = Sessions(stack.app_settings("ingest").pg_dsn, LoginThrottle(ThrottlePolicy(), clock=clock))
    yield made
    made.pool.closeall()


def _enrolled(registry, sessions, member, pin: str = "246810") -> tuple[str, str]:
    enrolment = registry.enrol_handheld(ADMIN, member.member_id, "Wang's phone")
    device_id, secret, caller = sessions.enrol(enrolment.code, pin, "", "198.51.100.1")
    assert (device_id, caller.member_id, caller.terminal_id) == (enrolment.device_id, member.member_id,
                                                                  member.terminal_id)
    return device_id, secret


def test_a_code_enrols_one_phone_once_and_is_audited(stack, city, registry, sessions):
    member = city.members[320]
    enrolment = registry.enrol_handheld(ADMIN, member.member_id, "Wang's phone")
    assert len(enrolment.code) >= 22 and enrolment.device_id.startswith(f"hh-{member.member_id}-")
    assert enrolment.link("https://field.example/") == f"https://field.example/handheld/#enrol={enrolment.code}"
    device_id, secret, caller = sessions.enrol(enrolment.code, "135790", "", "198.51.100.1")
    assert (caller.device_id, caller.grid_code, caller.role, caller.name) == (device_id, member.grid_code,
                                                                              member.role, member.name)
    assert owner_rows(stack, "select member_id, kind, label, retired_at from member_devices where device_id = %s",
                      device_id) == [(member.member_id, "handheld", "Wang's phone", None)]
    # the code works once: the second phone (or the same one again) is refused
    assert refused(sessions.enrol, enrolment.code, "135790", "", "198.51.100.2") == (400, "bad_code")
    assert refused(sessions.enrol, "no-such-code", "135790", "", "198.51.100.2") == (400, "bad_code")
    assert refused(sessions.enrol, enrolment.code, "12345", "", "198.51.100.2") == (400, "bad_pin")
    assert owner_rows(stack, "select actor, action, outcome, after->>'kind' from audit_log where target = %s "
                             "order by id", f"device:{device_id}") == [
        ("t-hh-admin", "registry.device.add", "done", "handheld"),
        ("handheld-enrolment", "registry.device.add", "done", "handheld")]
    # a handheld has no broker account: the broker's role sync (sync-roles) does not look for one
    assert device_id not in {a.username for a in registry_accounts(stack.settings().pg_dsn)}


def test_an_expired_code_is_refused(stack, city, registry, sessions):
    enrolment = registry.enrol_handheld(ADMIN, city.members[321].member_id)
    assert owner_rows(stack, "select expires_at - created_at = interval '24 hours' from handheld_enrolments "
                             "where device_id = %s", enrolment.device_id) == [(True,)]
    owner_rows(stack, "update handheld_enrolments set created_at = now() - interval '25 hours', "
                      "expires_at = now() - interval '1 hour' where device_id = %s returning 1", enrolment.device_id)
    assert refused(sessions.enrol, enrolment.code, "135790", "", "198.51.100.3") == (400, "bad_code")
    assert owner_rows(stack, "select 1 from member_devices where device_id = %s", enrolment.device_id) == []


def test_enrolment_attempts_are_throttled_per_source(sessions):
    statuses = [refused(sessions.enrol, f"guess-{n}", "135790", "", "198.51.100.66")[0] for n in range(21)]
    assert statuses == [400] * 20 + [429]       # the source's budget: 20 attempts in 5 minutes
    assert refused(sessions.enrol, "guess-x", "135790", "", "198.51.100.67") == (400, "bad_code")   # another source


def test_a_phone_signs_in_with_its_pin_and_its_session_names_its_member(city, registry, sessions):
    member = city.members[322]
    device_id, secret = _enrolled(registry, sessions, member)
    token, expires = sessions.sign_in(device_id, secret, "246810", "198.51.100.1")
    caller = sessions.authenticate(bearer(token))
    assert (caller.device_id, caller.member_id, caller.terminal_id) == (device_id, member.member_id,
                                                                       member.terminal_id)
    assert 11.9 * 3600 < (expires - expires.now(expires.tzinfo)).total_seconds() <= 12 * 3600
    assert refused(sessions.sign_in, device_id, secret, "000000", "198.51.100.1") == (401, "bad_credentials")
    assert refused(sessions.sign_in, device_id, "not-the-secret", "246810", "198.51.100.1") == \
        (401, "bad_credentials")
    assert refused(sessions.sign_in, "hh-nobody-1", secret, "246810", "198.51.100.1") == (401, "bad_credentials")
    assert refused(sessions.authenticate, EndpointRequest("GET", "/")) == (401, "no_session")
    assert refused(sessions.authenticate, bearer("made-up")) == (401, "bad_session")
    assert sessions.sign_out(token) is True
    assert refused(sessions.authenticate, bearer(token)) == (401, "bad_session")


def test_wrong_pins_are_throttled_per_device_and_source(city, registry, sessions, clock):
    device_id, secret = _enrolled(registry, sessions, city.members[323])
    outcomes = [refused(sessions.sign_in, device_id, secret, f"00000{n}", "198.51.100.9") for n in range(5)]
    assert outcomes == [(401, "bad_credentials")] * 5
    # the right PIN now waits too (counted before it is checked), from that source only
    assert refused(sessions.sign_in, device_id, secret, "246810", "198.51.100.9") == (429, "too_many_failed_logins")
    assert sessions.sign_in(device_id, secret, "246810", "198.51.100.10")[0]
    clock.now += 31
    assert sessions.sign_in(device_id, secret, "246810", "198.51.100.9")[0]


def test_an_expired_session_is_refused(stack, city, registry, sessions):
    device_id, secret = _enrolled(registry, sessions, city.members[324])
    token, _ = sessions.sign_in(device_id, secret, "246810", "198.51.100.1")
    owner_rows(stack, "update handheld_sessions set expires_at = now() - interval '1 second' "
                      "where device_id = %s returning 1", device_id)
    assert refused(sessions.authenticate, bearer(token)) == (401, "bad_session")


def test_a_retired_phone_is_refused_at_its_very_next_request(stack, city, registry, sessions):
    device_id, secret = _enrolled(registry, sessions, city.members[325])
    token, _ = sessions.sign_in(device_id, secret, "246810", "198.51.100.1")
    assert sessions.authenticate(bearer(token)).device_id == device_id
    registry.retire_device(ADMIN, device_id)
    assert refused(sessions.authenticate, bearer(token)) == (403, "revoked_device")
    assert refused(sessions.sign_in, device_id, secret, "246810", "198.51.100.1") == (403, "revoked_device")
    assert owner_rows(stack, "select count(*) from handheld_sessions where device_id = %s and ended_at is null",
                      device_id) == [(0,)]


def test_a_revoked_phone_is_refused_and_has_no_password_to_rotate(stack, city, registry, sessions):
    device_id, secret = _enrolled(registry, sessions, city.members[326])
    token, _ = sessions.sign_in(device_id, secret, "246810", "198.51.100.1")
    registry.revoke(ADMIN, device_id)
    assert refused(sessions.authenticate, bearer(token)) == (403, "revoked_device")
    with pytest.raises(RegistryError, match="handheld"):
        registry.rotate(ADMIN, device_id)
    with pytest.raises(RegistryError, match="enrolled with a one-time code"):
        registry.add_device(ADMIN, city.members[326].member_id, "handheld", "hh-by-hand")


def test_a_retired_member_takes_their_phones_sessions_with_them(stack, city, registry, sessions):
    member = city.members[337]    # retired: a member no other test uses (test_worker_live fixes 300-329)
    device_id, secret = _enrolled(registry, sessions, member)
    token, _ = sessions.sign_in(device_id, secret, "246810", "198.51.100.1")
    registry.retire_member(ADMIN, member.member_id)
    assert refused(sessions.authenticate, bearer(token)) == (403, "revoked_device")


def test_a_session_is_its_own_devices_only(city, registry, sessions):
    first, first_secret = _enrolled(registry, sessions, city.members[328])
    second, second_secret = _enrolled(registry, sessions, city.members[329], pin="112233")
    first_token, _ = sessions.sign_in(first, first_secret, "246810", "198.51.100.1")
    second_token, _ = sessions.sign_in(second, second_secret, "112233", "198.51.100.1")
    assert sessions.authenticate(bearer(first_token)).member_id == city.members[328].member_id
    assert sessions.authenticate(bearer(second_token)).member_id == city.members[329].member_id
    # one device's secret with another's id, or one's PIN with another's secret, is no sign-in
    assert refused(sessions.sign_in, second, first_secret, "246810", "198.51.100.1") == (401, "bad_credentials")
    assert refused(sessions.sign_in, second, second_secret, "246810", "198.51.100.1") == (401, "bad_credentials")
    assert sessions.sign_out(first_token) is True
    assert sessions.authenticate(bearer(second_token)).device_id == second   # signing one out ends only its own


def test_no_secret_is_stored_in_clear(stack, city, registry, sessions):
    enrolment = registry.enrol_handheld(ADMIN, city.members[330].member_id)
    device_id, secret, _ = sessions.enrol(enrolment.code, "975310", "", "198.51.100.1")
    token, _ = sessions.sign_in(device_id, secret, "975310", "198.51.100.1")
    dumped = str(owner_rows(stack, "select row_to_json(e)::text from handheld_enrolments e where device_id = %s "
                                   "union all select row_to_json(c)::text from handheld_credentials c "
                                   "where device_id = %s union all select row_to_json(s)::text "
                                   "from handheld_sessions s where device_id = %s", device_id, device_id, device_id))
    for clear in (enrolment.code, secret, token, "975310"):
        assert clear not in dumped
    [(pin_hash,)] = owner_rows(stack, "select pin_hash from handheld_credentials where device_id = %s", device_id)
    assert pin_hash.startswith("$argon2id$")


def test_the_endpoints_answer_as_the_contract_says(city, registry, sessions):
    routes = {(r.method, r.path): r.respond for r in sessions.routes()}
    enrolment = registry.enrol_handheld(ADMIN, city.members[331].member_id)
    post = lambda path, body: routes[("POST", path)](EndpointRequest("POST", path, raw=orjson.dumps(body)))  # noqa: E731
    enrolled = post("/handheld/api/v1/enrol", {"code": enrolment.code, "pin": "864200", "label": "Li's phone"})
    assert enrolled.status == 201, enrolled.body
    answer = orjson.loads(enrolled.body)
    assert answer["member"]["member_id"] == city.members[331].member_id and answer["device_secret"]
    assert post("/handheld/api/v1/enrol", {"code": enrolment.code, "pin": "864200"}).refused == "bad_code"
    assert post("/handheld/api/v1/enrol", {"code": "x", "pin": 864200}).refused == "bad_pin"
    assert routes[("POST", "/handheld/api/v1/enrol")](EndpointRequest("POST", "/", raw=b"{")).refused == "bad_json"
    signed = post("/handheld/api/v1/session", {"device_id": answer["device_id"],
                                               "device_secret": answer["device_secret"], "pin": "864200"})
    assert signed.status == 200, signed.body
    token = orjson.loads(signed.body)["token"]
    me = sessions.signed_in(lambda caller, request: orjson.dumps(caller.member_id))
    assert me(bearer(token)) == orjson.dumps(city.members[331].member_id)
    assert me(bearer("nope")).refused == "bad_session"
    signed_out = routes[("DELETE", "/handheld/api/v1/session")](bearer(token))
    assert signed_out.status == 200 and me(bearer(token)).refused == "bad_session"


def test_the_ingest_role_makes_a_handheld_only_through_a_code(stack, city):
    conn = psycopg2.connect(stack.app_settings("ingest").pg_dsn)
    try:
        for statement in ("insert into member_devices (device_id, member_id, kind) values ('hh-x', 'M', 'handheld')",
                          "select * from handheld_enrolments",
                          "insert into handheld_credentials (device_id, secret_sha256, pin_hash) "
                          "values ('hh-x', '', '')"):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege), conn.cursor() as cur:
                cur.execute(statement)
            conn.rollback()
    finally:
        conn.close()


def test_the_cli_prints_a_link_whose_code_enrols_a_phone(stack, city, sessions):
    import re

    from .test_registry import cli

    member = city.members[332]
    result = cli(stack, "enrol-handheld", member.member_id, "--label", "spare phone")
    assert result.returncode == 0, result.stderr
    code = re.search(r"/handheld/#enrol=(\S+)$", result.stdout, re.M).group(1)
    device_id, _, caller = sessions.enrol(code, "102938", "", "198.51.100.50")
    assert caller.member_id == member.member_id and device_id in result.stdout
    assert owner_rows(stack, "select label from member_devices where device_id = %s", device_id) == [("spare phone",)]

"""A person's work on a case from the screens' command path, and the terminals told over MQTT,
against the real stack: the dashboard's own database role writes the case, its events and the
notices in one transaction; the cases engine's account publishes the outbox (QoS 1, with a
message expiry) to the handler's terminal, which is subscribed with its own account; the
terminal's answer comes back through the ingest and the engine; a terminal briefly offline gets
its notice when it comes back (a persistent session)."""
from __future__ import annotations

import threading
import uuid
from datetime import datetime, timezone

import orjson
import psycopg2
import pytest

from cases import store
from cases.intake import INTAKE
from cases.limits import Urgency
from cases.machine import open_case
from cases.model import Dispatch, Register, Source
from cases.notifier import Notifier
from core.roles import Role, UserRole
from dashboard.authz import Identity
from dashboard.case_actions import CaseAction, CaseRules
from dashboard.commands import Commands
from telemetry.notices import NOTICE_EXPIRY_S, CaseNotice, NoticeKind
from telemetry.topics import CASE, NOTICE, terminal_topic

from ..support import wait_for
from .ingest_helpers import ThreadWorker, owner_rows
from .mqtt_helpers import MqttProbe
from .screens import iso, now
from .test_cases_engine import Running, _engine, seeded

pytestmark = pytest.mark.slow
DISPATCHER = Identity("disp-notices", frozenset({UserRole.DISPATCHER}), "")


@pytest.fixture(scope="module")
def cases_settings(stack, city):
    return seeded(stack)


@pytest.fixture(scope="module")
def worker(stack):
    with ThreadWorker(stack, index=33, share_group=f"t{uuid.uuid4().hex[:8]}") as running:
        yield running


@pytest.fixture(scope="module")
def commands(stack, city):
    settings = stack.app_settings("dashboard")        # the dashboard's own role and Redis user: its grants
    client = settings.redis_client(socket_timeout=5)
    ctx = Commands(city, client, settings.pg_dsn, producer="test-notices")
    yield ctx, CaseRules(ctx)
    client.close()


@pytest.fixture(scope="module")
def notifier(stack, cases_settings):
    account = stack.account("cases")
    sender = Notifier(cases_settings.pg_dsn, "127.0.0.1", stack.mosquitto.port, account.username, account.password)
    thread = threading.Thread(target=sender.run, daemon=True)
    thread.start()
    yield sender
    sender.stop_event.set()
    thread.join(15)


def _reported_case(stack, cases_settings, grid_code: str) -> str:
    """A report's case, as the intake opens it."""
    conn = psycopg2.connect(cases_settings.pg_dsn)
    try:
        with conn, conn.cursor() as cur:
            rules = store.load_rules(cur)
            t = datetime.now(timezone.utc)
            case_id = store.next_case_id(cur, t)
            outcome = open_case(case_id, "exposed_garbage", Urgency.NORMAL, Source.REPORT, grid_code, grid_code,
                                INTAKE, t, rules, title="Exposed garbage", place="Gate 2")
            store.insert(cur, outcome.case, rules)
            store.add_events(cur, outcome.events)
    finally:
        conn.close()
    return case_id


def _member(city, n: int, role: Role):
    grid = city.grids[n]
    return next(m for m in city.members if m.grid_code == grid.code and m.role is role)


def _terminal(stack, member, session_expiry: int = 0, clean_start: bool = True) -> MqttProbe:
    account = stack.account(member.terminal_id)
    probe = MqttProbe(stack.mosquitto.port, account.username, account.password, clean_start=clean_start,
                      session_expiry=session_expiry)
    assert probe.subscribe(terminal_topic(member.terminal_id, NOTICE)) == "Granted QoS 1"
    return probe


def _notices(probe: MqttProbe, member, timeout: float = 15) -> list[CaseNotice]:
    return [CaseNotice.parse(member.terminal_id, m.payload) for m in probe.received(timeout)]


def test_a_dispatch_from_the_screens_reaches_the_handler_who_accepts_over_mqtt(stack, city, cases_settings, commands,
                                                                             notifier, worker):
    ctx, rules = commands
    handler = _member(city, 60, Role.GRID_ADMINISTRATOR)
    case_id = _reported_case(stack, cases_settings, handler.grid_code)
    terminal = _terminal(stack, handler)
    try:
        assert ctx.execute(DISPATCHER, CaseAction(case_id, Register(), rules)).ok
        result = ctx.execute(DISPATCHER, CaseAction(case_id, Dispatch(handler.terminal_id, handler.grid_code), rules))
        assert result.ok, result.reason
        [message] = terminal.received(15)
        notice = CaseNotice.parse(handler.terminal_id, message.payload)
        assert (notice.kind, notice.case_id, notice.state) == (NoticeKind.DISPATCHED, case_id, "dispatched")
        assert message.qos == 1 and 0 < message.properties.MessageExpiryInterval <= NOTICE_EXPIRY_S
        [(deadline, sent_at)] = owner_rows(stack, "select c.deadline, n.sent_at from case_notices n join cases c "
                                                  "using (case_id) where n.id = %s", notice.notice_id)
        assert notice.deadline == deadline and sent_at is not None
        # the terminal accepts on its own uplink topic; the ingest stores it, the engine applies it
        with Running(_engine(cases_settings, city, scale=1.0)):
            assert terminal.publish(terminal_topic(handler.terminal_id, CASE), orjson.dumps(
                {"ts": iso(now()), "case_id": case_id, "action": "accept"})) == "Success"
            wait_for(lambda: owner_rows(stack, "select state from cases where case_id = %s", case_id)
                     == [("accepted",)], 20, "the case accepted")
            [accepted] = _notices(terminal, handler)
        assert accepted.kind is NoticeKind.ACCEPTED and accepted.deadline > notice.deadline   # the handling clock
        assert owner_rows(stack, "select actor_kind, actor from case_events where case_id = %s and command = 'accept'",
                          case_id) == [("terminal", handler.terminal_id)]
        assert owner_rows(stack, "select actor, outcome from audit_log where target = %s and action = 'case.dispatch'",
                          f"case:{case_id}") == [(DISPATCHER.user, "done")]
    finally:
        terminal.close()


def test_a_terminal_briefly_offline_gets_its_notice_when_it_comes_back(stack, city, cases_settings, commands,
                                                                       notifier):
    ctx, rules = commands
    handler = _member(city, 61, Role.GRID_COORDINATOR)
    case_id = _reported_case(stack, cases_settings, handler.grid_code)
    away = _terminal(stack, handler, session_expiry=3600, clean_start=True)
    away.close()                                        # gone; its session (and subscription) stays at the broker
    assert ctx.execute(DISPATCHER, CaseAction(case_id, Register(), rules)).ok
    assert ctx.execute(DISPATCHER, CaseAction(case_id, Dispatch(handler.terminal_id, handler.grid_code), rules)).ok
    wait_for(lambda: owner_rows(stack, "select count(*) from case_notices where case_id = %s and sent_at is not null",
                                case_id) == [(1,)], 15, "the notice taken by the broker")
    account = stack.account(handler.terminal_id)
    back = MqttProbe(stack.mosquitto.port, account.username, account.password, clean_start=False, session_expiry=3600)
    try:
        [notice] = _notices(back, handler)
        assert (notice.kind, notice.case_id) == (NoticeKind.DISPATCHED, case_id)
    finally:
        back.close()


def test_a_dispatch_to_someone_outside_the_dispatchers_street_is_refused_and_nothing_is_sent(stack, city,
                                                                                           cases_settings, commands):
    ctx, rules = commands
    handler = _member(city, 62, Role.GRID_ADMINISTRATOR)
    elsewhere = next(m for m in city.members if m.grid_code[:9] != handler.grid_code[:9])
    street_dispatcher = Identity("disp-street", frozenset({UserRole.DISPATCHER}), handler.grid_code[:9])
    case_id = _reported_case(stack, cases_settings, handler.grid_code)
    assert ctx.execute(street_dispatcher, CaseAction(case_id, Register(), rules)).ok
    result = ctx.execute(street_dispatcher, CaseAction(case_id, Dispatch(elsewhere.terminal_id, elsewhere.grid_code),
                                                       rules))
    assert not result.ok and "outside disp-street's scope" in result.reason
    assert owner_rows(stack, "select state from cases where case_id = %s", case_id) == [("registered",)]
    assert owner_rows(stack, "select count(*) from case_notices where case_id = %s", case_id) == [(0,)]
    assert owner_rows(stack, "select outcome, reason from audit_log where target = %s and action = 'case.dispatch'",
                      f"case:{case_id}") == [("refused", result.reason)]
    other = Identity(f"disp-{uuid.uuid4().hex[:4]}", frozenset({UserRole.DISPATCHER}), elsewhere.grid_code[:9])
    refused = ctx.execute(other, CaseAction(case_id, Register(), rules))
    assert not refused.ok and "outside" in refused.reason            # another street's case: not theirs

"""Offers against the real stack: the candidates of a case come from the live positions in Redis
(GEOSEARCH), nearest available first; a dispatch from the screens' command path is an offer that
expires when nobody accepts it, and the cases engine offers the case to the next candidate; a
rejected offer too; when the tries run out the case waits flagged unassigned; the console offers
with the Enter key and withdraws an offer in place."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone

import orjson
import psycopg2
import pytest

from cases import store
from cases.engine import Engine
from cases.intake import Intake
from cases.machine import apply
from cases.model import Actor, ActorKind, Dispatch, Register, Reject, Return
from cases.notifier import Notifier
from cases.offers import OfferPolicy
from core.roles import Role, UserRole
from dashboard.authz import Identity
from dashboard.case_actions import CaseAction, CaseRules, Reassign
from dashboard.commands import Commands
from dispatch.candidates import Settings, find, first_available
from ingest.live import LiveState
from ingest.model import Enriched
from telemetry.messages import Fix
from telemetry.notices import CaseNotice, NoticeKind
from telemetry.topics import NOTICE, terminal_topic

from ..support import MovedClock, wait_for
from .ingest_helpers import owner_rows
from .mqtt_helpers import MqttProbe
from .screens import SCREENSHOTS, ensure_logins, sign_in
from .test_case_notices import _reported_case
from .test_cases_engine import seeded

pytestmark = pytest.mark.slow
DISPATCHER = Identity("disp-offers", frozenset({UserRole.DISPATCHER}), "")
POLICY = OfferPolicy({"urgent": 1.0, "normal": 1.0}, tries=3)
LOOK = Settings(radius_m=400)
METRE = 1 / 111_320


@pytest.fixture(scope="module")
def cases_settings(stack, city):
    return seeded(stack)


@pytest.fixture(scope="module")
def placed(stack, city, redis_client_module):
    """A grid, a point in it, and three of its members standing 20, 60 and 110 m north of it, online."""
    grid = city.grids[123]
    point = grid.boundary.representative_point()
    lon, lat = point.x + 5 * METRE, point.y - 7 * METRE         # not where other tests put members
    members = [m for m in city.members if m.grid_code == grid.code and m.role is not Role.GRID_SUPERVISOR][:3]
    LiveState(redis_client_module).ensure_schema()
    _stand(redis_client_module, grid, lat, lon, members)
    return grid, lat, lon, members


def _stand(r, grid, lat, lon, members) -> None:
    """The members located now 20, 60 and 110 m north of (lat, lon), online (as the ingest writes it)."""
    now = datetime.now(timezone.utc)
    LiveState(r).apply([Enriched(Fix(terminal_id=m.terminal_id, time=now, lat=lat + d * METRE, lon=lon, source="gcc"),
                                 grid.code, member_id=m.member_id, home_grid_code=m.grid_code, received_at=now)
                        for m, d in zip(members, (20, 60, 110), strict=True)])


@pytest.fixture(scope="module")
def redis_client_module(settings):
    client = settings.redis_client()
    yield client
    client.close()


def _case_at(stack, cases_settings, grid, lat, lon) -> str:
    case_id = _reported_case(stack, cases_settings, grid.code)
    conn = psycopg2.connect(stack.settings().pg_dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("update cases set lat = %s, lon = %s, category = 'exposed_garbage' where case_id = %s",
                        (lat, lon, case_id))
    finally:
        conn.close()
    return case_id


def _engine(stack, cases_settings, city, r, clock: MovedClock) -> Engine:
    return Engine(cases_settings.pg_dsn, Intake(city), lambda cur: store.load_rules(cur), clock=clock, policy=POLICY,
                  pick=lambda cur, case, offered: first_available(r, city, cur, case, offered, clock().timestamp(),
                                                                  LOOK))


def _once(engine, settings) -> None:
    conn = psycopg2.connect(settings.pg_dsn)
    try:
        engine.once(conn)
    finally:
        conn.close()


def test_the_candidates_are_the_nearest_available_members_from_the_live_positions(stack, city, placed,
                                                                                  redis_client_module):
    grid, lat, lon, members = placed
    search = find(redis_client_module, city, "exposed_garbage", grid.code, lat, lon, lambda t: [], time.time(), LOOK)
    ours = [c.terminal_id for c in search.candidates if c.terminal_id in {m.terminal_id for m in members}]
    assert ours == [m.terminal_id for m in members]              # nearest first, all of the same grid
    first = next(c for c in search.candidates if c.terminal_id == members[0].terminal_id)
    assert first.available and first.tier == 0 and 15 < first.distance_m < 25
    busy = find(redis_client_module, city, "exposed_garbage", grid.code, lat, lon,
                lambda t: ["accepted"] if t == members[0].terminal_id else [], time.time(), LOOK)
    ranked = [c.terminal_id for c in busy.candidates if c.terminal_id in {m.terminal_id for m in members}]
    assert ranked == [members[1].terminal_id, members[2].terminal_id, members[0].terminal_id]   # busy goes last


def test_an_offer_nobody_accepts_goes_to_the_next_and_then_the_case_waits_unassigned(stack, city, placed,
                                                                                    cases_settings,
                                                                                    redis_client_module):
    grid, lat, lon, members = placed
    settings = stack.app_settings("dashboard")
    client = settings.redis_client(socket_timeout=5)
    ctx = Commands(city, client, settings.pg_dsn, producer="test-offers")
    rules = CaseRules(ctx, policy=POLICY)
    case_id = _case_at(stack, cases_settings, grid, lat, lon)
    try:
        assert ctx.execute(DISPATCHER, CaseAction(case_id, Register(), rules)).ok
        first = members[0]
        assert ctx.execute(DISPATCHER, CaseAction(case_id, Dispatch(first.terminal_id, first.grid_code, rank=1,
                                                                    why="#1"), rules)).ok
    finally:
        client.close()
    [(terminal, by, outcome)] = owner_rows(stack, "select terminal_id, offered_by, outcome from case_offers "
                                                  "where case_id = %s", case_id)
    assert (terminal, by, outcome) == (first.terminal_id, DISPATCHER.user, None)
    clock = MovedClock()
    engine = _engine(stack, cases_settings, city, redis_client_module, clock)
    clock.advance(1.2)                                           # the offer's second passes
    _once(engine, cases_settings)
    offers = owner_rows(stack, "select terminal_id, offered_by, outcome, followed from case_offers where case_id = %s "
                               "order by id", case_id)
    assert offers[0] == (first.terminal_id, DISPATCHER.user, "expired", True)
    assert offers[1][1:] == ("automatic dispatch", None, False)
    second = offers[1][0]
    assert second != first.terminal_id
    assert owner_rows(stack, "select state, handler from cases where case_id = %s", case_id) == [("dispatched",
                                                                                                  second)]
    # the second member rejects it (from their terminal, as the intake applies it): the third is offered
    conn = psycopg2.connect(cases_settings.pg_dsn)
    try:
        with conn, conn.cursor() as cur:
            case = store.load(cur, case_id)
            member = city.member_by_terminal[second]
            actor = Actor(ActorKind.TERMINAL, second, frozenset({member.role.value}), member.grid_code)
            outcome = apply(case, Reject("on another job"), actor, clock(), store.load_rules(cur))
            store.save(cur, outcome.case, store.load_rules(cur))
            store.record(cur, [outcome], engine.intake.recipients, POLICY)
    finally:
        conn.close()
    _once(engine, cases_settings)
    outcomes = owner_rows(stack, "select outcome from case_offers where case_id = %s order by id", case_id)
    assert [o for (o,) in outcomes] == ["expired", "rejected", None]
    clock.advance(1.2)
    _once(engine, cases_settings)                                  # the third expires: three tries, no more
    [(state, unassigned, handler)] = owner_rows(stack, "select state, unassigned, handler from cases "
                                                       "where case_id = %s", case_id)
    assert (state, unassigned, handler) == ("registered", True, None)
    assert owner_rows(stack, "select reason from case_events where case_id = %s and command = 'unassigned'",
                      case_id) == [("3 offers, none accepted",)]
    assert owner_rows(stack, "select count(*) from case_offers where case_id = %s", case_id) == [(3,)]
    wait_for(lambda: owner_rows(stack, "select count(*) from case_notices where case_id = %s and kind = 'dispatched'",
                                case_id) == [(3,)], 5, "each offer told to its terminal")


def test_the_console_offers_the_chosen_case_to_candidate_one_with_the_enter_key(stack, city, placed, cases_settings,
                                                                               dashboard, page,
                                                                               redis_client_module):
    grid, lat, lon, members = placed
    _stand(redis_client_module, grid, lat, lon, members)  # fresh fixes: available means located just now
    case_id = _case_at(stack, cases_settings, grid, lat, lon)
    conn = psycopg2.connect(cases_settings.pg_dsn)
    try:
        with conn, conn.cursor() as cur:                  # registered, as a dispatcher would have
            case = store.load(cur, case_id)
            rules = store.load_rules(cur)
            outcome = apply(case, Register(), Actor(ActorKind.USER, "t-dispatcher", frozenset({"dispatcher"}), ""),
                            datetime.now(timezone.utc), rules)
            store.save(cur, outcome.case, rules)
            store.add_events(cur, outcome.events)
    finally:
        conn.close()
    ensure_logins(stack.settings().pg_dsn)
    sign_in(page, dashboard.url, "t-dispatcher")
    page.goto(f"{dashboard.url}/dispatch")
    row = page.locator(f".dispatch-case[id*='{case_id}']")
    row.wait_for()
    assert "to dispatch" in row.inner_text()
    row.click()
    page.wait_for_selector("#dispatch-cand-1 .dispatch-offer-button")
    first = page.inner_text("#dispatch-cand-1")
    assert members[0].name in first and "same grid" in first
    page.keyboard.press("Enter")
    wait_for(lambda: "offered" in page.inner_text("#dispatch-result"), 10, "the offer confirmed in place",
             explain=lambda: page.inner_text("#dispatch-result"))
    assert owner_rows(stack, "select state, handler from cases where case_id = %s", case_id) == [
        ("dispatched", members[0].terminal_id)]
    assert owner_rows(stack, "select offered_by, rank from case_offers where case_id = %s", case_id) == [
        ("t-dispatcher", 1)]
    wait_for(lambda: "offered to" in row.inner_text(), 10, "the queue shows the offer live")
    page.locator(".dispatch-withdraw").wait_for()               # the panel follows: the offer can be withdrawn
    page.click(".dispatch-withdraw")
    wait_for(lambda: owner_rows(stack, "select state, handler from cases where case_id = %s", case_id)
             == [("registered", None)], 10, "the offer withdrawn")
    assert owner_rows(stack, "select outcome from case_offers where case_id = %s", case_id) == [("withdrawn",)]
    wait_for(lambda: "to dispatch" in row.inner_text(), 10, "back in the queue, live")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "dispatch-console.png"))
    assert page.errors == []


@contextmanager
def _offered_while_away(stack, city, cases_settings, grid, role: Role, policy: OfferPolicy):
    """A terminal that subscribed to its notices and went offline (the broker keeps its session),
    a registered case of its grid offered to it through the screens' command path, with a notifier
    running: yields (commands, rules, case_id, handler) once the offer is handed to the broker."""
    handler = next(m for m in city.members if m.grid_code == grid.code and m.role is role)
    account = stack.account(handler.terminal_id)
    away = MqttProbe(stack.mosquitto.port, account.username, account.password, session_expiry=3600)
    assert away.subscribe(terminal_topic(handler.terminal_id, NOTICE)) == "Granted QoS 1"
    away.close()                                          # in a lift, out of signal
    settings = stack.app_settings("dashboard")
    client = settings.redis_client(socket_timeout=5)
    ctx = Commands(city, client, settings.pg_dsn, producer="test-offers-away")
    rules = CaseRules(ctx, policy=policy)
    case_id = _reported_case(stack, cases_settings, grid.code)
    sender_account = stack.account("cases")
    sender = Notifier(cases_settings.pg_dsn, "127.0.0.1", stack.mosquitto.port, sender_account.username,
                      sender_account.password, policy=policy)
    thread = threading.Thread(target=sender.run, daemon=True)
    thread.start()
    try:
        assert ctx.execute(DISPATCHER, CaseAction(case_id, Register(), rules)).ok
        assert ctx.execute(DISPATCHER, CaseAction(case_id, Dispatch(handler.terminal_id, grid.code), rules)).ok
        wait_for(lambda: owner_rows(stack, "select count(*) from case_notices where case_id = %s and sent_at is not "
                                           "null", case_id) == [(1,)], 5, "the offer handed to the broker")
        yield ctx, rules, case_id, handler
    finally:
        sender.stop_event.set()
        thread.join(15)
        client.close()


def _back(stack, handler) -> list[CaseNotice]:
    """The terminal back online (its session resumed): the notices waiting for it."""
    account = stack.account(handler.terminal_id)
    back = MqttProbe(stack.mosquitto.port, account.username, account.password, clean_start=False,
                     session_expiry=3600)
    try:
        return [CaseNotice.parse(handler.terminal_id, m.payload) for m in back.received(5)
                if m.topic == terminal_topic(handler.terminal_id, NOTICE)]
    finally:
        back.close()


def test_an_offer_to_a_terminal_offline_expires_at_the_broker_with_the_offer(stack, city, cases_settings):
    with _offered_while_away(stack, city, cases_settings, city.grids[124], Role.GRID_COORDINATOR,
                             OfferPolicy({"urgent": 1.5, "normal": 1.5})) as (ctx, rules, case_id, handler):
        [(expires,)] = owner_rows(stack, "select expires_at from case_offers where case_id = %s", case_id)
        # The one wait on the wall clock: Mosquitto drops an expired message on its own clock, in whole
        # seconds (up to a second after its expiry), and tells nobody; the broker was given the time the
        # offer had left, so past the offer's stored deadline and a second the broker's copy is gone.
        time.sleep(max(0.0, (expires - datetime.now(timezone.utc)).total_seconds()) + 1.0)
        assert ctx.execute(DISPATCHER, CaseAction(case_id, Return("dispatched by mistake"), rules)).ok
        wait_for(lambda: owner_rows(stack, "select count(*) from case_notices where case_id = %s and sent_at is not "
                                           "null", case_id) == [(2,)], 5, "the withdrawal handed to the broker")
        got = _back(stack, handler)
    assert [(n.kind, n.case_id) for n in got] == [(NoticeKind.WITHDRAWN, case_id)]   # the expired offer never came


def test_an_offer_to_a_terminal_briefly_offline_reaches_it_when_it_comes_back_within_the_offer(stack, city,
                                                                                                cases_settings):
    with _offered_while_away(stack, city, cases_settings, city.grids[125], Role.GRID_ADMINISTRATOR,
                             OfferPolicy({"urgent": 60.0, "normal": 60.0})) as (ctx, rules, case_id, handler):
        got = _back(stack, handler)                       # handed to the broker while offline; back within the minute
    assert [(n.kind, n.case_id) for n in got] == [(NoticeKind.DISPATCHED, case_id)]
    [notice] = got
    [(expires,)] = owner_rows(stack, "select expires_at from case_offers where case_id = %s", case_id)
    assert notice.deadline is not None and notice.state == "dispatched" and expires > datetime.now(timezone.utc)


def test_a_dispatcher_of_another_street_cannot_offer_this_streets_case(stack, city, placed, cases_settings):
    grid, lat, lon, members = placed
    settings = stack.app_settings("dashboard")
    ctx = Commands(city, None, settings.pg_dsn, producer="test-offers-scope")
    rules = CaseRules(ctx, policy=POLICY)
    case_id = _case_at(stack, cases_settings, grid, lat, lon)
    assert ctx.execute(DISPATCHER, CaseAction(case_id, Register(), rules)).ok
    here = grid.code[:9]
    far = next(s for s in city.streets if s.code != here)
    stranger = Identity("disp-far-street", frozenset({UserRole.DISPATCHER}), far.code)
    result = ctx.execute(stranger, CaseAction(case_id, Dispatch(members[0].terminal_id, grid.code, rank=1), rules))
    assert not result.ok and f"outside disp-far-street's scope {far.code}" in result.reason
    assert owner_rows(stack, "select outcome, target from audit_log where actor = %s and action = 'case.dispatch'",
                      stranger.user) == [("refused", f"case:{case_id}")]
    assert owner_rows(stack, "select state, handler from cases where case_id = %s", case_id) == [("registered", None)]
    assert owner_rows(stack, "select count(*) from case_offers where case_id = %s", case_id) == [(0,)]
    own = Identity("disp-this-street", frozenset({UserRole.DISPATCHER}), here)     # the street's own may
    assert ctx.execute(own, CaseAction(case_id, Dispatch(members[0].terminal_id, grid.code, rank=1), rules)).ok


def test_in_automatic_mode_the_engine_offers_a_registered_case_itself_and_leaves_the_other_categories(
        stack, city, placed, cases_settings, redis_client_module):
    grid, lat, lon, members = placed
    _stand(redis_client_module, grid, lat, lon, members)  # fresh fixes: available means located just now
    settings = stack.app_settings("dashboard")
    ctx = Commands(city, None, settings.pg_dsn, producer="test-offers-auto")
    rules = CaseRules(ctx, policy=POLICY)
    automatic, manual = _case_at(stack, cases_settings, grid, lat, lon), _case_at(stack, cases_settings, grid, lat, lon)
    # a category no other case of these tests has: the engine's pass offers this case and no other
    owner_rows(stack, "update cases set category = 'street_light' where case_id = %s returning 1", automatic)
    for case_id in (automatic, manual):
        assert ctx.execute(DISPATCHER, CaseAction(case_id, Register(), rules)).ok
    engine = Engine(cases_settings.pg_dsn, Intake(city), lambda cur: store.load_rules(cur), policy=POLICY,
                    pick=lambda cur, case, offered: first_available(redis_client_module, city, cur, case, offered,
                                                                    time.time(), LOOK),
                    automatic=frozenset({"street_light"}))
    _once(engine, cases_settings)
    [(terminal, by, rank, reason)] = owner_rows(stack, "select terminal_id, offered_by, rank, reason from case_offers "
                                                       "where case_id = %s", automatic)
    assert terminal in {m.terminal_id for m in members} and (by, rank) == ("automatic dispatch", 1)
    assert reason.startswith("automatic mode, #1: available")
    assert owner_rows(stack, "select state, handler from cases where case_id = %s", automatic) == [("dispatched",
                                                                                                    terminal)]
    assert owner_rows(stack, "select state from cases where case_id = %s", manual) == [("registered",)]
    assert owner_rows(stack, "select count(*) from case_offers where case_id = %s", manual) == [(0,)]
    assert engine.counts["offers_automatic"] == 1
    # returned by a dispatcher (the handler silent): the engine offers it again, to someone else
    assert ctx.execute(DISPATCHER, CaseAction(automatic, Return("the handler does not answer"), rules)).ok
    _once(engine, cases_settings)
    offers = owner_rows(stack, "select terminal_id, outcome, rank from case_offers where case_id = %s order by id",
                        automatic)
    assert [o[1:] for o in offers] == [("withdrawn", 1), (None, 2)] and offers[1][0] != terminal


def test_a_case_in_progress_is_reassigned_in_one_step_and_both_terminals_are_told(stack, city, placed,
                                                                                  cases_settings):
    grid, lat, lon, members = placed
    first, second = members[1], members[2]
    settings = stack.app_settings("dashboard")
    ctx = Commands(city, None, settings.pg_dsn, producer="test-offers-reassign")
    rules = CaseRules(ctx, policy=POLICY)
    case_id = _case_at(stack, cases_settings, grid, lat, lon)
    assert ctx.execute(DISPATCHER, CaseAction(case_id, Register(), rules)).ok
    assert ctx.execute(DISPATCHER, CaseAction(case_id, Dispatch(first.terminal_id, grid.code), rules)).ok
    same = ctx.execute(DISPATCHER, Reassign(case_id, Dispatch(first.terminal_id, grid.code), rules))
    assert not same.ok and "already theirs" in same.reason
    done = ctx.execute(DISPATCHER, Reassign(case_id, Dispatch(second.terminal_id, grid.code, rank=2), rules,
                                            reason="closer to the next job"))
    assert done.ok, done.reason
    assert owner_rows(stack, "select state, handler from cases where case_id = %s", case_id) == [
        ("dispatched", second.terminal_id)]
    assert owner_rows(stack, "select terminal_id, outcome from case_offers where case_id = %s order by id",
                      case_id) == [(first.terminal_id, "withdrawn"), (second.terminal_id, None)]
    assert [c for (c,) in owner_rows(stack, "select command from case_events where case_id = %s order by id",
                                     case_id)][-2:] == ["return", "dispatch"]
    assert owner_rows(stack, "select terminal_id, kind from case_notices where case_id = %s order by id",
                      case_id)[-2:] == [(first.terminal_id, "withdrawn"), (second.terminal_id, "dispatched")]
    assert owner_rows(stack, "select outcome from audit_log where actor = %s and action = 'case.reassign' "
                             "and target = %s order by id", DISPATCHER.user, f"case:{case_id}") == [
        ("refused",), ("done",)]


def test_the_notifier_sends_an_offer_before_a_backlog_of_other_notices(stack, city, cases_settings):
    grid = city.grids[126]
    case_id = _reported_case(stack, cases_settings, grid.code)
    now = datetime.now(timezone.utc)
    def body(kind: str) -> str:
        return orjson.dumps({"case_id": case_id, "kind": kind, "urgency": "normal", "state": "dispatched"}).decode()
    owner_rows(stack, "insert into case_notices (case_id, terminal_id, kind, time, body) select %s, 'T-NOBODY-' || n, "
                      "'escalated', %s, (%s)::jsonb from generate_series(1, 250) n returning 1",
               case_id, now, body("escalated"))                      # an escalation's notices, a big one
    [(offer,)] = owner_rows(stack, "insert into case_notices (case_id, terminal_id, kind, time, body) values "
                                   "(%s, 'T-NOBODY-X', 'dispatched', %s, %s) returning id", case_id, now,
                            body("dispatched"))
    account = stack.account("cases")
    sender = Notifier(cases_settings.pg_dsn, "127.0.0.1", stack.mosquitto.port, account.username, account.password)
    sender.client.connect("127.0.0.1", stack.mosquitto.port)
    sender.client.loop_start()
    conn = psycopg2.connect(cases_settings.pg_dsn)
    try:
        assert sender.connected.wait(10)
        sent, more = sender.send_outbox(conn, sender.outboxes[0])       # one batch of 200
        assert (sent, more) == (200, True)
        assert owner_rows(stack, "select sent_at is not null from case_notices where id = %s", offer) == [(True,)]
        [(left,)] = owner_rows(stack, "select count(*) from case_notices where case_id = %s and sent_at is null",
                               case_id)
        assert left >= 51                     # older notices wait (with any other test's still unsent)
    finally:
        owner_rows(stack, "update case_notices set sent_at = now() where case_id = %s and sent_at is null "
                          "returning 1", case_id)
        conn.close()
        sender.client.loop_stop()
        sender.client.disconnect()

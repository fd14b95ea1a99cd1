"""The dashboard's login throttle against the real PostgreSQL, the time injected: guessing at a
username slows that (username, address) pair down and then its address, never the owner signing in
from their own address; an attempt is counted before its password is verified, so guesses sent at
once cannot outrun the budget; an unknown username is throttled like a known one."""
from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from dashboard.accounts import Accounts, Policy

from .screens import TEST_PASSWORD, ensure_logins

pytestmark = pytest.mark.slow
POLICY = Policy()


@pytest.fixture
def accounts(stack):
    accounts = Accounts(stack.settings().pg_dsn, POLICY, pool_size=16)
    yield accounts
    accounts.close()


@pytest.fixture
def victim(stack):
    username = f"t-owner-{uuid.uuid4().hex[:6]}"
    ensure_logins(stack.settings().pg_dsn, {username: ("leader", "")})
    return username


def _start() -> datetime:
    """A moment of this test's own, far from any other test's counts."""
    return datetime.now(timezone.utc) + timedelta(days=1)


def test_guesses_from_one_address_do_not_lock_the_owner_out_from_theirs(accounts, victim):
    now = _start()
    answers = [accounts.login(victim, f"guess-{i}", "198.51.100.66", "attacker", now + timedelta(seconds=i)).reason
               for i in range(30)]
    owner = accounts.login(victim, TEST_PASSWORD, "192.0.2.10", "owner", now + timedelta(seconds=31))
    assert owner.ok, owner.reason
    assert answers.count("wrong password") == POLICY.failures_per_pair       # then slowed down, not verified
    slowed = accounts.login(victim, TEST_PASSWORD, "198.51.100.66", "attacker", now + timedelta(seconds=32))
    assert not slowed.ok and slowed.reason.startswith("slowed down")          # the pair waits, even when right


def test_guesses_sent_at_once_are_counted_before_any_is_verified(accounts, victim):
    now = _start()
    gate = threading.Barrier(12)
    reasons: list[str] = []

    def guess(i: int) -> None:
        gate.wait()
        reasons.append(accounts.login(victim, f"parallel-{i}", "198.51.100.77", "attacker", now).reason)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(reasons) == 12
    assert reasons.count("wrong password") <= POLICY.failures_per_pair, reasons   # verified at most the budget


def test_a_pair_past_its_budget_waits_twice_as_long_after_each_guess(accounts, victim):
    now = _start()
    address = "198.51.100.88"
    for i in range(POLICY.failures_per_pair):
        assert accounts.login(victim, f"guess-{i}", address, "t", now).reason == "wrong password"
    delay = POLICY.pair_delay
    for _ in range(3):
        assert accounts.login(victim, "early", address, "t", now + delay - timedelta(seconds=1)).reason \
            .startswith("slowed down")
        now += delay
        assert accounts.login(victim, "guess", address, "t", now).reason == "wrong password"
        delay *= 2
    assert accounts.login(victim, TEST_PASSWORD, address, "t", now + delay).ok     # the owner after the wait
    again = [accounts.login(victim, f"more-{i}", address, "t", now + delay).reason
             for i in range(POLICY.failures_per_pair)]
    assert again == ["wrong password"] * POLICY.failures_per_pair              # a success starts the pair over


def test_an_address_guessing_at_many_usernames_is_refused_and_only_it(accounts, victim):
    now = _start()
    for i in range(POLICY.failures_per_address):
        assert accounts.login(f"nobody-{uuid.uuid4().hex[:6]}", "x", "203.0.113.50", "t",
                              now + timedelta(seconds=i)).reason == "no such user"
    refused = accounts.login(victim, TEST_PASSWORD, "203.0.113.50", "t", now + timedelta(seconds=60))
    assert not refused.ok and refused.reason == "slowed down (address)"
    assert accounts.login(victim, TEST_PASSWORD, "203.0.113.51", "t", now + timedelta(seconds=61)).ok
    later = now + POLICY.failure_window + timedelta(seconds=1)
    assert accounts.login(victim, TEST_PASSWORD, "203.0.113.50", "t", later).ok      # the window passed


def test_guesses_spread_over_many_addresses_stop_at_the_usernames_budget_but_not_the_owners_address(accounts,
                                                                                                  victim):
    now = _start()
    assert accounts.login(victim, TEST_PASSWORD, "192.0.2.20", "owner", now).ok       # the owner's own address
    for i in range(POLICY.failures_per_user):
        assert accounts.login(victim, "guess", f"10.66.{i // 250}.{i % 250}", "botnet",
                              now + timedelta(seconds=1)).reason == "wrong password"
    stranger = accounts.login(victim, TEST_PASSWORD, "10.67.0.1", "new laptop", now + timedelta(seconds=2))
    assert not stranger.ok and stranger.reason == "slowed down (user)"
    assert accounts.login(victim, TEST_PASSWORD, "192.0.2.20", "owner", now + timedelta(seconds=3)).ok


def test_an_unknown_username_is_slowed_down_like_a_known_one(accounts, victim):
    now = _start()
    ghost = f"ghost-{uuid.uuid4().hex[:6]}"
    for name in (victim, ghost):
        reasons = [accounts.login(name, "guess", "198.51.100.99", "t", now).reason
                   for _ in range(POLICY.failures_per_pair + 1)]
        assert reasons[-1] == "slowed down (pair)"

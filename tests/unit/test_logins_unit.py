"""Pieces of the logins that need no servers: the scope a request asks for, the audit trail's
filter and export cells, the proxies the dashboard believes."""
from __future__ import annotations

from datetime import date

import pytest
from flask import Flask, request

from core.roles import EVERYONE
from dashboard.auth import trust_proxies
from dashboard.authz import Identity, asked_scope
from dashboard.pages.audit import _change
from dashboard.pages.export import cell as _cell
from dashboard.queries import AuditFilter

STREET = Identity("ana", EVERYONE, "350102001")


def test_no_scope_asked_is_the_identitys_own_and_an_asked_one_is_taken_as_asked():
    assert asked_scope(STREET, {}) == "350102001"
    assert asked_scope(STREET, {"scope": ""}) == "350102001"        # never the whole city by omission
    assert asked_scope(STREET, {"scope": "350102002"}) == "350102002"   # authorize refuses it, visibly
    assert asked_scope(Identity("city", EVERYONE), {}) == ""
    assert asked_scope(None, {}) == ""


def test_the_audit_filter_defaults_to_the_last_seven_days_and_says_what_is_wrong():
    today = date(2026, 12, 1)
    wanted = AuditFilter.from_params({}, today)
    assert (wanted.first_day, wanted.last_day) == (date(2026, 11, 25), today)
    assert AuditFilter.from_params({"from": "2026-11-01", "to": "2026-11-03", "outcome": "refused",
                                    "actor": "  ana "}, today).params() == \
        {"from": "2026-11-01", "to": "2026-11-03", "outcome": "refused", "actor": "ana"}
    for params, said in [({"from": "yesterday"}, "is not a day"), ({"from": "2026-11-05", "to": "2026-11-01"},
                                                                   "starts"),
                         ({"from": "2024-01-01"}, "at most"), ({"outcome": "maybe"}, "not an outcome")]:
        with pytest.raises(ValueError, match=said):
            AuditFilter.from_params(params, today)


def test_an_exported_cell_never_runs_as_a_spreadsheet_formula():
    assert _cell("=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")"
    assert [_cell(v) for v in ("+1", "-1", "@SUM(A1)", "ana", None, ["dispatcher"])] == \
        ["'+1", "'-1", "'@SUM(A1)", "ana", "", '["dispatcher"]']


def test_a_change_reads_field_old_to_new():
    assert _change({"disabled": False}, {"disabled": True}) == "disabled: false → true"
    assert _change(None, {"role": "leader", "scope_code": ""}) == "role: leader; scope_code: "
    assert _change(None, None) == ""


@pytest.mark.parametrize("hops, forwarded, seen", [(0, "203.0.113.7", "127.0.0.1"), (1, "203.0.113.7", "203.0.113.7"),
                                                   (1, "198.51.100.1, 203.0.113.7", "203.0.113.7")])
def test_the_dashboard_believes_as_many_proxies_as_it_is_told_and_no_more(hops, forwarded, seen):
    server = Flask(__name__)
    server.add_url_rule("/who", view_func=lambda: f"{request.remote_addr} {request.scheme} {request.host}")
    trust_proxies(server, hops)
    answer = server.test_client().get("/who", headers={"X-Forwarded-For": forwarded, "X-Forwarded-Proto": "https",
                                                       "X-Forwarded-Host": "cc.example"},
                                      environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_data(as_text=True)
    address, scheme, host = answer.split()
    assert address == seen
    assert (scheme, host) == (("https", "cc.example") if hops else ("http", "localhost"))


# --- the login throttle's rule (dashboard.accounts.reserve), without a database -------------------------
def _budgets(now, pair=0, address=0, user=0, wait=None):
    from dashboard.accounts import Budget

    return Budget(pair, now, wait), Budget(address, now), Budget(user, now)


def test_a_pairs_free_attempts_then_a_wait_that_doubles_up_to_the_most():
    from datetime import datetime, timedelta, timezone

    from dashboard.accounts import Policy, reserve

    policy, now = Policy(failures_per_pair=2, pair_delay=timedelta(seconds=10), pair_delay_max=timedelta(seconds=35)), \
        datetime(2026, 12, 1, tzinfo=timezone.utc)
    budgets, waits = _budgets(now), []
    for _ in range(5):
        refused, budgets = reserve(*budgets, lambda: False, policy, now)
        assert refused is None
        waits.append(budgets[0].wait_until and (budgets[0].wait_until - now).total_seconds())
        now = budgets[0].wait_until or now
    assert waits == [None, 10, 20, 35, 35]
    assert reserve(*budgets, lambda: False, policy, now - timedelta(seconds=1))[0] == "pair"


def test_a_refused_attempt_is_not_counted_and_the_usernames_budget_lets_its_known_addresses_through():
    from datetime import datetime, timezone

    from dashboard.accounts import Policy, reserve

    policy, now = Policy(failures_per_address=3, failures_per_user=4), datetime(2026, 12, 1, tzinfo=timezone.utc)
    full_address = _budgets(now, address=3)
    assert reserve(*full_address, lambda: True, policy, now) == ("address", full_address)
    full_user = _budgets(now, user=4)
    assert reserve(*full_user, lambda: False, policy, now) == ("user", full_user)
    refused, counted = reserve(*full_user, lambda: True, policy, now)          # the owner's own address
    assert refused is None and [b.attempts for b in counted] == [1, 1, 5]
    later = now + policy.failure_window
    assert reserve(*_budgets(now, address=3, user=4), lambda: False, policy, later)[0] is None   # a new window


def test_an_ipv6_guesser_is_one_source_for_its_whole_64_and_an_ipv4_mapped_address_is_its_ipv4():
    """A line or host is given a whole /64: keyed by the full address, every guess would come from a
    fresh source with a fresh budget."""
    from core.sources import throttle_source
    from dashboard.accounts import throttle_keys

    assert throttle_source("2001:db8:1:2::1") == throttle_source("2001:db8:1:2:ffff:ffff:ffff:ffff") \
        == "2001:db8:1:2::/64"
    assert throttle_source("2001:db8:1:3::1") != throttle_source("2001:db8:1:2::1")
    assert throttle_source("::ffff:192.0.2.7") == "192.0.2.7" == throttle_source("192.0.2.7")
    assert throttle_source("?") == "?"
    assert throttle_keys("ana", "2001:db8::1")[:2] == throttle_keys("ana", "2001:db8::beef")[:2]

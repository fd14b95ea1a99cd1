"""Case states, roles, audit action keys and org-code containment are each spelled in one place (core):
the enum beside its labels, one SQL function for containment (migration 0026). A grep of the code
finds no second spelling: no SQL or browser code compares a state with a literal, no writer spells
an audit action's key, and no query builds a prefix pattern of an org code."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from core.catalogue import ACTION_LABELS, CASE_STATE_LABELS, AuditAction, CaseState
from core.roles import Role, UserRole

REPO_ROOT = Path(__file__).resolve().parents[2]
STATES = "|".join(s.value for s in CaseState)
OWNERS = ("core/catalogue.py", "database/migrations/", "tests/")


def _grep(pattern: str, *globs: str) -> list[str]:
    found = subprocess.run(["git", "grep", "-n", "-I", "-P", pattern, "--", *globs], cwd=REPO_ROOT,
                           capture_output=True, text=True).stdout.splitlines()
    return [line for line in found if not line.startswith(OWNERS)]


def test_every_case_state_and_audit_action_has_its_label():
    assert set(CASE_STATE_LABELS) == set(CaseState)
    assert set(ACTION_LABELS) == set(AuditAction)
    assert CASE_STATE_LABELS["closed"] is CaseState.CLOSED.label           # a stored value finds its label
    assert ACTION_LABELS["case.register"] is AuditAction.of_case("register").label


def test_the_cases_check_constraint_lists_the_enums_states():
    schema = (REPO_ROOT / "database" / "migrations" / "0009_cases.sql").read_text()
    listed = re.search(r"state\s+text\s+not null check \(state in \(([^)]*)\)\)", schema)[1]
    assert set(re.findall(r"'([a-z]+)'", listed)) == {s.value for s in CaseState}


def test_no_query_or_script_compares_a_case_state_with_a_literal():
    sql = _grep(rf"\b(state|to_state|from_state)\s*(=|<>|!=|\bin\b|\bnot in\b)\s*\(?\s*'({STATES})'", "*.py")
    browser = _grep(rf"state\s*[!=]==\s*\"({STATES})\"|new Set\(\[\s*\"({STATES})\"", "*.js")
    assert sql == [] and browser == []


def test_no_writer_spells_an_audit_action_key():
    keys = "|".join(re.escape(a.value) for a in AuditAction)
    assert _grep(rf"[\"']({keys})[\"']", "*.py", "*.js") == []


def test_no_query_builds_a_prefix_pattern_of_an_org_code():
    """Containment is org_contains(scope, code) in SQL and core.orgcodes.contains in Python."""
    assert _grep(r"_code\s+like\b|like\s+\S+\s*\|\|\s*'%'", "*.py", "*.sql") == []


def test_no_code_spells_a_role():
    """Roles are core.roles.Role (a member's) and UserRole (a login's); an Actor carries their values.
    The demo logins' usernames happen to be role words ("dispatcher", "leader"): those are names."""
    roles = "|".join(r.value for r in (*Role, *UserRole) if r is not UserRole.ADMIN)   # "admin" also names a section
    found = _grep(rf"[\"']({roles})[\"']", "*.py", "*.js")
    assert [line for line in found if not line.startswith(("core/roles.py", "simulator/logins.py"))] == []

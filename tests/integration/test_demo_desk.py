"""The demo desk as `make demo` runs it: its own process (`python -m simulator.desk`), with the cases
engine's database role, acting through the parts the engine is built from (casework.build) — the
engine, production code, no longer runs it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import datetime, timezone

import psycopg2
import pytest

from cases import store
from cases.intake import INTAKE
from cases.limits import Urgency
from cases.machine import open_case
from cases.model import Source
from config.settings import REPO_ROOT

from ..support import wait_for
from .ingest_helpers import owner_rows
from .test_cases_engine import seeded

pytestmark = pytest.mark.slow
SCALE = 1e-4     # a stage's limit a fraction of a second: the desk's moment to act has come at its next pass


def _reported(settings, grid_code: str) -> str:
    conn = psycopg2.connect(settings.pg_dsn)
    try:
        with conn, conn.cursor() as cur:
            rules = store.load_rules(cur, time_scale=SCALE)
            t = datetime.now(timezone.utc)
            case_id = store.next_case_id(cur, t)
            outcome = open_case(case_id, "exposed_garbage", Urgency.NORMAL, Source.REPORT, grid_code, grid_code,
                                INTAKE, t, rules, title="Exposed garbage", place="Gate 3")
            store.insert(cur, outcome.case, rules)
            store.add_events(cur, outcome.events)
    finally:
        conn.close()
    return case_id


def test_the_desk_process_registers_and_dispatches_a_report_as_the_demo_desk(stack, city, tmp_path):
    settings = seeded(stack)
    case_id = _reported(settings, city.grids[9].code)
    env = {**os.environ, **stack.app_env("cases"), "GCC_CASES_TIME_SCALE": str(SCALE)}
    with open(tmp_path / "desk.log", "ab") as log:
        desk = subprocess.Popen([sys.executable, "-m", "simulator.desk"], cwd=REPO_ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            done = wait_for(lambda: owner_rows(stack, "select command, actor from case_events where case_id = %s "
                                                      "and command = 'dispatch'", case_id), 30,
                            "the desk's dispatch", explain=lambda: (tmp_path / "desk.log").read_text()[-2000:])
        finally:
            desk.send_signal(signal.SIGTERM)
            assert desk.wait(20) == 0                        # a stop signal ends its pass and the process
    assert done == [("dispatch", "demo desk")]
    acted = owner_rows(stack, "select command, actor from case_events where case_id = %s and actor = 'demo desk' "
                              "order by id", case_id)
    assert [command for command, _ in acted][:2] == ["register", "dispatch"]

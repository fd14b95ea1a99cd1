"""The moved-out deletion job of the cases engine (casework.moved_out) against the real database, as
the engine's own role (gcc_cases: least privilege) and with an injected day (no waiting): it deletes
only the residents who moved out more than the keeping period ago, once; a second run the same day
is not due and a run forced again deletes nothing; the next days delete each resident when their
period ends; a run that cannot reach the database is logged and leaves the engine running.

Moved-out dates in 1958 keep other tests' residents (1970) out of these runs."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import urllib.request
from datetime import date, timedelta

import pytest

from casework import moved_out
from casework.moved_out import JOB, MovedOutDeletion
from config.settings import REPO_ROOT
from core.ledger import ChangeAction, Channel, RecordKind, Relation
from ledger import store
from stack import free_port

from ..support import wait_for
from .test_ledger_store import a_house, a_resident, conn, plot, remove_plot, sealer  # noqa: F401 (fixtures)

KEEP_DAYS = 90


@pytest.fixture
def residents(conn, plot, sealer):  # noqa: F811 (the fixtures imported above)
    """Three residents of our own plot: moved out 1958-02-01, moved out 1958-09-01, still living there."""
    with conn, conn.cursor() as cur:
        household = store.add_household(cur, a_house(cur, plot), plot.actor())
        ids = []
        for n, out in enumerate((date(1958, 2, 1), date(1958, 9, 1), None)):
            relation = Relation.HEAD if n == 0 else Relation.CHILD
            rid = store.add_resident(cur, sealer, a_resident(plot, household, relation=relation,
                                                             moved_in=date(1950, 1, 1)), plot.actor())
            if out is not None:
                store.move_out(cur, rid, out, plot.actor())
            ids.append(rid)
    yield ids
    with conn, conn.cursor() as cur:
        cur.execute("delete from ledger_changes where changed_by = %s and record_id = any(%s)",
                    (JOB.who, [str(i) for i in ids]))
        cur.execute("delete from ledger_changes where record_kind = %s and changed_by = %s and record_id in "
                    "(select household_id::text from households join houses using (house_id) where building_id = %s)",
                    (RecordKind.HOUSEHOLD.value, JOB.who, plot.building_id))
        remove_plot(cur, plot)


def _left(db, ids: list[int]) -> list[int]:
    with db, db.cursor() as cur:
        cur.execute("select resident_id from residents where resident_id = any(%s) order by resident_id", (ids,))
        return [r for (r,) in cur.fetchall()]


def _engine_dsn(stack) -> str:
    return stack.app_settings("cases").pg_dsn


def test_the_job_deletes_only_those_past_the_keeping_period_once_a_day(conn, residents, stack):  # noqa: F811
    day = {"today": date(1958, 11, 15)}          # 1958-02-01 is past 90 days, 1958-09-01 is not
    job = MovedOutDeletion(_engine_dsn(stack), KEEP_DAYS, today=lambda: day["today"])
    early, late, staying = residents
    assert job.step() == 1
    assert _left(conn, residents) == [late, staying]
    assert job.step() is None                    # the same day: not due again
    assert moved_out.run_once(_engine_dsn(stack), KEEP_DAYS, day["today"]) == 0   # forced: nothing more
    day["today"] = date(1958, 11, 16)
    assert job.step() == 0 and job.last_day == date(1958, 11, 16)
    day["today"] = date(1958, 9, 1) + timedelta(days=KEEP_DAYS + 1)
    assert job.step() == 1
    assert _left(conn, residents) == [staying]
    assert job.deleted == 2
    with conn, conn.cursor() as cur:
        cur.execute("select record_id, channel from ledger_changes where changed_by = %s and action = %s "
                    "and record_id = any(%s) order by change_id",
                    (JOB.who, ChangeAction.DELETE.value, [str(i) for i in residents]))
        assert cur.fetchall() == [(str(early), Channel.JOB.value), (str(late), Channel.JOB.value)]


def test_the_cutoff_keeps_a_resident_through_the_last_day_of_the_period():
    assert moved_out.cutoff(date(2026, 12, 31), 365) == date(2025, 12, 31)   # moved out that day: kept today


def test_a_run_that_cannot_reach_the_database_is_logged_and_does_not_stop_the_job(caplog):
    job = MovedOutDeletion("host=127.0.0.1 port=1 dbname=nothing connect_timeout=2", KEEP_DAYS,
                           today=lambda: date(1958, 11, 15))
    with caplog.at_level(logging.ERROR, logger="cases.moved_out"):
        assert job.step() is None
    assert job.last_day is None and job.deleted == 0
    assert "the moved-out deletion failed" in caplog.text


def test_the_cases_engine_runs_the_job_at_its_start_and_counts_it(residents, conn, stack, tmp_path):  # noqa: F811
    """`python -m casework` as deployed (its own role): the job runs at the start, logs its count,
    and /metrics says how many it deleted (a keeping period of 3650 days: our 1958 residents go)."""
    port = free_port()
    env = {**os.environ, **stack.app_env("cases", stack.account("cases")), "GCC_CASES_METRICS_PORT": str(port),
           "GCC_LEDGER_MOVED_OUT_KEEP_DAYS": "3650"}
    log_path = tmp_path / "cases.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "casework"], cwd=REPO_ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "moved-out deletion for" in log_path.read_text(errors="replace"), 60,
                 "the engine's first run of the job", explain=lambda: log_path.read_text(errors="replace")[-2000:])
        assert _left(conn, residents) == [residents[2]]
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        counted = [line for line in metrics.splitlines() if line.startswith("gcc_cases_moved_out_deleted_total")]
        assert counted and float(counted[0].split()[-1]) >= 2
    finally:
        proc.terminate()
        proc.wait(20)

"""The members' dispatch status over time: every change recorded with its cause (`member_status`).

The status itself is derived where it is needed (dispatch/status.py: from the terminal's live
state in Redis, the member's open cases and the duty roster), so the console and the engine never
wait for a history. The history is the cases engine's: `StatusRecorder.once` computes every
member's status as the console would, and writes a row for each member whose status differs from
the last one recorded (the causes that only count time, "no fix for 5 min", are not changes).
It runs every `every_s` (10 s), so a change is recorded within that; the first pass after a start
takes the last recorded status of each member from the table, so a restart adds no rows.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone

import psycopg2
from psycopg2.extras import execute_values

from cases import listening
from core.city import City
from dispatch.candidates import open_work
from dispatch.roster import RosterCache
from dispatch.roster import load as load_roster
from dispatch.status import FRESH_S, Status, status_of
from telemetry.live import read_whereabouts

log = logging.getLogger(__name__)
EVERY_S = 10.0


class StatusRecorder:
    def __init__(self, dsn: str, r, city: City, stop_event: threading.Event | None = None, every_s: float = EVERY_S,
                 fresh_s: float = FRESH_S) -> None:
        self.dsn, self.r, self.city = dsn, r, city
        self.stop_event = stop_event or threading.Event()
        self.every_s, self.fresh_s = every_s, fresh_s
        self.roster = RosterCache()
        self.last: dict[str, str] | None = None      # terminal -> the status last recorded
        self.recorded = 0

    def run(self) -> None:
        listening.keep_running(self._loop, self.stop_event, "the member status recorder")

    def _loop(self) -> None:
        conn = psycopg2.connect(self.dsn, application_name="gcc-cases-status")
        try:
            while not self.stop_event.is_set():
                started = time.monotonic()
                self.once(conn)
                self.stop_event.wait(max(0.0, self.every_s - (time.monotonic() - started)))
        finally:
            conn.close()

    def once(self, conn, now: float | None = None) -> list[tuple[str, Status]]:
        """One pass: the statuses that changed since the last recorded, written (and returned)."""
        now = time.time() if now is None else now
        at = datetime.fromtimestamp(now, timezone.utc)
        terminals = [m.terminal_id for m in self.city.members]
        lives = {t.terminal_id: t for t in read_whereabouts(self.r, terminals, now)}
        with conn, conn.cursor() as cur:
            if self.last is None:
                cur.execute("select distinct on (terminal_id) terminal_id, status from member_status "
                            "order by terminal_id, time desc")
                self.last = dict(cur.fetchall())
            work = open_work(cur)
            today = self.roster.today(at, lambda day: load_roster(cur, day))
            changed = []
            for terminal_id in terminals:
                status = status_of(lives.get(terminal_id), work.get(terminal_id, []), now, self.fresh_s,
                                   today.on_duty(terminal_id, at))
                if self.last.get(terminal_id) != status.status.value:
                    changed.append((terminal_id, status))
            if changed:
                execute_values(cur, "insert into member_status (time, terminal_id, status, cause, workload) "
                                    "values %s on conflict do nothing",
                               [(at, t, s.status.value, s.cause, s.workload) for t, s in changed], page_size=1000)
        for terminal_id, status in changed:             # committed: now they are the last recorded
            self.last[terminal_id] = status.status.value
        self.recorded += len(changed)
        return changed

"""The moved-out deletion job (issue 26, PIPL: kept no longer than needed): once a day the cases
engine deletes every resident who moved out more than `ledger_moved_out_keep_days` ago, with their
tags and the personal data of their history (ledger.store.delete_moved_out, one set-based
statement in one transaction), as the job `moved-out deletion` on the `Channel.JOB` channel.

Idempotent by construction: a resident deleted is gone, so a second run the same day (or after a
restart, which runs it again at once) deletes nothing more. Each run logs its count; a failing run
(the database away) is logged and tried again after `RETRY_S`, never taking the engine down. The
day is the city's (core.city.CITY_TZ) and comes from an injectable clock, so a test runs "the day
after" without waiting.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import closing
from datetime import date, datetime, timedelta

import psycopg2

from core.city import CITY_TZ
from core.ledger import Channel
from ledger.model import Actor
from ledger.store import delete_moved_out

log = logging.getLogger("cases.moved_out")
JOB = Actor("moved-out deletion", Channel.JOB)
CHECK_EVERY_S = 600.0     # how often the thread looks whether a new day has come
RETRY_S = 300.0           # after a failed run


def today_in_city() -> date:
    return datetime.now(CITY_TZ).date()


def cutoff(today: date, keep_days: int) -> date:
    """Residents who moved out before this day are past their keeping (moved out `keep_days` ago
    or more is kept through that day, deleted the day after)."""
    return today - timedelta(days=keep_days)


def run_once(dsn: str, keep_days: int, today: date) -> int:
    """One run of the job for `today`: how many residents it deleted (in one transaction)."""
    with closing(psycopg2.connect(dsn, application_name="gcc-cases-moved-out", connect_timeout=10)) as conn, \
            conn, conn.cursor() as cur:
        return delete_moved_out(cur, cutoff(today, keep_days), JOB)


class MovedOutDeletion:
    """The thread: runs the job at its start and then once each new day (see the module)."""

    def __init__(self, dsn: str, keep_days: int, stop_event: threading.Event | None = None,
                 today: Callable[[], date] = today_in_city, check_every_s: float = CHECK_EVERY_S) -> None:
        self.dsn = dsn
        self.keep_days = keep_days
        self.stop_event = stop_event or threading.Event()
        self.today = today
        self.check_every_s = check_every_s
        self.last_day: date | None = None     # the day of the last successful run
        self.deleted = 0                      # residents deleted since the start (the engine's /metrics)

    def step(self) -> int | None:
        """Run the job if it has not run successfully today: the count deleted, or None (not due,
        or failed: logged, tried again later)."""
        day = self.today()
        if self.last_day == day:
            return None
        try:
            deleted = run_once(self.dsn, self.keep_days, day)
        except Exception:  # noqa: BLE001 (any failure: logged, the engine goes on, tried again)
            log.exception("the moved-out deletion failed; trying again in %.0f s", RETRY_S)
            return None
        self.last_day = day
        self.deleted += deleted
        log.info("moved-out deletion for %s: %d residents who moved out before %s deleted", day, deleted,
                 cutoff(day, self.keep_days))
        return deleted

    def run(self) -> None:
        while not self.stop_event.is_set():
            ran = self.step()
            failed = ran is None and self.last_day != self.today()
            self.stop_event.wait(RETRY_S if failed else self.check_every_s)

"""The shape both of the cases process's loops share (the engine, the notifier): a connection to
work on and one that LISTENs, a sleep that a NOTIFY cuts short, and a loop that starts again on
fresh connections after a failure (all their state is in PostgreSQL)."""
from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions

log = logging.getLogger(__name__)
RETRY_S = 5.0


@contextmanager
def work_and_listen(dsn: str, name: str, channels: tuple[str, ...]) -> Iterator[tuple[object, object]]:
    """(a connection to work on, one listening on `channels`), both closed at the end."""
    conn = listener = None
    try:
        conn = psycopg2.connect(dsn, application_name=name)
        listener = psycopg2.connect(dsn, application_name=f"{name}-listen")
        listener.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
        with listener.cursor() as cur:
            cur.execute("; ".join(f"listen {channel}" for channel in channels))
        yield conn, listener
    finally:
        for connection in (conn, listener):
            if connection is not None:
                connection.close()


def sleep(listener, seconds: float, stop_event: threading.Event) -> bool:
    """Up to `seconds`: True if a notification cut it short, False when the time ran out (or stop)."""
    until = time.monotonic() + seconds
    while not stop_event.is_set() and (left := until - time.monotonic()) > 0:
        if select.select([listener], [], [], min(left, 0.5))[0]:
            listener.poll()
            listener.notifies.clear()
            return True
    return False


def keep_running(loop: Callable[[], None], stop_event: threading.Event, what: str) -> None:
    """`loop()` until stopped; a failure (the database restarting, a bug) is logged, and after a
    pause it starts again."""
    while not stop_event.is_set():
        try:
            loop()
        except Exception:
            log.exception("%s failed; starting again in %.0f s", what, RETRY_S)
            stop_event.wait(RETRY_S)

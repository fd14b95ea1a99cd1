"""A connection pool that keeps its connections and waits for a free one instead of refusing.

Two things psycopg2's ThreadedConnectionPool does that a server must not:
- it **closes a connection given back** whenever `minconn` connections are already idle, so a pool
  made with `minconn=0` (connections opened only when needed) opens a new server connection, a
  forked PostgreSQL backend, for every `getconn`: bench/handheld_bench.py at 1,000 phones found
  a backend born and killed per request (25 % of the machine in system time), since every
  session lookup of the device-facing service borrowed one;
- it raises PoolError ("connection pool exhausted") the moment its `maxconn` connections are all
  lent out, so a server whose handler threads outnumber its pool fails requests that would have
  had a connection a few milliseconds later (the same bench saw downlink streams end and sign-ins
  answered 503 from 20 phones on).

`WaitingPool(minconn, maxconn, dsn, …)` opens `minconn` at once and the rest as they are needed,
and keeps every connection it has opened (up to `maxconn`). A thread waits up to `wait_s` for a
free connection, and only then gets PoolError, which the callers already answer (503
database_unavailable, with Retry-After). A kept connection the server has spoken on while it was
idle (a restarted or stopping server's termination notice, or its end of the socket closed) is
dropped when it is next lent, and a fresh one opened in its place: a restart of PostgreSQL costs
no request an error."""
from __future__ import annotations

import select
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg2
from psycopg2.pool import PoolError, ThreadedConnectionPool

WAIT_S = 10.0     # longer than any query of a request; shorter than a client's patience (30 s)


class WaitingPool(ThreadedConnectionPool):
    """ThreadedConnectionPool(minconn, maxconn, dsn, …) that keeps what it opens and whose
    `getconn` waits up to `wait_s` (see the module)."""

    def __init__(self, minconn: int, maxconn: int, *args, wait_s: float = WAIT_S, **kwargs) -> None:
        super().__init__(minconn, maxconn, *args, **kwargs)
        self.minconn = maxconn        # psycopg2 keeps a returned connection while fewer than this are idle
        self.wait_s = wait_s
        self._lendable = threading.BoundedSemaphore(maxconn)

    def getconn(self, key=None):
        if not self._lendable.acquire(timeout=self.wait_s):
            raise PoolError(f"connection pool exhausted (waited {self.wait_s:.0f} s)")
        try:
            conn = super().getconn(key)
            if _spoken_while_idle(conn):
                super().putconn(conn, key, close=True)
                conn = super().getconn(key)
            return conn
        except BaseException:
            self._lendable.release()
            raise

    def putconn(self, conn=None, key=None, close=False) -> None:
        try:
            super().putconn(conn, key, close)
        finally:
            self._lendable.release()


@contextmanager
def transaction(pool: ThreadedConnectionPool, unavailable: Callable[[], Exception]) -> Iterator:
    """A cursor in one transaction on a pooled connection, committed on leaving (rolled back if the
    block raises). No connection to be had, or the server gone meanwhile: `unavailable()` is raised
    (the caller's own refusal, e.g. a 503 with Retry-After), and a broken connection is dropped
    rather than given back."""
    try:
        conn = pool.getconn()
    except (PoolError, psycopg2.OperationalError):
        raise unavailable() from None
    broken = False
    try:
        with conn, conn.cursor() as cur:
            yield cur
    except psycopg2.OperationalError:
        broken = True          # the server restarted: drop this connection, the next one opens anew
        raise unavailable() from None
    finally:
        pool.putconn(conn, close=broken or bool(conn.closed))


def _spoken_while_idle(conn) -> bool:
    """An idle connection has nothing to read: something there (a termination notice, the end of
    the socket) means the server is done with it. A closed one is done too."""
    if conn.closed:
        return True
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)

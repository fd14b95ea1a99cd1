"""A connection pool that waits for a free connection instead of refusing at once.

psycopg2's ThreadedConnectionPool raises PoolError ("connection pool exhausted") the moment its
`maxconn` connections are all lent out. A server whose handler threads outnumber its pool (the
device-facing service: 64 handlers a process, pools of 4 and 16) then fails requests that would
have had a connection a few milliseconds later: bench/handheld_bench.py saw downlink streams end
and sign-ins answered 503 from 20 phones on. `WaitingPool` is the same pool with a semaphore in
front: a thread waits up to `wait_s` for a connection, and only then gets PoolError, which the
callers already answer (503 database_unavailable, with Retry-After)."""
from __future__ import annotations

import threading

from psycopg2.pool import PoolError, ThreadedConnectionPool

WAIT_S = 10.0     # longer than any query of a request; shorter than a client's patience (30 s)


class WaitingPool(ThreadedConnectionPool):
    """ThreadedConnectionPool(minconn, maxconn, dsn, …) whose `getconn` waits up to `wait_s`."""

    def __init__(self, minconn: int, maxconn: int, *args, wait_s: float = WAIT_S, **kwargs) -> None:
        super().__init__(minconn, maxconn, *args, **kwargs)
        self.wait_s = wait_s
        self._lendable = threading.BoundedSemaphore(maxconn)

    def getconn(self, key=None):
        if not self._lendable.acquire(timeout=self.wait_s):
            raise PoolError(f"connection pool exhausted (waited {self.wait_s:.0f} s)")
        try:
            return super().getconn(key)
        except BaseException:
            self._lendable.release()
            raise

    def putconn(self, conn=None, key=None, close=False) -> None:
        try:
            super().putconn(conn, key, close)
        finally:
            self._lendable.release()

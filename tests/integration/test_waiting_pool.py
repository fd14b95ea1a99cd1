"""database.pool.WaitingPool against the real PostgreSQL: a thread that finds every connection lent
out waits for the next one given back (psycopg2's own pool raises at once), and still gets
PoolError when none comes back within its wait."""
from __future__ import annotations

import threading

import pytest
from psycopg2.pool import PoolError, ThreadedConnectionPool

from database.pool import WaitingPool


def test_a_thread_waits_for_a_connection_given_back_instead_of_failing(stack):
    dsn = stack.settings().pg_dsn
    plain = ThreadedConnectionPool(0, 1, dsn)
    held = plain.getconn()
    with pytest.raises(PoolError):
        plain.getconn()                      # what the handheld's pools did under load
    plain.putconn(held)
    plain.closeall()

    pool = WaitingPool(0, 1, dsn, wait_s=30)
    lent = pool.getconn()
    waiting, got = threading.Event(), []

    def borrow() -> None:
        waiting.set()
        conn = pool.getconn()                # blocks: the one connection is lent out
        with conn.cursor() as cur:
            cur.execute("select 41 + 1")
            got.append(cur.fetchone()[0])
        pool.putconn(conn)

    borrower = threading.Thread(target=borrow)
    borrower.start()
    waiting.wait(10)
    assert not got                           # still waiting while the connection is out
    pool.putconn(lent)
    borrower.join(30)
    assert got == [42]
    pool.closeall()


def test_a_thread_gets_pool_error_when_nothing_comes_back_within_its_wait(stack):
    pool = WaitingPool(0, 1, stack.settings().pg_dsn, wait_s=0.2)
    lent = pool.getconn()
    with pytest.raises(PoolError, match="exhausted"):
        pool.getconn()
    pool.putconn(lent)
    again = pool.getconn()                   # the failed wait took nothing from the pool's count
    pool.putconn(again)
    pool.closeall()

"""database.pool.WaitingPool against the real PostgreSQL: a thread that finds every connection lent
out waits for the next one given back (psycopg2's own pool raises at once), and still gets
PoolError when none comes back within its wait."""
from __future__ import annotations

import select
import threading

import psycopg2
import pytest
from psycopg2.pool import PoolError, ThreadedConnectionPool

from database.pool import WaitingPool
from tests.support import wait_for


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


def _backend(conn) -> int:
    with conn, conn.cursor() as cur:
        cur.execute("select pg_backend_pid()")
        return cur.fetchone()[0]


def test_a_connection_given_back_is_kept_and_lent_again(stack):
    """psycopg2's own pool closes a connection given back when `minconn` are already idle: with
    minconn=0, a new server backend for every borrow."""
    dsn = stack.settings().pg_dsn
    plain = ThreadedConnectionPool(0, 2, dsn)
    conn = plain.getconn()
    _backend(conn)
    plain.putconn(conn)
    assert conn.closed                       # what every pool of ours did, request after request
    plain.closeall()

    pool = WaitingPool(0, 2, dsn)
    a, b = pool.getconn(), pool.getconn()
    first = {_backend(a), _backend(b)}
    pool.putconn(a)
    pool.putconn(b)
    assert not a.closed and not b.closed
    for _ in range(5):
        again = pool.getconn()
        assert _backend(again) in first
        pool.putconn(again)
    pool.closeall()


def test_a_kept_connection_the_server_ended_is_replaced_without_an_error(stack):
    dsn = stack.settings().pg_dsn
    pool = WaitingPool(0, 1, dsn)
    conn = pool.getconn()
    ended = _backend(conn)
    pool.putconn(conn)
    with psycopg2.connect(dsn) as admin, admin.cursor() as cur:
        cur.execute("select pg_terminate_backend(%s)", (ended,))
        assert cur.fetchone()[0]
    admin.close()
    wait_for(lambda: select.select([conn.fileno()], [], [], 0)[0], 10, "the server's goodbye on the kept connection")
    fresh = pool.getconn()
    assert _backend(fresh) != ended          # no OperationalError: the ended one was dropped when lent
    pool.putconn(fresh)
    pool.closeall()

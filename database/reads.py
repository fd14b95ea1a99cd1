"""Reading the database for the screens, the base every domain's reads stand on: a pool of
connections any thread may use, a query's rows, a big result streamed in batches. The domains'
reads (registry.reads, cases.reads, dispatch.reads, kpis.reads, database.audit_reads) extend it
with the questions their own pages ask; dashboard.queries puts them together. Nothing here writes.
"""
from __future__ import annotations

from contextlib import contextmanager

import psycopg2

from core.city import City
from database.pool import WaitingPool


class Reads:
    """The city (reference data the reads combine with rows) and a pool of connections."""

    def __init__(self, city: City, dsn: str) -> None:
        self.city = city
        self.db = WaitingPool(0, 4, dsn, connect_timeout=5)  # snapshots and heat maps, any thread (waits when all lent)

    @contextmanager
    def _cursor(self, name: str | None = None):
        """A cursor in a transaction on a connection of the pool."""
        conn = self.db.getconn()
        broken = False
        try:
            with conn, conn.cursor(name=name) as cur:
                yield cur
        except psycopg2.OperationalError:
            broken = True  # e.g. the server restarted: drop this connection, the next query opens anew
            raise
        finally:
            self.db.putconn(conn, close=broken or conn.closed)

    def rows(self, sql: str, args: tuple) -> list[tuple]:
        """A query's rows, on a connection of the pool."""
        with self._cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()

    def _stream(self, query: str, args: tuple, columns, batch: int = 2000):
        """The rows of a query as dicts, read in batches through a server-side cursor."""
        with self._cursor(name="export") as cur:
            cur.itersize = batch
            cur.execute(query, args)
            for row in cur:
                yield dict(zip(columns, row, strict=True))


def equal(clauses: list[str], args: list, **columns) -> None:
    """`column = value` for each column given a value (the filters' plain choices)."""
    for column, value in columns.items():
        if value:
            clauses.append(f"{column} = %s")
            args.append(value)


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


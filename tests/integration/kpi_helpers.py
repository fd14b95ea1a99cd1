"""A database of its own on the test server, for the assessment's tests: a history written there
would otherwise show in every other test's case lists and counts."""
from __future__ import annotations

from contextlib import contextmanager

import psycopg2
from psycopg2.extensions import make_dsn, parse_dsn

from cases import store
from database import roles
from database.citydb import load_city
from database.migrate import migrate

from .conftest import demo_city


@contextmanager
def own_database(stack, name: str):
    """A fresh database `name`: migrated, the demo city loaded, the rules seeded, the app roles
    granted; its owner's DSN. Dropped afterwards."""
    owner = parse_dsn(stack.settings().pg_dsn)
    admin = psycopg2.connect(make_dsn(**{**owner, "dbname": "postgres"}))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"drop database if exists {name} with (force)")
        cur.execute(f"create database {name}")
    dsn = make_dsn(**{**owner, "dbname": name})
    try:
        migrate(dsn)
        roles.ensure_roles(dsn, stack.pg_app_passwords())
        conn = psycopg2.connect(dsn)
        try:
            load_city(conn, demo_city())
            with conn, conn.cursor() as cur:
                store.seed(cur, [2025, 2026, 2027], "tests")
        finally:
            conn.close()
        yield dsn
    finally:
        with admin.cursor() as cur:
            cur.execute(f"drop database if exists {name} with (force)")
        admin.close()

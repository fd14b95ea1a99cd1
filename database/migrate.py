"""Versioned SQL migrations: applied in order, once each, recorded in `schema_migrations`.

A migration is a file `NNNN_name.sql` in ./migrations. Each one runs in its own transaction
together with its record; an advisory lock keeps two processes from migrating at once. Editing a
migration that has already been applied is refused (its checksum no longer matches).
"""
from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg2

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x6763635F6D6967  # "gcc_mig"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    pass


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file name must look like 0001_name.sql: {path.name}")
        migrations.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a version number: {versions}")
    return migrations


def migrate(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply what is pending; return the migrations applied now (empty when up to date)."""
    migrations = discover(directory)
    conn = psycopg2.connect(dsn)
    applied_now: list[Migration] = []
    try:
        with conn, conn.cursor() as cur:
            cur.execute("""create table if not exists schema_migrations (
                                   version    integer primary key,
                                   name       text        not null,
                                   checksum   text        not null,
                                   applied_at timestamptz not null default now())""")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("select pg_advisory_lock(%s)", (_LOCK_KEY,))
        conn.autocommit = False
        try:
            with conn.cursor() as cur:
                cur.execute("select version, name, checksum from schema_migrations")
                done = {version: (name, checksum) for version, name, checksum in cur.fetchall()}
            conn.commit()
            for migration in migrations:
                if migration.version in done:
                    name, checksum = done[migration.version]
                    if checksum != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.version:04d}_{name} was changed after it was "
                            f"applied; add a new migration instead")
                    continue
                with conn, conn.cursor() as cur:
                    cur.execute(migration.sql)
                    cur.execute("insert into schema_migrations (version, name, checksum) "
                                "values (%s, %s, %s)",
                                (migration.version, migration.name, migration.checksum))
                applied_now.append(migration)
        finally:
            conn.rollback()
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("select pg_advisory_unlock(%s)", (_LOCK_KEY,))
    finally:
        conn.close()
    return applied_now


def main() -> int:
    from config.settings import settings

    applied = migrate(settings().pg_dsn)
    for migration in applied:
        print(f"applied {migration.version:04d}_{migration.name}")
    if not applied:
        print("database schema is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())

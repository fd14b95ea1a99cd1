"""TimescaleDB is present, the schema is migrated once, and retention works on this edition."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg2
import pytest

from database import timescale
from database.migrate import MigrationError, discover, migrate

HYPERTABLES = {"positions", "terminal_status", "sensor_readings", "device_alarms",
               "incident_reports", "dead_letters"}


def test_timescaledb_extension_is_installed(db):
    with db.cursor() as cur:
        cur.execute("select extversion from pg_extension where extname = 'timescaledb'")
        row = cur.fetchone()
    assert row is not None
    assert tuple(int(p) for p in row[0].split(".")[:2]) >= (2, 13)


def test_every_time_series_is_a_hypertable(db):
    with db.cursor() as cur:
        cur.execute("select hypertable_name from timescaledb_information.hypertables")
        names = {r[0] for r in cur.fetchall()}
    assert names >= HYPERTABLES


def test_time_bucket_works_on_positions(db):
    with db, db.cursor() as cur:
        cur.execute("""insert into positions (time, terminal_id, lat, lon, source)
                       values ('2026-01-01 08:01+00', 'T-TB', 26.08, 119.29, 'gcc'),
                              ('2026-01-01 08:07+00', 'T-TB', 26.09, 119.30, 'gcc')""")
        cur.execute("""select time_bucket('1 hour', time) b, count(*) from positions
                       where terminal_id = 'T-TB' group by b""")
        rows = cur.fetchall()
    assert rows == [(datetime(2026, 1, 1, 8, tzinfo=timezone.utc), 2)]


def test_a_redelivered_fix_does_not_create_a_second_row(db):
    insert = """insert into positions (time, terminal_id, lat, lon, source)
                values ('2026-01-02 08:00+00', 'T-DUP', 26.08, 119.29, 'gcc')
                on conflict on constraint positions_key do nothing"""
    with db, db.cursor() as cur:
        cur.execute(insert)
        cur.execute(insert)
        cur.execute("select count(*) from positions where terminal_id = 'T-DUP'")
        assert cur.fetchone()[0] == 1


def test_migrations_are_recorded_and_rerunning_is_a_no_op(settings, db):
    with db.cursor() as cur:
        cur.execute("select version from schema_migrations order by version")
        before = [r[0] for r in cur.fetchall()]
    assert before == [m.version for m in discover()]
    assert migrate(settings.pg_dsn) == []
    with db.cursor() as cur:
        cur.execute("select count(*) from schema_migrations")
        assert cur.fetchone()[0] == len(before)


@pytest.fixture
def scratch_db(stack):
    """A database of its own, for tests that migrate from scratch."""
    admin = psycopg2.connect(stack.postgres.dsn("postgres"))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("drop database if exists scratch")
        cur.execute("create database scratch")
    yield stack.postgres.dsn("scratch")
    with admin.cursor() as cur:
        cur.execute("drop database scratch with (force)")
    admin.close()


def test_migrations_apply_in_order_and_refuse_an_edited_migration(scratch_db, tmp_path):
    (tmp_path / "0001_first.sql").write_text("create table t1 (id int);")
    (tmp_path / "0002_second.sql").write_text("insert into t1 values (1);")
    applied = migrate(scratch_db, tmp_path)
    assert [m.name for m in applied] == ["first", "second"]
    assert migrate(scratch_db, tmp_path) == []
    (tmp_path / "0002_second.sql").write_text("insert into t1 values (2);")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(scratch_db, tmp_path)


def test_a_failing_migration_leaves_nothing_half_applied(scratch_db, tmp_path):
    (tmp_path / "0001_good.sql").write_text("create table t1 (id int);")
    (tmp_path / "0002_bad.sql").write_text("create table t2 (id int); select no_such_function();")
    with pytest.raises(psycopg2.Error):
        migrate(scratch_db, tmp_path)
    with psycopg2.connect(scratch_db) as conn, conn.cursor() as cur:
        cur.execute("select version from schema_migrations")
        assert [r[0] for r in cur.fetchall()] == [1]
        cur.execute("select to_regclass('t2')")
        assert cur.fetchone()[0] is None


def test_edition_is_detected_and_this_build_is_apache(db):
    caps = timescale.detect(db)
    assert caps.edition == timescale.APACHE
    assert not caps.has_policies
    # apply_policies on the Apache edition must not try the community-only functions
    assert timescale.apply_policies(db, {"positions": timedelta(days=1)}).edition == timescale.APACHE


def test_the_extensions_own_policy_job_that_this_edition_cannot_run_is_unscheduled(db):
    # TimescaleDB 2.15+ schedules its job history's retention; the Apache edition fails it at every
    # start ("functionality not supported under the current apache license" in the server's log)
    timescale.apply_policies(db, {})
    with db.cursor() as cur:
        cur.execute("select application_name, scheduled from _timescaledb_config.bgw_job "
                    "where proc_name like 'policy%%' order by id")
        jobs = cur.fetchall()
    assert jobs and all(not scheduled for _, scheduled in jobs), jobs
    assert timescale.unschedule_unsupported_jobs(db) == []        # idempotent


def test_retention_job_drops_expired_chunks_and_keeps_recent_data(settings, db):
    now = datetime.now(timezone.utc)
    with db, db.cursor() as cur:
        cur.execute("""insert into dead_letters (time, topic, payload, payload_sha256, reason)
                       values (%s, 'x', 'old', 'h', 'test_retention'),
                              (%s, 'x', 'new', 'h', 'test_retention')""",
                    (now - timedelta(days=90), now - timedelta(minutes=5)))
    job = timescale.RetentionJob(settings.pg_dsn, {"dead_letters": timedelta(days=30)})
    dropped = job.run_once()
    assert dropped["dead_letters"] >= 1
    with db.cursor() as cur:
        cur.execute("select payload from dead_letters where reason = 'test_retention'")
        assert [bytes(r[0]) for r in cur.fetchall()] == [b"new"]

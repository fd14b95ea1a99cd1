"""Least privilege in the stack, against the real servers: each app's database role and Redis user
can do its job and nothing beyond it, what the stack and its servers write is private to them, and
root never reuses a /var/tmp directory someone else could have prepared."""
from __future__ import annotations

import os
import stat
import tempfile
import uuid
from pathlib import Path

import psycopg2
import pytest
import redis

from config.settings import Settings
from database import roles
from stack.process import RunAs, running_as_root
from stack.stack import _still_ours


def _connect(stack, app: str):
    return psycopg2.connect(stack.app_settings(app).pg_dsn)


def _refused(conn, statement: str, args=()) -> bool:
    try:
        with conn.cursor() as cur:
            cur.execute(statement, args)
        return False
    except psycopg2.errors.InsufficientPrivilege:
        return True
    finally:
        conn.rollback()


def test_the_apps_database_roles_are_not_superusers_and_cannot_create_anything(stack, settings):
    with psycopg2.connect(settings.pg_dsn) as conn, conn.cursor() as cur:
        cur.execute("select rolname, rolsuper, rolcreatedb, rolcreaterole from pg_roles where rolname = any(%s)",
                    ([roles.INGEST, roles.DASHBOARD, roles.CASES],))
        assert sorted(cur.fetchall()) == [(roles.CASES, False, False, False), (roles.DASHBOARD, False, False, False),
                                          (roles.INGEST, False, False, False)]
    for app in ("ingest", "dashboard", "cases"):
        conn = _connect(stack, app)
        try:
            assert _refused(conn, "create table public.evil (x int)")
            # only the ingest stages its batches in temporary tables
            assert _refused(conn, "create temporary table staged (x int)") == (app != "ingest")
        finally:
            conn.close()
        for maintenance in ("postgres", "template1"):                          # our database only
            with pytest.raises(psycopg2.OperationalError, match="permission denied"):
                psycopg2.connect(stack.app_settings(app).pg_dsn, dbname=maintenance).close()


def test_the_ingest_role_may_insert_what_devices_send_and_nothing_more(stack, city):
    conn = _connect(stack, "ingest")
    try:
        assert not _refused(conn, "select count(*) from positions")
        assert _refused(conn, "delete from positions")
        assert _refused(conn, "update members set name = 'x'")
        assert _refused(conn, "select * from audit_log")
        assert _refused(conn, "insert into alarm_acknowledgements values ('a', 's', now(), 'me', null)")
    finally:
        conn.close()


def test_the_dashboard_role_reads_and_writes_only_what_its_commands_write(stack, city):
    conn = _connect(stack, "dashboard")
    try:
        assert not _refused(conn, "select count(*) from positions")
        assert _refused(conn, "insert into positions (time, terminal_id, lat, lon, source) "
                              "values (now(), 'T', 1, 1, 'gcc')")
        assert _refused(conn, "update audit_log set actor = 'x'")
        assert _refused(conn, "delete from alarm_acknowledgements")
        # it enters cases and imports boundaries, and deletes neither (test_commands_as_dashboard_role.py runs each
        # command the screens can issue as this role)
        assert _refused(conn, "delete from cases where false")
        assert _refused(conn, "delete from org_units where false")
        assert _refused(conn, "insert into case_escalations select * from case_escalations where false")
        assert _refused(conn, "delete from case_inbox where false")
    finally:
        conn.close()


def test_the_cases_role_writes_cases_and_takes_the_inbox_but_never_what_devices_sent(stack, city):
    conn = _connect(stack, "cases")
    try:
        assert not _refused(conn, "select count(*) from device_alarms")
        assert not _refused(conn, "delete from case_inbox where false")
        assert _refused(conn, "delete from device_alarms")
        assert _refused(conn, "insert into positions (time, terminal_id, lat, lon, source) "
                              "values (now(), 'T', 1, 1, 'gcc')")
        assert _refused(conn, "update case_events set reason = 'x'")          # append-only, for everyone
        assert _refused(conn, "select * from users")
        assert _refused(conn, "select * from audit_log")
    finally:
        conn.close()


def test_every_table_is_named_in_the_grants(settings):
    assert roles.ungranted_tables(settings.pg_dsn) == []


def test_each_apps_redis_user_stays_within_its_keys_and_commands(stack):
    ingest = stack.app_settings("ingest").redis_client()
    dashboard = stack.app_settings("dashboard").redis_client()
    try:
        ingest.set("gcc:test:ingest", "1")
        assert dashboard.get("gcc:test:ingest") == b"1"
        for client, command in ((ingest, ("FLUSHALL",)), (ingest, ("CONFIG", "GET", "*")), (ingest, ("KEYS", "*")),
                                (ingest, ("SET", "other:key", "1")), (ingest, ("FUNCTION", "LIST")),
                                (ingest, ("SCRIPT", "FLUSH")), (ingest, ("SELECT", "1")),
                                (dashboard, ("SET", "gcc:test:x", "1")),
                                (dashboard, ("HSET", "gcc:term:T1", "lon", "1")), (dashboard, ("DEL", "gcc:pos")),
                                (dashboard, ("XADD", "gcc:test:s", "*", "f", "v"))):
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.execute_command(*command)
        dashboard.xadd("gcc:live", {"envelope": b"{}"}, maxlen=10_000, approximate=True)   # its commands' bus
    finally:
        ingest.delete("gcc:test:ingest")
        ingest.close()
        dashboard.close()


def _loose(path: Path) -> bool:
    """Group or others may read or write it (directories may be passed through: x only)."""
    mode = path.lstat().st_mode
    bits = 0o066 if path.is_dir() else 0o077
    return bool(mode & bits) and not path.is_symlink()


def test_what_the_stack_and_its_servers_write_is_private(stack, city):
    stack.redis.ping()
    places = [stack.data_dir, stack.redis.data_dir, stack.mosquitto.data_dir, stack.log_dir]
    loose = sorted(str(p) for place in places for p in [place, *place.rglob("*")] if p.exists() and _loose(p))
    assert loose == []
    assert (stack.mosquitto.data_dir / "dynamic-security.json").stat().st_mode & 0o777 == 0o600
    assert any(stack.redis.data_dir.rglob("*.aof*")), "Redis's append-only file is there"


@pytest.mark.skipif(not running_as_root(), reason="root creates and hands over the service directories")
def test_root_reuses_a_var_tmp_directory_only_while_it_is_still_its_own():
    run_as = RunAs.for_service("redis")
    base = Path(tempfile.mkdtemp(prefix="gridcc-test-", dir="/var/tmp"))
    try:
        service = base / "redis"
        assert _still_ours(base, service, run_as)              # fresh: root's, not writable by others
        service.mkdir()
        run_as.own_dir(service)
        assert _still_ours(base, service, run_as)
        os.chown(service, 12345, 12345)                         # someone else's now: never chown through it
        assert not _still_ours(base, service, run_as)
        os.rmdir(service)
        os.symlink("/etc", service)                             # a swapped-in symlink
        assert not _still_ours(base, service, run_as)
        os.unlink(service)
        base.chmod(0o777)                                       # anyone could swap things in it
        assert not _still_ours(base, service, run_as)
        link = Path(f"/var/tmp/gridcc-test-link-{uuid.uuid4().hex[:6]}")
        link.symlink_to(base)
        try:
            assert not _still_ours(link, link / "redis", run_as)
        finally:
            link.unlink()
    finally:
        for p in sorted(base.rglob("*"), reverse=True):
            p.unlink() if p.is_symlink() or not p.is_dir() else p.rmdir()
        base.rmdir()


def test_a_password_with_spaces_and_quotes_still_connects(settings):
    password = "a b' c\\\" d=e"
    role = f"t_quote_{uuid.uuid4().hex[:6]}"
    with psycopg2.connect(settings.pg_dsn) as conn, conn.cursor() as cur:
        cur.execute(f'create role "{role}" login password %s', (password,))
    try:
        quoted = Settings(_env_file=None, pg_host=settings.pg_host, pg_port=settings.pg_port,
                          pg_database=settings.pg_database, pg_user=role, pg_password=password)
        psycopg2.connect(quoted.pg_dsn).close()
    finally:
        with psycopg2.connect(settings.pg_dsn) as conn, conn.cursor() as cur:
            cur.execute(f'drop role "{role}"')


def test_the_env_file_holds_no_secret(stack):
    text = (stack.data_dir / "stack.env").read_text()
    assert "PASSWORD" not in text
    secrets = [stack.env()["GCC_PG_PASSWORD"], stack.env()["GCC_REDIS_PASSWORD"], stack.app_secret("pg", "ingest")]
    assert not any(s in text for s in secrets)
    assert stat.S_IMODE((stack.data_dir / "stack.env").stat().st_mode) == 0o600

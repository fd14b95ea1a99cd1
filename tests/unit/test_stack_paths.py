"""Root prepares files and directories for the service accounts without ever writing or changing
owners through a link one of them planted, and refuses a data dir that is not its own alone."""
from __future__ import annotations

import os
import stat

import pytest

from stack.process import RunAs, running_as_root, untrusted_reason, write_private
from stack.stack import LocalStack, UntrustedDataDir

as_root = pytest.mark.skipif(not running_as_root(), reason="only root hands files to service accounts")


def test_write_private_is_atomic_and_private(tmp_path):
    target = tmp_path / "secrets.json"
    write_private(target, "one")
    write_private(target, "two")
    assert target.read_text() == "two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secrets.json"]     # no temporary file left


def test_write_private_replaces_a_planted_link_instead_of_following_it(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    service_dir = tmp_path / "service"
    service_dir.mkdir()
    (service_dir / "redis.conf").symlink_to(victim)                     # the final name
    (service_dir / "redis.conf.tmp").symlink_to(victim)                 # the old fixed temporary name
    write_private(service_dir / "redis.conf", "port 1\n")
    assert victim.read_text() == "untouched"
    conf = service_dir / "redis.conf"
    assert not conf.is_symlink() and conf.read_text() == "port 1\n"


@as_root
def test_root_hands_a_file_to_a_service_through_its_descriptor(tmp_path):
    redis_user = RunAs.for_service("redis")
    service_dir = tmp_path / "redis"
    service_dir.mkdir()
    redis_user.own_dir(service_dir)
    victim = tmp_path / "victim"
    victim.write_text("root's")
    (service_dir / "redis.conf").symlink_to(victim)
    write_private(service_dir / "redis.conf", "x", owner=redis_user)
    assert victim.stat().st_uid == 0 and victim.read_text() == "root's"
    st = os.lstat(service_dir / "redis.conf")
    assert stat.S_ISREG(st.st_mode) and (st.st_uid, st.st_gid) == (redis_user.uid, redis_user.gid)


@as_root
def test_own_dir_never_follows_a_link(tmp_path):
    redis_user = RunAs.for_service("redis")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / "redis"
    link.symlink_to(elsewhere)
    with pytest.raises(OSError):
        redis_user.own_dir(link)
    assert elsewhere.stat().st_uid == 0


def test_a_data_dir_of_ours_is_trusted(tmp_path):
    assert untrusted_reason(tmp_path.resolve()) is None


def test_a_data_dir_others_can_write_to_is_refused(tmp_path):
    loose = tmp_path / "data"
    loose.mkdir()
    loose.chmod(0o777)
    assert "writable by others" in untrusted_reason(loose)
    with pytest.raises(UntrustedDataDir, match="writable by others"):
        LocalStack(loose)


def test_a_data_dir_under_a_directory_others_can_rename_in_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)                  # no sticky bit: anyone may rename `data` away and put a link there
    data = shared / "data"
    data.mkdir()
    assert "without the sticky bit" in untrusted_reason(data)
    shared.chmod(0o1777)                 # like /tmp: only the owner of an entry may rename it
    assert untrusted_reason(data) is None


@as_root
def test_root_refuses_a_data_dir_that_belongs_to_someone_else(tmp_path):
    nobody = RunAs.for_service("nobody")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    nobody.own_dir(theirs)                # they could swap `theirs/redis` for a link to /etc
    with pytest.raises(UntrustedDataDir, match="neither root nor us"):
        LocalStack(theirs / "data")
    assert not (theirs / "data" / "secrets.json").exists()


def test_a_group_writable_data_dir_is_refused_by_name(tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o770)
    assert untrusted_reason(loose) == f"{loose} is writable by others (mode 770)"

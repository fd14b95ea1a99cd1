"""Nothing lost, nothing twice: a worker killed mid-stream, PostgreSQL restarted mid-stream, and two
workers sharing one subscription. Every message the broker acknowledged to the publisher must be
in the database exactly once."""
from __future__ import annotations

import threading
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from ..support import wait_for
from .ingest_helpers import FixPublisher, ProcessWorker, ThreadWorker, count

pytestmark = pytest.mark.slow


def _stored_times(db, terminal_id: str) -> list[datetime]:
    db.rollback()
    with db.cursor() as cur:
        cur.execute("select time from positions where terminal_id = %s and time >= %s order by time",
                    (terminal_id, START))
        return [r[0] for r in cur.fetchall()]


START = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=3)


def _publisher(stack, city, member_index: int, start: datetime) -> FixPublisher:
    member = city.members[member_index]
    p = city.grid_by_code[member.grid_code].boundary.representative_point()
    return FixPublisher(stack.mosquitto.port, stack.account(member.terminal_id), p.x, p.y, start)


def test_kill_minus_9_of_a_worker_mid_stream_loses_nothing_and_duplicates_nothing(stack, city, db, tmp_path):
    worker = ProcessWorker(stack, index=1, log_path=tmp_path / "ingest-1.log")
    publisher = _publisher(stack, city, 20, START)
    terminal = publisher.account.username
    worker.start()
    try:
        wait_for(lambda: _healthy(worker), 30, "the worker to connect")
        total, killed = 3000, threading.Event()
        thread = threading.Thread(target=publisher.publish, args=(total,), kwargs={"hold": (2000, killed)})
        thread.start()
        wait_for(lambda: len(_stored_times(db, terminal)) > 300, 30, "the first rows")
        worker.kill9()
        stored_at_kill = len(_stored_times(db, terminal))
        killed.set()                                  # the last thousand go to the broker while it is dead
        thread.join(120)
        assert len(publisher.acked) == total          # the broker took every message while the worker was dead
        assert stored_at_kill < total                 # the kill really happened mid-stream
        worker.start()
        wait_for(lambda: len(_stored_times(db, terminal)) >= total, 60, "every acknowledged message stored")
        stored = _stored_times(db, terminal)
        assert stored == sorted(publisher.acked)      # same keys, each exactly once
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics_port}/metrics").read().decode()
        assert "gcc_ingest_received_total" in metrics
    finally:
        publisher.close()
        worker.stop()


def _healthy(worker: ProcessWorker) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics_port}/healthz", timeout=1).status == 200
    except OSError:
        return False


def test_postgresql_restarted_mid_stream_loses_nothing(stack, settings, city, db):
    publisher = _publisher(stack, city, 21, START)
    terminal = publisher.account.username
    with ThreadWorker(stack, index=92, share_group=f"t{uuid.uuid4().hex[:8]}") as tw:
        total, stopped = 2000, threading.Event()
        thread = threading.Thread(target=publisher.publish, args=(total,), kwargs={"hold": (1000, stopped)})
        thread.start()
        wait_for(lambda: len(_stored_times(db, terminal)) > 200, 30, "the first rows")
        db.close()
        stack.postgres.stop()
        stopped.set()                                 # the second thousand arrive while it is down
        thread.join(120)
        stack.postgres.start()
        import psycopg2
        fresh = psycopg2.connect(settings.pg_dsn)
        try:
            wait_for(lambda: len(_stored_times(fresh, terminal)) >= len(publisher.acked), 60,
                     "every acknowledged message stored after the restart")
            assert _stored_times(fresh, terminal) == sorted(publisher.acked)
            assert len(publisher.acked) == total
            assert tw.worker.metrics.db_retries._value.get() >= 1  # it really saw the database go away
        finally:
            fresh.close()
    publisher.close()


def test_two_workers_in_one_share_group_store_everything_once(stack, settings, city, db):
    group = f"t{uuid.uuid4().hex[:8]}"
    publishers = [_publisher(stack, city, 22 + i, START) for i in range(4)]
    with ThreadWorker(stack, index=93, share_group=group) as a, \
            ThreadWorker(stack, index=94, share_group=group) as b:
        threads = [threading.Thread(target=p.publish, args=(500,)) for p in publishers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        for p in publishers:
            wait_for(lambda p=p: len(_stored_times(db, p.account.username)) >= len(p.acked), 30, "all stored")
            assert _stored_times(db, p.account.username) == sorted(p.acked)
        got_a = a.worker.metrics.received._value.get()
        got_b = b.worker.metrics.received._value.get()
    assert got_a > 0 and got_b > 0                     # the broker really split the load
    assert got_a + got_b >= 2000
    for p in publishers:
        p.close()
    assert count(db, "select count(*) from positions where terminal_id = %s", publishers[0].account.username) >= 500


def test_a_worker_stops_cleanly_on_repeated_sigterm(stack, city, tmp_path):
    """Signals arrive in bursts (a supervisor dying, then `make stop`): the worker must neither
    deadlock in a signal handler nor die before it stopped cleanly."""
    import signal

    worker = ProcessWorker(stack, index=3, log_path=tmp_path / "ingest-3.log")
    worker.start()
    try:
        wait_for(lambda: _healthy(worker), 30, "the worker to connect")
        for _ in range(5):                  # each one taken before the next comes: five, not one pending
            worker.proc.send_signal(signal.SIGTERM)
            wait_for(lambda: not _pending(worker.proc.pid, signal.SIGTERM), 15, "the worker to take the signal",
                     interval=0.002)
        assert worker.proc.wait(15) == 0
    finally:
        worker.stop()


def _pending(pid: int, signum: int) -> bool:
    """Whether a signal sent to the process waits to be taken (the kernel's shared pending set)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            pending = next(int(line.split()[1], 16) for line in status if line.startswith("ShdPnd:"))
    except (FileNotFoundError, StopIteration):
        return False                        # gone: nothing waits in it any more
    return bool(pending & (1 << (signum - 1)))

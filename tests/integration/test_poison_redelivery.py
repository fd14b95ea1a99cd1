"""A message that kills the worker outright (a segfault, the OOM killer) is redelivered by the
broker after every restart: the worker counts how often a redelivered message's processing began
(in Redis) and dead-letters it as `poison` before it can crash-loop the worker, while the messages
that only shared its batch are stored."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from config.settings import REPO_ROOT
from ingest.model import Delivery, Inbound
from ingest.redeliveries import Redeliveries
from ingest.service import build_worker
from telemetry.topics import terminal_topic

from ..support import wait_for
from .ingest_helpers import RecordingReceipt, count, fix_payload, worker_account
from .mqtt_helpers import MqttProbe

pytestmark = pytest.mark.slow

# A real worker (`ingest.service.build_worker`, its own loop) whose process dies, as from a
# segfault, whenever it is about to store a row of the terminal named on the command line.
DIES_ON = """
import os, sys
from config.settings import load_settings
from ingest.service import build_worker

killer, group, index = sys.argv[1], sys.argv[2], int(sys.argv[3])
worker = build_worker(load_settings(), index)
worker.source.filters = [f.replace("$share/ingest/", f"$share/{group}/") for f in worker.source.filters]
real_write = worker.store.write

def write(batch):
    if any(row[1] == killer for row in batch.rows.get("positions", [])):
        os._exit(70)
    return real_write(batch)

worker.store.write = write
# ready once the broker confirmed the subscriptions (SUBACK): its session queues for it from then on
worker.source.client.on_subscribe = lambda client, userdata, mid, reason_codes, properties: print("ready", flush=True)
worker.run()
"""


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _fix(city, n: int, t: datetime, dup: bool) -> Delivery:
    member = city.members[n]
    p = city.grid_by_code[member.grid_code].boundary.representative_point()
    inbound = Inbound(terminal_topic(member.terminal_id, "fix"), fix_payload(t, p.x, p.y), 1, False,
                      datetime.now(timezone.utc), dup=dup)
    return Delivery(inbound, RecordingReceipt())


def test_redeliveries_are_processed_together_then_alone_then_dead_lettered_unprocessed(settings, city, db,
                                                                                        redis_client):
    worker = build_worker(settings, 190)
    t = _now() - timedelta(hours=9, minutes=uuid.uuid4().int % 50)
    fresh, first_time, again, doomed = (_fix(city, 594 + i, t, dup=i > 0) for i in range(4))
    redis_client.set(Redeliveries.key(again), 1)           # redelivered and begun once already (twice in all)
    redis_client.set(Redeliveries.key(doomed), 2)          # ... three times in all: the worker died on it
    commits = worker.metrics.commits._value.get()
    try:
        worker.handle([fresh, first_time, again, doomed])
    finally:
        worker.store.close()
    assert worker.metrics.commits._value.get() - commits == 2   # the batch, then `again` alone
    stored = count(db, "select count(*) from positions where time = %s and terminal_id = any(%s)", t,
                   [city.members[594 + i].terminal_id for i in range(4)])
    assert stored == 3
    assert [d.receipt.settled[0] for d in (fresh, first_time, again)] == [None] * 3
    assert doomed.receipt.settled[0].reason == "poison" and "began 3 times" in doomed.receipt.settled[0].detail
    assert [redis_client.get(Redeliveries.key(d)) for d in (fresh, first_time, again)] == [None, b"1", b"2"]


def test_a_message_that_kills_the_worker_is_dead_lettered_after_a_few_restarts_and_the_rest_stored(
        stack, city, db, tmp_path):
    index, group = 191, f"t{uuid.uuid4().hex[:8]}"
    account = worker_account(stack, index)
    env = {**os.environ, **stack.env(), **stack.mqtt_env(account)}
    killer, innocent = city.members[598], city.members[599]   # no other test uses these
    log_path = tmp_path / "dies-on.log"

    def start() -> subprocess.Popen:
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-c", DIES_ON, killer.terminal_id, group, str(index)],
                                    cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
        assert proc.stdout.readline().strip() == "ready", log_path.read_text()
        return proc

    proc, deaths = start(), 0
    t0 = _now() - timedelta(hours=10, minutes=uuid.uuid4().int % 50)
    try:
        _publish(stack, city, innocent, t0, 0, 20)
        _publish(stack, city, killer, t0, 0, 1)
        _publish(stack, city, innocent, t0, 20, 20)
        for _ in range(6):
            try:
                proc.wait(8)
            except subprocess.TimeoutExpired:
                break                                  # it lives: the poison message is behind it
            assert proc.returncode == 70, log_path.read_text()
            deaths += 1
            proc = start()
        wait_for(lambda: _stored(db, innocent, t0) == 40, 20, "every innocent fix stored")
        assert deaths == 3                             # N = 3: the first delivery, then twice redelivered
        assert _stored(db, killer, t0) == 0
        assert count(db, "select count(*) from dead_letters where topic = %s and reason = 'poison' "
                         "and detail like 'redelivered after%%'", terminal_topic(killer.terminal_id, "fix")) == 1
    finally:
        proc.terminate()
        proc.wait(20)
        MqttProbe(stack.mosquitto.port, account.username, account.password, client_id=account.username).close()


def _stored(db, member, t0: datetime) -> int:
    return count(db, "select count(*) from positions where terminal_id = %s and time >= %s and time < %s",
                 member.terminal_id, t0, t0 + timedelta(minutes=1))


def _publish(stack, city, member, t0: datetime, first: int, n: int) -> None:
    p = city.grid_by_code[member.grid_code].boundary.representative_point()
    account = stack.account(member.terminal_id)
    probe = MqttProbe(stack.mosquitto.port, account.username, account.password)
    try:
        for i in range(first, first + n):
            assert probe.publish(terminal_topic(member.terminal_id, "fix"),
                                 fix_payload(t0 + timedelta(seconds=i), p.x, p.y)) == "Success"
    finally:
        probe.close()

"""A worker's live side, driven batch by batch against the real database and Redis: one bus
envelope per committed batch, and a live update that fails shows readers a gap (so screens
resynchronise) instead of silently losing what it changed."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import redis

from ingest.model import Delivery, Inbound
from ingest.service import build_worker
from telemetry import live
from telemetry.topics import terminal_topic

from .ingest_helpers import RecordingReceipt, fix_payload


@pytest.fixture
def worker(settings, city):
    worker = build_worker(settings, 150)   # driven by handle()
    worker.live.ensure_schema()
    yield worker
    worker.store.close()


def _fixes(city, members: range, t: datetime) -> list[Delivery]:
    out = []
    for i in members:
        member = city.members[i]
        p = city.grid_by_code[member.grid_code].boundary.representative_point()
        inbound = Inbound(terminal_topic(member.terminal_id, "fix"), fix_payload(t, p.x, p.y), 1, False,
                          datetime.now(timezone.utc))
        out.append(Delivery(inbound, RecordingReceipt()))
    return out


def _ours(reader: live.BusReader, producer: str) -> list:
    return [item for item in reader.read() if getattr(item, "producer", None) == producer]


def test_a_committed_batch_is_one_envelope_and_every_sender_is_told(worker, city, redis_client):
    reader = live.BusReader(redis_client, block_ms=300)
    reader.start_at_end()
    deliveries = _fixes(city, range(300, 330), datetime.now(timezone.utc).replace(microsecond=0))
    worker.handle(deliveries)
    [envelope] = _ours(reader, worker.name)
    fixes = [c for c in envelope.changes if isinstance(c, live.FixChange)]
    assert sorted(c.terminal_id for c in fixes) == sorted(city.members[i].terminal_id for i in range(300, 330))
    assert all(d.receipt.settled == [None] for d in deliveries)


class DropsTheReplyOnce:
    """A Redis client whose next pipeline is carried out by Redis, but whose reply is lost (the
    connection dropped just then): the live state changed, and the worker cannot know what."""

    def __init__(self, real) -> None:
        self.real, self.armed = real, True

    def __getattr__(self, name):
        return getattr(self.real, name)

    def pipeline(self, *args, **kwargs):
        pipe = self.real.pipeline(*args, **kwargs)
        if self.armed:
            self.armed = False
            execute = pipe.execute

            def execute_then_drop(*a, **kw):
                execute(*a, **kw)
                raise redis.ConnectionError("connection dropped (test)")

            pipe.execute = execute_then_drop
        return pipe


def test_a_live_update_that_failed_half_way_shows_readers_a_gap(worker, city, redis_client):
    reader = live.BusReader(redis_client, block_ms=300)
    reader.start_at_end()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    worker.handle(_fixes(city, range(340, 345), now - timedelta(seconds=20)))
    worker.live.r = DropsTheReplyOnce(redis_client)
    # applied in Redis; the retry sees nothing new, so nothing of it ever reaches the bus
    worker.handle(_fixes(city, range(340, 345), now - timedelta(seconds=10)))
    worker.live.r = redis_client
    worker.handle(_fixes(city, range(340, 345), now))
    items = [i for _ in range(3) for i in _ours(reader, worker.name)]
    kinds = [type(i).__name__ for i in items]
    assert kinds == ["Envelope", "BusGap", "Envelope"], kinds
    assert items[1].missed >= 1

"""The live bus against a real Redis: readers see every envelope in order, read on after a lost
connection without missing one, and are told (BusGap) when envelopes they never got were trimmed or
never written."""
from __future__ import annotations

import uuid

import redis

from telemetry import live

GRID = "350102001001001"


def _change(n: int) -> tuple[live.Change, ...]:
    return (live.GatewayChange(f"GW-{n}", GRID, float(n), "online"),)


def _read(reader: live.BusReader, producer: str, until: int) -> list:
    """What the reader returns of `producer` (its envelopes' numbers, and gaps), until `until`."""
    seen: list = []
    for _ in range(100):
        items = reader.read()
        seen += [int(i.changes[0].gateway_id[3:]) if isinstance(i, live.Envelope) else i for i in items
                 if getattr(i, "producer", None) == producer]
        if until in seen or not items:
            break
    return seen


def test_a_reader_sees_every_envelope_once_in_order(redis_client):
    writer = live.BusWriter(redis_client, f"p-{uuid.uuid4().hex[:6]}")
    reader = live.BusReader(redis_client, block_ms=200, count=7)
    reader.start_at_end()
    for n in range(25):
        writer.publish(_change(n))
    assert _read(reader, writer.producer, 24) == list(range(25))


def test_a_reader_that_lost_its_connection_reads_on_from_where_it_was(settings, redis_client):
    writer = live.BusWriter(redis_client, f"p-{uuid.uuid4().hex[:6]}")
    name = f"reader-{uuid.uuid4().hex[:6]}"
    own = redis.Redis(host=settings.redis_host, port=settings.redis_port,
                      password=settings.redis_password.get_secret_value(), client_name=name)
    reader = live.BusReader(own, block_ms=200)
    reader.start_at_end()
    writer.publish(_change(0))
    assert _read(reader, writer.producer, 0) == [0]
    [client] = [c for c in redis_client.client_list() if c.get("name") == name]
    redis_client.client_kill_filter(_id=client["id"])   # Redis drops the reader's connection
    for n in range(1, 6):                                # published while the reader is cut off
        writer.publish(_change(n))
    seen = []
    for _ in range(5):
        try:
            seen += _read(reader, writer.producer, 5)
        except redis.ConnectionError:
            continue                                     # what the hub does: read again
        if 5 in seen:
            break
    assert seen == [1, 2, 3, 4, 5]                       # nothing missed, nothing twice, no resync
    own.close()


def test_a_reader_that_fell_behind_the_trimming_is_told_what_it_missed(redis_client):
    writer = live.BusWriter(redis_client, f"p-{uuid.uuid4().hex[:6]}")
    reader = live.BusReader(redis_client, block_ms=200, count=100)
    reader.start_at_end()
    writer.publish(_change(0))
    assert _read(reader, writer.producer, 0) == [0]
    last = 3 * live.STREAM_MAXLEN
    for n in range(1, last + 1):
        writer.publish(_change(n))
    assert redis_client.xlen(live.Keys.STREAM) < 2 * live.STREAM_MAXLEN   # trimmed meanwhile
    seen = _read(reader, writer.producer, last)
    [gap] = [item for item in seen if isinstance(item, live.BusGap)]
    first_kept = seen[seen.index(gap) + 1]
    assert gap.missed == first_kept - 1 > 0              # exactly the envelopes that were trimmed
    assert seen[seen.index(gap) + 1:] == list(range(first_kept, last + 1))


def test_a_write_that_failed_shows_as_a_gap_not_as_silence(redis_client):
    """Changes applied to the live state but never put on the bus must not go unnoticed."""
    writer = live.BusWriter(redis_client, f"p-{uuid.uuid4().hex[:6]}")
    reader = live.BusReader(redis_client, block_ms=200)
    reader.start_at_end()
    writer.publish(_change(0))
    writer.seq += 1                                      # as if the next write had failed
    writer.publish(_change(2))
    seen = _read(reader, writer.producer, 2)
    assert seen[0] == 0 and isinstance(seen[1], live.BusGap) and seen[1].missed == 1 and seen[2] == 2


def test_a_restarted_producer_starts_a_new_numbering_without_a_gap(redis_client):
    producer = f"p-{uuid.uuid4().hex[:6]}"
    reader = live.BusReader(redis_client, block_ms=200)
    reader.start_at_end()
    first = live.BusWriter(redis_client, producer)
    for n in range(3):
        first.publish(_change(n))
    live.BusWriter(redis_client, producer).publish(_change(3))   # the same worker, restarted: seq 1 again
    assert _read(reader, producer, 3) == [0, 1, 2, 3]

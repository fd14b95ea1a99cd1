"""Crash-loop protection for the ingest workers (see Redeliveries)."""
from __future__ import annotations

import hashlib
import logging

import redis

from ingest.model import POISON, Delivery, Rejection
from telemetry.live import Keys

log = logging.getLogger(__name__)


class Redeliveries:
    """Crash-loop protection for a message that kills the worker outright (a segfault, the OOM
    killer): it is never acknowledged, so the broker delivers it again, marked DUP, after every
    restart. For redelivered messages only (first deliveries cost nothing), Redis counts how often
    their processing began again: the first delivery and the first redelivery are processed with
    their batch, later ones alone (so the messages that merely shared its batch get through), and
    a message whose processing began `limit` times without an acknowledgement is dead-lettered as
    `poison`, unprocessed. Redis being away disables the protection (logged), never the ingest."""

    REMEMBER_S = 86400

    def __init__(self, limit: int) -> None:
        self.limit = limit

    @classmethod
    def key(cls, delivery: Delivery) -> str:
        inbound = delivery.inbound
        return Keys.redelivery_begun(hashlib.sha256(inbound.topic.encode() + b"\0" + inbound.payload).hexdigest())

    def triage(self, r, deliveries: list[Delivery]) -> tuple[list[Delivery], list[Delivery], dict[int, Rejection]]:
        """(the batch to process together, the deliveries to process one by one, the batch's
        indexes not to process at all: their rejection). Counts the batch's redeliveries begun."""
        dups = [d for d in deliveries if d.inbound.dup]
        again = dict(zip(map(id, dups), self._counts(r, dups), strict=True))
        together, alone, doomed = [], [], {}
        for delivery in deliveries:
            began = again.get(id(delivery), -1) + 1     # the first delivery began it too
            if began >= self.limit:
                doomed[len(together)] = Rejection(POISON, f"redelivered after its processing began {began} times "
                                                          "without an acknowledgement (did the worker die on it?)")
            (alone if 2 <= began < self.limit else together).append(delivery)
        self.begin(r, [d for i, d in enumerate(together) if d.inbound.dup and i not in doomed])
        return together, alone, doomed

    def _counts(self, r, dups: list[Delivery]) -> list[int]:
        if not dups:
            return []
        try:
            return [int(c or 0) for c in r.mget([self.key(d) for d in dups])]
        except (redis.RedisError, OSError) as exc:
            log.warning("cannot read the redelivery counts (%s); processing the redeliveries as usual", exc)
            return [0] * len(dups)

    def begin(self, r, deliveries: list[Delivery]) -> None:
        """Count the beginning of these redeliveries' processing."""
        if not deliveries:
            return
        try:
            pipe = r.pipeline(transaction=False)
            for delivery in deliveries:
                pipe.incr(self.key(delivery))
                pipe.expire(self.key(delivery), self.REMEMBER_S)
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            log.warning("cannot count redeliveries (%s)", exc)

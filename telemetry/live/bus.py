"""The live bus: one envelope per committed batch on a Redis stream (see telemetry.live)."""
from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

import orjson

from telemetry.live.changes import CHANGE_TYPES, Change, change_from
from telemetry.live.keys import STREAM_FIELD, STREAM_MAXLEN, VERSION, Keys

# --- the bus envelope ------------------------------------------------------------------------------

class EnvelopeError(ValueError):
    """A bus entry this reader cannot use (another format version, or not an envelope at all)."""


@dataclass(frozen=True)
class Envelope:
    """One committed batch's changes, as one bus entry. A producer numbers its envelopes (`seq`,
    from 1 for each `boot` of the producer), so a reader can tell that it missed one."""
    producer: str
    changes: tuple[Change, ...]
    boot: str = ""
    seq: int = 0
    sent_at: float = 0.0
    unknown_kinds: int = 0         # changes of kinds this reader does not know (a newer writer)

    def encode(self) -> bytes:
        by_kind: dict[str, list[Change]] = {}
        for change in self.changes:
            by_kind.setdefault(change.KIND, []).append(change)
        return orjson.dumps({"v": VERSION, "producer": self.producer, "boot": self.boot, "seq": self.seq,
                             "sent_at": self.sent_at or time.time(), "changes": by_kind})

    @classmethod
    def decode(cls, raw: bytes) -> Envelope:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise EnvelopeError(f"not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("v") != VERSION:
            version = data.get("v") if isinstance(data, dict) else None
            raise EnvelopeError(f"envelope version {version!r}; this reader knows {VERSION}")
        changes: list[Change] = []
        unknown = 0
        try:
            for kind, items in data["changes"].items():
                if kind not in CHANGE_TYPES:
                    unknown += len(items)
                    continue
                changes.extend(change_from(kind, item) for item in items)
            seq, sent_at = int(data.get("seq") or 0), float(data.get("sent_at") or 0)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise EnvelopeError(f"malformed envelope: {exc!r}") from None
        return cls(str(data.get("producer", "")), tuple(changes), str(data.get("boot", "")), seq, sent_at, unknown)


class BusWriter:
    """One producer's side of the bus: numbers its envelopes and appends them to the stream
    (approximately trimmed to STREAM_MAXLEN). The number goes up before the write: a write that
    failed can only make a reader see a gap it need not have (a resync), never hide one."""

    def __init__(self, r, producer: str) -> None:
        self.r = r
        self.producer = producer
        self.boot = uuid.uuid4().hex[:12]
        self.seq = 0
        self._lock = threading.Lock()   # request threads share one writer: numbers go out in order

    def publish(self, changes: tuple[Change, ...] | list[Change]) -> bytes:
        """Put the changes on the bus as one envelope."""
        with self._lock:
            self.seq += 1
            envelope = Envelope(self.producer, tuple(changes), self.boot, self.seq)
            return self.r.xadd(Keys.STREAM, {STREAM_FIELD: envelope.encode()}, maxlen=STREAM_MAXLEN,
                               approximate=True)

    def skip(self) -> None:
        """Use up a number without writing: changes were made that may never reach the bus (a live
        update that failed half-way), so the next envelope shows readers a gap and they resync."""
        with self._lock:
            self.seq += 1


@dataclass(frozen=True)
class BusGap:
    """Envelopes of a producer this reader never got (trimmed while it was behind, or never
    written): what it shows may be stale and must be rebuilt from the stored state (a resync)."""
    producer: str
    missed: int


class BusReader:
    """Reads the bus in order from where it left off, across lost connections. `read()` blocks up
    to `block_ms` and returns what came since the last call, in order: envelopes, entries it could
    not decode (`EnvelopeError`), and a `BusGap` where a producer's numbering jumped."""

    def __init__(self, r, *, block_ms: int = 1000, count: int = 500) -> None:
        self.r = r
        self.block_ms = block_ms
        self.count = count
        self.last_id: bytes | None = None         # None: not started; then it starts at the end
        self._last_seq: dict[tuple[str, str], int] = {}   # (producer, boot) -> last seq read

    def start_at_end(self) -> None:
        """Begin after the newest entry now on the bus (what came before is in the snapshots)."""
        newest = self.r.xrevrange(Keys.STREAM, count=1)
        self.last_id = newest[0][0] if newest else b"0-0"

    def read(self) -> list[Envelope | EnvelopeError | BusGap]:
        if self.last_id is None:
            self.start_at_end()
        reply = self.r.xread({Keys.STREAM: self.last_id}, count=self.count, block=self.block_ms)
        entries = reply[0][1] if reply else []
        out: list[Envelope | EnvelopeError | BusGap] = []
        for entry_id, values in entries:
            self.last_id = entry_id
            try:
                envelope = Envelope.decode(values.get(STREAM_FIELD.encode(), b""))
            except EnvelopeError as exc:
                out.append(exc)
                continue
            gap = self._numbering(envelope)
            if gap is not None:
                out.append(gap)
            out.append(envelope)
        return out

    def _numbering(self, envelope: Envelope) -> BusGap | None:
        key = (envelope.producer, envelope.boot)
        last = self._last_seq.get(key)
        self._last_seq[key] = max(envelope.seq, last or 0)
        if last is not None and envelope.seq > last + 1:
            return BusGap(envelope.producer, envelope.seq - last - 1)
        return None

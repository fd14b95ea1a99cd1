"""The store stage: a batch of accepted messages and dead letters into TimescaleDB, in one
transaction, COPY per table.

COPY cannot skip duplicates, so each table's rows are COPYed into a session-private staging table
and moved with `insert ... on conflict do nothing` against the table's natural key: a redelivered
message never becomes a second row. Errors are sorted: temporary ones (connection lost, server
shutting down, serialization failure, out of resources) raise `TemporaryStoreError` and the whole
batch is retried later, unacknowledged; permanent ones (the data itself is refused) are narrowed
down to the offending messages, which become dead letters with the server's reason (the worker
bisects: see worker.py).

A dead letter keeps at most the first DEAD_LETTER_PAYLOAD_MAX bytes of its payload, with the whole
payload's size and SHA-256, and at most DEAD_LETTER_TOPIC_MAX bytes of its topic and
DEAD_LETTER_DETAIL_MAX characters of its detail (MQTT topics may be 64 KB long).
"""
from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

import psycopg2
import psycopg2.errors

from ingest.model import Enriched, Inbound, Rejection
from telemetry.kinds import TABLES, kind_of

log = logging.getLogger(__name__)

DEAD_LETTER_COLUMNS = ("time", "topic", "payload", "payload_size", "payload_sha256", "reason", "detail", "worker")
DEAD_LETTER_PAYLOAD_MAX = 8 * 1024
DEAD_LETTER_TOPIC_MAX = 512          # bytes of UTF-8
DEAD_LETTER_DETAIL_MAX = 1024        # characters

# SQLSTATE classes that say "this data is refused" (22 data exception, 23 integrity violation).
# Anything else (connection, shutdown, resources, locks, permissions, a missing table after a
# botched migration, internal errors) is retried with the batch kept unacknowledged: real data must
# not turn into dead letters because the database is unwell.
_PERMANENT_CLASSES = ("22", "23")


class TemporaryStoreError(Exception):
    """The database is unavailable for now; retry the batch later."""


def row_for(item: Enriched, received_at: datetime) -> tuple[str, tuple]:
    kind = kind_of(item.message)
    return kind.table, kind.row(item, received_at)


def _printable(text: str) -> str:
    """PostgreSQL text cannot hold NUL; a dead letter must always be writable."""
    return text.replace("\x00", "\\x00")


def _capped_topic(topic: str) -> str:
    """At most DEAD_LETTER_TOPIC_MAX bytes of UTF-8, cut at a character boundary."""
    raw = topic.encode()
    if len(raw) <= DEAD_LETTER_TOPIC_MAX:
        return topic
    return raw[:DEAD_LETTER_TOPIC_MAX - 3].decode(errors="ignore") + "..."


def _capped_detail(detail: str) -> str:
    if len(detail) <= DEAD_LETTER_DETAIL_MAX:
        return detail
    return detail[:DEAD_LETTER_DETAIL_MAX - 3] + "..."


def dead_letter_row(inbound: Inbound, rejection: Rejection, worker: str) -> tuple:
    """The first DEAD_LETTER_PAYLOAD_MAX bytes of the payload, its full size and the SHA-256 of all
    of it, and why it was refused; topic and detail capped too (see the module)."""
    payload = inbound.payload
    return (inbound.received_at, _printable(_capped_topic(inbound.topic)), payload[:DEAD_LETTER_PAYLOAD_MAX],
            len(payload), hashlib.sha256(payload).digest(), rejection.reason,
            _printable(_capped_detail(rejection.detail)), worker)


def _csv_field(value) -> str:
    """COPY's CSV: NULL is an unquoted empty field; every string is quoted, so "" stays ''."""
    if value is None:
        return ""
    if isinstance(value, str):
        return '"' + value.replace('"', '""') + '"'
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    return repr(value)


def csv_text(rows: list[tuple]) -> str:
    return "".join(",".join(_csv_field(v) for v in row) + "\n" for row in rows)


@dataclass
class Batch:
    """Rows per table, with the inbound message each row came from (to narrow down failures)."""
    rows: dict[str, list[tuple]] = field(default_factory=dict)
    origins: dict[str, list[int]] = field(default_factory=dict)   # row -> index of its inbound message
    dead_letters: list[tuple] = field(default_factory=list)

    def add(self, table: str, row: tuple, origin: int) -> None:
        self.rows.setdefault(table, []).append(row)
        self.origins.setdefault(table, []).append(origin)

    def message_indexes(self) -> list[int]:
        """The messages that have rows here, in order."""
        return sorted({o for per_table in self.origins.values() for o in per_table})

    def subset(self, origins: list[int]) -> Batch:
        """Only the rows of these messages (no dead letters)."""
        wanted, part = set(origins), Batch()
        for table, rows in self.rows.items():
            for row, o in zip(rows, self.origins[table], strict=True):
                if o in wanted:
                    part.add(table, row, o)
        return part


@dataclass
class WriteResult:
    inserted: dict[str, int]
    duplicates: int


class Store:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn = None

    def _connect(self):
        if self.conn is None or self.conn.closed:
            conn = psycopg2.connect(self.dsn, connect_timeout=5, application_name="gcc-ingest")
            with conn, conn.cursor() as cur:
                for table in TABLES:
                    cur.execute(f"create temp table if not exists stage_{table} "
                                f"(like {table} including defaults) on commit delete rows")
            self.conn = conn
        return self.conn

    def close(self) -> None:
        if self.conn is not None and not self.conn.closed:
            self.conn.close()

    def _copy(self, cur, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
        cur.copy_expert(f"copy {table} ({', '.join(columns)}) from stdin with (format csv)",
                        io.StringIO(csv_text(rows)))

    def _write_once(self, batch: Batch) -> WriteResult:
        conn = self._connect()
        inserted, duplicates = {}, 0
        with conn, conn.cursor() as cur:
            for table, rows in batch.rows.items():
                kind = TABLES[table]
                cols = ", ".join(kind.columns)
                self._copy(cur, f"stage_{table}", kind.columns, rows)
                cur.execute(f"insert into {table} ({cols}) select {cols} from stage_{table} "
                            f"on conflict ({', '.join(kind.natural_key)}) do nothing")
                inserted[table] = cur.rowcount
                duplicates += len(rows) - cur.rowcount
            if batch.dead_letters:
                self._copy(cur, "dead_letters", DEAD_LETTER_COLUMNS, batch.dead_letters)
        return WriteResult(inserted, duplicates)

    def raised_by(self, alarm_ids: list[str]) -> dict[str, set[str]]:
        """The sensors that have a stored `raised` row for each of these alarm ids (index
        device_alarms_alarm_id), for the forged-clear check. Raises TemporaryStoreError like write."""
        if not alarm_ids:
            return {}
        with self._sorted_errors():
            conn = self._connect()
            with conn, conn.cursor() as cur:
                cur.execute("select distinct alarm_id, sensor_id from device_alarms "
                            "where alarm_id = any(%s) and state = 'raised'", (list(alarm_ids),))
                raised: dict[str, set[str]] = {}
                for alarm_id, sensor_id in cur.fetchall():
                    raised.setdefault(alarm_id, set()).add(sensor_id)
                return raised

    def write(self, batch: Batch) -> WriteResult:
        """Commit the batch, or raise TemporaryStoreError (nothing committed)."""
        with self._sorted_errors():
            return self._write_once(batch)

    @contextmanager
    def _sorted_errors(self):
        """A temporary database error becomes TemporaryStoreError (and a fresh connection next
        time); a permanent one is raised as it is."""
        try:
            yield
        except psycopg2.Error as exc:
            if is_temporary(exc):
                self._reset()
                raise TemporaryStoreError(str(exc).strip()) from exc
            raise

    def _reset(self) -> None:
        try:
            self.close()
        finally:
            self.conn = None


def is_temporary(exc: psycopg2.Error) -> bool:
    code = getattr(exc, "pgcode", None) or ""
    return code[:2] not in _PERMANENT_CLASSES


def bisect_failures(group: list[int], failure: BaseException, attempt: Callable[[list[int]], BaseException | None],
                    tries_alone: Callable[[BaseException], int]) -> list[tuple[int, BaseException]]:
    """`group` was attempted as a whole and failed with `failure`: attempt each half, and the
    halves of a half that fails, until every failure is down to one item alone. An item that fails
    alone is tried again until it has failed `tries_alone(failure)` times alone (1: a
    deterministic refusal is not retried). Returns the items that still fail, with their last
    failure; everything else was attempted successfully. One bad item among n costs about
    2·log2(n) attempts, half of them successful."""
    if len(group) == 1:
        for _ in range(tries_alone(failure) - 1):
            again = attempt(group)
            if again is None:
                return []
            failure = again
        return [(group[0], failure)]
    half = len(group) // 2
    failed = []
    for part in (group[:half], group[half:]):
        part_failure = attempt(part)
        if part_failure is not None:
            failed += bisect_failures(part, part_failure, attempt, tries_alone)
    return failed

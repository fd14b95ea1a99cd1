"""Reading many rows of fixed-width columns fast: `COPY (query) TO STDOUT (FORMAT binary)` parsed
by numpy in one go, instead of a Python tuple and objects per row (a member's full day of fixes,
17,280 rows: 9 ms, against 27 ms for the rows alone and 48 ms with the conversion to arrays, on
this machine).

The format is PostgreSQL's own (https://www.postgresql.org/docs/current/sql-copy.html, "Binary
Format"): an 11-byte signature, a 32-bit flags field and a header extension whose length is given;
then per row a 16-bit field count and, per field, a 32-bit length and the value in network byte
order; a 16-bit -1 ends it. Only NOT NULL `timestamptz` and `float8` columns are read here, so
every row has the same size; anything else (a null, another width) is refused, not misread.
"""
from __future__ import annotations

import io
import struct

import numpy as np

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
EPOCH_2000_S = 946_684_800.0           # timestamptz counts microseconds from 2000-01-01 UTC
KINDS = {"timestamptz": ">i8", "float8": ">f8"}


class CopyFormatError(ValueError):
    """The bytes are not the rows asked for."""


def read(cur, sql: str, args: tuple, kinds: tuple[str, ...]) -> list[np.ndarray]:
    """The query's columns as arrays: a timestamptz as seconds since the epoch, a float8 as is."""
    buf = io.BytesIO()
    cur.copy_expert(cur.mogrify(f"copy ({sql}) to stdout (format binary)", args).decode(), buf)
    return parse(buf.getvalue(), kinds)


def parse(data: bytes, kinds: tuple[str, ...]) -> list[np.ndarray]:
    if not data.startswith(SIGNATURE) or len(data) < len(SIGNATURE) + 10:
        raise CopyFormatError("not PostgreSQL's binary COPY format")
    _flags, extension = struct.unpack_from(">ii", data, len(SIGNATURE))
    start = len(SIGNATURE) + 8 + extension
    if data[-2:] != b"\xff\xff":
        raise CopyFormatError("the binary COPY data has no trailer")
    fields = [("count", ">i2")]
    for i, kind in enumerate(kinds):
        fields += [(f"len{i}", ">i4"), (f"v{i}", KINDS[kind])]
    row = np.dtype(fields)
    body = data[start:-2]
    if len(body) % row.itemsize:
        raise CopyFormatError("the rows are not all of the widths asked for (a null, or another type)")
    rows = np.frombuffer(body, dtype=row)
    if (rows["count"] != len(kinds)).any() or any((rows[f"len{i}"] != 8).any() for i in range(len(kinds))):
        raise CopyFormatError("the rows are not all of the widths asked for (a null, or another type)")
    return [rows[f"v{i}"] / 1e6 + EPOCH_2000_S if kind == "timestamptz" else rows[f"v{i}"].astype(float)
            for i, kind in enumerate(kinds)]

"""Rows -> PostgreSQL binary COPY data, encoded once per request while the rows are hot.

Why not ``AsyncCopy.write_row`` per row: each call is a coroutine plus a Python-level formatter
call around the C encoder, ~1 us per row, i.e. ~0.5 ms of a 500-sample request's CPU; the C
encoder itself takes ~0.2 us per row (benchmarks/ingest.py, docs/ingest.md). So each request
encodes its rows with psycopg's own C row encoder (``format_row_binary``, the function
``write_row`` calls), and a flush sends every request's bytes in one ``copy.write`` between the
format's signature and trailer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

# The C implementation with psycopg[binary]; private to psycopg, so tests/test_ingest.py checks
# our payload against what the server itself emits, byte for byte.
from psycopg._copy_base import format_row_binary
from psycopg.abc import Transformer as TransformerProto
from psycopg.adapt import Transformer
from psycopg.pq import Format

# (device, collected_at, cpu%, mem GB, mem%, disk GB, disk%, load 1/5/15, uptime, rx, tx):
# the column order of agent_metrics and of the COPY statements in queries.sql; the gauges are
# scaled integers (validate.SCALES).
COPY_TYPES = ["uuid", "timestamptz", "int2", "int4", "int2", "int4", "int2"] + ["int4"] * 3 + ["int8"] * 3
# Header: signature, flags (no OIDs), header-extension length; trailer: a field count of -1.
SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"


def _transformer() -> TransformerProto:
    """Dumpers from the global adapters: the row types need nothing per connection (aware
    timestamps are sent as UTC microseconds, whatever the session's TimeZone)."""
    tx = Transformer()
    tx.set_dumper_types([psycopg.adapters.types[name].oid for name in COPY_TYPES], Format.BINARY)
    return tx


_TX = _transformer()  # used from the event loop's thread only


def encode_rows(rows: Sequence[Sequence[Any]]) -> bytearray:
    """The tuples of ``rows`` in binary COPY format, without signature or trailer."""
    out = bytearray()
    for row in rows:
        format_row_binary(row, _TX, out)
    return out


def stream(parts: Iterable[bytes | bytearray]) -> bytes:
    """One complete COPY payload from the encoded rows of several requests."""
    return b"".join([SIGNATURE, *parts, TRAILER])

"""What the API accepts, said once: msgspec types that match what the columns store, the time
windows, the NUL rule and the JSON shape limits (docs/CONVENTIONS.md, "Input limits").

Every wire contract (``*/structs.py``) builds its fields from these, so a value the database
would refuse is a 422 naming the field at the edge, never a failed statement later: a 500, or
worse, a failed ingest flush that takes other requests with it.

* Integers: ``Int32``/``NonNegativeInt32`` for INTEGER columns, ``Count64`` for BIGINT counters.
* Metric gauges (``Percent``, ``Gigabytes``, ``Load``): ranges are checked at double precision;
  the value is then stored as an integer at the agent's precision (ingest/validate.py ``SCALES``):
  a metric of 1e-50 is 0 for every purpose, and refusing it would make an agent drop the whole
  sample. Other floats stored in REAL columns are rounded to float4 on the way in (binary
  parameters): magnitudes below float4's smallest subnormal (about 1.4e-45) are stored as 0.
* Strings: ``Text*`` cap the length at the VARCHAR's (characters, as PostgreSQL counts them) or, for
  TEXT columns, at a stated size. U+0000 (NUL), which PostgreSQL text and JSONB cannot hold, is
  replaced by U+FFFD wherever a string is accepted (body, WebSocket message, query string): one
  rule, the one command output and event data always had; nothing a client sent is lost or
  refused for it. ``scrub_json`` does it on the raw JSON, ``scrub`` on a decoded string.
* Timestamps: nothing before 2000-01-01 anywhere. A time an agent reports about something that
  happened (a result's ``started_at``, an event's ``timestamp``) must not be later than now +
  ``MAX_CLOCK_SKEW``; a planned time or a query bound (maintenance windows, history ranges) not
  later than 2100-01-01. Outside that, PostgreSQL would store values that Python cannot read back
  (year 0 or 10000 once the offset is applied), which broke every later list.
* JSON shape: ``check_json_shape`` refuses bodies nested deeper than ``MAX_JSON_DEPTH`` (400) or
  holding more than ``MAX_JSON_VALUES`` values (413) before anything is decoded, so a hostile
  body costs a scan, not a recursion error or a million Python objects.
"""

from __future__ import annotations

import re
from array import array
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate
from typing import Annotated

import msgspec
from msgspec import Meta

from rts_monitor.core.errors import BadRequest, PayloadTooLarge, ValidationFailed

# --- numbers --------------------------------------------------------------------------------------

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MAX = 2**63 - 1
REAL_MAX = 3.4028234663852886e38  # float4's largest finite value

Int32 = Annotated[int, Meta(ge=INT32_MIN, le=INT32_MAX)]
NonNegativeInt32 = Annotated[int, Meta(ge=0, le=INT32_MAX)]
PositiveInt32 = Annotated[int, Meta(ge=1, le=INT32_MAX)]
Count64 = Annotated[int, Meta(ge=0, le=INT64_MAX)]
# Anything a REAL column holds; narrower ranges below for what a metric can plausibly be.
Real = Annotated[float, Meta(ge=-REAL_MAX, le=REAL_MAX)]
Percent = Annotated[float, Meta(ge=0, le=100)]
# Sizes in GB and load averages: anything finite up to a petabyte (or a load of a million) is
# plausible; above is a bug.
Gigabytes = Annotated[float, Meta(ge=0, le=1e6)]
Load = Annotated[float, Meta(ge=0, le=1e6)]
# NUMERIC(10,2) (agent_devices.total_memory_gb, total_disk_gb): at most 99,999,999.99.
Numeric10_2 = Annotated[float, Meta(ge=0, lt=1e8)]

# --- strings: VARCHAR(n) columns and capped TEXT ----------------------------------------------------

Text16 = Annotated[str, Meta(max_length=16)]
Text17 = Annotated[str, Meta(max_length=17)]
Text20 = Annotated[str, Meta(max_length=20)]
Text50 = Annotated[str, Meta(max_length=50)]
Text64 = Annotated[str, Meta(max_length=64)]
Text100 = Annotated[str, Meta(max_length=100)]
Text255 = Annotated[str, Meta(max_length=255)]
Name50 = Annotated[str, Meta(min_length=1, max_length=50)]
Name100 = Annotated[str, Meta(min_length=1, max_length=100)]
Name255 = Annotated[str, Meta(min_length=1, max_length=255)]
# TEXT columns have no limit of their own; these are what the API stores at most.
Note = Annotated[str, Meta(max_length=4096)]  # reasons, notes, error messages
Url = Annotated[str, Meta(min_length=1, max_length=2048)]
EmailOrUserId = Annotated[str, Meta(min_length=1, max_length=255)]

# Caps of free-form JSON kept in JSONB columns (event data), as encoded JSON bytes.
MAX_EVENT_DATA_BYTES = 16 * 1024

# --- timestamps ------------------------------------------------------------------------------------

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_PLANNED = datetime(2100, 1, 1, tzinfo=UTC)
EARLIEST_DATE = date(1970, 1, 1)
# How far ahead of server time an agent's clock may be (the ingest default too:
# RTS_INGEST_MAX_FUTURE_SECONDS).
MAX_CLOCK_SKEW = timedelta(seconds=300)

AwareTime = Annotated[datetime, Meta(tz=True)]


def _aware(value: datetime) -> datetime:
    """A naive time is read as UTC for the window checks (PostgreSQL would read it in the session
    time zone, which is UTC for the API's connections)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def reported_time(value: datetime | None, field: str, *, now: datetime | None = None) -> None:
    """A time an agent reports about what happened: [2000-01-01, now + MAX_CLOCK_SKEW]."""
    if value is None:
        return
    t = _aware(value)
    if t < EARLIEST:
        raise ValidationFailed(f"{field}: {value.isoformat()} is before {EARLIEST.date()}", field=field)
    latest = (now or datetime.now(UTC)) + MAX_CLOCK_SKEW
    if t > latest:
        raise ValidationFailed(
            f"{field}: {value.isoformat()} is more than {int(MAX_CLOCK_SKEW.total_seconds())} s ahead of "
            f"server time ({datetime.now(UTC).isoformat(timespec='seconds')}); check the agent's clock", field=field)


def planned_time(value: datetime | None, field: str) -> None:
    """A planned time or a query bound: [2000-01-01, 2100-01-01)."""
    if value is None:
        return
    t = _aware(value)
    if not EARLIEST <= t < LATEST_PLANNED:
        raise ValidationFailed(f"{field}: {value.isoformat()} is outside {EARLIEST.date()} .. "
                               f"{LATEST_PLANNED.date()}", field=field)


def known_date(value: date | None, field: str) -> None:
    """A calendar date (install dates): [1970-01-01, today + 1 day]."""
    if value is None:
        return
    if not EARLIEST_DATE <= value <= date.today() + timedelta(days=1):
        raise ValidationFailed(f"{field}: {value.isoformat()} is outside {EARLIEST_DATE} .. today", field=field)


# --- NUL -------------------------------------------------------------------------------------------

REPLACEMENT = "\ufffd"
# ``\u0000`` in JSON text, unless its backslash is itself escaped (``\\u0000`` is the six
# characters \u0000, not a NUL): an even run of backslashes before it belongs to other escapes.
_JSON_NUL = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def scrub(text: str) -> str:
    """U+0000 → U+FFFD (the NUL rule, for a string already decoded)."""
    return text.replace("\x00", REPLACEMENT) if "\x00" in text else text


def scrub_json(body: bytes) -> bytes:
    """The NUL rule on JSON text: every ``\\u0000`` escape becomes ``\\ufffd`` (a raw NUL byte is not
    valid JSON and stays a decode error). Costs one substring search when there is none."""
    if b"\\u0000" not in body:
        return body
    return _JSON_NUL.sub(rb"\1\\ufffd", body)


# --- JSON shape --------------------------------------------------------------------------------------

MAX_JSON_DEPTH = 32
# Array elements and object members, nested ones included. The largest legitimate body, a
# software inventory at the body-size cap, holds about 300,000.
MAX_JSON_VALUES = 500_000

_KEEP = b'"[]{},'
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in _KEEP)
_STRING = re.compile(rb'"[^"]*"')
_ONE_KIND = bytes.maketrans(b"{}", b"[]")
_SIGNED = bytes.maketrans(b"[]", b"\x01\xff")


def check_json_shape(body: bytes, *, max_depth: int = MAX_JSON_DEPTH, max_values: int = MAX_JSON_VALUES) -> None:
    """Refuse a body nested deeper than ``max_depth`` (BadRequest) or with more than ``max_values``
    values (PayloadTooLarge), looking only at the bytes: nothing is decoded.

    Counting brackets and commas bounds both from above at memchr speed; only a body that could
    break a limit is scanned exactly, with string contents (which may hold brackets) taken out.
    """
    containers = body.count(b"[") + body.count(b"{")
    if containers <= max_depth and containers + body.count(b",") < max_values:
        return
    if b"\\" in body:  # escaped backslashes first, then escaped quotes: the quotes left delimit strings
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = body.translate(None, _NOT_STRUCTURE)
    if b'"' in structure:
        structure = _STRING.sub(b"", structure)
    brackets = structure.replace(b",", b"")
    if len(structure) - len(brackets) + len(brackets) // 2 + 1 > max_values:
        raise PayloadTooLarge(f"body: more than {max_values:,} JSON values", field="body")
    if _depth(brackets.translate(_ONE_KIND), max_depth) > max_depth:
        raise nesting_error(max_depth)


def _depth(brackets: bytes, limit: int) -> int:
    """Nesting depth of a string of ``[`` and ``]`` (at least ``limit + 1`` when deeper than ``limit``).

    Removing every innermost ``[]`` pair takes one level off a well-formed document, so ``limit``
    passes of a C-speed replace settle the usual case; malformed input (which a decoder would
    still descend into before failing) gets the exact maximum of the running depth.
    """
    rest = brackets
    for _ in range(limit):
        if not rest:
            return 0
        peeled = rest.replace(b"[]", b"")
        if peeled == rest:
            break
        rest = peeled
    if not rest:
        return 0
    return max(accumulate(array("b", brackets.translate(_SIGNED))), default=0)


def nesting_error(max_depth: int = MAX_JSON_DEPTH) -> BadRequest:
    """Too deep to decode (also what a decoder's RecursionError means)."""
    return BadRequest(f"body: JSON nested deeper than {max_depth} levels", field="body")


def check_json_size(value: object, field: str, max_bytes: int) -> None:
    """A free-form JSON value kept in a JSONB column (event data, command params) is at most
    ``max_bytes`` once encoded: a 422 naming the field otherwise."""
    size = len(msgspec.json.encode(value))
    if size > max_bytes:
        raise ValidationFailed(f"{field}: {size:,} bytes of JSON; at most {max_bytes:,}", field=field)

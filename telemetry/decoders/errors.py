"""DecodeError and the small helpers every decoder shares (JSON parsing, validation messages)."""
from __future__ import annotations

import reprlib
from typing import Any

import orjson
from pydantic import ValidationError

from telemetry.messages import INVALID_TEXT

# The stable reason codes a decoder may give (the pipeline stores them in dead_letters.reason).
INVALID_JSON = "invalid_json"
SCHEMA_VIOLATION = "schema_violation"
WRONG_TOPIC = "wrong_topic"
UNSUPPORTED_TYPE = "unsupported_type"
INVALID_SENML = "invalid_senml"
# INVALID_TEXT ("invalid_text", spelled in telemetry.messages, whose validators raise it): free text
# holding a NUL, which PostgreSQL cannot store
REASONS = frozenset({INVALID_JSON, SCHEMA_VIOLATION, WRONG_TOPIC, UNSUPPORTED_TYPE, INVALID_SENML, INVALID_TEXT})

_MAX_SHOWN = 80  # characters of an offending value quoted in a detail
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist = 3, 6, 6
_REPR.maxstring = _REPR.maxlong = _REPR.maxother = _MAX_SHOWN


class DecodeError(Exception):
    """A payload or topic that cannot become messages.

    ``reason`` is a short stable snake_case code (the decoders use only REASONS); ``detail`` says, for a human,
    which field, what value and why.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def shown(value: Any) -> str:
    """A short repr of an offending value, for a detail message: bounded in depth and size before
    it is built (a device's value may be nested 1,000 deep, or 64 KB long)."""
    text = _REPR.repr(value)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN - 3] + "..."


def load_json(payload: bytes) -> Any:
    """Parse a UTF-8 JSON document, or raise DecodeError("invalid_json")."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(INVALID_JSON, f"payload is not UTF-8 JSON: {exc}") from None


def describe_validation(exc: ValidationError, rename: dict[str, str] | None = None,
                        prefix: str = "") -> str:
    """One line naming each failing field, pydantic's message and the offending value.

    ``rename`` maps model field names back to the wire names (e.g. time -> ts).
    """
    rename = rename or {}
    parts = []
    for error in exc.errors(include_url=False):
        loc = [rename.get(str(p), str(p)) if i == 0 else str(p) for i, p in enumerate(error["loc"])]
        field = prefix + ".".join(loc) if loc else (prefix.rstrip(".") or "payload")
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] in ("missing", "model_type") or not loc:
            parts.append(f"{field}: {message}")
        else:
            parts.append(f"{field}: {message} (got {shown(error['input'])})")
    return "; ".join(parts)


def refused(exc: ValidationError, rename: dict[str, str] | None = None, prefix: str = "") -> DecodeError:
    """The DecodeError for a message the types refused: invalid_text when some free text holds a
    NUL (the database could never store it), else schema_violation; the detail names every field."""
    nul = any(error["type"] == INVALID_TEXT for error in exc.errors(include_url=False))
    return DecodeError(INVALID_TEXT if nul else SCHEMA_VIOLATION, describe_validation(exc, rename, prefix))

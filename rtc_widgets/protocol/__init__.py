"""Signaling protocol v1, read from ``protocol.json`` -- the one file that TypeScript reads too.

Every message from a browser, a phone or a socket is untrusted: :func:`parse` bounds its size, validates it against
the JSON Schema and returns a plain dict, or raises :class:`ProtocolError` with a message a user can act on.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Final

import fastjsonschema

SPEC: Final[dict[str, Any]] = json.loads(
    resources.files(__package__).joinpath("protocol.json").read_text(encoding="utf-8")
)
VERSION: Final[int] = SPEC["version"]
LIMITS: Final[dict[str, int]] = SPEC["limits"]
DEFAULTS: Final[dict[str, Any]] = SPEC["defaults"]
ERROR_CODES: Final[dict[str, str]] = SPEC["errorCodes"]
BUS: Final[dict[str, Any]] = SPEC["bus"]
RELAY: Final[dict[str, Any]] = SPEC["relay"]
MESSAGE_TYPES: Final[tuple[str, ...]] = tuple(SPEC["schema"]["properties"]["type"]["enum"])

_validate = fastjsonschema.compile(SPEC["schema"])
# JSON Schema cannot refer to the limits section: the schema's bound is checked against it once, here.
assert SPEC["schema"]["properties"]["size"]["maximum"] == RELAY["maxMediaBytes"], "protocol.json: size != maxMediaBytes"


class ProtocolError(ValueError):
    """A message broke the protocol. ``code`` is one of ``protocol.json``'s ``errorCodes``."""

    def __init__(self, code: str, message: str) -> None:
        if code not in ERROR_CODES:
            code = "internal"
        super().__init__(message)
        self.code = code

    def to_message(self, session: str | None = None) -> dict[str, Any]:
        return error(self.code, str(self), session)


def _describe(msg: Any) -> str:
    if isinstance(msg, dict):
        return f"'{str(msg.get('type'))[:32]}' message"
    return f"{type(msg).__name__} instead of a JSON object"


def validate(msg: Any, *, max_bytes: int | None = None) -> dict[str, Any]:
    """Check an already-decoded message; return it, or raise :class:`ProtocolError`."""
    limit = LIMITS["maxSignalBytes"] if max_bytes is None else max_bytes
    try:
        size = len(json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode())
    except (TypeError, ValueError, RecursionError):
        raise ProtocolError("bad-message", "signaling message is not JSON-serialisable") from None
    if size > limit:
        raise ProtocolError("too-large", f"signaling message of {size} bytes exceeds the {limit}-byte limit")
    try:
        _validate(msg)
    except fastjsonschema.JsonSchemaException as exc:
        detail = str(getattr(exc, "message", exc))[:300]
        raise ProtocolError("bad-message", f"invalid {_describe(msg)}: {detail}") from None
    return msg


def check_attachment(msg: dict[str, Any], payload: bytes | memoryview | None) -> bytes | None:
    """A validated message with its binary attachment: ``media`` needs exactly ``size`` bytes, others none.

    Returns the payload as bytes (``None`` for messages without one) or raises :class:`ProtocolError`."""
    if msg.get("type") != "media":
        if payload is not None and len(payload):
            raise ProtocolError("bad-message", f"a '{msg.get('type')}' message carries no binary attachment")
        return None
    if payload is None:
        raise ProtocolError("bad-message", "a media message arrived without its binary payload")
    if len(payload) != msg["size"]:
        raise ProtocolError(
            "bad-message", f"media payload of {len(payload)} bytes where the message says {msg['size']}"
        )
    return bytes(payload)


def parse(raw: str | bytes, *, max_bytes: int | None = None) -> dict[str, Any]:
    """Decode and validate one JSON text (size is checked before decoding)."""
    limit = LIMITS["maxSignalBytes"] if max_bytes is None else max_bytes
    if len(raw) > limit:
        raise ProtocolError("too-large", f"signaling message of {len(raw)} bytes exceeds the {limit}-byte limit")
    try:
        msg = json.loads(raw)
    except (ValueError, RecursionError):
        raise ProtocolError("bad-message", "signaling message is not valid JSON") from None
    return validate(msg, max_bytes=limit)


def dumps(msg: dict[str, Any]) -> str:
    return json.dumps(msg, separators=(",", ":"), ensure_ascii=False)


def _msg(type_: str, session: str | None, **fields: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"v": VERSION, "type": type_}
    if session is not None:
        msg["session"] = session
    msg.update(fields)
    return msg


def offer(sdp: str, session: str) -> dict[str, Any]:
    return _msg("offer", session, sdp=sdp)


def answer(sdp: str, session: str) -> dict[str, Any]:
    return _msg("answer", session, sdp=sdp)


def candidate(cand: dict[str, Any] | None, session: str) -> dict[str, Any]:
    return _msg("candidate", session, candidate=cand)


def bye(session: str | None = None, reason: str = "") -> dict[str, Any]:
    return _msg("bye", session, reason=reason[:1000]) if reason else _msg("bye", session)


def error(code: str, message: str, session: str | None = None) -> dict[str, Any]:
    return _msg("error", session, code=code if code in ERROR_CODES else "internal", message=message[:2000])


def ping(seq: int, t: float) -> dict[str, Any]:
    return _msg("ping", None, seq=seq, t=t)


def pong(seq: int, t: float) -> dict[str, Any]:
    return _msg("pong", None, seq=seq, t=t)


__all__ = [
    "BUS",
    "DEFAULTS",
    "ERROR_CODES",
    "LIMITS",
    "MESSAGE_TYPES",
    "RELAY",
    "SPEC",
    "VERSION",
    "ProtocolError",
    "answer",
    "bye",
    "candidate",
    "check_attachment",
    "dumps",
    "error",
    "offer",
    "parse",
    "ping",
    "pong",
    "validate",
]

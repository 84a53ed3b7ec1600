"""Short-lived TURN credentials in coturn's ``use-auth-secret`` REST scheme.

The shared secret stays in the server's configuration; browser and kernel get a username
``<expiry unix time>:<name>`` and the credential ``base64(HMAC-SHA1(secret, username))``, which coturn checks
against the same secret and refuses after the expiry (draft-uberti-behave-turn-rest).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any


def turn_credential(secret: str, name: str, ttl_s: int, now: float | None = None) -> tuple[str, str]:
    """``(username, credential)`` valid for ``ttl_s`` seconds from ``now``."""
    expiry = int((time.time() if now is None else now) + ttl_s)
    username = f"{expiry}:{name}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def minted_ice_servers(secret: str, urls: list[str], name: str, ttl_s: int) -> list[dict[str, Any]]:
    """RTCIceServer dicts for ``urls`` (turn:/turns: get credentials; stun: needs none)."""
    if not urls:
        return []
    turn = [u for u in urls if u.startswith(("turn:", "turns:"))]
    stun = [u for u in urls if u.startswith(("stun:", "stuns:"))]
    out: list[dict[str, Any]] = []
    if stun:
        out.append({"urls": stun})
    if turn and secret:
        username, credential = turn_credential(secret, name, ttl_s)
        out.append({"urls": turn, "username": username, "credential": credential})
    return out

"""ICE configuration: one place for STUN/TURN servers, read by every new peer on both ends.

Default is ``ice_servers=[]`` (ARCHITECTURE.md, decision 4): aiortc's own default silently contacts a public STUN
server and blocks for 5 s where it is unreachable. Set servers in Python::

    import rtc_widgets
    rtc_widgets.config.ice_servers = [{"urls": "turn:turn.example.org:443?transport=tcp",
                                       "username": "u", "credential": "p"}]

or before the kernel starts with the environment variable ``RTC_WIDGETS_ICE_SERVERS`` holding the same list as
JSON (``RTC_WIDGETS_ICE_TRANSPORT_POLICY=relay`` forces TURN for experiments;
``RTC_WIDGETS_ICE_GATHERING_TIMEOUT`` bounds the kernel's wait for STUN/TURN servers, 3 s by default).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from .protocol import DEFAULTS

ENV_ICE_SERVERS = "RTC_WIDGETS_ICE_SERVERS"
ENV_ICE_POLICY = "RTC_WIDGETS_ICE_TRANSPORT_POLICY"
ENV_GATHERING = "RTC_WIDGETS_ICE_GATHERING_TIMEOUT"


def normalize_ice_servers(servers: Any) -> list[dict[str, Any]]:
    """Check a list of RTCIceServer dicts (``urls``, optional ``username``/``credential``)."""
    if not isinstance(servers, list):
        raise ValueError("ice_servers must be a list of {'urls': ..., 'username': ..., 'credential': ...}")
    out: list[dict[str, Any]] = []
    for i, server in enumerate(servers):
        if not isinstance(server, dict) or "urls" not in server:
            raise ValueError(f"ice_servers[{i}] must be a dict with 'urls'")
        urls = server["urls"]
        url_list = [urls] if isinstance(urls, str) else urls
        if not isinstance(url_list, list) or not url_list:
            raise ValueError(f"ice_servers[{i}]['urls'] must be a string or a non-empty list of strings")
        for url in url_list:
            if not isinstance(url, str) or not url.startswith(("stun:", "stuns:", "turn:", "turns:")):
                raise ValueError(f"ice_servers[{i}]: {url!r} is not a stun:/turn: URL")
        entry: dict[str, Any] = {"urls": urls}
        for key in ("username", "credential"):
            if key in server:
                if not isinstance(server[key], str):
                    raise ValueError(f"ice_servers[{i}]['{key}'] must be a string")
                entry[key] = server[key]
        out.append(entry)
    return out


def _from_env() -> list[dict[str, Any]]:
    raw = os.environ.get(ENV_ICE_SERVERS, "").strip()
    if not raw:
        return list(DEFAULTS["iceServers"])
    try:
        return normalize_ice_servers(json.loads(raw))
    except ValueError as exc:
        raise ValueError(f"{ENV_ICE_SERVERS} is not a valid JSON list of ICE servers: {exc}") from None


def _policy_from_env() -> str:
    policy = os.environ.get(ENV_ICE_POLICY, "all").strip() or "all"
    if policy not in ("all", "relay"):
        raise ValueError(f"{ENV_ICE_POLICY} must be 'all' or 'relay', not {policy!r}")
    return policy


def _gathering_from_env() -> float:
    raw = os.environ.get(ENV_GATHERING, "").strip()
    if not raw:
        return float(DEFAULTS["iceGatheringTimeoutMs"]) / 1000
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{ENV_GATHERING} must be a number of seconds, not {raw!r}") from None
    if not 0 < value <= 60:
        raise ValueError(f"{ENV_GATHERING} must be between 0 and 60 seconds")
    return value


@dataclass
class Config:
    """Settings every new peer reads; change them before creating widgets."""

    ice_servers: list[dict[str, Any]] = field(default_factory=_from_env)
    """STUN/TURN servers for both the browser and the kernel; ``[]`` means host candidates only."""
    ice_transport_policy: str = field(default_factory=_policy_from_env)
    """``"all"`` or ``"relay"`` (only TURN candidates: for experiments)."""
    ice_gathering_timeout: float = field(default_factory=_gathering_from_env)
    """Seconds the kernel waits for STUN/TURN servers before it answers with the candidates it has (aiortc cannot
    trickle, so without a bound a dead server would hold every answer for aioice's 5 s)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "ice_servers":
            value = normalize_ice_servers(value)
        elif name == "ice_transport_policy" and value not in ("all", "relay"):
            raise ValueError("ice_transport_policy must be 'all' or 'relay'")
        elif name == "ice_gathering_timeout" and not (isinstance(value, (int, float)) and 0 < value <= 60):
            raise ValueError("ice_gathering_timeout must be between 0 and 60 seconds")
        super().__setattr__(name, value)


config = Config()

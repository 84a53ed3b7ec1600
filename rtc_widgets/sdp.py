"""SDP and ICE candidates as data: what was negotiated, in plain dicts (shown in every widget's inspector).

Only what a user asks when debugging is kept: per media section its kind, mid, direction, transport protocol and
codecs (payload type, name, clock rate, channels, fmtp parameters), the ICE credentials' presence, the DTLS role and
fingerprint algorithm, and every ``a=candidate`` line parsed into its RFC 8445 fields.
"""

from __future__ import annotations

from typing import Any

_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


def parse_candidate(line: str) -> dict[str, Any] | None:
    """One ``candidate:`` attribute (with or without ``a=``/``candidate:``) as a dict; None when unparseable.

    Keys: foundation, component, protocol, priority, address, port, type (host, srflx, prflx, relay), and when
    present related_address, related_port, tcptype.
    """
    text = line.strip()
    if text.startswith("a="):
        text = text[2:]
    if text.startswith("candidate:"):
        text = text[len("candidate:") :]
    bits = text.split()
    if len(bits) < 8 or bits[6] != "typ":
        return None
    try:
        cand: dict[str, Any] = {
            "foundation": bits[0],
            "component": int(bits[1]),
            "protocol": bits[2].lower(),
            "priority": int(bits[3]),
            "address": bits[4],
            "port": int(bits[5]),
            "type": bits[7],
        }
    except ValueError:
        return None
    extras = bits[8:]
    for key, value in zip(extras[::2], extras[1::2], strict=False):
        if key == "raddr":
            cand["related_address"] = value
        elif key == "rport" and value.isdigit():
            cand["related_port"] = int(value)
        elif key == "tcptype":
            cand["tcptype"] = value
    return cand


def _new_section(line: str) -> dict[str, Any]:
    bits = line[2:].split()
    kind = bits[0] if bits else ""
    return {
        "kind": kind,
        "mid": None,
        "port": int(bits[1]) if len(bits) > 1 and bits[1].isdigit() else 0,
        "protocol": bits[2] if len(bits) > 2 else "",
        "direction": "sendrecv",
        "codecs": [],
        "candidates": [],
        "formats": bits[3:],
        "setup": None,
        "sctp_port": None,
        "max_message_size": None,
    }


def parse_sdp(sdp: str) -> dict[str, Any]:
    """Parse a session description. Returns ``{"media": [...], "candidates": [...], "ice_lite", "fingerprint",
    "setup", "bundle"}``; each media section ``{"kind", "mid", "port", "protocol", "direction", "codecs",
    "candidates", "setup", "sctp_port", "max_message_size"}``; each codec ``{"payload_type", "name", "clock_rate",
    "channels", "fmtp"}``. Unknown lines are ignored."""
    session: dict[str, Any] = {
        "media": [],
        "candidates": [],
        "ice_lite": False,
        "fingerprint": None,
        "setup": None,
        "bundle": [],
    }
    section: dict[str, Any] | None = None
    codecs: dict[str, dict[str, Any]] = {}
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            section = _new_section(line)
            codecs = {}
            session["media"].append(section)
            continue
        if not line.startswith("a="):
            continue
        attr, _, value = line[2:].partition(":")
        target = section if section is not None else session
        if attr in _DIRECTIONS and section is not None:
            section["direction"] = attr
        elif attr == "mid" and section is not None:
            section["mid"] = value
        elif attr == "rtpmap" and section is not None:
            pt, _, spec = value.partition(" ")
            name, _, rest = spec.partition("/")
            clock, _, channels = rest.partition("/")
            codec = {
                "payload_type": int(pt) if pt.isdigit() else pt,
                "name": name,
                "clock_rate": int(clock) if clock.isdigit() else None,
                "channels": int(channels) if channels.isdigit() else None,
                "fmtp": "",
            }
            codecs[pt] = codec
            section["codecs"].append(codec)
        elif attr == "fmtp" and section is not None:
            pt, _, params = value.partition(" ")
            if pt in codecs:
                codecs[pt]["fmtp"] = params
        elif attr == "candidate":
            cand = parse_candidate(value)
            if cand is not None:
                if section is not None:
                    cand["mid"] = section["mid"]
                    section["candidates"].append(cand)
                session["candidates"].append(cand)
        elif attr == "fingerprint":
            session["fingerprint"] = value.split(" ", 1)[0]
        elif attr == "setup":
            target["setup"] = value
            session["setup"] = session["setup"] or value
        elif attr == "ice-lite":
            session["ice_lite"] = True
        elif attr == "group" and value.startswith("BUNDLE"):
            session["bundle"] = value.split()[1:]
        elif attr == "sctp-port" and section is not None and value.isdigit():
            section["sctp_port"] = int(value)
        elif attr == "max-message-size" and section is not None and value.isdigit():
            section["max_message_size"] = int(value)
    for media in session["media"]:
        if media["kind"] == "application" and not media["codecs"]:
            media["codecs"] = [{"payload_type": None, "name": "SCTP", "clock_rate": None, "channels": None, "fmtp": ""}]
        media.pop("formats", None)
    return session


class SdpPair:
    """``widget.sdp``: the kernel's (``local``, the answer) and the browser's (``remote``, the offer) descriptions,
    parsed; ``local_text``/``remote_text`` hold the raw SDP. Empty dicts before the first offer."""

    def __init__(self) -> None:
        self.local_text = ""
        self.remote_text = ""
        self.local: dict[str, Any] = {}
        self.remote: dict[str, Any] = {}

    def set_local(self, sdp: str) -> None:
        self.local_text, self.local = sdp, parse_sdp(sdp)

    def set_remote(self, sdp: str) -> None:
        self.remote_text, self.remote = sdp, parse_sdp(sdp)

    def codecs(self) -> list[dict[str, Any]]:
        """Codecs both ends agreed on: the answer's codecs, by media section."""
        out = []
        for media in self.local.get("media", []):
            for codec in media["codecs"]:
                out.append({"kind": media["kind"], "mid": media["mid"], **codec})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"local": self.local, "remote": self.remote}

    def __repr__(self) -> str:
        kinds = [m["kind"] for m in self.local.get("media", [])] or [m["kind"] for m in self.remote.get("media", [])]
        return f"<SdpPair media={kinds} local={bool(self.local)} remote={bool(self.remote)}>"


__all__ = ["SdpPair", "parse_candidate", "parse_sdp"]

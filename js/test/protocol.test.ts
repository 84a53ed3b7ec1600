import { describe, expect, it } from "vitest";
import protocol from "../../rtc_widgets/protocol/protocol.json";
import {
  byeMsg,
  candidateMsg,
  DEFAULTS,
  ERROR_CODES,
  errorMsg,
  LIMITS,
  newSessionId,
  offerMsg,
  parseControl,
  pingMsg,
  pongMsg,
  VERSION,
  validate,
} from "../src/protocol";

const SDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n";
const SESSION = "abcDEF123_-xyz789";

describe("protocol constants come from protocol.json", () => {
  it("exports the shared version, limits, defaults and error codes", () => {
    expect(VERSION).toBe(protocol.version);
    expect(LIMITS).toEqual(protocol.limits);
    expect(DEFAULTS).toEqual(protocol.defaults);
    expect([...ERROR_CODES].sort()).toEqual(Object.keys(protocol.errorCodes).sort());
  });
});

describe("validate accepts every well-formed message", () => {
  const valid: [string, unknown][] = [
    ["offer", offerMsg(SESSION, SDP)],
    ["answer", { v: VERSION, type: "answer", session: SESSION, sdp: SDP }],
    [
      "candidate",
      candidateMsg(SESSION, {
        candidate: "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host",
        sdpMid: "0",
        sdpMLineIndex: 0,
        usernameFragment: "abcd",
      }),
    ],
    ["end-of-candidates", candidateMsg(SESSION, null)],
    ["bye", byeMsg(SESSION)],
    ["bye with reason", byeMsg(SESSION, "page closed")],
    ["bye without session", { v: VERSION, type: "bye" }],
    ["error", errorMsg(SESSION, "bad-sdp", "could not apply")],
    ["ping", pingMsg(3, 1234.5)],
    ["pong", pongMsg(3, 1234.5)],
  ];
  for (const [name, msg] of valid) {
    it(name, () => {
      const r = validate(msg);
      expect(r).toEqual({ ok: true, msg });
    });
  }
});

describe("validate rejects malformed messages with a reason", () => {
  const invalid: [string, unknown, RegExp][] = [
    ["wrong version", { ...offerMsg(SESSION, SDP), v: VERSION + 1 }, /v must be equal to constant/],
    ["missing version", { type: "bye", session: SESSION }, /required property 'v'/],
    [
      "unknown type",
      { v: VERSION, type: "renegotiate-now", session: SESSION },
      /type must be equal to one of/,
    ],
    ["offer without sdp", { v: VERSION, type: "offer", session: SESSION }, /'sdp'/],
    ["answer without session", { v: VERSION, type: "answer", sdp: SDP }, /'session'/],
    ["candidate without candidate", { v: VERSION, type: "candidate", session: SESSION }, /'candidate'/],
    [
      "candidate with unknown key",
      candidateMsg(SESSION, { candidate: "x", foo: 1 } as never),
      /additional properties \(foo\)/,
    ],
    ["error without code", { v: VERSION, type: "error", session: SESSION, message: "x" }, /'code'/],
    [
      "error with unknown code",
      { v: VERSION, type: "error", code: "oops", message: "x" },
      /code must be equal/,
    ],
    ["ping without seq", { v: VERSION, type: "ping", t: 1 }, /'seq'/],
    ["ping with negative seq", { v: VERSION, type: "ping", seq: -1, t: 1 }, /seq must be >= 0/],
    ["sdp too short", offerMsg(SESSION, "v=0"), /sdp must NOT have fewer/],
    [
      "sdp over the schema's maxLength",
      offerMsg(SESSION, `v=0\r\n${"a".repeat(100_000)}`),
      /sdp must NOT have more/,
    ],
    ["session with a space", offerMsg("bad session", SDP), /session must match pattern/],
    ["session with a slash", offerMsg("../etc", SDP), /session must match pattern/],
    ["empty session", offerMsg("", SDP), /session must match pattern/],
    ["session too long", offerMsg("a".repeat(65), SDP), /session must match pattern/],
    ["not an object", "offer", /must be object/],
    ["null", null, /must be object/],
  ];
  for (const [name, msg, reason] of invalid) {
    it(name, () => {
      const r = validate(msg);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error).toMatch(reason);
    });
  }

  it("rejects a message whose JSON is over limits.maxSignalBytes, before schema checks", () => {
    const big = { ...byeMsg(SESSION), reason: "x", padding: "y".repeat(LIMITS.maxSignalBytes) };
    const r = validate(big);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(new RegExp(`over the ${LIMITS.maxSignalBytes}-byte limit`));
  });

  it("counts the size in UTF-8 bytes, not characters", () => {
    // Each "é" is 1 UTF-16 unit but 2 UTF-8 bytes: under the limit in characters, over it in bytes.
    const reason = "é".repeat(Math.ceil(LIMITS.maxSignalBytes / 2) + 10);
    const r = validate({ v: VERSION, type: "bye", session: SESSION, reason });
    expect(JSON.stringify({ reason }).length).toBeLessThan(LIMITS.maxSignalBytes);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(/byte limit/);
  });

  it("honours a smaller limit for control messages", () => {
    const r = validate({ ...pingMsg(1, 2), pad: "x".repeat(LIMITS.maxControlBytes) }, LIMITS.maxControlBytes);
    expect(r.ok).toBe(false);
  });
});

describe("parseControl", () => {
  it("accepts a ping sent as text", () => {
    expect(parseControl(JSON.stringify(pingMsg(7, 99.5)))).toEqual({ ok: true, msg: pingMsg(7, 99.5) });
  });
  it("rejects binary, non-JSON, oversized and non-ping/pong messages", () => {
    expect(parseControl(new ArrayBuffer(4)).ok).toBe(false);
    expect(parseControl("{not json").ok).toBe(false);
    expect(
      parseControl(JSON.stringify({ ...pingMsg(1, 1), pad: "x".repeat(LIMITS.maxControlBytes) })).ok,
    ).toBe(false);
    expect(parseControl(JSON.stringify(byeMsg(SESSION))).ok).toBe(false);
    expect(parseControl(JSON.stringify({ v: VERSION + 1, type: "ping", seq: 1, t: 1 })).ok).toBe(false);
  });
});

describe("constructors", () => {
  it("always stamp the protocol version", () => {
    for (const m of [offerMsg(SESSION, SDP), candidateMsg(SESSION, null), byeMsg(SESSION), pingMsg(1, 1)]) {
      expect(m.v).toBe(protocol.version);
    }
  });
  it("cut an over-long error text so the message stays valid", () => {
    const m = errorMsg(SESSION, "internal", "x".repeat(10_000));
    expect(validate(m).ok).toBe(true);
    expect(m.message.endsWith("…")).toBe(true);
  });
  it("make session ids that match the schema and do not repeat", () => {
    const ids = new Set(Array.from({ length: 200 }, newSessionId));
    expect(ids.size).toBe(200);
    for (const id of ids) {
      expect(id).toMatch(/^[A-Za-z0-9_-]{16,64}$/);
      expect(validate(byeMsg(id)).ok).toBe(true);
    }
  });
});

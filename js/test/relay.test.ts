import { describe, expect, it } from "vitest";
import { type DataMsg, type Message, validate } from "../src/protocol";
import { RELAY_MAX_MESSAGE_BYTES, RelayChannel } from "../src/relay";

function pair() {
  const wire: Message[] = [];
  const a = new RelayChannel("chat", "s1", "why", (m) => wire.push(m) > 0);
  const b = new RelayChannel("chat", "s1", "why", () => true);
  a.open();
  b.open();
  return { a, b, wire };
}

describe("RelayChannel", () => {
  it("carries text and binary as valid protocol messages, in order", () => {
    const { a, b, wire } = pair();
    const got: unknown[] = [];
    b.addEventListener("message", (e) => got.push((e as MessageEvent).data));
    a.send("hé ✓");
    a.send(new Uint8Array([0, 1, 255]));
    a.send(new Uint8Array(RELAY_MAX_MESSAGE_BYTES).buffer);
    for (const m of wire) {
      expect(validate(m).ok).toBe(true);
      expect(b.receive(m as DataMsg)).toBe(true);
    }
    expect(got[0]).toBe("hé ✓");
    expect(Array.from(new Uint8Array(got[1] as ArrayBuffer))).toEqual([0, 1, 255]);
    expect((got[2] as ArrayBuffer).byteLength).toBe(RELAY_MAX_MESSAGE_BYTES);
    expect(wire.map((m) => (m as DataMsg).seq)).toEqual([0, 1, 2]);
  });

  it("refuses oversized messages with a TypeError, like RTCDataChannel", () => {
    const { a, wire } = pair();
    expect(() => a.send(new Uint8Array(RELAY_MAX_MESSAGE_BYTES + 1))).toThrow(TypeError);
    expect(wire).toEqual([]);
  });

  it("drops a message out of sequence", () => {
    const { a, b, wire } = pair();
    a.send("one");
    a.send("two");
    expect(b.receive(wire[1] as DataMsg)).toBe(false);
    expect(b.receive(wire[0] as DataMsg)).toBe(true);
  });
});

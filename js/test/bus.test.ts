import type { AnyModel } from "@anywidget/types";
import { describe, expect, it } from "vitest";
import { Bus, binaryFrame, busUrl, SignalRoute, splitBinary } from "../src/bus";
import { byeMsg, type MediaMsg, type Message, VERSION } from "../src/protocol";

/** A WebSocket stand-in: records what is sent; the test opens, closes or feeds it. */
class FakeSocket extends EventTarget {
  sent: string[] = [];
  binary: ArrayBuffer[] = [];
  binaryType = "blob";
  bufferedAmount = 0;
  send(data: string | ArrayBuffer): void {
    if (typeof data === "string") this.sent.push(data);
    else this.binary.push(data);
  }
  close(): void {
    this.dispatchEvent(new Event("close"));
  }
  open(): void {
    this.dispatchEvent(new Event("open"));
  }
  frame(data: unknown): void {
    const e = new Event("message") as Event & { data: unknown };
    e.data = data instanceof ArrayBuffer ? data : JSON.stringify(data);
    this.dispatchEvent(e);
  }
}

function bus(): { bus: Bus; ws: FakeSocket } {
  const ws = new FakeSocket();
  return { bus: new Bus("ws://x/rtc-widgets/bus", () => ws as unknown as WebSocket), ws };
}

const BYE: Message = byeMsg("s1");

describe("Bus", () => {
  it("queues until open, subscribes, then routes both ways by peer id", () => {
    const { bus: b, ws } = bus();
    const got: unknown[] = [];
    b.subscribe("p1", (m) => got.push(m));
    b.send("p1", BYE, () => got.push("fallback"));
    expect(ws.sent).toEqual([]);
    ws.open();
    expect(ws.sent.map((t) => JSON.parse(t))).toEqual([
      { op: "sub", peer: "p1" },
      { op: "msg", peer: "p1", msg: BYE },
    ]);
    ws.frame({ op: "msg", peer: "p1", msg: { hello: 1 } });
    ws.frame({ op: "msg", peer: "other", msg: { hello: 2 } });
    expect(got).toEqual([{ hello: 1 }]);
    expect([b.sent, b.received]).toEqual([1, 2]);
  });

  it("hands queued messages to the fallback when the socket never opens", () => {
    const { bus: b, ws } = bus();
    const fell: string[] = [];
    b.send("p1", BYE, () => fell.push("a"));
    b.send("p1", BYE, () => fell.push("b"));
    ws.close(); // e.g. 404: no server extension
    expect(fell).toEqual(["a", "b"]);
    b.send("p1", BYE, () => fell.push("c"));
    expect(fell).toEqual(["a", "b", "c"]);
    expect(b.state).toBe("closed");
  });
});

describe("busUrl", () => {
  it("builds the URL from the page config, with the token", () => {
    expect(busUrl({ baseUrl: "/", wsUrl: "ws://h:1/base", token: "t k" })).toBe(
      "ws://h:1/base/rtc-widgets/bus?token=t%20k",
    );
    expect(busUrl(null)).toBeNull();
  });
});

describe("SignalRoute", () => {
  it("uses the comm when the kernel has no bus", () => {
    const sent: unknown[] = [];
    const model = {
      get: (k: string) => (k === "_bus" ? false : undefined),
      send: (m: unknown) => sent.push(m),
    } as unknown as AnyModel;
    const route = new SignalRoute(model, "p1", () => {});
    route.send(BYE);
    expect(sent).toEqual([BYE]);
    expect(route.path).toBe("comm");
  });
});

describe("binary frames (relayed media)", () => {
  const MEDIA: MediaMsg = {
    v: VERSION,
    type: "media",
    session: "s1",
    track: "video",
    seq: 0,
    codec: "vp8",
    ts: 0,
    size: 3,
  };

  it("split what they join, byte for byte, and refuse malformed frames", () => {
    const env = JSON.stringify({ op: "msg", peer: "p1", msg: MEDIA, note: "é ✓" });
    const frame = binaryFrame(env, new Uint8Array([7, 8, 9]).buffer);
    const split = splitBinary(frame);
    expect(split?.[0]).toBe(env);
    expect(Array.from(new Uint8Array(split?.[1] ?? new ArrayBuffer(0)))).toEqual([7, 8, 9]);
    expect(splitBinary(new Uint8Array([0, 0]).buffer)).toBeNull();
    expect(splitBinary(new Uint8Array([0, 0, 0, 9, 123]).buffer)).toBeNull();
    expect(splitBinary(new Uint8Array([0, 0, 0, 2, 0xff, 0xfe]).buffer)).toBeNull();
  });

  it("go out as one binary websocket frame and come in with their payload", () => {
    const { bus: b, ws } = bus();
    const got: [unknown, ArrayBuffer | undefined][] = [];
    b.subscribe("p1", (m, payload) => got.push([m, payload]));
    ws.open();
    expect(ws.binaryType).toBe("arraybuffer");
    b.send("p1", MEDIA, () => undefined, new Uint8Array([1, 2, 3]).buffer);
    expect(ws.binary).toHaveLength(1);
    const [text, payload] = splitBinary(ws.binary[0] as ArrayBuffer) ?? ["", new ArrayBuffer(0)];
    expect(JSON.parse(text)).toEqual({ op: "msg", peer: "p1", msg: MEDIA });
    expect(Array.from(new Uint8Array(payload))).toEqual([1, 2, 3]);
    ws.frame(
      binaryFrame(JSON.stringify({ op: "msg", peer: "p1", msg: MEDIA }), new Uint8Array([4, 5, 6]).buffer),
    );
    expect(got[0]?.[0]).toEqual(MEDIA);
    expect(Array.from(new Uint8Array(got[0]?.[1] ?? new ArrayBuffer(0)))).toEqual([4, 5, 6]);
    ws.bufferedAmount = 1234;
    expect(b.buffered).toBe(1234);
  });
});

import type { AnyModel } from "@anywidget/types";
import { describe, expect, it } from "vitest";
import { Bus, busUrl, SignalRoute } from "../src/bus";
import { byeMsg, type Message } from "../src/protocol";

/** A WebSocket stand-in: records what is sent; the test opens, closes or feeds it. */
class FakeSocket extends EventTarget {
  sent: string[] = [];
  send(text: string): void {
    this.sent.push(text);
  }
  close(): void {
    this.dispatchEvent(new Event("close"));
  }
  open(): void {
    this.dispatchEvent(new Event("open"));
  }
  frame(data: unknown): void {
    const e = new Event("message") as Event & { data: unknown };
    e.data = JSON.stringify(data);
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

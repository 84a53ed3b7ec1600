import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import widget from "../src/index";
import { registry } from "../src/peer";
import { VERSION } from "../src/protocol";
import { FakeModel, FakePeerConnection, flush } from "./fakes";

type Cleanup = () => void;
const initialize = widget.initialize as unknown as (props: { model: unknown }) => Cleanup | undefined;

let pageListeners: Map<string, () => void>;

beforeEach(() => {
  FakePeerConnection.instances = [];
  registry().peers.clear();
  pageListeners = new Map();
  vi.stubGlobal("RTCPeerConnection", FakePeerConnection);
  vi.stubGlobal("addEventListener", (type: string, fn: () => void) => pageListeners.set(type, fn));
  vi.stubGlobal("removeEventListener", (type: string) => pageListeners.delete(type));
});
afterEach(() => {
  vi.unstubAllGlobals();
});

describe("anywidget initialize", () => {
  it("starts the model's peer when _start > 0 and its cleanup sends bye and closes", async () => {
    const model = new FakeModel({ _start: 1, peer_id: "init-1" });
    const cleanup = initialize({ model });
    await flush();
    const peer = registry().peers.get("init-1");
    expect(peer).toBeDefined();
    expect(model.sentOfType("offer")).toHaveLength(1);
    const session = peer?.session;
    cleanup?.();
    expect(model.sentOfType("bye")).toEqual([{ v: VERSION, type: "bye", session }]);
    expect(FakePeerConnection.instances[0]?.closed).toBe(true);
    expect(registry().peers.has("init-1")).toBe(false);
    expect(pageListeners.has("pagehide")).toBe(false);
  });

  it("waits for _start when it is 0, then starts on the increment", async () => {
    const model = new FakeModel({ _start: 0, peer_id: "init-2" });
    const cleanup = initialize({ model });
    await flush();
    expect(registry().peers.size).toBe(0);
    model.set("_start", 1);
    await flush();
    expect(registry().peers.has("init-2")).toBe(true);
    cleanup?.();
  });

  it("sends bye when the page is hidden (pagehide)", async () => {
    const model = new FakeModel({ _start: 1, peer_id: "init-3" });
    const cleanup = initialize({ model });
    await flush();
    pageListeners.get("pagehide")?.();
    expect(model.sentOfType("bye")).toHaveLength(1);
    expect(registry().peers.has("init-3")).toBe(false);
    cleanup?.();
  });

  it("leaves models of unknown kinds alone", async () => {
    const model = new FakeModel({ _start: 1, _kind: "hologram", peer_id: "init-4" });
    expect(initialize({ model })).toBeUndefined();
    await flush();
    expect(model.sent).toEqual([]);
  });
});

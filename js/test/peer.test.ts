import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { BrowserPeer, registry } from "../src/peer";
import { DEFAULTS, LIMITS, pingMsg, VERSION } from "../src/protocol";
import {
  createFakePc,
  FAKE_OFFER_SDP,
  FakeIceCandidate,
  FakeModel,
  FakePeerConnection,
  flush,
} from "./fakes";

const ANSWER_SDP = "v=0\r\no=- 9 9 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
const CAND = "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host";

let peers: BrowserPeer[] = [];

function makePeer(traits: ConstructorParameters<typeof FakeModel>[0] = {}) {
  const model = new FakeModel({ _start: 1, ...traits });
  const peer = new BrowserPeer(model.asModel(), { createPeerConnection: createFakePc });
  peers.push(peer);
  return { model, peer };
}

/** Start a peer and let its offer go out. */
async function started(traits: ConstructorParameters<typeof FakeModel>[0] = {}) {
  const { model, peer } = makePeer(traits);
  peer.activate();
  await flush();
  const pc = FakePeerConnection.instances.at(-1) as FakePeerConnection;
  return { model, peer, pc };
}

/** Start, answer, and open both channels. */
async function connected(traits: ConstructorParameters<typeof FakeModel>[0] = {}) {
  const s = await started(traits);
  s.model.fromKernel({ v: VERSION, type: "answer", session: s.peer.session, sdp: ANSWER_SDP });
  await flush();
  s.pc.control.open();
  s.pc.user.open();
  return s;
}

beforeEach(() => {
  FakePeerConnection.instances = [];
  registry().peers.clear();
});
afterEach(() => {
  for (const p of peers) p.dispose();
  peers = [];
  vi.useRealTimers();
});

describe("starting", () => {
  it("does nothing until the kernel asks (_start = 0) and no view rendered", async () => {
    const { model, peer } = makePeer({ _start: 0 });
    peer.activate();
    await flush();
    expect(FakePeerConnection.instances).toHaveLength(0);
    expect(model.sent).toHaveLength(0);
    expect(peer.status).toBe("idle");
  });

  it("starts on the first render when nothing started it", async () => {
    const { model, peer } = makePeer({ _start: 0 });
    peer.activate();
    peer.viewRendered();
    peer.viewRendered();
    await flush();
    expect(FakePeerConnection.instances).toHaveLength(1);
    expect(model.sentOfType("offer")).toHaveLength(1);
  });

  it("creates the pc with the model's ICE config and the control channel before the user channel", async () => {
    const { pc } = await started({
      ice_servers: [{ urls: "turn:127.0.0.1:3478", username: "u", credential: "c" }],
      ice_transport_policy: "relay",
      label: "data",
      ordered: false,
      max_retransmits: 3,
      protocol: "json",
    });
    expect(pc.config).toEqual({
      iceServers: [{ urls: "turn:127.0.0.1:3478", username: "u", credential: "c" }],
      iceTransportPolicy: "relay",
    });
    expect(pc.channels.map((c) => c.label)).toEqual([DEFAULTS.controlChannelLabel, "data"]);
    expect(pc.control.init).toEqual({ ordered: true });
    expect(pc.user.init).toEqual({ ordered: false, maxRetransmits: 3, protocol: "json" });
    expect(pc.channels.every((c) => c.binaryType === "arraybuffer")).toBe(true);
  });

  it("passes maxPacketLifeTime only when set, and never null options", async () => {
    const { pc } = await started({ max_packet_life_time: 500 });
    expect(pc.user.init).toEqual({ ordered: true, maxPacketLifeTime: 500 });
  });

  it("sends the offer with a fresh session id at once, without waiting for gathering", async () => {
    const { model, peer, pc } = await started();
    expect(pc.iceGatheringState).toBe("gathering");
    expect(model.sent).toEqual([{ v: VERSION, type: "offer", session: peer.session, sdp: FAKE_OFFER_SDP }]);
    expect(peer.session).toMatch(/^[A-Za-z0-9_-]{16,64}$/);
    expect(peer.status).toBe("offered");
  });

  it("registers the running peer in globalThis.rtcWidgets.peers and removes it on close", async () => {
    const { peer, pc } = await started({ peer_id: "dc-42" });
    const reg = (globalThis as unknown as { rtcWidgets: { peers: Map<string, BrowserPeer> } }).rtcWidgets;
    expect(reg.peers.get("dc-42")).toBe(peer);
    expect(peer.pc).toBe(pc);
    expect(peer.channel).toBe(pc.user);
    expect(peer.control).toBe(pc.control);
    peer.close();
    expect(reg.peers.has("dc-42")).toBe(false);
  });
});

describe("trickling candidates", () => {
  it("sends each local candidate, then end-of-candidates once when gathering completes", async () => {
    const { model, peer, pc } = await started();
    pc.emitCandidate(new FakeIceCandidate(CAND));
    pc.emitCandidate(new FakeIceCandidate(`${CAND} generation 0`, "0", 0, "uf"));
    pc.completeGathering(); // fires both icegatheringstatechange and the null candidate
    pc.emitCandidate(null);
    const cands = model.sentOfType("candidate");
    expect(cands).toEqual([
      {
        v: VERSION,
        type: "candidate",
        session: peer.session,
        candidate: { candidate: CAND, sdpMid: "0", sdpMLineIndex: 0, usernameFragment: "ufrag" },
      },
      {
        v: VERSION,
        type: "candidate",
        session: peer.session,
        candidate: {
          candidate: `${CAND} generation 0`,
          sdpMid: "0",
          sdpMLineIndex: 0,
          usernameFragment: "uf",
        },
      },
      { v: VERSION, type: "candidate", session: peer.session, candidate: null },
    ]);
  });

  it("holds candidates found before the offer went out, and sends them right after it", async () => {
    const model = new FakeModel({ _start: 1 });
    const peer = new BrowserPeer(model.asModel(), {
      createPeerConnection: (config) => {
        const pc = new FakePeerConnection(config);
        const setLocal = pc.setLocalDescription.bind(pc);
        pc.setLocalDescription = async (desc) => {
          await setLocal(desc);
          pc.emitCandidate(new FakeIceCandidate(CAND));
          pc.completeGathering();
        };
        return pc as unknown as RTCPeerConnection;
      },
    });
    peers.push(peer);
    peer.activate();
    await flush();
    expect(
      model.sent.map((m) => [m.type, (m.candidate as { candidate?: string } | null)?.candidate]),
    ).toEqual([
      ["offer", undefined],
      ["candidate", CAND],
      ["candidate", undefined],
    ]);
    expect(model.sent[2]?.candidate).toBeNull();
  });

  it("sends end-of-candidates after defaults.iceGatheringTimeoutMs when gathering never completes", async () => {
    vi.useFakeTimers();
    const { model, pc } = await started();
    pc.emitCandidate(new FakeIceCandidate(CAND));
    vi.advanceTimersByTime(DEFAULTS.iceGatheringTimeoutMs - 1);
    expect(model.sentOfType("candidate").filter((m) => m.candidate === null)).toHaveLength(0);
    vi.advanceTimersByTime(1);
    expect(model.sentOfType("candidate").filter((m) => m.candidate === null)).toHaveLength(1);
    // A late completion and late candidates change nothing.
    pc.emitCandidate(new FakeIceCandidate(`${CAND} late`));
    pc.completeGathering();
    vi.advanceTimersByTime(DEFAULTS.iceGatheringTimeoutMs * 2);
    const cands = model.sentOfType("candidate");
    expect(cands.filter((m) => m.candidate === null)).toHaveLength(1);
    expect(cands.at(-1)?.candidate).toBeNull();
  });

  it("does not fire the timeout after gathering completed in time", async () => {
    vi.useFakeTimers();
    const { model, pc } = await started();
    pc.completeGathering();
    vi.advanceTimersByTime(DEFAULTS.iceGatheringTimeoutMs * 2);
    expect(model.sentOfType("candidate").filter((m) => m.candidate === null)).toHaveLength(1);
  });
});

describe("kernel messages", () => {
  it("applies the kernel's answer", async () => {
    const { model, peer, pc } = await started();
    model.fromKernel({ v: VERSION, type: "answer", session: peer.session, sdp: ANSWER_SDP });
    await flush();
    expect(pc.remoteDescription).toEqual({ type: "answer", sdp: ANSWER_SDP });
    expect(peer.status).toBe("connecting");
    pc.user.open();
    expect(peer.status).toBe("open");
  });

  it("ignores messages for another session", async () => {
    const { model, peer, pc } = await started();
    model.fromKernel({ v: VERSION, type: "answer", session: "someOtherSession123", sdp: ANSWER_SDP });
    model.fromKernel({ v: VERSION, type: "bye", session: "someOtherSession123" });
    await flush();
    expect(pc.remoteDescription).toBeNull();
    expect(pc.closed).toBe(false);
    expect(peer.error).toBe("");
    expect(model.sentOfType("error")).toHaveLength(0);
  });

  it("shows an invalid kernel message, answers bad-message, and keeps running", async () => {
    const { model, peer, pc } = await started();
    model.fromKernel({ v: 99, type: "answer", session: peer.session, sdp: ANSWER_SDP });
    expect(peer.error).toMatch(/kernel sent a signaling message the browser cannot accept/);
    expect(peer.error).toMatch(/v must be equal to constant/);
    const errors = model.sentOfType("error");
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({
      v: VERSION,
      type: "error",
      session: peer.session,
      code: "bad-message",
    });
    // Still alive: a valid answer afterwards is applied.
    model.fromKernel({ v: VERSION, type: "answer", session: peer.session, sdp: ANSWER_SDP });
    await flush();
    expect(pc.remoteDescription).toEqual({ type: "answer", sdp: ANSWER_SDP });
    expect(pc.closed).toBe(false);
  });

  it("rejects an oversized kernel message as bad-message", async () => {
    const { model, peer } = await started();
    model.fromKernel({
      v: VERSION,
      type: "answer",
      session: peer.session,
      sdp: `v=0\r\n${"a".repeat(LIMITS.maxSignalBytes)}`,
    });
    expect(model.sentOfType("error")[0]).toMatchObject({ code: "bad-message" });
    expect(peer.error).toMatch(/byte limit/);
  });

  it("reports bad-sdp when the answer cannot be applied", async () => {
    const { model, peer, pc } = await started();
    pc.failSetRemote = Object.assign(new Error("Failed to parse SessionDescription"), {
      name: "OperationError",
    });
    model.fromKernel({ v: VERSION, type: "answer", session: peer.session, sdp: ANSWER_SDP });
    await flush();
    expect(peer.status).toBe("failed");
    expect(peer.error).toMatch(/could not apply the kernel's answer.*Failed to parse/);
    expect(model.sentOfType("error")).toEqual([
      expect.objectContaining({ type: "error", session: peer.session, code: "bad-sdp" }),
    ]);
  });

  it("reports browser-error when createOffer fails", async () => {
    const model = new FakeModel({ _start: 1 });
    const peer = new BrowserPeer(model.asModel(), {
      createPeerConnection: (config) => {
        const pc = new FakePeerConnection(config);
        pc.failCreateOffer = new Error("no offer for you");
        return pc as unknown as RTCPeerConnection;
      },
    });
    peers.push(peer);
    peer.activate();
    await flush();
    expect(model.sentOfType("offer")).toHaveLength(0);
    expect(peer.status).toBe("failed");
    expect(peer.error).toMatch(/could not create a WebRTC offer/);
    expect(model.sentOfType("error")[0]).toMatchObject({ code: "browser-error", session: peer.session });
  });

  it("shows the kernel's error message without sending one back", async () => {
    const { model, peer } = await started();
    model.fromKernel({
      v: VERSION,
      type: "error",
      session: peer.session,
      code: "ice-failed",
      message: "no route",
    });
    expect(peer.error).toMatch(/ice-failed.*no route/);
    expect(model.sentOfType("error")).toHaveLength(0);
  });

  it("closes on the kernel's bye without sending bye back", async () => {
    const { model, peer, pc } = await connected({ peer_id: "bye-test" });
    model.fromKernel({ v: VERSION, type: "bye", session: peer.session });
    expect(pc.closed).toBe(true);
    expect(peer.status).toBe("closed");
    expect(peer.pc).toBeNull();
    expect(registry().peers.has("bye-test")).toBe(false);
    expect(model.sentOfType("bye")).toHaveLength(0);
  });

  it("reports out-of-order for an offer from the kernel", async () => {
    const { model, peer } = await started();
    model.fromKernel({ v: VERSION, type: "offer", session: peer.session, sdp: ANSWER_SDP });
    expect(model.sentOfType("error")[0]).toMatchObject({ code: "out-of-order" });
  });
});

describe("failures on the connection", () => {
  it("reports ice-failed once with advice about ice_servers", async () => {
    const { model, peer, pc } = await started();
    pc.setIceState("failed");
    pc.connectionState = "failed";
    pc.dispatchEvent(new Event("connectionstatechange"));
    expect(peer.status).toBe("failed");
    expect(peer.error).toMatch(/ICE failed.*ice_servers/);
    expect(model.sentOfType("error")).toEqual([expect.objectContaining({ code: "ice-failed" })]);
  });

  it("reports too-large when a message is over pc.sctp.maxMessageSize", async () => {
    const { model, peer, pc } = await connected();
    pc.sctp = { maxMessageSize: 1000 };
    expect(peer.send("x".repeat(1001))).toBe(false);
    expect(pc.user.sent).toHaveLength(0);
    expect(peer.error).toMatch(/at most 1,000 bytes per message/);
    expect(model.sentOfType("error")[0]).toMatchObject({ code: "too-large" });
    expect(peer.send("x".repeat(1000))).toBe(true);
  });

  it("reports a data channel error as browser-error", async () => {
    const { model, peer, pc } = await connected();
    pc.user.fail("SCTP failure");
    expect(peer.error).toMatch(/data channel reported an error.*SCTP failure/);
    expect(model.sentOfType("error")[0]).toMatchObject({ code: "browser-error" });
  });
});

describe("restarts and closing", () => {
  it("restarts with a new session when _start increases, closing the old pc without bye", async () => {
    const { model, peer, pc } = await connected({ peer_id: "restart" });
    pc.user.receive("counted in the first session");
    const first = peer.session;
    model.set("_start", 2);
    await flush();
    expect(pc.closed).toBe(true);
    expect(FakePeerConnection.instances).toHaveLength(2);
    expect(peer.session).not.toBe(first);
    expect(model.sentOfType("bye")).toHaveLength(0);
    const offers = model.sentOfType("offer");
    expect(offers.map((o) => o.session)).toEqual([first, peer.session]);
    expect(registry().peers.get("restart")).toBe(peer);
    expect(peer.counters).toEqual({ messagesSent: 0, messagesReceived: 0, bytesSent: 0, bytesReceived: 0 });
    expect(peer.pc).toBe(FakePeerConnection.instances[1]);
  });

  it("does not restart when _start stays or decreases", async () => {
    const { model } = await started({ _start: 3 });
    model.set("_start", 3);
    model.set("_start", 2);
    await flush();
    expect(FakePeerConnection.instances).toHaveLength(1);
  });

  it("ignores the old session's late events after a restart", async () => {
    const { model, peer, pc } = await started();
    model.set("_start", 2);
    await flush();
    pc.emitCandidate(new FakeIceCandidate(CAND));
    pc.setIceState("failed");
    expect(model.sentOfType("candidate")).toHaveLength(0);
    expect(model.sentOfType("error")).toHaveLength(0);
    expect(peer.status).toBe("offered");
  });

  it("sends bye and closes on dispose (initialize cleanup)", async () => {
    const { model, peer, pc } = await connected();
    const session = peer.session;
    peer.dispose();
    expect(model.sentOfType("bye")).toEqual([{ v: VERSION, type: "bye", session }]);
    expect(pc.closed).toBe(true);
    // Disposed: kernel messages and _start changes no longer do anything.
    model.set("_start", 5);
    await flush();
    expect(FakePeerConnection.instances).toHaveLength(1);
  });
});

describe("channels", () => {
  it("answers a control-channel ping with a pong carrying the same seq and t, as text", async () => {
    const { pc } = await connected();
    pc.control.receive(JSON.stringify(pingMsg(5, 1234.25)));
    expect(pc.control.sent).toEqual([JSON.stringify({ v: VERSION, type: "pong", seq: 5, t: 1234.25 })]);
  });

  it("ignores invalid or oversized control messages", async () => {
    const { pc, peer } = await connected();
    pc.control.receive("not json");
    pc.control.receive(JSON.stringify({ v: VERSION + 1, type: "ping", seq: 1, t: 1 }));
    pc.control.receive(JSON.stringify({ ...pingMsg(1, 1), pad: "x".repeat(LIMITS.maxControlBytes) }));
    pc.control.receive(new ArrayBuffer(8));
    expect(pc.control.sent).toEqual([]);
    expect(peer.error).toBe("");
  });

  it("echoes exactly what arrived: strings as strings, binary as the same bytes", async () => {
    const { pc, peer } = await connected({ echo: true });
    const bytes = new Uint8Array([0, 1, 2, 254, 255]).buffer;
    pc.user.receive("héllo");
    pc.user.receive(bytes);
    pc.user.receive("");
    expect(pc.user.sent).toHaveLength(3);
    expect(pc.user.sent[0]).toBe("héllo");
    expect(pc.user.sent[1]).toBeInstanceOf(ArrayBuffer);
    expect([...new Uint8Array(pc.user.sent[1] as ArrayBuffer)]).toEqual([0, 1, 2, 254, 255]);
    expect(pc.user.sent[2]).toBe("");
    expect(peer.counters).toEqual({ messagesSent: 3, messagesReceived: 3, bytesSent: 11, bytesReceived: 11 });
  });

  it("does not echo when echo is off, and follows changes of the echo trait", async () => {
    const { model, pc } = await connected({ echo: false });
    pc.user.receive("one");
    expect(pc.user.sent).toEqual([]);
    model.set("echo", true);
    pc.user.receive("two");
    expect(pc.user.sent).toEqual(["two"]);
  });

  it("keeps only the last limits.maxLogEntries messages in the log", async () => {
    const { pc, peer } = await connected();
    const n = LIMITS.maxLogEntries + 25;
    for (let i = 0; i < n; i++) pc.user.receive(`m${i}`);
    pc.user.receive(new ArrayBuffer(3));
    const entries = peer.log.entries();
    expect(entries).toHaveLength(LIMITS.maxLogEntries);
    expect(entries.at(-1)).toMatchObject({ dir: "in", text: "‹binary 3 bytes›", binary: true });
    expect(entries.at(-2)?.text).toBe(`m${n - 1}`);
    expect(entries[0]?.text).toBe(`m${n + 1 - LIMITS.maxLogEntries}`);
    expect(peer.log.seq).toBe(n + 1);
  });

  it("send() sends on the user channel once it is open, and refuses before", async () => {
    const { peer, pc } = await started();
    expect(peer.send("early")).toBe(false);
    expect(peer.error).toMatch(/not open yet/);
    pc.user.open();
    expect(peer.send("hi")).toBe(true);
    expect(peer.send(new Uint8Array([1, 2, 3]))).toBe(true);
    expect(pc.user.sent[0]).toBe("hi");
    expect(peer.log.entries().map((e) => e.dir)).toEqual(["out", "out"]);
  });

  it("notifies views on changes", async () => {
    const { peer, pc } = await connected();
    const fn = vi.fn();
    const unsubscribe = peer.subscribe(fn);
    pc.user.receive("x");
    expect(fn).toHaveBeenCalled();
    unsubscribe();
    fn.mockClear();
    pc.user.receive("y");
    expect(fn).not.toHaveBeenCalled();
  });
});

import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { outputKind, receivingAudioLevel, streamOfTrackEvent } from "../src/output";
import { BrowserPeer, registry } from "../src/peer";
import { DEFAULTS, VERSION } from "../src/protocol";
import { createFakePc, FakeModel, FakePeerConnection, FakeTrack, flush } from "./fakes";

/** A MediaStream stand-in with the calls streamOfTrackEvent makes. */
class FakeMediaStream {
  constructor(public tracks: FakeTrack[] = []) {}
  getTracks(): FakeTrack[] {
    return this.tracks;
  }
  addTrack(t: FakeTrack): void {
    this.tracks.push(t);
  }
}

function trackEvent(track: FakeTrack, streams: FakeMediaStream[]): Event {
  return Object.assign(new Event("track"), { track, streams });
}

let peers: BrowserPeer[] = [];

async function startedOutput(kind: string) {
  const model = new FakeModel({ _start: 1, _kind: kind } as never);
  const peer = new BrowserPeer(model.asModel(), { createPeerConnection: createFakePc });
  peers.push(peer);
  peer.activate();
  await flush();
  const pc = FakePeerConnection.instances.at(-1) as FakePeerConnection;
  return { model, peer, pc };
}

beforeEach(() => {
  FakePeerConnection.instances = [];
  registry().peers.clear();
});
afterEach(() => {
  for (const p of peers) p.dispose();
  peers = [];
});

describe("output widgets offer to receive", () => {
  it.each([
    ["video-output", "video"],
    ["audio-output", "audio"],
  ])("%s adds one recvonly %s transceiver, no user channel, and offers", async (kind, media) => {
    const { model, pc } = await startedOutput(kind);
    expect(pc.transceivers).toEqual([{ track: media, init: { direction: "recvonly" } }]);
    expect(pc.channels.map((c) => c.label)).toEqual([DEFAULTS.controlChannelLabel]); // control only
    expect(model.sentOfType("offer")).toHaveLength(1);
  });

  it("keeps the kernel's stream from the track event, tells the views, and is open once connected", async () => {
    const { model, peer, pc } = await startedOutput("video-output");
    let notified = 0;
    peer.subscribe(() => notified++);
    const stream = new FakeMediaStream();
    const track = new FakeTrack("video", "kernel");
    pc.dispatchEvent(trackEvent(track, [stream]));
    expect(peer.remoteStream).toBe(stream);
    expect(notified).toBeGreaterThan(0);
    model.fromKernel({ v: VERSION, type: "answer", session: peer.session, sdp: "v=0\r\n" });
    await flush();
    pc.connectionState = "connected";
    pc.dispatchEvent(new Event("connectionstatechange"));
    expect(peer.status).toBe("open");
  });

  it("drops the stream when the session ends, and ignores a late track of the old connection", async () => {
    const { peer, pc } = await startedOutput("audio-output");
    pc.dispatchEvent(trackEvent(new FakeTrack("audio"), [new FakeMediaStream()]));
    expect(peer.remoteStream).not.toBeNull();
    peer.start(); // a new session
    expect(peer.remoteStream).toBeNull();
    pc.dispatchEvent(trackEvent(new FakeTrack("audio"), [new FakeMediaStream()]));
    expect(peer.remoteStream).toBeNull();
    peer.close();
    expect(peer.remoteStream).toBeNull();
  });

  it("lets another transport set the stream the views show (setRemoteStream)", async () => {
    const { peer } = await startedOutput("video-output");
    let notified = 0;
    peer.subscribe(() => notified++);
    const stream = new FakeMediaStream() as unknown as MediaStream;
    peer.setRemoteStream(stream);
    expect(peer.remoteStream).toBe(stream);
    expect(notified).toBe(1);
    peer.setRemoteStream(stream); // unchanged: no redraw
    expect(notified).toBe(1);
  });

  it("data-channel and camera peers add no receive transceiver", async () => {
    const { pc } = await startedOutput("datachannel");
    expect(pc.transceivers).toEqual([]);
    expect(outputKind("camera")).toBeNull();
    expect(outputKind("video-output")).toBe("video-output");
  });
});

describe("streamOfTrackEvent", () => {
  const make = (tracks: MediaStreamTrack[]) =>
    new FakeMediaStream(tracks as unknown as FakeTrack[]) as unknown as MediaStream;
  const ev = (track: FakeTrack, streams: FakeMediaStream[] = []) =>
    ({ track, streams }) as unknown as RTCTrackEvent;

  it("uses the sender's stream, else adds the track to the current one, else makes one", () => {
    const t1 = new FakeTrack("video");
    const own = new FakeMediaStream();
    expect(streamOfTrackEvent(ev(t1, [own]), null, make)).toBe(own);
    const made = streamOfTrackEvent(ev(t1), null, make);
    expect((made as unknown as FakeMediaStream).tracks).toEqual([t1]);
    const t2 = new FakeTrack("audio");
    expect(streamOfTrackEvent(ev(t2), made, make)).toBe(made);
    expect((made as unknown as FakeMediaStream).tracks).toEqual([t1, t2]);
  });
});

it("reads the received audio level from inbound-rtp stats", async () => {
  const pc = {
    getStats: async () =>
      new Map([
        ["a", { type: "media-source", kind: "audio", audioLevel: 0.9 }],
        ["b", { type: "inbound-rtp", kind: "audio", audioLevel: 0.125 }],
      ]),
  } as unknown as RTCPeerConnection;
  expect(await receivingAudioLevel(pc)).toBe(0.125);
});

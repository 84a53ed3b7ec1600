import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { captureFailure, constraintsFor, LocalMedia, listDevices, unavailable } from "../src/media";
import { BrowserPeer, registry } from "../src/peer";
import { DEFAULTS, VERSION } from "../src/protocol";
import { mirrored } from "../src/widgets/camera";
import { meterPosition } from "../src/widgets/microphone";
import {
  createFakePc,
  FakeModel,
  FakePeerConnection,
  type FakeStream,
  fakeMediaDevices,
  flush,
} from "./fakes";

let peers: BrowserPeer[] = [];

function mediaPeer(kind: string, traits: Record<string, unknown> = {}) {
  const model = new FakeModel({ _start: 1, _kind: kind, ...traits } as never);
  const peer = new BrowserPeer(model.asModel(), { createPeerConnection: createFakePc });
  peers.push(peer);
  return { model, peer };
}

beforeEach(() => {
  FakePeerConnection.instances = [];
  registry().peers.clear();
});
afterEach(() => {
  for (const p of peers) p.dispose();
  peers = [];
  vi.unstubAllGlobals();
});

describe("constraints", () => {
  it("asks the camera for the traits' size and rate, and an exact device when one is chosen", () => {
    expect(
      constraintsFor("camera", { width: 1280, height: 720, frame_rate: 15, facing_mode: "user" }),
    ).toEqual({
      video: {
        width: { ideal: 1280 },
        height: { ideal: 720 },
        frameRate: { ideal: 15 },
        facingMode: { ideal: "user" },
      },
      audio: false,
    });
    const v = constraintsFor("camera", { device_id: "cam-1", facing_mode: "user" })
      .video as MediaTrackConstraints;
    expect(v.deviceId).toEqual({ exact: "cam-1" });
    expect(v.facingMode).toBeUndefined();
    expect(v.width).toEqual({ ideal: DEFAULTS.media.camera.width });
  });

  it("passes the microphone's processing switches through and never asks for video", () => {
    const c = constraintsFor("microphone", {
      echo_cancellation: false,
      noise_suppression: false,
      channels: 2,
    });
    expect(c.video).toBe(false);
    expect(c.audio).toMatchObject({
      echoCancellation: false,
      noiseSuppression: false,
      channelCount: { ideal: 2 },
    });
    expect((c.audio as MediaTrackConstraints).autoGainControl).toBe(
      DEFAULTS.media.microphone.autoGainControl,
    );
  });
});

describe("capture failures", () => {
  it.each([
    ["NotAllowedError", "camera", "permission-denied", /Allow the camera/],
    ["NotAllowedError", "screen", "permission-denied", /Screen sharing was cancelled/],
    ["NotFoundError", "microphone", "no-device", /No microphone was found/],
    ["NotReadableError", "camera", "device-busy", /another program/],
    ["TypeError", "camera", "media-error", /could not start the camera/],
  ] as const)("%s on %s is %s", (name, kind, code, text) => {
    const f = captureFailure(kind, Object.assign(new Error("x"), { name }));
    expect(f.code).toBe(code);
    expect(f.text).toMatch(text);
  });

  it("names the unknown device_id", () => {
    const f = captureFailure("camera", { name: "OverconstrainedError", constraint: "deviceId" }, "nope");
    expect(f).toMatchObject({ code: "no-device" });
    expect(f.text).toContain('device_id "nope"');
  });

  it("explains an insecure context", () => {
    const f = unavailable("camera", {
      isSecureContext: false,
      navigator: {},
    } as unknown as typeof globalThis);
    expect(f?.code).toBe("insecure-context");
    expect(f?.text).toMatch(/https, or through localhost/);
  });
});

describe("media peers", () => {
  it("captures, sends every track sendonly, offers, and opens no user data channel", async () => {
    const md = fakeMediaDevices();
    vi.stubGlobal("navigator", { mediaDevices: md });
    const { model, peer } = mediaPeer("camera", {
      width: 320,
      height: 240,
      frame_rate: 30,
      facing_mode: "user",
    });
    peer.activate();
    await flush();
    await flush();
    const pc = FakePeerConnection.instances.at(-1) as FakePeerConnection;
    expect(md.calls).toHaveLength(1);
    expect(md.calls[0]?.fn).toBe("getUserMedia");
    expect(pc.transceivers.map((t) => [t.track.kind, t.init.direction])).toEqual([["video", "sendonly"]]);
    expect(pc.channels.map((c) => c.label)).toEqual([DEFAULTS.controlChannelLabel]);
    expect(model.sentOfType("offer")).toHaveLength(1);
    expect(peer.media?.stream).toBe(md.streams[0]);
  });

  it("uses getDisplayMedia for a screen", async () => {
    const md = fakeMediaDevices();
    vi.stubGlobal("navigator", { mediaDevices: md });
    const { peer } = mediaPeer("screen");
    peer.activate();
    await flush();
    expect(md.calls[0]?.fn).toBe("getDisplayMedia");
  });

  it("reports a denied permission to the kernel with its code, offers nothing and closes", async () => {
    vi.stubGlobal("navigator", { mediaDevices: fakeMediaDevices({ name: "NotAllowedError" }) });
    const { model, peer } = mediaPeer("microphone");
    peer.activate();
    await flush();
    await flush();
    const errors = model.sentOfType("error");
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ v: VERSION, code: "permission-denied", session: peer.session });
    expect(model.sentOfType("offer")).toHaveLength(0);
    expect(peer.status).toBe("failed");
    expect(peer.error).toMatch(/Access to the microphone was denied/);
    expect(FakePeerConnection.instances.at(-1)?.closed).toBe(true);
  });

  it("reports a track that ends mid-stream, releases the device, and a new start captures again", async () => {
    const md = fakeMediaDevices();
    vi.stubGlobal("navigator", { mediaDevices: md });
    const { model, peer } = mediaPeer("camera");
    peer.activate();
    await flush();
    await flush();
    const stream = md.streams[0] as FakeStream;
    stream.tracks[0]?.end();
    expect(model.sentOfType("error").map((e) => e.code)).toEqual(["track-ended"]);
    expect(peer.status).toBe("failed");
    peer.start();
    await flush();
    await flush();
    expect(md.calls).toHaveLength(2);
    expect(model.sentOfType("offer")).toHaveLength(2);
    expect(peer.status).toBe("offered");
  });

  it("restarts with a new capture when device_id changes, and stops the old tracks", async () => {
    const md = fakeMediaDevices();
    vi.stubGlobal("navigator", { mediaDevices: md });
    const { model, peer } = mediaPeer("camera");
    peer.activate();
    await flush();
    await flush();
    model.set("device_id" as never, "cam-1" as never);
    await flush();
    await flush();
    expect(md.calls).toHaveLength(2);
    const video = md.calls[1]?.constraints.video as MediaTrackConstraints | undefined;
    expect(video?.deviceId).toEqual({ exact: "cam-1" });
    expect(md.streams[0]?.tracks[0]?.stopped).toBe(true);
  });

  it("a capture that finishes after close releases the device", async () => {
    const local = new LocalMedia("camera");
    local.stop();
    const md = fakeMediaDevices();
    await expect(local.capture({}, { navigator: { mediaDevices: md } } as never)).rejects.toMatchObject({
      code: "media-error",
    });
    expect(md.streams[0]?.tracks[0]?.stopped).toBe(true);
  });
});

describe("view helpers", () => {
  it("mirrors only a user-facing camera", () => {
    expect(mirrored("camera", "user")).toBe(true);
    expect(mirrored("camera", "environment")).toBe(false);
    expect(mirrored("screen", "user")).toBe(false);
  });
  it("maps audio level to a dB meter", () => {
    expect(meterPosition(0)).toBe(0);
    expect(meterPosition(1)).toBe(1);
    expect(meterPosition(0.001)).toBeCloseTo(0);
    expect(meterPosition(0.1)).toBeCloseTo(2 / 3);
  });
  it("lists only devices of the widget's kind", async () => {
    const g = { navigator: { mediaDevices: fakeMediaDevices() } } as never;
    expect((await listDevices("camera", g)).map((d) => d.deviceId)).toEqual(["cam-1"]);
    expect((await listDevices("microphone", g)).map((d) => d.deviceId)).toEqual(["mic-1"]);
    expect(await listDevices("screen", g)).toEqual([]);
  });
});

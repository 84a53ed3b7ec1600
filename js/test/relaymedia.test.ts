// Relay media with stand-ins for WebCodecs, MediaStreamTrackProcessor, canvas and Web Audio, injected through `g`.
// What real Chromium does with the same code is checked in tests/browser/test_relaymedia_codecs.py.
import { afterEach, describe, expect, it, vi } from "vitest";
import { RELAY, VERSION, validate } from "../src/protocol";
import {
  AudioRelayReceiver,
  AudioRelaySender,
  encodeCapabilities,
  type MediaHeader,
  type MediaOut,
  VideoRelayReceiver,
  VideoRelaySender,
} from "../src/relaymedia";

const tick = () => new Promise((r) => setTimeout(r, 0));
const settle = async () => {
  for (let i = 0; i < 5; i++) await tick();
};

class FakeFrame {
  closed = false;
  visibleRect: { width: number; height: number };
  constructor(
    public timestamp: number,
    public codedWidth = 640,
    public codedHeight = 480,
  ) {
    this.visibleRect = { width: codedWidth, height: codedHeight };
  }
  get displayWidth() {
    return this.codedWidth;
  }
  get displayHeight() {
    return this.codedHeight;
  }
  close() {
    this.closed = true;
  }
}

class FakeChunk {
  byteLength: number;
  constructor(
    public type: "key" | "delta",
    public timestamp: number,
    public data: Uint8Array,
    public duration?: number,
  ) {
    this.byteLength = data.byteLength;
  }
  copyTo(dest: ArrayBuffer) {
    new Uint8Array(dest).set(this.data);
  }
}

type Init = { output: (chunk: FakeChunk) => void; error: (e: unknown) => void };

class FakeVideoEncoder {
  static instances: FakeVideoEncoder[] = [];
  static supported = new Set(["vp8", "avc1.42E01F"]);
  static async isConfigSupported(c: { codec: string }) {
    return { supported: FakeVideoEncoder.supported.has(c.codec), config: c };
  }
  state = "unconfigured";
  encodeQueueSize = 0;
  configs: Record<string, unknown>[] = [];
  encoded: { timestamp: number; keyFrame: boolean }[] = [];
  constructor(public init: Init) {
    FakeVideoEncoder.instances.push(this);
  }
  configure(c: Record<string, unknown>) {
    this.configs.push(c);
    this.state = "configured";
  }
  encode(frame: FakeFrame, opts?: { keyFrame?: boolean }) {
    const keyFrame = Boolean(opts?.keyFrame) || this.encoded.length === 0;
    this.encoded.push({ timestamp: frame.timestamp, keyFrame });
    this.encodeQueueSize++;
    queueMicrotask(() => {
      this.encodeQueueSize--;
      this.init.output(new FakeChunk(keyFrame ? "key" : "delta", frame.timestamp, new Uint8Array([1, 2, 3])));
    });
  }
  close() {
    this.state = "closed";
  }
}

/** A MediaStreamTrackProcessor whose frames the test pushes. */
class FakeProcessor {
  static last: FakeProcessor;
  readable: ReadableStream<unknown>;
  controller!: ReadableStreamDefaultController<unknown>;
  constructor(public init: { track: unknown }) {
    this.readable = new ReadableStream({
      start: (c) => {
        this.controller = c;
      },
    });
    FakeProcessor.last = this;
  }
  push(v: unknown) {
    this.controller.enqueue(v);
  }
}

class FakeCanvas {
  static drawn: unknown[] = [];
  width = 1;
  height = 1;
  constructor(w = 1, h = 1) {
    this.width = w;
    this.height = h;
  }
  getContext() {
    return { drawImage: (img: unknown) => FakeCanvas.drawn.push(img) };
  }
  async convertToBlob(o: { type: string; quality: number }) {
    return new Blob([new Uint8Array([0xff, 0xd8, this.width & 0xff, 0xff, 0xd9])], { type: o.type });
  }
}

function fakeTrack(kind: "video" | "audio", settings: Record<string, number> = {}) {
  const base =
    kind === "video" ? { width: 640, height: 480, frameRate: 30 } : { sampleRate: 48000, channelCount: 1 };
  return {
    kind,
    getSettings: () => ({ ...base, ...settings }),
    addEventListener() {},
    removeEventListener() {},
  } as unknown as MediaStreamTrack;
}

class FakeOut implements MediaOut {
  sent: { h: MediaHeader; payload: ArrayBuffer }[] = [];
  bufferedBytes = 0;
  accept = true;
  send(h: MediaHeader, payload: ArrayBuffer) {
    this.sent.push({ h, payload });
    return this.accept;
  }
  buffered() {
    return this.bufferedBytes;
  }
}

const asG = (g: Record<string, unknown>) => g as unknown as typeof globalThis;
const videoG = (extra: Record<string, unknown> = {}) =>
  asG({ VideoEncoder: FakeVideoEncoder, MediaStreamTrackProcessor: FakeProcessor, ...extra });

/** Every header, completed as the transport would, passes the shared schema. */
function expectValid(out: FakeOut) {
  for (const { h, payload } of out.sent) {
    const r = validate({ v: VERSION, type: "media", session: "s1", size: payload.byteLength, ...h });
    expect(r.ok ? "" : r.error).toBe("");
  }
}

async function startedVideo(opts: Record<string, unknown> = {}, g = videoG()) {
  const out = new FakeOut();
  const sender = new VideoRelaySender(fakeTrack("video"), out, { g, ...opts });
  await sender.start();
  return { out, sender, proc: FakeProcessor.last, encoder: () => FakeVideoEncoder.instances.at(-1) };
}

afterEach(() => {
  FakeVideoEncoder.instances = [];
  FakeVideoEncoder.supported = new Set(["vp8", "avc1.42E01F"]);
  FakeCanvas.drawn = [];
  vi.restoreAllMocks();
});

describe("VideoRelaySender", () => {
  it("auto takes the first codec of protocol.json's relay.videoCodecs the browser can encode", async () => {
    const { sender } = await startedVideo();
    expect(sender.codec).toBe(RELAY.videoCodecs[0]);
    sender.stop();
  });

  it("sends one valid media message per frame: seq from 0, ts in µs since the first frame, key first", async () => {
    const { out, sender, proc, encoder } = await startedVideo({ codec: "vp8" });
    expect(sender.codec).toBe("vp8");
    const frames = [5_000_000, 5_033_333, 5_066_666].map((ts) => new FakeFrame(ts));
    for (const f of frames) proc.push(f);
    await tick();
    expectValid(out);
    expect(out.sent.map(({ h }) => [h.track, h.seq, h.codec, h.ts, h.key, h.w, h.h])).toEqual([
      ["video", 0, "vp8", 0, true, 640, 480],
      ["video", 1, "vp8", 33333, false, 640, 480],
      ["video", 2, "vp8", 66666, false, 640, 480],
    ]);
    expect(
      out.sent.every(({ h }) => typeof h.t === "number" && Math.abs((h.t as number) - Date.now()) < 5000),
    ).toBe(true);
    expect(frames.every((f) => f.closed)).toBe(true);
    expect(encoder()?.configs[0]).toMatchObject({
      codec: "vp8",
      width: 640,
      height: 480,
      latencyMode: "realtime",
      bitrate: RELAY.videoBitrateKbps * 1000,
      framerate: 30,
    });
    expect(sender.counters).toMatchObject({ framesSent: 3, bytesSent: 9, keyFrames: 1, framesDropped: 0 });
    sender.stop();
    expect(encoder()?.state).toBe("closed");
  });

  it("asks for key frames at the start, every keyFrameIntervalS and when the receiver asks", async () => {
    const { out, sender, proc, encoder } = await startedVideo();
    const step = 100_000;
    for (let ts = 0; ts <= 2_500_000; ts += step) {
      proc.push(new FakeFrame(ts));
      await tick();
      sender.ack(out.sent.length - 1); // a receiver that keeps up
    }
    const keys = (encoder()?.encoded ?? []).filter((e) => e.keyFrame).map((e) => e.timestamp);
    expect(keys).toEqual([0, RELAY.keyFrameIntervalS * 1e6]);
    sender.ack(out.sent.length - 1, true);
    proc.push(new FakeFrame(2_600_000));
    await tick();
    expect(encoder()?.encoded.at(-1)).toEqual({ timestamp: 2_600_000, keyFrame: true });
    expect(out.sent.at(-1)?.h.key).toBe(true);
    expect(sender.counters.keyFrames).toBe(3);
    expect(sender.ackRttMs).toBeGreaterThanOrEqual(0);
  });

  it("drops frames BEFORE encoding when more than videoWindow frames are unacknowledged", async () => {
    const { out, sender, proc, encoder } = await startedVideo();
    const frames = Array.from({ length: 10 }, (_, i) => new FakeFrame(i * 33_000));
    for (const f of frames) proc.push(f);
    await tick();
    // window+1 in flight is "more than the window": the next ones never reach the encoder
    expect(encoder()?.encoded.length).toBe(RELAY.videoWindow + 1);
    expect(out.sent.length).toBe(RELAY.videoWindow + 1);
    expect(sender.counters.framesDropped).toBe(10 - (RELAY.videoWindow + 1));
    expect(frames.every((f) => f.closed)).toBe(true);
    sender.ack(RELAY.videoWindow); // everything acknowledged
    proc.push(new FakeFrame(400_000));
    await tick();
    // the encoder never saw a hole, so no key frame is needed to go on
    expect(encoder()?.encoded.at(-1)).toEqual({ timestamp: 400_000, keyFrame: false });
    expect(out.sent.at(-1)?.h.seq).toBe(RELAY.videoWindow + 1);
  });

  it("drops frames before encoding while the socket holds more than maxBufferedBytes", async () => {
    const { out, sender, proc, encoder } = await startedVideo();
    out.bufferedBytes = RELAY.maxBufferedBytes + 1;
    proc.push(new FakeFrame(0));
    proc.push(new FakeFrame(33_000));
    await tick();
    expect(encoder()?.encoded ?? []).toEqual([]);
    expect(out.sent).toEqual([]);
    expect(sender.counters.framesDropped).toBe(2);
    out.bufferedBytes = 0;
    proc.push(new FakeFrame(66_000));
    await tick();
    expect(out.sent.map(({ h }) => [h.seq, h.key, h.ts])).toEqual([[0, true, 66_000]]);
  });

  it("a frame the path refuses still uses its seq (the receiver sees the gap) and the next frame is a key frame", async () => {
    const { out, sender, proc, encoder } = await startedVideo();
    proc.push(new FakeFrame(0));
    await tick();
    out.accept = false;
    proc.push(new FakeFrame(33_000));
    await tick();
    out.accept = true;
    proc.push(new FakeFrame(66_000));
    await tick();
    expect(out.sent.map(({ h }) => [h.seq, h.key])).toEqual([
      [0, true],
      [1, false],
      [2, true],
    ]);
    expect(encoder()?.encoded.at(-1)?.keyFrame).toBe(true);
    expect(sender.counters).toMatchObject({ framesSent: 2, framesDropped: 1 });
  });

  it("reconfigures the encoder with a key frame when the picture size changes (a resized screen share)", async () => {
    const { out, proc, encoder } = await startedVideo({ codec: "h264" });
    proc.push(new FakeFrame(0, 1280, 720));
    await tick();
    proc.push(new FakeFrame(33_000, 1920, 1080));
    await tick();
    const configs = encoder()?.configs ?? [];
    expect(configs.map((c) => [c.codec, c.width, c.height, c.avc])).toEqual([
      ["avc1.42E01F", 1280, 720, { format: "annexb" }],
      ["avc1.42E028", 1920, 1080, { format: "annexb" }],
    ]);
    expect(out.sent.map(({ h }) => [h.codec, h.key, h.w, h.h])).toEqual([
      ["h264", true, 1280, 720],
      ["h264", true, 1920, 1080],
    ]);
    expectValid(out);
  });

  it("keeps camera frames on the requested fps grid", async () => {
    const { out, sender, proc } = await startedVideo({ fps: 10 });
    for (let i = 0; i < 30; i++) {
      proc.push(new FakeFrame(i * 33_333)); // a 30 fps camera
      await tick();
      sender.ack(out.sent.length - 1);
    }
    const ts = out.sent.map(({ h }) => h.ts as number);
    // a frame every 100 ms (the grid may take a camera frame up to half a frame early, once)
    expect(ts.length).toBeGreaterThanOrEqual(10);
    expect(ts.length).toBeLessThanOrEqual(11);
    const steps = ts.slice(2).map((t, i) => t - (ts[i + 1] as number));
    expect(steps.every((d) => d === 99_999)).toBe(true);
  });

  it("sends every frame of a jittery camera at the asked rate, and half of one twice as fast", async () => {
    // a loaded machine delivers a 30 fps capture up to ~15 ms early or late (a quarter-frame tolerance lost a third)
    const jitter = [0, 14_000, -12_000, 9_000, -15_000, 13_000, 0, -9_000, 15_000, -14_000];
    const { out, sender, proc } = await startedVideo({ fps: 30 });
    for (let i = 0; i < 30; i++) {
      proc.push(new FakeFrame(100_000 + i * 33_333 + (jitter[i % jitter.length] ?? 0)));
      await tick();
      sender.ack(out.sent.length - 1);
    }
    expect([out.sent.length, sender.counters.framesSkipped]).toEqual([30, 0]);
    const fast = await startedVideo({ fps: 30 });
    for (let i = 0; i < 60; i++) {
      fast.proc.push(new FakeFrame(i * 16_667)); // a 60 fps camera
      await tick();
      fast.sender.ack(fast.out.sent.length - 1);
    }
    expect(fast.out.sent.length).toBeGreaterThanOrEqual(29);
    expect(fast.out.sent.length).toBeLessThanOrEqual(31);
    expect(fast.sender.counters.framesSkipped).toBe(60 - fast.out.sent.length);
  });

  it("falls back to H.264 when the encoder has no VP8, and to canvas JPEG without a VideoEncoder", async () => {
    FakeVideoEncoder.supported = new Set(["avc1.42E01F"]);
    expect((await startedVideo()).sender.codec).toBe("h264");

    const { out, sender, proc } = await startedVideo(
      {},
      asG({ MediaStreamTrackProcessor: FakeProcessor, OffscreenCanvas: FakeCanvas }),
    );
    expect(sender.codec).toBe("jpeg");
    const frame = new FakeFrame(0);
    proc.push(frame);
    proc.push(new FakeFrame(40_000));
    await settle();
    expect(FakeCanvas.drawn[0]).toBe(frame);
    expect(frame.closed).toBe(true);
    expect(out.sent.map(({ h }) => [h.seq, h.codec, h.key, h.ts, h.w])).toEqual([
      [0, "jpeg", true, 0, 640],
      [1, "jpeg", true, 40_000, 640],
    ]);
    expect([...new Uint8Array(out.sent[0]?.payload ?? new ArrayBuffer(0))]).toEqual([
      0xff, 0xd8, 128, 0xff, 0xd9,
    ]);
    expectValid(out);
  });

  it("JPEG frames obey the same window: dropped before drawing", async () => {
    const { out, sender, proc } = await startedVideo(
      { codec: "jpeg" },
      videoG({ OffscreenCanvas: FakeCanvas }),
    );
    for (let i = 0; i < 8; i++) proc.push(new FakeFrame(i * 33_000));
    await settle();
    expect(out.sent.length).toBe(RELAY.videoWindow + 1);
    expect(FakeCanvas.drawn.length).toBe(RELAY.videoWindow + 1);
    expect(sender.counters.framesDropped).toBe(8 - (RELAY.videoWindow + 1));
  });

  it("rejects start() with a sentence that says what to do when nothing can encode video", async () => {
    const sender = new VideoRelaySender(fakeTrack("video"), new FakeOut(), { g: asG({}) });
    await expect(sender.start()).rejects.toThrow(
      /no WebCodecs VideoEncoder.*no canvas JPEG encoder.*Use a current Chrome, Edge, Firefox or Safari/,
    );
    FakeVideoEncoder.supported = new Set();
    const forced = new VideoRelaySender(fakeTrack("video"), new FakeOut(), { g: videoG(), codec: "vp8" });
    await expect(forced.start()).rejects.toThrow(/cannot encode VP8 at 640x480. Choose codec "auto"/);
  });
});

class FakeAudioData {
  closed = false;
  constructor(
    public timestamp: number,
    public numberOfFrames = 480,
    public sampleRate = 48000,
    public numberOfChannels = 1,
  ) {}
  get duration() {
    return (this.numberOfFrames / this.sampleRate) * 1e6;
  }
  close() {
    this.closed = true;
  }
}

class FakeAudioEncoder {
  static last: FakeAudioEncoder;
  static async isConfigSupported(c: unknown) {
    return { supported: true, config: c };
  }
  state = "unconfigured";
  configs: Record<string, unknown>[] = [];
  #pending: number[] = [];
  constructor(public init: Init) {
    FakeAudioEncoder.last = this;
  }
  configure(c: Record<string, unknown>) {
    this.configs.push(c);
    this.state = "configured";
  }
  /** 10 ms in, one 20 ms Opus packet out per two inputs. */
  encode(d: FakeAudioData) {
    this.#pending.push(d.timestamp);
    if (this.#pending.length === 2) {
      const ts = this.#pending[0] ?? 0;
      this.#pending = [];
      queueMicrotask(() => this.init.output(new FakeChunk("key", ts, new Uint8Array(40), 20_000)));
    }
  }
  close() {
    this.state = "closed";
  }
}

describe("AudioRelaySender", () => {
  it("sends Opus packets with valid headers and never drops audio, even with a full socket", async () => {
    const out = new FakeOut();
    out.bufferedBytes = RELAY.maxBufferedBytes * 100;
    const g = asG({ AudioEncoder: FakeAudioEncoder, MediaStreamTrackProcessor: FakeProcessor });
    const sender = new AudioRelaySender(fakeTrack("audio", { sampleRate: 44100 }), out, { g });
    await sender.start();
    expect(sender.codec).toBe("opus");
    const inputs = Array.from(
      { length: 100 },
      (_, i) => new FakeAudioData(7_000_000 + i * 10_000, 441, 44100),
    );
    for (const d of inputs) FakeProcessor.last.push(d);
    await tick();
    expect(out.sent.length).toBe(50);
    expect(inputs.every((d) => d.closed)).toBe(true);
    expectValid(out);
    expect(out.sent.slice(0, 2).map(({ h }) => [h.track, h.seq, h.codec, h.ts, h.rate, h.ch])).toEqual([
      ["audio", 0, "opus", 0, 48000, 1],
      ["audio", 1, "opus", 20_000, 48000, 1],
    ]);
    expect(FakeAudioEncoder.last.configs[0]).toMatchObject({
      codec: "opus",
      sampleRate: 44100,
      numberOfChannels: 1,
      bitrate: RELAY.opusBitrate,
      opus: { frameDuration: RELAY.audioFrameMs * 1000 },
    });
    expect(sender.counters).toEqual({ framesSent: 50, samplesSent: 50 * 960, bytesSent: 50 * 40 });
    sender.stop();
    expect(FakeAudioEncoder.last.state).toBe("closed");
  });

  it("without AudioEncoder, captures with an AudioWorklet and sends little-endian interleaved PCM16 blocks", async () => {
    let processorSource = "";
    vi.spyOn(URL, "createObjectURL").mockImplementation((blob) => {
      void (blob as Blob).text().then((t) => {
        processorSource = t;
      });
      return "blob:fake";
    });
    vi.spyOn(URL, "revokeObjectURL").mockImplementation(() => {});
    type Node = { options: Record<string, unknown>; port: { onmessage: ((e: unknown) => void) | null } };
    const made: Node[] = [];
    const ctx = {
      sampleRate: 48000,
      audioWorklet: { addModule: async () => tick() },
      resume: async () => {},
      close: vi.fn(async () => {}),
    };
    const g = asG({
      AudioContext: function AudioContext() {
        return ctx;
      },
      MediaStream: class {},
      MediaStreamAudioSourceNode: class {
        connect() {}
        disconnect() {}
      },
      AudioWorkletNode: class {
        port = { onmessage: null };
        constructor(
          _c: unknown,
          _name: string,
          public options: Record<string, unknown>,
        ) {
          made.push(this);
        }
      },
    });
    const out = new FakeOut();
    out.bufferedBytes = RELAY.maxBufferedBytes * 100;
    const sender = new AudioRelaySender(fakeTrack("audio", { channelCount: 2 }), out, { g });
    await sender.start();
    expect(sender.codec).toBe("pcm16");
    expect(processorSource).toContain('registerProcessor("rtcw-relay-capture"');
    const n = (48000 * RELAY.audioFrameMs) / 1000;
    const node = made[0];
    expect(node?.options).toMatchObject({
      channelCount: 2,
      numberOfOutputs: 0,
      processorOptions: { frames: n, ch: 2 },
    });
    const left = new Float32Array(n).fill(0.5);
    left[1] = -1;
    const right = new Float32Array(n).fill(-0.25);
    for (let i = 0; i < 3; i++) node?.port.onmessage?.({ data: [left, right] });
    expect(out.sent.map(({ h }) => [h.seq, h.codec, h.ts, h.rate, h.ch])).toEqual([
      [0, "pcm16", 0, 48000, 2],
      [1, "pcm16", 20_000, 48000, 2],
      [2, "pcm16", 40_000, 48000, 2],
    ]);
    expectValid(out);
    const view = new DataView(out.sent[0]?.payload ?? new ArrayBuffer(0));
    expect(view.byteLength).toBe(n * 2 * 2);
    expect([0, 1, 2, 3].map((i) => view.getInt16(i * 2, true))).toEqual([16384, -8192, -32768, -8192]);
    expect(sender.counters).toEqual({ framesSent: 3, samplesSent: 3 * n, bytesSent: 3 * n * 4 });
    sender.stop();
    expect(ctx.close).toHaveBeenCalled();
  });

  it("the capture worklet cuts its 128-sample quanta into audioFrameMs blocks", async () => {
    let source = "";
    vi.spyOn(URL, "createObjectURL").mockImplementation((blob) => {
      void (blob as Blob).text().then((t) => {
        source = t;
      });
      return "blob:fake";
    });
    vi.spyOn(URL, "revokeObjectURL").mockImplementation(() => {});
    const g = asG({
      AudioContext: function AudioContext() {
        return {
          sampleRate: 8000,
          audioWorklet: { addModule: tick },
          resume: async () => {},
          close: async () => {},
        };
      },
      MediaStream: class {},
      MediaStreamAudioSourceNode: class {
        connect() {}
        disconnect() {}
      },
      AudioWorkletNode: class {
        port = { onmessage: null };
      },
    });
    await new AudioRelaySender(fakeTrack("audio"), new FakeOut(), { g, codec: "pcm16" }).start();
    let Processor: new (o: unknown) => { process(i: Float32Array[][]): boolean; port: unknown } =
      class {} as never;
    class Base {
      port = { posted: [] as Float32Array[][], postMessage: (m: Float32Array[]) => this.port.posted.push(m) };
    }
    new Function("registerProcessor", "AudioWorkletProcessor", source)((_: string, cls: typeof Processor) => {
      Processor = cls;
    }, Base);
    const p = new Processor({ processorOptions: { frames: 160, ch: 1 } }) as unknown as Base & {
      process(i: Float32Array[][]): boolean;
    };
    let k = 0;
    for (let q = 0; q < 5; q++) {
      const quantum = Float32Array.from({ length: 128 }, () => k++);
      expect(p.process([[quantum]])).toBe(true);
    }
    // 640 samples in: four blocks of 160, in order, nothing lost at the quantum edges
    expect(p.port.posted.map((b) => [b.length, b[0]?.length, b[0]?.[0], b[0]?.[159]])).toEqual([
      [1, 160, 0, 159],
      [1, 160, 160, 319],
      [1, 160, 320, 479],
      [1, 160, 480, 639],
    ]);
  });
});

class FakeDecoder {
  static last: FakeDecoder;
  state = "unconfigured";
  decodeQueueSize = 0;
  configs: Record<string, unknown>[] = [];
  decoded: { type: string; timestamp: number }[] = [];
  constructor(public init: { output: (x: unknown) => void; error: (e: unknown) => void }) {
    FakeDecoder.last = this;
  }
  configure(c: Record<string, unknown>) {
    this.configs.push(c);
    this.state = "configured";
  }
  decode(chunk: { type: string; timestamp: number }) {
    this.decoded.push({ type: chunk.type, timestamp: chunk.timestamp });
  }
  close() {
    this.state = "closed";
  }
}

class FakeEncodedChunk {
  type: string;
  timestamp: number;
  data: ArrayBuffer;
  constructor(init: { type: string; timestamp: number; data: ArrayBuffer }) {
    this.type = init.type;
    this.timestamp = init.timestamp;
    this.data = init.data;
  }
}

const media = (seq: number, codec: "vp8" | "h264" | "jpeg", key: boolean) => ({
  v: VERSION,
  type: "media" as const,
  session: "s1",
  track: "video" as const,
  seq,
  codec,
  ts: seq * 33_333,
  size: 3,
  key,
  w: 640,
  h: 480,
});

describe("VideoRelayReceiver", () => {
  const receiverG = (extra: Record<string, unknown> = {}) =>
    asG({
      VideoDecoder: FakeDecoder,
      EncodedVideoChunk: FakeEncodedChunk,
      OffscreenCanvas: FakeCanvas,
      ...extra,
    });

  it("asks for a key frame (at most once a second) until one comes, then decodes, draws and acks every frame", () => {
    let now = 1000;
    vi.spyOn(performance, "now").mockImplementation(() => now);
    const acks: [number, boolean][] = [];
    const rx = new VideoRelayReceiver({ g: receiverG(), ack: (s, k) => acks.push([s, k]) });
    const bytes = new Uint8Array([1, 2, 3]).buffer;
    rx.receive(media(0, "vp8", false), bytes);
    now += 500;
    rx.receive(media(1, "vp8", false), bytes);
    now += 600;
    rx.receive(media(2, "vp8", false), bytes);
    rx.receive(media(3, "vp8", true), bytes);
    rx.receive(media(4, "vp8", false), bytes);
    expect(acks).toEqual([
      [0, true],
      [1, false],
      [2, true],
      [3, false],
      [4, false],
    ]);
    expect(FakeDecoder.last.configs).toEqual([{ codec: "vp8", optimizeForLatency: true }]);
    expect(FakeDecoder.last.decoded).toEqual([
      { type: "key", timestamp: 99_999 },
      { type: "delta", timestamp: 133_332 },
    ]);
    expect(rx.counters.framesDropped).toBe(3);
    const frame = new FakeFrame(0, 320, 240);
    FakeDecoder.last.init.output(frame);
    expect(frame.closed).toBe(true);
    expect(FakeCanvas.drawn).toEqual([frame]);
    expect([rx.canvas.width, rx.canvas.height]).toEqual([320, 240]);
    expect(rx.counters).toMatchObject({ framesDecoded: 1, width: 320, height: 240 });
    expect(rx.stream).toBeNull(); // an OffscreenCanvas has no captureStream
  });

  it("drops delta frames while the decoder is behind, and after a gap in seq, until the next key frame", () => {
    const acks: [number, boolean][] = [];
    const rx = new VideoRelayReceiver({ g: receiverG(), ack: (s, k) => acks.push([s, k]) });
    const bytes = new ArrayBuffer(3);
    rx.receive(media(0, "vp8", true), bytes);
    FakeDecoder.last.decodeQueueSize = 4;
    rx.receive(media(1, "vp8", false), bytes);
    FakeDecoder.last.decodeQueueSize = 0;
    rx.receive(media(2, "vp8", false), bytes); // still needs the key frame
    rx.receive(media(3, "vp8", true), bytes);
    rx.receive(media(5, "vp8", false), bytes); // 4 was lost on the way
    expect(FakeDecoder.last.decoded.map((d) => d.type)).toEqual(["key", "key"]);
    expect(acks).toEqual([
      [0, false],
      [1, true],
      [2, false],
      [3, false],
      [5, false], // the key ask is rate-limited to one a second
    ]);
    expect(rx.counters.framesDropped).toBe(3);
  });

  it("configures H.264 from the key frame's SPS (Annex B, no description)", () => {
    const rx = new VideoRelayReceiver({ g: receiverG() });
    const sps = new Uint8Array([
      0, 0, 0, 1, 0x67, 0x64, 0x00, 0x28, 0xac, 0, 0, 0, 1, 0x68, 0xee, 0, 0, 1, 0x65, 0x88,
    ]);
    rx.receive(media(0, "h264", true), sps.buffer);
    expect(FakeDecoder.last.configs).toEqual([{ codec: "avc1.640028", optimizeForLatency: true }]);
  });

  it("decodes JPEG with createImageBitmap and acks it", async () => {
    const acks: [number, boolean][] = [];
    const bitmap = { width: 64, height: 48, close: vi.fn() };
    const createImageBitmap = vi.fn(async (b: Blob) => {
      expect(b.type).toBe("image/jpeg");
      return bitmap;
    });
    const rx = new VideoRelayReceiver({
      g: receiverG({ createImageBitmap }),
      ack: (s, k) => acks.push([s, k]),
    });
    rx.receive(media(0, "jpeg", true), new ArrayBuffer(3));
    expect(acks).toEqual([[0, false]]);
    await tick();
    expect(FakeCanvas.drawn).toEqual([bitmap]);
    expect(bitmap.close).toHaveBeenCalled();
    expect(rx.counters).toMatchObject({ framesDecoded: 1, width: 64, height: 48 });
  });
});

/** A constructor that returns `ctx` (new-able, unlike an arrow function). */
function contextOf(ctx: object) {
  return function AudioContext() {
    return ctx;
  };
}

function fakeAudioContext() {
  const started: { at: number; length: number; first: number }[] = [];
  const ctx = {
    currentTime: 10,
    state: "running",
    destination: {},
    createMediaStreamDestination: () => ({ stream: { id: "out" } }),
    createGain: () => ({ connect: vi.fn(), disconnect: vi.fn() }),
    createBuffer: (ch: number, n: number, rate: number) => {
      const planes = Array.from({ length: ch }, () => new Float32Array(n));
      return {
        length: n,
        duration: n / rate,
        numberOfChannels: ch,
        getChannelData: (c: number) => planes[c],
      };
    },
    createBufferSource: () => {
      const src = {
        buffer: null as { length: number; getChannelData(c: number): Float32Array | undefined } | null,
        connect() {},
        start: (at: number) =>
          started.push({
            at,
            length: src.buffer?.length ?? 0,
            first: src.buffer?.getChannelData(0)?.[0] ?? 0,
          }),
      };
      return src;
    },
    resume: async () => {},
    close: async () => {},
  };
  return { ctx, started };
}

describe("AudioRelayReceiver", () => {
  it("plays PCM16 back to back a little ahead of the clock, restarting when it fell behind", () => {
    const { ctx, started } = fakeAudioContext();
    const rx = new AudioRelayReceiver({ g: asG({ AudioContext: contextOf(ctx) }) });
    expect(rx.stream).toEqual({ id: "out" });
    const pcm = new DataView(new ArrayBuffer(960 * 2));
    pcm.setInt16(0, -16384, true);
    const msg = (seq: number) => ({
      ...media(seq, "vp8", false),
      track: "audio" as const,
      codec: "pcm16" as const,
    });
    rx.receive({ ...msg(0), rate: 48000, ch: 1 }, pcm.buffer);
    rx.receive({ ...msg(1), rate: 48000, ch: 1 }, pcm.buffer);
    ctx.currentTime = 20; // a stall: the schedule is in the past
    rx.receive({ ...msg(2), rate: 48000, ch: 1 }, pcm.buffer);
    expect(started.map((s) => [Number(s.at.toFixed(3)), s.length, s.first])).toEqual([
      [10.06, 960, -0.5],
      [10.08, 960, -0.5],
      [20.06, 960, -0.5],
    ]);
    expect(rx.counters).toEqual({ samplesPlayed: 3 * 960, samplesDropped: 0, restarts: 1 });
  });

  it("decodes Opus with an AudioDecoder opened at the header's rate and channels", () => {
    const { ctx, started } = fakeAudioContext();
    const rx = new AudioRelayReceiver({
      g: asG({
        AudioContext: contextOf(ctx),
        AudioDecoder: FakeDecoder,
        EncodedAudioChunk: FakeEncodedChunk,
      }),
    });
    const opus = {
      ...media(0, "vp8", false),
      track: "audio" as const,
      codec: "opus" as const,
      rate: 48000,
      ch: 2,
    };
    rx.receive(opus, new ArrayBuffer(40));
    expect(FakeDecoder.last.configs).toEqual([{ codec: "opus", sampleRate: 48000, numberOfChannels: 2 }]);
    expect(FakeDecoder.last.decoded).toEqual([{ type: "key", timestamp: 0 }]);
    const data = {
      numberOfFrames: 960,
      numberOfChannels: 2,
      sampleRate: 48000,
      copyTo: vi.fn(),
      close: vi.fn(),
    };
    FakeDecoder.last.init.output(data);
    expect(data.copyTo).toHaveBeenCalledTimes(2);
    expect(data.close).toHaveBeenCalled();
    expect(started).toHaveLength(1);
  });
});

describe("capabilities", () => {
  it("lists only what the injected browser can encode", async () => {
    FakeVideoEncoder.supported = new Set(["avc1.42E01F"]);
    const caps = await encodeCapabilities(
      videoG({ AudioEncoder: FakeAudioEncoder, OffscreenCanvas: FakeCanvas }),
    );
    expect(caps).toEqual({ video: ["h264", "jpeg"], audio: ["opus"] });
    expect(await encodeCapabilities(asG({}))).toEqual({ video: [], audio: [] });
  });
});

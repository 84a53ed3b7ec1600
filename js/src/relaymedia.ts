// Media over the relay transport, browser end, both directions: camera/screen/microphone tracks encoded frame by
// frame (WebCodecs, or canvas JPEG and raw PCM where WebCodecs is missing) into protocol `media` messages, and the
// kernel's `media` messages decoded onto a canvas and into a MediaStream. The transport (bus or comm) attaches each
// payload beside its JSON header; this module only sees `MediaOut.send(header, payload)` and `receive(msg, payload)`.
//
// Payload bytes, one frame per message (what the Python side, e.g. PyAV, must read; checked against PyAV in
// tests/browser/test_relaymedia_codecs.py):
// - vp8:   one VP8 frame exactly as libvpx emits it (RFC 6386; an IVF file's frame payload without the 12-byte
//          IVF frame header). Key frames start with the 3-byte frame tag then 9d 01 2a and the 14-bit width/height.
//          PyAV: `av.CodecContext.create("vp8", "r").decode(av.Packet(payload))`.
// - h264:  one access unit as an Annex B byte stream (00 00 00 01 start codes, no avcC length prefixes),
//          Constrained Baseline (no B-frames, so decode order = display order). Key frames carry SPS and PPS
//          in-band before the IDR slice. PyAV: `av.CodecContext.create("h264", "r")`, packets in seq order.
// - jpeg:  one complete baseline JFIF image (FF D8 ... FF D9); every JPEG frame has key:true.
//          PyAV: `av.CodecContext.create("mjpeg", "r")`, or PIL.Image.open(io.BytesIO(payload)).
// - opus:  one raw Opus packet (RFC 6716) of 20 ms, NO Ogg framing and no OpusHead; `rate` is always 48000 (the
//          Opus clock: 960 samples per packet; Chromium's fake microphone runs at 44100 and the encoder resamples),
//          `ch` the channel count. PyAV: `c = av.CodecContext.create("opus", "r")` (or "libopus"),
//          `c.sample_rate = 48000`, `c.layout = "mono"` (or "stereo"), then `c.decode(av.Packet(payload))`.
// - pcm16: signed 16-bit little-endian samples, channels interleaved, `rate` x audioFrameMs/1000 frames per
//          message (960 at 48 kHz, 882 at 44.1 kHz: `rate` is the page's AudioContext rate, often 44100 or 48000):
//          `np.frombuffer(payload, "<i2").reshape(-1, ch)`.
// Header fields: `ts` is µs since the track's first frame (integer, increasing; audio ts counts samples); `t` the
// sender's wall clock (ms) at capture; video `w`/`h` the encoded size. A gap in video `seq` means a frame was lost
// (refused by the path): deltas after it are undecodable, so the receiver waits for a key frame and asks for one.
// Acks are cumulative (ack seq N acknowledges every frame up to N); the sender drops new video frames before
// encoding while more than videoWindow are unacknowledged, and after PROBE_MS without any ack sends one key frame
// anyway (acks may have been lost). Receivers here ack every video frame, with key:true at most once a second.
import { errText } from "./format";
import { type MediaMsg, RELAY, type RelayCodec } from "./protocol";

export type MediaHeader = Omit<MediaMsg, "v" | "type" | "session" | "size">;

/** Where encoded frames go (the relay transport). */
export interface MediaOut {
  /** false if the path refused it (closed, too large). */
  send(header: MediaHeader, payload: ArrayBuffer): boolean;
  /** Bytes waiting in the socket, 0 if unknown. */
  buffered(): number;
}

/** What this browser can encode (or decode), in RELAY preference order. */
export interface RelayCapabilities {
  video: RelayCodec[];
  audio: RelayCodec[];
}

export type VideoRelayCodec = "vp8" | "h264" | "jpeg";
export type AudioRelayCodec = "opus" | "pcm16";

/** MediaStreamTrackProcessor (Chromium; not in TypeScript's DOM lib): a track as a stream of VideoFrame/AudioData. */
interface TrackProcessor {
  readonly readable: ReadableStream<unknown>;
}
type TrackProcessorCtor = new (init: { track: MediaStreamTrack; maxBufferSize?: number }) => TrackProcessor;
type Env = typeof globalThis & { MediaStreamTrackProcessor?: TrackProcessorCtor };

const BROWSERS = "use a current Chrome, Edge, Firefox or Safari";
/** Without a single ack for this long while the window is full, one key frame goes out anyway (acks may be lost). */
const PROBE_MS = 3000;
const KEY_ASK_MS = 1000;
const MAX_DECODE_QUEUE = 3;
const MAX_JPEG_DECODES = 3;
const JITTER_S = 0.06;
const MAX_AHEAD_S = 0.5;
/** Opus always codes at 48 kHz (encoders resample their input), whatever rate the microphone runs at. */
const OPUS_RATE = 48000;

const isFn = (x: unknown): boolean => typeof x === "function";
const hasProcessor = (g: Env): boolean => isFn(g.MediaStreamTrackProcessor);
const hasDocument = (g: Env): boolean => isFn(g.document?.createElement);

/** Constrained Baseline at the lowest level whose frame size (in macroblocks) fits: Annex B needs no description. */
function avcCodecFor(width: number, height: number): string {
  const mbs = Math.ceil(width / 16) * Math.ceil(height / 16);
  const levels: [number, string][] = [
    [3600, "1F"],
    [5120, "20"],
    [8192, "28"],
    [22080, "32"],
  ];
  return `avc1.42E0${levels.find(([max]) => mbs <= max)?.[1] ?? "33"}`;
}

/** "avc1.PPCCLL" from the first SPS of an Annex B access unit, or null. */
function avcCodecFromSps(data: ArrayBuffer): string | null {
  const b = new Uint8Array(data);
  for (let i = 0; i + 6 < b.length; i++) {
    if (b[i] === 0 && b[i + 1] === 0 && b[i + 2] === 1 && ((b[i + 3] ?? 0) & 0x1f) === 7) {
      const hex = (x: number | undefined) => (x ?? 0).toString(16).padStart(2, "0").toUpperCase();
      return `avc1.${hex(b[i + 4])}${hex(b[i + 5])}${hex(b[i + 6])}`;
    }
  }
  return null;
}

function videoConfig(
  codec: "vp8" | "h264",
  w: number,
  h: number,
  kbps: number,
  fps: number,
): VideoEncoderConfig {
  const base: VideoEncoderConfig = {
    codec: codec === "vp8" ? "vp8" : avcCodecFor(w, h),
    width: w,
    height: h,
    bitrate: kbps * 1000,
    framerate: fps,
    latencyMode: "realtime",
  };
  return codec === "h264" ? { ...base, avc: { format: "annexb" } } : base;
}

function opusConfig(sampleRate: number, numberOfChannels: number): AudioEncoderConfig {
  return {
    codec: "opus",
    sampleRate,
    numberOfChannels,
    bitrate: RELAY.opusBitrate,
    opus: { frameDuration: RELAY.audioFrameMs * 1000 },
  };
}

async function supported(check: () => Promise<{ supported?: boolean }>): Promise<boolean> {
  try {
    return (await check()).supported === true;
  } catch {
    return false;
  }
}

type AnyCanvas = HTMLCanvasElement | OffscreenCanvas;

function newCanvas(g: Env, preferDocument: boolean): AnyCanvas | null {
  if (preferDocument && hasDocument(g)) return g.document.createElement("canvas");
  if (isFn(g.OffscreenCanvas)) return new g.OffscreenCanvas(1, 1);
  return hasDocument(g) ? g.document.createElement("canvas") : null;
}

function canEncodeJpeg(g: Env): boolean {
  if (isFn(g.OffscreenCanvas) && isFn(g.OffscreenCanvas.prototype?.convertToBlob)) return true;
  return hasDocument(g) && isFn(g.HTMLCanvasElement?.prototype?.toBlob);
}

function toJpeg(canvas: AnyCanvas): Promise<Blob> {
  const options = { type: "image/jpeg", quality: RELAY.jpegQuality };
  if ("convertToBlob" in canvas) return canvas.convertToBlob(options);
  return new Promise((resolve, reject) =>
    canvas.toBlob(
      (blob) => (blob ? resolve(blob) : reject(new Error("the canvas gave no JPEG"))),
      options.type,
      options.quality,
    ),
  );
}

/** Why `codec` cannot be sent from this browser, or null if it can. */
async function videoProblem(
  g: Env,
  codec: VideoRelayCodec,
  size: { width: number; height: number },
  kbps: number,
  fps: number,
): Promise<string | null> {
  if (codec === "jpeg") {
    if (!canEncodeJpeg(g)) return "no canvas JPEG encoder";
    return hasProcessor(g) || hasDocument(g) ? null : "no way to read camera frames";
  }
  const name = codec === "vp8" ? "VP8" : "H.264";
  if (!isFn(g.VideoEncoder)) return "no WebCodecs VideoEncoder";
  if (!hasProcessor(g) && !(hasDocument(g) && isFn(g.VideoFrame))) return "no way to read camera frames";
  const config = videoConfig(codec, size.width, size.height, kbps, fps);
  if (!(await supported(() => g.VideoEncoder.isConfigSupported(config)))) {
    return `its VideoEncoder cannot encode ${name} at ${size.width}x${size.height}`;
  }
  return null;
}

async function audioProblem(
  g: Env,
  codec: AudioRelayCodec,
  rate: number,
  ch: number,
): Promise<string | null> {
  const worklet = isFn(g.AudioContext) && isFn(g.AudioWorkletNode);
  if (codec === "pcm16") return worklet ? null : "no Web Audio AudioWorklet (PCM)";
  if (!isFn(g.AudioEncoder)) return "no WebCodecs AudioEncoder (Opus)";
  if (!hasProcessor(g) && !(worklet && isFn(g.AudioData))) return "no way to read microphone samples";
  if (!(await supported(() => g.AudioEncoder.isConfigSupported(opusConfig(rate, ch))))) {
    return `its AudioEncoder cannot encode Opus at ${rate} Hz`;
  }
  return null;
}

/** The relay codecs this browser can encode, in preference order. */
export async function encodeCapabilities(
  g: typeof globalThis = globalThis,
  size: { width: number; height: number } = { width: 640, height: 480 },
): Promise<RelayCapabilities> {
  const video: RelayCodec[] = [];
  for (const c of RELAY.videoCodecs as VideoRelayCodec[]) {
    if (!(await videoProblem(g, c, size, RELAY.videoBitrateKbps, 30))) video.push(c);
  }
  const audio: RelayCodec[] = [];
  for (const c of RELAY.audioCodecs as AudioRelayCodec[]) {
    if (!(await audioProblem(g, c, 48000, 1))) audio.push(c);
  }
  return { video, audio };
}

/** The relay codecs this browser can decode (kernel to browser), in preference order. */
export async function decodeCapabilities(g: typeof globalThis = globalThis): Promise<RelayCapabilities> {
  const env = g as Env;
  const video: RelayCodec[] = [];
  const dec = (codec: string) =>
    isFn(env.VideoDecoder) && supported(() => env.VideoDecoder.isConfigSupported({ codec }));
  if (await dec("vp8")) video.push("vp8");
  if (await dec("avc1.42E01F")) video.push("h264");
  if (isFn(env.createImageBitmap)) video.push("jpeg");
  const audio: RelayCodec[] = [];
  const opus = { codec: "opus", sampleRate: 48000, numberOfChannels: 1 };
  if (isFn(env.AudioDecoder) && (await supported(() => env.AudioDecoder.isConfigSupported(opus))))
    audio.push("opus");
  if (isFn(env.AudioContext)) audio.push("pcm16");
  return { video, audio };
}

// ------------------------------------------------------------------------------------------------------------------
// Sources: a track as VideoFrames (or a drawable), or as AudioData / Float32 blocks

/** One captured picture: a VideoFrame when the source makes them, else a drawable (the <video> element). */
interface SourceFrame {
  frame: VideoFrame | null;
  image: CanvasImageSource;
  w: number;
  h: number;
  tsUs: number;
  close(): void;
}

const frameOf = (frame: VideoFrame): SourceFrame => ({
  frame,
  image: frame,
  w: frame.visibleRect?.width ?? frame.codedWidth,
  h: frame.visibleRect?.height ?? frame.codedHeight,
  tsUs: frame.timestamp,
  close: () => frame.close(),
});

/** Reads a MediaStreamTrackProcessor until the track ends or `stop()`. */
function pumpProcessor<T>(
  g: Env,
  track: MediaStreamTrack,
  onValue: (v: T) => void,
  onEnd: (why: string) => void,
) {
  const Processor = g.MediaStreamTrackProcessor as TrackProcessorCtor;
  // the processor drops its oldest item when this is full: a few video frames, but ~1 s of audio (100 x 10 ms),
  // because audio must never be dropped
  const maxBufferSize = track.kind === "audio" ? 100 : 4;
  const reader = new Processor({ track, maxBufferSize }).readable.getReader();
  let stopped = false;
  void (async () => {
    try {
      for (;;) {
        const r = await reader.read();
        if (r.done) break;
        if (stopped) (r.value as { close?: () => void }).close?.();
        else onValue(r.value as T);
      }
      if (!stopped) onEnd(`the ${track.kind} track ended`);
    } catch (e) {
      if (!stopped) onEnd(`reading the ${track.kind} track failed (${errText(e)})`);
    }
  })();
  return () => {
    stopped = true;
    reader.cancel().catch(() => {});
  };
}

/**
 * Samples a hidden <video> playing the track at `fps` (browsers without MediaStreamTrackProcessor). A timer, not
 * requestVideoFrameCallback: a detached element is never composited, so rVFC would not fire.
 */
function pumpVideoElement(
  g: Env,
  track: MediaStreamTrack,
  fps: number,
  asVideoFrame: boolean,
  onFrame: (f: SourceFrame) => void,
  onEnd: (why: string) => void,
) {
  const video = g.document.createElement("video");
  video.muted = true;
  video.playsInline = true;
  video.srcObject = new g.MediaStream([track]);
  void video.play().catch(() => {});
  const t0 = performance.now();
  const timer = setInterval(() => {
    if (video.readyState < 2 || !video.videoWidth) return;
    const tsUs = Math.round((performance.now() - t0) * 1000);
    if (!asVideoFrame) {
      onFrame({ frame: null, image: video, w: video.videoWidth, h: video.videoHeight, tsUs, close() {} });
      return;
    }
    let frame: VideoFrame;
    try {
      frame = new g.VideoFrame(video, { timestamp: tsUs });
    } catch {
      return; // no picture yet
    }
    onFrame(frameOf(frame));
  }, 1000 / Math.max(1, fps));
  const ended = () => onEnd(`the ${track.kind} track ended`);
  track.addEventListener?.("ended", ended);
  return () => {
    clearInterval(timer);
    track.removeEventListener?.("ended", ended);
    video.pause();
    video.srcObject = null;
  };
}

// Runs in the AudioWorkletGlobalScope: cuts the input into blocks of `frames` samples per channel (silence when the
// input has no channels) and posts them as Float32Arrays, one per channel.
const CAPTURE_PROCESSOR = `
registerProcessor("rtcw-relay-capture", class extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.n = options.processorOptions.frames;
    this.ch = options.processorOptions.ch;
    this.fresh();
  }
  fresh() {
    this.buf = [];
    for (let c = 0; c < this.ch; c++) this.buf.push(new Float32Array(this.n));
    this.k = 0;
  }
  process(inputs) {
    const input = inputs[0] || [];
    const len = input[0] ? input[0].length : 128;
    for (let i = 0; i < len; ) {
      const m = Math.min(len - i, this.n - this.k);
      for (let c = 0; c < this.ch; c++) {
        const src = input[c] || input[0];
        if (src) this.buf[c].set(src.subarray(i, i + m), this.k);
      }
      this.k += m;
      i += m;
      if (this.k === this.n) {
        this.port.postMessage(this.buf, this.buf.map((b) => b.buffer));
        this.fresh();
      }
    }
    return true;
  }
});
`;

/** AudioContext -> source node -> capture worklet; calls onBlock with audioFrameMs of planar Float32 samples. */
async function pumpWorklet(
  g: Env,
  track: MediaStreamTrack,
  ch: number,
  onBlock: (planes: Float32Array[], rate: number) => void,
  onEnd: (why: string) => void,
) {
  const settings = track.getSettings?.() ?? {};
  let ctx: AudioContext;
  try {
    // the track's own rate: Firefox refuses a source node whose context runs at another rate
    ctx = new g.AudioContext(settings.sampleRate ? { sampleRate: settings.sampleRate } : {});
  } catch {
    ctx = new g.AudioContext();
  }
  try {
    const url = URL.createObjectURL(new Blob([CAPTURE_PROCESSOR], { type: "application/javascript" }));
    try {
      await ctx.audioWorklet.addModule(url);
    } finally {
      URL.revokeObjectURL(url);
    }
    const source = new g.MediaStreamAudioSourceNode(ctx, { mediaStream: new g.MediaStream([track]) });
    const frames = Math.round((ctx.sampleRate * RELAY.audioFrameMs) / 1000);
    // no outputs: Chromium pulls such a node without connecting it to the destination (nothing is heard)
    const node = new g.AudioWorkletNode(ctx, "rtcw-relay-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 0,
      channelCount: ch,
      channelCountMode: "explicit",
      processorOptions: { frames, ch },
    });
    node.port.onmessage = (e: MessageEvent<Float32Array[]>) => onBlock(e.data, ctx.sampleRate);
    source.connect(node);
    await ctx.resume().catch(() => {});
    // an ended track leaves the source node playing silence: stop instead of sending it
    const ended = () => onEnd(`the ${track.kind} track ended`);
    track.addEventListener?.("ended", ended);
    return () => {
      track.removeEventListener?.("ended", ended);
      node.port.onmessage = null;
      source.disconnect();
      void ctx.close().catch(() => {});
    };
  } catch (e) {
    void ctx.close().catch(() => {});
    throw e;
  }
}

function copyChunk(chunk: EncodedVideoChunk | EncodedAudioChunk): ArrayBuffer {
  const buf = new ArrayBuffer(chunk.byteLength);
  chunk.copyTo(buf);
  return buf;
}

function pickOrder<C extends string>(want: string | undefined, all: readonly string[]): C[] {
  return (!want || want === "auto" ? all : [want]) as C[];
}

function noCodecError(kind: "video" | "audio", want: string | undefined, reasons: string[]): Error {
  const forced = want && want !== "auto";
  const tail = forced ? `choose codec "auto" to let the relay pick another one, or ${BROWSERS}` : BROWSERS;
  return new Error(
    `This browser cannot send ${kind} over the relay: ${[...new Set(reasons)].join("; ")}. ${capital(tail)}.`,
  );
}
const capital = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

// ------------------------------------------------------------------------------------------------------------------
// Browser -> kernel

export interface VideoSenderOptions {
  codec?: "auto" | VideoRelayCodec;
  fps?: number;
  bitrateKbps?: number;
  onError?: (text: string) => void;
  g?: typeof globalThis;
}

/** A camera/screen track as `media` messages: one encoded frame each, flow-controlled by the receiver's acks. */
export class VideoRelaySender {
  codec: RelayCodec | "" = "";
  counters = { framesSent: 0, framesDropped: 0, bytesSent: 0, keyFrames: 0 };
  /** Latest send -> ack time (ms). */
  ackRttMs = 0;
  readonly #track: MediaStreamTrack;
  readonly #out: MediaOut;
  readonly #opts: VideoSenderOptions;
  readonly #g: Env;
  #fps = 30;
  #kbps: number = RELAY.videoBitrateKbps;
  #stopSource: (() => void) | null = null;
  #encoder: VideoEncoder | null = null;
  #encoderFailures = 0;
  #w = 0;
  #h = 0;
  #seq = 0;
  #acked = -1;
  #lastProgress = 0;
  #sentAt = new Map<number, number>();
  #firstTs: number | null = null;
  #nextDueUs = 0;
  #keyWanted = true;
  #lastKeyTs = Number.NEGATIVE_INFINITY;
  /** Frames inside the encoder, by timestamp: what their header needs. */
  #pending = new Map<number, { ts: number; t: number; w: number; h: number }>();
  #jpegCanvas: AnyCanvas | null = null;
  #jpegBusy = 0;
  #jpegChain: Promise<void> = Promise.resolve();
  #stopped = false;

  constructor(track: MediaStreamTrack, out: MediaOut, opts: VideoSenderOptions = {}) {
    this.#track = track;
    this.#out = out;
    this.#opts = opts;
    this.#g = (opts.g ?? globalThis) as Env;
  }

  async start(): Promise<void> {
    const g = this.#g;
    const s = this.#track.getSettings?.() ?? {};
    this.#fps = this.#opts.fps ?? s.frameRate ?? 30;
    this.#kbps = this.#opts.bitrateKbps ?? RELAY.videoBitrateKbps;
    const size = { width: s.width ?? 640, height: s.height ?? 480 };
    const reasons: string[] = [];
    for (const c of pickOrder<VideoRelayCodec>(this.#opts.codec, RELAY.videoCodecs)) {
      const why = await videoProblem(g, c, size, this.#kbps, this.#fps);
      if (!why) {
        this.codec = c;
        break;
      }
      reasons.push(why);
    }
    if (!this.codec) throw noCodecError("video", this.#opts.codec, reasons);
    if (this.#stopped) return;
    this.#lastProgress = performance.now();
    const onFrame = (f: SourceFrame) => this.#onFrame(f);
    const onEnd = (why: string) =>
      this.#fail(`Relay video stopped: ${why}. Start the camera or screen share again.`);
    this.#stopSource = hasProcessor(g)
      ? pumpProcessor<VideoFrame>(g, this.#track, (f) => onFrame(frameOf(f)), onEnd)
      : pumpVideoElement(g, this.#track, this.#fps, this.codec !== "jpeg", onFrame, onEnd);
  }

  /** The receiver got frame `seq` (and all before it); `key` asks for a key frame. */
  ack(seq: number, key = false): void {
    if (key) this.#keyWanted = true;
    if (!Number.isInteger(seq) || seq <= this.#acked || seq >= this.#seq) return;
    this.#acked = seq;
    const now = performance.now();
    this.#lastProgress = now;
    const at = this.#sentAt.get(seq);
    if (at !== undefined) this.ackRttMs = now - at;
    for (const s of this.#sentAt.keys()) if (s <= seq) this.#sentAt.delete(s);
  }

  stop(): void {
    this.#stopped = true;
    this.#stopSource?.();
    this.#stopSource = null;
    if (this.#encoder && this.#encoder.state !== "closed") this.#encoder.close();
    this.#encoder = null;
    this.#pending.clear();
    this.#sentAt.clear();
  }

  #fail(text: string): void {
    if (this.#stopped) return;
    this.stop();
    this.#opts.onError?.(text);
  }

  #onFrame(f: SourceFrame): void {
    const t = Date.now();
    if (this.#stopped) {
      f.close();
      return;
    }
    this.#firstTs ??= f.tsUs;
    const ts = Math.max(0, Math.round(f.tsUs - this.#firstTs));
    if (this.#opts.fps) {
      // the camera may run faster than asked: keep frames on a 1/fps grid (a quarter-frame of jitter allowed)
      const gap = 1e6 / this.#opts.fps;
      if (ts < this.#nextDueUs - gap / 4) {
        f.close();
        return;
      }
      this.#nextDueUs = Math.max(this.#nextDueUs + gap, ts);
    }
    if (this.#mustDrop()) {
      this.counters.framesDropped++;
      f.close();
      return;
    }
    if (this.codec === "jpeg") this.#encodeJpeg(f, ts, t);
    else this.#encode(f, ts, t);
  }

  /** Flow control, checked BEFORE encoding so that the encoded stream never has a hole. */
  #mustDrop(): boolean {
    if (this.#out.buffered() > RELAY.maxBufferedBytes) return true;
    const inFlight = this.#seq - 1 - this.#acked + (this.#encoder?.encodeQueueSize ?? 0) + this.#jpegBusy;
    if (inFlight <= RELAY.videoWindow) return false;
    const now = performance.now();
    if (now - this.#lastProgress < PROBE_MS) return true;
    this.#lastProgress = now;
    this.#keyWanted = true;
    return false;
  }

  #wantKey(ts: number): boolean {
    if (!this.#keyWanted && ts - this.#lastKeyTs < RELAY.keyFrameIntervalS * 1e6) return false;
    this.#keyWanted = false;
    this.#lastKeyTs = ts;
    return true;
  }

  #encode(f: SourceFrame, ts: number, t: number): void {
    const frame = f.frame;
    if (!frame) {
      f.close();
      return;
    }
    try {
      if (!this.#encoder || this.#encoder.state === "closed" || f.w !== this.#w || f.h !== this.#h) {
        this.#configure(f.w, f.h);
      }
      const encoder = this.#encoder as VideoEncoder | null;
      if (!encoder) return;
      this.#pending.set(frame.timestamp, { ts, t, w: f.w, h: f.h });
      encoder.encode(frame, { keyFrame: this.#wantKey(ts) });
    } catch (e) {
      this.#encoderFailed(e);
    } finally {
      f.close();
    }
  }

  #configure(w: number, h: number): void {
    const g = this.#g;
    const codec = this.codec as "vp8" | "h264";
    if (!this.#encoder || this.#encoder.state === "closed") {
      this.#encoder = new g.VideoEncoder({
        output: (chunk) => this.#onChunk(chunk),
        error: (e) => this.#encoderFailed(e),
      });
    }
    this.#encoder.configure(videoConfig(codec, w, h, this.#kbps, this.#fps));
    this.#w = w;
    this.#h = h;
    this.#keyWanted = true; // a new configuration starts with a key frame
  }

  #encoderFailed(e: unknown): void {
    if (this.#stopped) return;
    this.#encoder = null; // the next frame makes a new one
    this.#pending.clear();
    this.#keyWanted = true;
    if (++this.#encoderFailures >= 3) {
      this.#fail(
        `The browser's ${this.codec.toUpperCase()} encoder keeps failing (${errText(e)}); ` +
          `choose codec "jpeg" for the relay, or ${BROWSERS}.`,
      );
    }
  }

  #onChunk(chunk: EncodedVideoChunk): void {
    if (this.#stopped) return;
    const info = this.#pending.get(chunk.timestamp);
    // frames the encoder skipped leave entries older than this one
    for (const k of this.#pending.keys()) if (k <= chunk.timestamp) this.#pending.delete(k);
    const key = chunk.type === "key";
    if (key) this.#encoderFailures = 0;
    this.#emit(
      {
        track: "video",
        seq: 0,
        codec: this.codec as RelayCodec,
        ts: info?.ts ?? 0,
        key,
        w: info?.w ?? this.#w,
        h: info?.h ?? this.#h,
        t: info?.t ?? Date.now(),
      },
      copyChunk(chunk),
    );
  }

  #encodeJpeg(f: SourceFrame, ts: number, t: number): void {
    let blob: Promise<Blob>;
    try {
      this.#jpegCanvas ??= newCanvas(this.#g, false);
      const canvas = this.#jpegCanvas;
      const ctx = canvas?.getContext("2d") as
        | CanvasRenderingContext2D
        | OffscreenCanvasRenderingContext2D
        | null;
      if (!canvas || !ctx) throw new Error("no 2D canvas");
      if (canvas.width !== f.w || canvas.height !== f.h) {
        canvas.width = f.w;
        canvas.height = f.h;
      }
      ctx.drawImage(f.image, 0, 0, f.w, f.h);
      blob = toJpeg(canvas); // the canvas is copied now: it can be drawn on again at once
    } catch (e) {
      this.#fail(`The browser could not draw the camera into a JPEG (${errText(e)}); ${BROWSERS}.`);
      return;
    } finally {
      f.close();
    }
    this.#jpegBusy++;
    const header: MediaHeader = { track: "video", seq: 0, codec: "jpeg", ts, key: true, w: f.w, h: f.h, t };
    this.#jpegChain = this.#jpegChain.then(async () => {
      try {
        const bytes = await (await blob).arrayBuffer();
        this.#jpegBusy--;
        if (!this.#stopped) this.#emit(header, bytes);
      } catch (e) {
        this.#jpegBusy--;
        this.#opts.onError?.(
          `A camera frame could not be encoded as JPEG (${errText(e)}); the next one will be tried.`,
        );
      }
    });
  }

  /** Numbers and sends one encoded frame; a refused frame still uses up its seq so the receiver sees the gap. */
  #emit(header: MediaHeader, payload: ArrayBuffer): void {
    const seq = this.#seq++;
    const ok = payload.byteLength <= RELAY.maxMediaBytes && this.#out.send({ ...header, seq }, payload);
    if (!ok) {
      this.counters.framesDropped++;
      this.#keyWanted = true;
      return;
    }
    this.#sentAt.set(seq, performance.now());
    this.counters.framesSent++;
    this.counters.bytesSent += payload.byteLength;
    if (header.key) this.counters.keyFrames++;
  }
}

export interface AudioSenderOptions {
  codec?: "auto" | AudioRelayCodec;
  onError?: (text: string) => void;
  g?: typeof globalThis;
}

/** A microphone track as `media` messages (Opus packets or PCM blocks of audioFrameMs). Audio is never dropped. */
export class AudioRelaySender {
  codec: RelayCodec | "" = "";
  counters = { framesSent: 0, samplesSent: 0, bytesSent: 0 };
  readonly #track: MediaStreamTrack;
  readonly #out: MediaOut;
  readonly #opts: AudioSenderOptions;
  readonly #g: Env;
  #stopSource: (() => void) | null = null;
  #encoder: AudioEncoder | null = null;
  #encoderKey = "";
  #ch = 1;
  #seq = 0;
  #firstTs: number | null = null;
  /** Recent inputs (media µs -> wall ms) to stamp encoder output with its capture time. */
  #inputs: { ts: number; wall: number }[] = [];
  #samples = 0;
  #stopped = false;

  constructor(track: MediaStreamTrack, out: MediaOut, opts: AudioSenderOptions = {}) {
    this.#track = track;
    this.#out = out;
    this.#opts = opts;
    this.#g = (opts.g ?? globalThis) as Env;
  }

  async start(): Promise<void> {
    const g = this.#g;
    const s = this.#track.getSettings?.() ?? {};
    const rate = s.sampleRate ?? 48000;
    const ch = Math.min(2, Math.max(1, s.channelCount ?? 1));
    const reasons: string[] = [];
    for (const c of pickOrder<AudioRelayCodec>(this.#opts.codec, RELAY.audioCodecs)) {
      const why = await audioProblem(g, c, rate, ch);
      if (!why) {
        this.codec = c;
        break;
      }
      reasons.push(why);
    }
    if (!this.codec) throw noCodecError("audio", this.#opts.codec, reasons);
    const onEnd = (why: string) => this.#fail(`Relay audio stopped: ${why}. Start the microphone again.`);
    if (this.codec === "opus" && hasProcessor(g)) {
      this.#stopSource = pumpProcessor<AudioData>(g, this.#track, (d) => this.#encode(d), onEnd);
      return;
    }
    const stop = await pumpWorklet(g, this.#track, ch, (planes, r) => this.#onBlock(planes, r), onEnd);
    if (this.#stopped) stop();
    else this.#stopSource = stop;
  }

  stop(): void {
    this.#stopped = true;
    this.#stopSource?.();
    this.#stopSource = null;
    if (this.#encoder && this.#encoder.state !== "closed") this.#encoder.close();
    this.#encoder = null;
  }

  #fail(text: string): void {
    if (this.#stopped) return;
    this.stop();
    this.#opts.onError?.(text);
  }

  #onBlock(planes: Float32Array[], rate: number): void {
    if (this.#stopped || planes.length === 0) return;
    const n = planes[0]?.length ?? 0;
    const tsUs = Math.round((this.#samples * 1e6) / rate);
    this.#samples += n;
    if (this.codec === "pcm16") {
      const ch = planes.length;
      const view = new DataView(new ArrayBuffer(n * ch * 2));
      for (let c = 0; c < ch; c++) {
        const p = planes[c] as Float32Array;
        for (let i = 0; i < n; i++) {
          const x = Math.max(-1, Math.min(1, p[i] ?? 0));
          view.setInt16((i * ch + c) * 2, Math.round(x < 0 ? x * 0x8000 : x * 0x7fff), true);
        }
      }
      const t = Date.now() - RELAY.audioFrameMs;
      this.#send({ track: "audio", seq: 0, codec: "pcm16", ts: tsUs, rate, ch, t }, view.buffer, n);
      return;
    }
    const data = new Float32Array(n * planes.length);
    planes.forEach((p, c) => {
      data.set(p, c * n);
    });
    const format = "f32-planar" as AudioSampleFormat;
    const init = {
      format,
      sampleRate: rate,
      numberOfFrames: n,
      numberOfChannels: planes.length,
      timestamp: tsUs,
      data,
    };
    this.#encode(new this.#g.AudioData(init));
  }

  #encode(d: AudioData): void {
    try {
      if (this.#stopped) return;
      const key = `${d.sampleRate}/${d.numberOfChannels}`;
      if (!this.#encoder || this.#encoder.state === "closed" || key !== this.#encoderKey) {
        this.#encoder ??= new this.#g.AudioEncoder({
          output: (chunk) => this.#onChunk(chunk),
          error: (e) =>
            this.#fail(`The browser's Opus encoder failed (${errText(e)}); choose codec "pcm16".`),
        });
        this.#ch = d.numberOfChannels;
        this.#encoder.configure(opusConfig(d.sampleRate, this.#ch));
        this.#encoderKey = key;
      }
      this.#firstTs ??= d.timestamp;
      this.#inputs.push({ ts: d.timestamp, wall: Date.now() - (d.duration ?? 0) / 1000 });
      if (this.#inputs.length > 50) this.#inputs.shift();
      this.#encoder.encode(d);
    } catch (e) {
      this.#fail(
        `The browser's Opus encoder refused the microphone's audio (${errText(e)}); choose codec "pcm16".`,
      );
    } finally {
      d.close();
    }
  }

  #onChunk(chunk: EncodedAudioChunk): void {
    if (this.#stopped) return;
    const first = this.#firstTs ?? chunk.timestamp;
    const from = [...this.#inputs].reverse().find((x) => x.ts <= chunk.timestamp) ?? this.#inputs[0];
    const t = from ? from.wall + (chunk.timestamp - from.ts) / 1000 : Date.now();
    const n = Math.round(((chunk.duration ?? RELAY.audioFrameMs * 1000) * OPUS_RATE) / 1e6);
    const ts = Math.max(0, Math.round(chunk.timestamp - first));
    this.#send(
      { track: "audio", seq: 0, codec: "opus", ts, rate: OPUS_RATE, ch: this.#ch, t },
      copyChunk(chunk),
      n,
    );
  }

  #send(header: MediaHeader, payload: ArrayBuffer, samples: number): void {
    const seq = this.#seq++;
    if (!this.#out.send({ ...header, seq }, payload)) return;
    this.counters.framesSent++;
    this.counters.samplesSent += samples;
    this.counters.bytesSent += payload.byteLength;
  }
}

// ------------------------------------------------------------------------------------------------------------------
// Kernel -> browser

export interface VideoReceiverOptions {
  g?: typeof globalThis;
  /** Sends `ack` for video frame `seq`; `key` asks the kernel for a key frame. */
  ack?: (seq: number, key: boolean) => void;
  onError?: (text: string) => void;
}

/** Kernel video frames decoded onto a canvas (and its captureStream, for a <video> element). */
export class VideoRelayReceiver {
  readonly canvas: HTMLCanvasElement | OffscreenCanvas;
  readonly stream: MediaStream | null;
  counters = { framesDecoded: 0, framesDropped: 0, width: 0, height: 0 };
  readonly #g: Env;
  readonly #opts: VideoReceiverOptions;
  readonly #ctx: CanvasRenderingContext2D | OffscreenCanvasRenderingContext2D | null;
  #decoder: VideoDecoder | null = null;
  #decoderCodec = "";
  #needKey = true;
  #lastKeyAsk = Number.NEGATIVE_INFINITY;
  #lastSeq = -1;
  #jpegBusy = 0;
  #drawnJpeg = -1;
  #reported = new Set<string>();
  #stopped = false;

  constructor(opts: VideoReceiverOptions = {}) {
    this.#opts = opts;
    this.#g = (opts.g ?? globalThis) as Env;
    const canvas = newCanvas(this.#g, true);
    if (!canvas) throw new Error(`This browser has no canvas to show relay video on; ${BROWSERS}.`);
    this.canvas = canvas;
    const capture = (canvas as { captureStream?: () => MediaStream }).captureStream;
    this.stream = typeof capture === "function" ? capture.call(canvas) : null;
    this.#ctx = canvas.getContext("2d") as
      | CanvasRenderingContext2D
      | OffscreenCanvasRenderingContext2D
      | null;
  }

  receive(msg: MediaMsg, payload: ArrayBuffer): void {
    if (this.#stopped || msg.track !== "video" || msg.seq <= this.#lastSeq) return;
    const gap = this.#lastSeq >= 0 && msg.seq !== this.#lastSeq + 1;
    this.#lastSeq = msg.seq;
    if (msg.codec === "jpeg") {
      this.#receiveJpeg(msg, payload);
      return;
    }
    if (msg.codec !== "vp8" && msg.codec !== "h264") {
      this.#report(`The kernel sent video as ${msg.codec}, which is not a video codec; update rtc_widgets.`);
      this.#drop(msg.seq);
      return;
    }
    if (gap) this.#needKey = true;
    if (!msg.key && (this.#needKey || (this.#decoder?.decodeQueueSize ?? 0) > MAX_DECODE_QUEUE)) {
      // a delta frame is useless without the frames before it: skip to the next key frame
      this.#needKey = true;
      this.#drop(msg.seq);
      return;
    }
    const decoder = msg.key ? this.#decoderFor(msg.codec, payload) : this.#decoder;
    if (!decoder) {
      this.#drop(msg.seq);
      return;
    }
    try {
      const type: EncodedVideoChunkType = msg.key ? "key" : "delta";
      decoder.decode(new this.#g.EncodedVideoChunk({ type, timestamp: msg.ts, data: payload }));
      this.#needKey = false;
    } catch (e) {
      this.#needKey = true;
      this.#report(
        `A ${msg.codec} frame from the kernel could not be decoded (${errText(e)}); waiting for a key frame.`,
      );
      this.#drop(msg.seq);
      return;
    }
    this.#opts.ack?.(msg.seq, false);
  }

  stop(): void {
    this.#stopped = true;
    if (this.#decoder && this.#decoder.state !== "closed") this.#decoder.close();
    this.#decoder = null;
    for (const t of this.stream?.getTracks() ?? []) t.stop();
  }

  #drop(seq: number): void {
    this.counters.framesDropped++;
    const now = performance.now();
    const ask = this.#needKey && now - this.#lastKeyAsk >= KEY_ASK_MS;
    if (ask) this.#lastKeyAsk = now;
    this.#opts.ack?.(seq, ask);
  }

  #report(text: string): void {
    if (this.#reported.has(text)) return;
    this.#reported.add(text);
    this.#opts.onError?.(text);
  }

  #decoderFor(codec: "vp8" | "h264", keyFrame: ArrayBuffer): VideoDecoder | null {
    const g = this.#g;
    if (!isFn(g.VideoDecoder)) {
      this.#report(
        `This browser has no WebCodecs VideoDecoder to show ${codec} video; ask for "jpeg", or ${BROWSERS}.`,
      );
      return null;
    }
    const name = codec === "vp8" ? "vp8" : (avcCodecFromSps(keyFrame) ?? "avc1.42E01F");
    if (this.#decoder && this.#decoder.state !== "closed" && name === this.#decoderCodec)
      return this.#decoder;
    if (this.#decoder && this.#decoder.state !== "closed") this.#decoder.close();
    try {
      const decoder = new g.VideoDecoder({
        output: (frame) => this.#draw(frame, frame.displayWidth, frame.displayHeight),
        error: (e) => {
          if (this.#decoder === decoder) this.#decoder = null;
          this.#needKey = true;
          this.#report(
            `The browser's ${codec} decoder failed (${errText(e)}); asking the kernel for a key frame.`,
          );
        },
      });
      // no description: H.264 arrives as Annex B with SPS/PPS in the key frames
      decoder.configure({ codec: name, optimizeForLatency: true });
      this.#decoder = decoder;
      this.#decoderCodec = name;
      return decoder;
    } catch (e) {
      this.#decoder = null;
      this.#report(
        `This browser cannot decode ${name} video (${errText(e)}); ask for "jpeg" or "vp8", or ${BROWSERS}.`,
      );
      return null;
    }
  }

  #receiveJpeg(msg: MediaMsg, payload: ArrayBuffer): void {
    if (!isFn(this.#g.createImageBitmap) || this.#jpegBusy >= MAX_JPEG_DECODES) {
      if (!isFn(this.#g.createImageBitmap))
        this.#report(`This browser cannot decode JPEG images; ${BROWSERS}.`);
      this.counters.framesDropped++;
      this.#opts.ack?.(msg.seq, false);
      return;
    }
    this.#jpegBusy++;
    const seq = msg.seq;
    this.#g.createImageBitmap(new Blob([payload], { type: "image/jpeg" })).then(
      (bitmap) => {
        this.#jpegBusy--;
        // decodes may finish out of order: never draw an older picture over a newer one
        if (seq > this.#drawnJpeg) {
          this.#drawnJpeg = seq;
          this.#draw(bitmap, bitmap.width, bitmap.height);
        } else {
          this.counters.framesDropped++;
          bitmap.close();
        }
      },
      (e) => {
        this.#jpegBusy--;
        this.counters.framesDropped++;
        this.#report(
          `A JPEG frame from the kernel could not be decoded (${errText(e)}); showing the next one.`,
        );
      },
    );
    this.#opts.ack?.(seq, false);
  }

  #draw(image: VideoFrame | ImageBitmap, w: number, h: number): void {
    try {
      if (this.#stopped || !this.#ctx) return;
      if (this.canvas.width !== w || this.canvas.height !== h) {
        this.canvas.width = w;
        this.canvas.height = h;
      }
      this.#ctx.drawImage(image, 0, 0, w, h);
      this.counters.framesDecoded++;
      this.counters.width = w;
      this.counters.height = h;
    } finally {
      image.close();
    }
  }
}

export interface AudioReceiverOptions {
  g?: typeof globalThis;
  onError?: (text: string) => void;
}

/**
 * Kernel audio played back to back on an AudioContext into `stream` (a MediaStreamAudioDestinationNode). The
 * speakers are not connected: the view decides (`playOnSpeakers`).
 */
export class AudioRelayReceiver {
  readonly context: AudioContext | null;
  readonly stream: MediaStream | null;
  counters = { samplesPlayed: 0, samplesDropped: 0, restarts: 0 };
  readonly #g: Env;
  readonly #opts: AudioReceiverOptions;
  readonly #mix: GainNode | null;
  #decoder: AudioDecoder | null = null;
  #decoderKey = "";
  #next = 0;
  #reported = new Set<string>();
  #stopped = false;

  constructor(opts: AudioReceiverOptions = {}) {
    this.#opts = opts;
    this.#g = (opts.g ?? globalThis) as Env;
    if (!isFn(this.#g.AudioContext)) {
      this.context = this.stream = this.#mix = null;
      return;
    }
    const ctx = new this.#g.AudioContext({ latencyHint: "interactive" });
    const dest = ctx.createMediaStreamDestination();
    this.#mix = ctx.createGain();
    this.#mix.connect(dest);
    this.context = ctx;
    this.stream = dest.stream;
  }

  /** Also play the kernel's audio on this page's speakers. */
  playOnSpeakers(on: boolean): void {
    if (!this.#mix || !this.context) return;
    if (on) this.#mix.connect(this.context.destination);
    else {
      try {
        this.#mix.disconnect(this.context.destination);
      } catch {
        // was not connected
      }
    }
  }

  receive(msg: MediaMsg, payload: ArrayBuffer): void {
    const ctx = this.context;
    if (this.#stopped || msg.track !== "audio") return;
    if (!ctx) {
      this.#report(`This browser has no Web Audio AudioContext to play relay audio; ${BROWSERS}.`);
      return;
    }
    if (ctx.state === "suspended") void ctx.resume().catch(() => {});
    const rate = msg.rate ?? 48000;
    const ch = msg.ch ?? 1;
    if (msg.codec === "pcm16") {
      const n = Math.floor(payload.byteLength / (2 * ch));
      if (n === 0) return;
      const view = new DataView(payload);
      const buffer = ctx.createBuffer(ch, n, rate);
      for (let c = 0; c < ch; c++) {
        const out = buffer.getChannelData(c);
        for (let i = 0; i < n; i++) out[i] = view.getInt16((i * ch + c) * 2, true) / 0x8000;
      }
      this.#schedule(buffer);
      return;
    }
    if (msg.codec !== "opus") {
      this.#report(`The kernel sent audio as ${msg.codec}, which this page cannot play; update rtc_widgets.`);
      return;
    }
    const decoder = this.#decoderFor(rate, ch);
    if (!decoder) return;
    try {
      decoder.decode(new this.#g.EncodedAudioChunk({ type: "key", timestamp: msg.ts, data: payload }));
    } catch (e) {
      this.#report(`An Opus packet from the kernel could not be decoded (${errText(e)}).`);
    }
  }

  stop(): void {
    this.#stopped = true;
    if (this.#decoder && this.#decoder.state !== "closed") this.#decoder.close();
    this.#decoder = null;
    void this.context?.close().catch(() => {});
  }

  #report(text: string): void {
    if (this.#reported.has(text)) return;
    this.#reported.add(text);
    this.#opts.onError?.(text);
  }

  #decoderFor(rate: number, ch: number): AudioDecoder | null {
    const g = this.#g;
    if (!isFn(g.AudioDecoder)) {
      this.#report(
        `This browser has no WebCodecs AudioDecoder to play Opus; ask for "pcm16", or ${BROWSERS}.`,
      );
      return null;
    }
    const key = `${rate}/${ch}`;
    if (this.#decoder && this.#decoder.state !== "closed" && key === this.#decoderKey) return this.#decoder;
    if (this.#decoder && this.#decoder.state !== "closed") this.#decoder.close();
    try {
      const decoder = new g.AudioDecoder({
        output: (d) => this.#play(d),
        error: (e) => {
          if (this.#decoder === decoder) this.#decoder = null;
          this.#report(`The browser's Opus decoder failed (${errText(e)}); ask for "pcm16".`);
        },
      });
      decoder.configure({ codec: "opus", sampleRate: rate, numberOfChannels: ch });
      this.#decoder = decoder;
      this.#decoderKey = key;
      return decoder;
    } catch (e) {
      this.#report(`This browser cannot decode Opus at ${rate} Hz (${errText(e)}); ask for "pcm16".`);
      return null;
    }
  }

  #play(d: AudioData): void {
    try {
      const ctx = this.context;
      if (this.#stopped || !ctx || d.numberOfFrames === 0) return;
      const buffer = ctx.createBuffer(d.numberOfChannels, d.numberOfFrames, d.sampleRate);
      for (let c = 0; c < d.numberOfChannels; c++) {
        d.copyTo(buffer.getChannelData(c), { planeIndex: c, format: "f32-planar" });
      }
      this.#schedule(buffer);
    } finally {
      d.close();
    }
  }

  /** Back to back, ~JITTER_S ahead of the clock; restart the schedule when it fell behind. */
  #schedule(buffer: AudioBuffer): void {
    const ctx = this.context;
    if (!ctx || !this.#mix) return;
    const now = ctx.currentTime;
    if (this.#next < now) {
      if (this.#next > 0) this.counters.restarts++;
      this.#next = now + JITTER_S;
    } else if (this.#next - now > MAX_AHEAD_S) {
      // the sender's clock runs ahead of ours (or the context is suspended): don't let latency grow
      this.counters.samplesDropped += buffer.length;
      return;
    }
    const src = ctx.createBufferSource();
    src.buffer = buffer;
    src.connect(this.#mix);
    src.start(this.#next);
    this.#next += buffer.duration;
    this.counters.samplesPlayed += buffer.length;
  }
}

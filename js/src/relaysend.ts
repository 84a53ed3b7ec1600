// Relay media, browser -> kernel: a camera/screen or microphone track encoded frame by frame into protocol `media`
// messages (payload formats in relaymedia.ts). Acks are cumulative (ack seq N acknowledges every frame up to N); the
// video sender drops new frames before encoding while more than videoWindow are unacknowledged, and after PROBE_MS
// without any ack sends one key frame anyway (acks may have been lost). Audio is never dropped.
import { errText } from "./format";
import { RELAY, type RelayCodec } from "./protocol";
import {
  type AnyCanvas,
  audioProblem,
  BROWSERS,
  type Env,
  hasProcessor,
  newCanvas,
  noCodecError,
  OPUS_RATE,
  opusConfig,
  pickOrder,
  toJpeg,
  videoConfig,
  videoProblem,
} from "./relaycodecs";
import type { AudioRelayCodec, MediaHeader, MediaOut, VideoRelayCodec } from "./relaymedia";
import { frameOf, pumpProcessor, pumpVideoElement, pumpWorklet, type SourceFrame } from "./relaysources";

/** Without a single ack for this long while the window is full, one key frame goes out anyway (acks may be lost). */
const PROBE_MS = 3000;

function copyChunk(chunk: EncodedVideoChunk | EncodedAudioChunk): ArrayBuffer {
  const buf = new ArrayBuffer(chunk.byteLength);
  chunk.copyTo(buf);
  return buf;
}

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
  /** framesDropped: skipped by flow control (acks behind, socket full); framesSkipped: over the fps asked for. */
  counters = { framesSent: 0, framesDropped: 0, framesSkipped: 0, bytesSent: 0, keyFrames: 0 };
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
      // The camera may run faster than asked: keep frames on a 1/fps grid. Half a frame of jitter is allowed: a
      // loaded machine delivers a 30 fps capture 10-20 ms early or late, and a quarter-frame tolerance skipped a
      // third of those frames (measured: 10-17 fps sent from a 30 fps camera).
      const gap = 1e6 / this.#opts.fps;
      if (ts <= this.#nextDueUs - gap / 2) {
        this.counters.framesSkipped++;
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

// Relay media, kernel -> browser: the kernel's `media` messages (payload formats in relaymedia.ts) decoded onto a
// canvas and into a MediaStream. The video receiver acks every frame; after a gap in `seq` it drops deltas until a
// key frame and asks for one with key:true, at most once a second (KEY_ASK_MS).
import { errText } from "./format";
import type { MediaMsg } from "./protocol";
import { avcCodecFromSps, BROWSERS, type Env, isFn, newCanvas } from "./relaycodecs";

const KEY_ASK_MS = 1000;
const MAX_DECODE_QUEUE = 3;
const MAX_JPEG_DECODES = 3;
const JITTER_S = 0.06;
const MAX_AHEAD_S = 0.5;

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

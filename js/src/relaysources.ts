// Capture sources for the relay senders: a track as VideoFrames (MediaStreamTrackProcessor, or a hidden <video>
// sampled on a timer where there is none), or as AudioData / blocks of planar Float32 samples (an AudioWorklet).
// Each pump returns the function that stops it, and reports the track's end through `onEnd`.
import { errText } from "./format";
import { RELAY } from "./protocol";
import type { Env, TrackProcessorCtor } from "./relaycodecs";

/** One captured picture: a VideoFrame when the source makes them, else a drawable (the <video> element). */
export interface SourceFrame {
  frame: VideoFrame | null;
  image: CanvasImageSource;
  w: number;
  h: number;
  tsUs: number;
  close(): void;
}

export const frameOf = (frame: VideoFrame): SourceFrame => ({
  frame,
  image: frame,
  w: frame.visibleRect?.width ?? frame.codedWidth,
  h: frame.visibleRect?.height ?? frame.codedHeight,
  tsUs: frame.timestamp,
  close: () => frame.close(),
});

/** Reads a MediaStreamTrackProcessor until the track ends or `stop()`. */
export function pumpProcessor<T>(
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
export function pumpVideoElement(
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
export async function pumpWorklet(
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

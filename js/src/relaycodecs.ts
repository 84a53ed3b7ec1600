// Which relay codec this browser can use, and how each one is set up: the browser surface the relay media code reads
// through `g` (with MediaStreamTrackProcessor, which TypeScript's DOM lib lacks), feature checks, the WebCodecs codec
// strings and encoder configs, canvas JPEG, and the probes behind encodeCapabilities and the senders' "auto" pick.
import { RELAY } from "./protocol";
import type { AudioRelayCodec, VideoRelayCodec } from "./relaymedia";

/** MediaStreamTrackProcessor (Chromium; not in TypeScript's DOM lib): a track as a stream of VideoFrame/AudioData. */
interface TrackProcessor {
  readonly readable: ReadableStream<unknown>;
}
export type TrackProcessorCtor = new (init: {
  track: MediaStreamTrack;
  maxBufferSize?: number;
}) => TrackProcessor;
export type Env = typeof globalThis & { MediaStreamTrackProcessor?: TrackProcessorCtor };

export const BROWSERS = "use a current Chrome, Edge, Firefox or Safari";
/** Opus always codes at 48 kHz (encoders resample their input), whatever rate the microphone runs at. */
export const OPUS_RATE = 48000;

export const isFn = (x: unknown): boolean => typeof x === "function";
export const hasProcessor = (g: Env): boolean => isFn(g.MediaStreamTrackProcessor);
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
export function avcCodecFromSps(data: ArrayBuffer): string | null {
  const b = new Uint8Array(data);
  for (let i = 0; i + 6 < b.length; i++) {
    if (b[i] === 0 && b[i + 1] === 0 && b[i + 2] === 1 && ((b[i + 3] ?? 0) & 0x1f) === 7) {
      const hex = (x: number | undefined) => (x ?? 0).toString(16).padStart(2, "0").toUpperCase();
      return `avc1.${hex(b[i + 4])}${hex(b[i + 5])}${hex(b[i + 6])}`;
    }
  }
  return null;
}

export function videoConfig(
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

export function opusConfig(sampleRate: number, numberOfChannels: number): AudioEncoderConfig {
  return {
    codec: "opus",
    sampleRate,
    numberOfChannels,
    bitrate: RELAY.opusBitrate,
    opus: { frameDuration: RELAY.audioFrameMs * 1000 },
  };
}

export async function supported(check: () => Promise<{ supported?: boolean }>): Promise<boolean> {
  try {
    return (await check()).supported === true;
  } catch {
    return false;
  }
}

export type AnyCanvas = HTMLCanvasElement | OffscreenCanvas;

export function newCanvas(g: Env, preferDocument: boolean): AnyCanvas | null {
  if (preferDocument && hasDocument(g)) return g.document.createElement("canvas");
  if (isFn(g.OffscreenCanvas)) return new g.OffscreenCanvas(1, 1);
  return hasDocument(g) ? g.document.createElement("canvas") : null;
}

function canEncodeJpeg(g: Env): boolean {
  if (isFn(g.OffscreenCanvas) && isFn(g.OffscreenCanvas.prototype?.convertToBlob)) return true;
  return hasDocument(g) && isFn(g.HTMLCanvasElement?.prototype?.toBlob);
}

export function toJpeg(canvas: AnyCanvas): Promise<Blob> {
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
export async function videoProblem(
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

export async function audioProblem(
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

export function pickOrder<C extends string>(want: string | undefined, all: readonly string[]): C[] {
  return (!want || want === "auto" ? all : [want]) as C[];
}

export function noCodecError(kind: "video" | "audio", want: string | undefined, reasons: string[]): Error {
  const forced = want && want !== "auto";
  const tail = forced ? `choose codec "auto" to let the relay pick another one, or ${BROWSERS}` : BROWSERS;
  return new Error(
    `This browser cannot send ${kind} over the relay: ${[...new Set(reasons)].join("; ")}. ${capital(tail)}.`,
  );
}
const capital = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

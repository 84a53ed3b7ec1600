// Media over the relay transport, browser end, both directions: camera/screen/microphone tracks encoded frame by
// frame (WebCodecs, or canvas JPEG and raw PCM where WebCodecs is missing) into protocol `media` messages, and the
// kernel's `media` messages decoded onto a canvas and into a MediaStream. The transport (bus or comm) attaches each
// payload beside its JSON header; these modules only see `MediaOut.send(header, payload)` and `receive(msg, payload)`.
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
// Acks are cumulative (ack seq N acknowledges every frame up to N).
//
// This module is the public surface (types, capabilities, the classes). The parts: relaysend.ts (the senders and
// their ack-window flow control), relaysources.ts (reading frames and samples off a track), relayrecv.ts (the
// receivers), relaycodecs.ts (codec configs, feature checks and the probes shared by both directions).
import { type MediaMsg, RELAY, type RelayCodec } from "./protocol";
import { audioProblem, type Env, isFn, supported, videoProblem } from "./relaycodecs";

export {
  type AudioReceiverOptions,
  AudioRelayReceiver,
  type VideoReceiverOptions,
  VideoRelayReceiver,
} from "./relayrecv";
export {
  AudioRelaySender,
  type AudioSenderOptions,
  VideoRelaySender,
  type VideoSenderOptions,
} from "./relaysend";

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

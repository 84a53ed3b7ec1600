// The relay transport, browser end: the user data channel's messages as protocol `data` messages over the
// signaling path (server bus, or the comm), once the kernel says `relay` (WebRTC found no path in time).
// RelayChannel looks enough like an RTCDataChannel for BrowserPeer to wire it the same way.
import protocol from "../../rtc_widgets/protocol/protocol.json";
import {
  type AckMsg,
  type DataMsg,
  type MediaMsg,
  type MediaTrackKind,
  type Message,
  RELAY,
  VERSION,
} from "./protocol";
import {
  AudioRelayReceiver,
  AudioRelaySender,
  type MediaHeader,
  type MediaOut,
  VideoRelayReceiver,
  VideoRelaySender,
} from "./relaymedia";
import type { RelayCounters } from "./stats";

export const RELAY_MAX_MESSAGE_BYTES: number = protocol.bus.relayMaxMessageBytes;

function toBase64(bytes: Uint8Array): string {
  let bin = "";
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    bin += String.fromCharCode(...bytes.subarray(i, i + chunk));
  }
  return btoa(bin);
}

function fromBase64(text: string): ArrayBuffer {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out.buffer;
}

function domError(name: string, message: string): Error {
  const e = new Error(message);
  e.name = name;
  return e;
}

export class RelayChannel extends EventTarget {
  readonly label: string;
  readonly session: string;
  readyState: RTCDataChannelState = "connecting";
  binaryType: BinaryType = "arraybuffer";
  bufferedAmount = 0;
  /** Why the kernel switched to the relay, in words for the user. */
  readonly reason: string;
  readonly #send: (msg: Message) => boolean;
  #sent = 0;
  #expected = 0;

  constructor(label: string, session: string, reason: string, send: (msg: Message) => boolean) {
    super();
    this.label = label;
    this.session = session;
    this.reason = reason;
    this.#send = send;
  }

  open(): void {
    this.readyState = "open";
    this.dispatchEvent(new Event("open"));
  }

  /** Same contract as RTCDataChannel.send: throws InvalidStateError, TypeError (too large) or OperationError. */
  send(data: string | ArrayBuffer | ArrayBufferView): void {
    if (this.readyState !== "open") throw domError("InvalidStateError", "the relay channel is not open");
    const msg: DataMsg = {
      v: VERSION,
      type: "data",
      session: this.session,
      label: this.label,
      seq: this.#sent,
    };
    if (typeof data === "string") {
      if (new TextEncoder().encode(data).length > RELAY_MAX_MESSAGE_BYTES) {
        throw new TypeError(`message over the relay's ${RELAY_MAX_MESSAGE_BYTES}-byte maximum`);
      }
      msg.text = data;
    } else {
      const bytes =
        data instanceof ArrayBuffer
          ? new Uint8Array(data)
          : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      if (bytes.length > RELAY_MAX_MESSAGE_BYTES) {
        throw new TypeError(`message over the relay's ${RELAY_MAX_MESSAGE_BYTES}-byte maximum`);
      }
      msg.b64 = toBase64(bytes);
    }
    if (!this.#send(msg)) throw domError("OperationError", "the signaling path refused the message");
    this.#sent++;
  }

  /** A `data` message from the kernel; false if it is out of sequence (then it is dropped). */
  receive(msg: DataMsg): boolean {
    if (msg.seq !== this.#expected || this.readyState !== "open") return false;
    this.#expected++;
    const data = msg.text !== undefined ? msg.text : fromBase64(msg.b64 ?? "");
    this.dispatchEvent(new MessageEvent("message", { data }));
    return true;
  }

  close(): void {
    if (this.readyState === "closed") return;
    this.readyState = "closed";
    this.dispatchEvent(new Event("close"));
  }
}

/** What a RelayMedia needs from its peer. */
export interface RelayMediaHost {
  readonly session: string;
  /** Send a protocol message, with a media frame's bytes; false if refused. */
  send(msg: Message, payload?: ArrayBuffer): boolean;
  /** Bytes waiting in the signaling socket (0 when unknown). */
  buffered(): number;
  /** A failure the user must see (codec missing, encoder error). */
  fail(text: string): void;
}

export interface RelayMediaOptions {
  /** "auto", or a codec of RELAY.videoCodecs / RELAY.audioCodecs (a codec of the other kind means auto). */
  codec?: string;
  fps?: number;
}

type VideoCodecChoice = "auto" | "vp8" | "h264" | "jpeg";
type AudioCodecChoice = "auto" | "opus" | "pcm16";

type Sender = VideoRelaySender | AudioRelaySender;
type Receiver = VideoRelayReceiver | AudioRelayReceiver;

/**
 * The media half of a relay session: the captured tracks encoded with WebCodecs (or JPEG / PCM) and sent as
 * `media` messages, and the kernel's media decoded for the views. Acks pace the video (relaymedia.ts).
 */
export class RelayMedia {
  readonly senders = new Map<MediaTrackKind, Sender>();
  readonly receivers = new Map<MediaTrackKind, Receiver>();
  readonly #host: RelayMediaHost;
  readonly #received = { video: { frames: 0, bytes: 0 }, audio: { frames: 0, bytes: 0 } };
  #stopped = false;

  constructor(host: RelayMediaHost) {
    this.#host = host;
  }

  #out(): MediaOut {
    return {
      send: (header: MediaHeader, payload: ArrayBuffer) => {
        if (this.#stopped) return false;
        const msg = {
          v: VERSION,
          type: "media",
          session: this.#host.session,
          size: payload.byteLength,
          ...header,
        };
        return this.#host.send(msg as MediaMsg, payload);
      },
      buffered: () => this.#host.buffered(),
    };
  }

  /** Start sending every live track of `stream`; the failure of one track is reported, the others go on. */
  async send(stream: MediaStream, options: RelayMediaOptions = {}): Promise<void> {
    const onError = (text: string) => this.#host.fail(text);
    const codec = options.codec ?? "auto";
    const videoCodec = (RELAY.videoCodecs.includes(codec) ? codec : "auto") as VideoCodecChoice;
    const audioCodec = (RELAY.audioCodecs.includes(codec) ? codec : "auto") as AudioCodecChoice;
    for (const track of stream.getTracks()) {
      if (track.readyState !== "live") continue;
      const sender: Sender =
        track.kind === "video"
          ? new VideoRelaySender(track, this.#out(), { codec: videoCodec, fps: options.fps, onError })
          : new AudioRelaySender(track, this.#out(), { codec: audioCodec, onError });
      this.senders.set(track.kind as MediaTrackKind, sender);
      try {
        await sender.start();
      } catch (e) {
        this.senders.delete(track.kind as MediaTrackKind);
        sender.stop();
        onError(e instanceof Error ? e.message : String(e));
      }
      if (this.#stopped) {
        sender.stop();
        return;
      }
    }
  }

  /** Get ready to receive the kernel's `kinds` of media; their streams are in `streams()`. */
  receiveKinds(kinds: MediaTrackKind[]): void {
    for (const kind of kinds) {
      if (this.receivers.has(kind)) continue;
      this.receivers.set(
        kind,
        kind === "video"
          ? new VideoRelayReceiver({
              onError: (text) => this.#host.fail(text),
              ack: (seq, key) => {
                if (!this.#stopped)
                  this.#host.send({
                    v: VERSION,
                    type: "ack",
                    session: this.#host.session,
                    track: "video",
                    seq,
                    key,
                  });
              },
            })
          : new AudioRelayReceiver({ onError: (text) => this.#host.fail(text) }),
      );
    }
  }

  /** Cumulative counts for the stats sampler (stats.ts compactRelay): frames and bytes each way. */
  counters(): Pick<
    RelayCounters,
    | "framesSent"
    | "videoBytesSent"
    | "audioBytesSent"
    | "framesReceived"
    | "videoBytesReceived"
    | "audioBytesReceived"
  > {
    const video = this.senders.get("video");
    const audio = this.senders.get("audio");
    return {
      framesSent: video?.counters.framesSent ?? 0,
      videoBytesSent: video?.counters.bytesSent ?? 0,
      audioBytesSent: audio?.counters.bytesSent ?? 0,
      framesReceived: this.#received.video.frames,
      videoBytesReceived: this.#received.video.bytes,
      audioBytesReceived: this.#received.audio.bytes,
    };
  }

  /** The kernel's media as streams for <video>/<audio> elements. */
  streams(): MediaStream[] {
    const out: MediaStream[] = [];
    for (const r of this.receivers.values()) if (r.stream) out.push(r.stream);
    return out;
  }

  /** A `media` message from the kernel; false when no receiver takes that track. */
  receive(msg: MediaMsg, payload: ArrayBuffer): boolean {
    const receiver = this.receivers.get(msg.track);
    if (!receiver || this.#stopped) return false;
    const count = this.#received[msg.track];
    count.frames++;
    count.bytes += payload.byteLength;
    receiver.receive(msg, payload);
    return true;
  }

  /** The kernel acknowledged a video frame (and may ask for a key frame). */
  ack(msg: AckMsg): void {
    const sender = this.senders.get(msg.track);
    if (sender instanceof VideoRelaySender) sender.ack(msg.seq, msg.key ?? false);
  }

  stop(): void {
    this.#stopped = true;
    for (const s of this.senders.values()) s.stop();
    for (const r of this.receivers.values()) r.stop();
    this.senders.clear();
    this.receivers.clear();
  }
}

// The signaling protocol as seen from TypeScript. Every number, default and message shape comes from
// rtc_widgets/protocol/protocol.json (shared with Python); the validator is compiled from its schema at build
// time by scripts/gen-validator.mjs.
import protocol from "../../rtc_widgets/protocol/protocol.json";
import schemaValidate, { type SchemaError } from "./generated/validate.js";

export const VERSION: number = protocol.version;
export const LIMITS: Readonly<typeof protocol.limits> = Object.freeze({ ...protocol.limits });
export const DEFAULTS: Readonly<typeof protocol.defaults> = Object.freeze({ ...protocol.defaults });
/** Media over the relay transport: sizes, flow-control window, codecs (protocol.json `relay`). */
export const RELAY: Readonly<typeof protocol.relay> = Object.freeze({ ...protocol.relay });
export type ErrorCode = keyof typeof protocol.errorCodes;
export const ERROR_CODES: readonly ErrorCode[] = Object.freeze(
  Object.keys(protocol.errorCodes) as ErrorCode[],
);

/** What `RTCIceCandidate.toJSON()` returns; the schema allows exactly these keys. */
export interface CandidateInit {
  candidate: string;
  sdpMid?: string | null;
  sdpMLineIndex?: number | null;
  usernameFragment?: string | null;
}

interface Base {
  v: number;
  session?: string;
}
export interface Offer extends Base {
  type: "offer";
  session: string;
  sdp: string;
}
export interface Answer extends Base {
  type: "answer";
  session: string;
  sdp: string;
}
export interface Candidate extends Base {
  type: "candidate";
  session: string;
  /** null means end-of-candidates. */
  candidate: CandidateInit | null;
}
export interface Bye extends Base {
  type: "bye";
  reason?: string;
}
export interface ErrorMsg extends Base {
  type: "error";
  code: ErrorCode;
  message: string;
}
export interface Ping extends Base {
  type: "ping";
  seq: number;
  t: number;
}
export interface Pong extends Base {
  type: "pong";
  seq: number;
  t: number;
}
/** Kernel to browser: WebRTC found no path; the user channel now travels as `data` messages (relay.ts). */
export interface Relay extends Base {
  type: "relay";
  session: string;
  reason: string;
}
/** A user-channel message over the relay: `text`, or binary as `b64`; `seq` counts per channel from 0. */
export interface DataMsg extends Base {
  type: "data";
  session: string;
  label: string;
  seq: number;
  text?: string;
  b64?: string;
}
export type MediaTrackKind = "video" | "audio";
export type RelayCodec = "vp8" | "h264" | "jpeg" | "opus" | "pcm16";
/**
 * One encoded frame over the relay. Its bytes are NOT in the JSON: they travel beside it as one binary attachment of
 * exactly `size` bytes (a comm buffer, or the tail of a binary bus frame; see protocol.json `relay`).
 */
export interface MediaMsg extends Base {
  type: "media";
  session: string;
  track: MediaTrackKind;
  /** Counts per track from 0. */
  seq: number;
  codec: RelayCodec;
  /** Media timestamp in microseconds (from the source; increases within a track). */
  ts: number;
  size: number;
  /** A video key frame (decodable on its own). */
  key?: boolean;
  w?: number;
  h?: number;
  /** Audio: sample rate and channel count. */
  rate?: number;
  ch?: number;
  /** Sender's wall clock (ms since the epoch) when the frame was captured: latency on one machine. */
  t?: number;
}
/** The receiver got video frame `seq`; `key: true` asks the sender for a key frame (it could not decode). */
export interface AckMsg extends Base {
  type: "ack";
  session: string;
  track: MediaTrackKind;
  seq: number;
  key?: boolean;
  t?: number;
}
export type Message =
  | Offer
  | Answer
  | Candidate
  | Bye
  | ErrorMsg
  | Ping
  | Pong
  | Relay
  | DataMsg
  | MediaMsg
  | AckMsg;
export type MessageType = Message["type"];

export type Validation<T = Message> = { ok: true; msg: T } | { ok: false; error: string };

const encoder = new TextEncoder();

/** UTF-8 length of a string, without encoding it when the answer is obvious. */
export function utf8Length(text: string): number {
  // A UTF-16 code unit is 1 to 3 UTF-8 bytes (a surrogate pair is 4 bytes for 2 units).
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) > 0x7f) return encoder.encode(text).length;
  }
  return text.length;
}

function describe(errors: SchemaError[] | null | undefined): string {
  const useful = (errors ?? []).filter((e) => e.keyword !== "if");
  if (useful.length === 0) return "does not match the signaling schema";
  return useful
    .slice(0, 3)
    .map((e) => {
      const where = e.instancePath ? e.instancePath.slice(1).replace(/\//g, ".") : "message";
      const p = e.params;
      const detail =
        "allowedValue" in p
          ? ` (${JSON.stringify(p.allowedValue)})`
          : "allowedValues" in p
            ? ` (${(p.allowedValues as unknown[]).map((x) => JSON.stringify(x)).join(", ")})`
            : "additionalProperty" in p
              ? ` (${String(p.additionalProperty)})`
              : "";
      return `${where} ${e.message ?? "is invalid"}${detail}`;
    })
    .join("; ");
}

/**
 * Check a signaling message against the shared schema and size limit.
 * `maxBytes` is the limit on its JSON encoding (UTF-8): `limits.maxSignalBytes` for comm/bus messages,
 * `limits.maxControlBytes` for control-channel messages.
 */
export function validate(msg: unknown, maxBytes: number = LIMITS.maxSignalBytes): Validation {
  let json: string | undefined;
  try {
    json = JSON.stringify(msg);
  } catch {
    return { ok: false, error: "message is not JSON-serializable" };
  }
  if (json === undefined) return { ok: false, error: "message is not a JSON object" };
  // bytes >= UTF-16 units, so a long string is too big before encoding it.
  const size = json.length > maxBytes ? json.length : utf8Length(json);
  if (size > maxBytes) {
    return { ok: false, error: `message is ${size} bytes, over the ${maxBytes}-byte limit` };
  }
  if (!schemaValidate(msg)) return { ok: false, error: describe(schemaValidate.errors) };
  return { ok: true, msg: msg as Message };
}

/** Parse and validate a control-channel text message (ping/pong), bounded by `limits.maxControlBytes`. */
export function parseControl(text: unknown): Validation<Ping | Pong> {
  if (typeof text !== "string") return { ok: false, error: "control message is not text" };
  if (text.length > LIMITS.maxControlBytes || utf8Length(text) > LIMITS.maxControlBytes) {
    return { ok: false, error: `control message is over the ${LIMITS.maxControlBytes}-byte limit` };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { ok: false, error: "control message is not JSON" };
  }
  const r = validate(parsed, LIMITS.maxControlBytes);
  if (!r.ok) return r;
  if (r.msg.type !== "ping" && r.msg.type !== "pong") {
    return { ok: false, error: `control channel carries only ping/pong, not ${r.msg.type}` };
  }
  return { ok: true, msg: r.msg };
}

const SESSION_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

/** A random session id: 22 characters of [A-Za-z0-9_-] (132 bits). */
export function newSessionId(): string {
  const bytes = new Uint8Array(22);
  crypto.getRandomValues(bytes);
  let id = "";
  for (const b of bytes) id += SESSION_ALPHABET[b & 63];
  return id;
}

// Constructors for outgoing messages: they always carry this side's protocol version.
export const offerMsg = (session: string, sdp: string): Offer => ({
  v: VERSION,
  type: "offer",
  session,
  sdp,
});
export const answerMsg = (session: string, sdp: string): Answer => ({
  v: VERSION,
  type: "answer",
  session,
  sdp,
});
export const candidateMsg = (session: string, candidate: CandidateInit | null): Candidate => ({
  v: VERSION,
  type: "candidate",
  session,
  candidate,
});
export const byeMsg = (session: string, reason?: string): Bye =>
  reason === undefined ? { v: VERSION, type: "bye", session } : { v: VERSION, type: "bye", session, reason };
export const pingMsg = (seq: number, t: number): Ping => ({ v: VERSION, type: "ping", seq, t });
export const pongMsg = (seq: number, t: number): Pong => ({ v: VERSION, type: "pong", seq, t });

/** Longest `message` the schema accepts in an error; longer texts are cut rather than rejected. */
const MAX_ERROR_TEXT: number = protocol.schema.properties.message.maxLength;

export const errorMsg = (session: string | undefined, code: ErrorCode, message: string): ErrorMsg => {
  const text = message.length > MAX_ERROR_TEXT ? `${message.slice(0, MAX_ERROR_TEXT - 1)}…` : message;
  return session === undefined
    ? { v: VERSION, type: "error", code, message: text }
    : { v: VERSION, type: "error", session, code, message: text };
};

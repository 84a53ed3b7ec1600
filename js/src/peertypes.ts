// The types a BrowserPeer is built from and shares with its helper modules: the synced model traits, the
// browser-side session status and counters, and PeerHost, the narrow internal view of one peer's private state.
import type { AnyModel } from "@anywidget/types";
import type { ConnectionTraits } from "./channels";
import type { MediaTraits } from "./media";
import type { BrowserPeer } from "./peer";
import type { ErrorCode, Message } from "./protocol";
import type { RelayChannel } from "./relay";

/** Synced traits of a peer widget model (names fixed by the Python side). */
export interface PeerTraits extends ConnectionTraits, Partial<MediaTraits> {
  _kind: string;
  peer_id: string;
  echo: boolean;
  /** Generation counter set by the kernel; each increase starts a new session. */
  _start: number;
  // Written by the kernel, shown read-only (kernel-side counts).
  connection_state: string;
  ice_connection_state: string;
  transport: string;
  error: string;
  messages_sent: number;
  messages_received: number;
  bytes_sent: number;
  bytes_received: number;
  max_message_size: number;
  // Media widgets (kernel-side counts).
  frames_received?: number;
  frames_dropped?: number;
  fps?: number;
  frame_width?: number;
  frame_height?: number;
  samples_received?: number;
  samples_dropped?: number;
  // VideoOutput, AudioOutput (kernel-side counts).
  frames_sent?: number;
  samples_sent?: number;
  queued_seconds?: number;
  /** Media widgets: the relay transport's codec ("auto", or one of protocol.json relay.videoCodecs/audioCodecs). */
  relay_codec?: string;
}
export type PeerModel = AnyModel<PeerTraits>;

/** Browser-side life of the current session. */
export type PeerStatus = "idle" | "starting" | "offered" | "connecting" | "open" | "closed" | "failed";

export interface BrowserCounters {
  messagesSent: number;
  messagesReceived: number;
  bytesSent: number;
  bytesReceived: number;
}

export interface BrowserPeerOptions {
  /** Injected in tests; defaults to `new RTCPeerConnection(config)`. */
  createPeerConnection?: (config: RTCConfiguration) => RTCPeerConnection;
}

/**
 * What the helper modules (negotiation, kernelmessages, userchannel, relayswitch) may use of one BrowserPeer
 * beyond its public fields. Built once by the peer from closures over its private state, so that state stays
 * private; not part of the package's API.
 */
export interface PeerHost {
  /** The peer itself, for its public state (pc, channel, media, session, status, counters, log...). */
  readonly peer: BrowserPeer;
  readonly model: PeerModel;
  /** Whether `gen` is still the current generation: async work from an older session checks it and gives up. */
  current(gen: number): boolean;
  /** The current generation (bumped on every start/close and on the switch to the relay). */
  gen(): number;
  /** Whether echo mode is on (the `echo` trait, as last seen). */
  echo(): boolean;
  /** The relay channel once the kernel switched this session to the relay transport, else null. */
  relay(): RelayChannel | null;
  /** The kernel gave up on WebRTC for this session: carry it over the signaling path. */
  startRelay(reason: string): void;
  /** Tell the views something changed. */
  notify(): void;
  /** Send a signaling message (with a relayed frame's bytes) to the kernel; false if it was not valid to send. */
  signal(msg: Message, payload?: ArrayBuffer): boolean;
  /** Show a problem to the user only. */
  showError(text: string): void;
  /** Show the problem and tell the kernel (once per code per session). */
  report(code: ErrorCode, text: string): void;
  /** A failure that ends this session's chances: report it and mark the peer failed. */
  fail(code: ErrorCode, text: string): void;
}

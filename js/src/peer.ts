// BrowserPeer: the browser end of one widget model's WebRTC connection to the kernel (aiortc).
// One instance per widget model (created in anywidget `initialize`), shared by all of that model's views.
// The browser offers and trickles its candidates; the kernel answers with all of its candidates in the SDP.
// This module holds the peer's state and life cycle; its parts live by concept in negotiation.ts (the session's
// connection and offer), kernelmessages.ts (what the kernel sends), userchannel.ts (the user's data channel),
// relayswitch.ts (media over the relay), peertypes.ts (traits and types) and registry.ts.
import { SignalRoute } from "./bus";
import { rtcConfiguration } from "./channels";
import { errText } from "./format";
import { onKernelMessage } from "./kernelmessages";
import { MessageLog } from "./log";
import { LocalMedia, mediaKind, RESTART_TRAITS } from "./media";
import {
  captureThenNegotiate,
  connectionTraits,
  createConnection,
  negotiate,
  openChannels,
  wireConnection,
} from "./negotiation";
import { outputKind } from "./output";
import type { BrowserCounters, BrowserPeerOptions, PeerHost, PeerModel, PeerStatus } from "./peertypes";
import {
  byeMsg,
  candidateMsg,
  DEFAULTS,
  type ErrorCode,
  errorMsg,
  LIMITS,
  type Message,
  newSessionId,
  validate,
} from "./protocol";
import { registry } from "./registry";
import { RelayChannel, type RelayMedia } from "./relay";
import { startRelayMedia } from "./relayswitch";
import { StatsSampler } from "./stats";
import { Trickle } from "./trickle";
import { sendOnUserChannel, wireChannel } from "./userchannel";

// The names this module always exported, wherever they live now.
export type { BrowserCounters, BrowserPeerOptions, PeerModel, PeerStatus, PeerTraits } from "./peertypes";
export { type PeerRegistry, registry } from "./registry";

export class BrowserPeer {
  readonly peerId: string;
  /** The current session's connection, or null when none runs. */
  pc: RTCPeerConnection | null = null;
  /** The user's data channel (standard RTCDataChannel, binaryType "arraybuffer"). */
  channel: RTCDataChannel | null = null;
  /** The control channel (ping/pong), opened first. */
  control: RTCDataChannel | null = null;
  /** Camera, Screen, Microphone: what this session captured and sends (null for a DataChannel). */
  media: LocalMedia | null = null;
  /** VideoOutput, AudioOutput: the stream the kernel sends (or one another transport set: setRemoteStream). */
  remoteStream: MediaStream | null = null;
  /** Media over the relay transport, once the kernel switched this session to it (else null). */
  relayMedia: RelayMedia | null = null;
  /** The current (or last) session id; "" before the first start. */
  session = "";
  status: PeerStatus = "idle";
  /** The latest browser-side problem, in words for the user; "" when none. */
  error = "";
  readonly counters: BrowserCounters = {
    messagesSent: 0,
    messagesReceived: 0,
    bytesSent: 0,
    bytesReceived: 0,
  };
  /** The latest user-channel messages, for the views. */
  readonly log: MessageLog = new MessageLog(LIMITS.maxLogEntries);
  /** getStats sampler: compact samples to the kernel (stats.ts); set in the constructor. */
  readonly stats: StatsSampler;

  readonly #model: PeerModel;
  /** Signaling path: the server bus when present, else the comm. */
  readonly #route: SignalRoute;
  readonly #createPc: (config: RTCConfiguration) => RTCPeerConnection;
  readonly #listeners = new Set<() => void>();
  /** What the helper modules may use of this peer's private state (peertypes.ts PeerHost). */
  readonly #host: PeerHost;
  /** Bumped on every start/close; async work from an older session checks it and gives up. */
  #gen = 0;
  #startSeen: number;
  #rendered = false;
  #echo: boolean;
  #trickle: Trickle | null = null;
  /** The relay channel once the kernel switched this session to the relay transport. */
  #relay: RelayChannel | null = null;
  #reported = new Set<ErrorCode>();
  #disposed = false;

  constructor(model: PeerModel, options: BrowserPeerOptions = {}) {
    this.#model = model;
    this.#host = {
      peer: this,
      model,
      current: (gen) => gen === this.#gen,
      gen: () => this.#gen,
      echo: () => this.#echo,
      relay: () => this.#relay,
      startRelay: (reason) => this.#startRelay(reason),
      notify: () => this.#notify(),
      signal: (msg, payload) => this.#signal(msg, payload),
      showError: (text) => this.#showError(text),
      report: (code, text) => this.#report(code, text),
      fail: (code, text) => this.#fail(code, text),
    };
    this.peerId = String(model.get("peer_id") ?? "");
    this.#createPc = options.createPeerConnection ?? ((config) => new RTCPeerConnection(config));
    this.#startSeen = Number(model.get("_start")) || 0;
    this.#echo = Boolean(model.get("echo"));
    this.stats = new StatsSampler(model, () => this.control);
    model.on("msg:custom", this.#onKernelMessage);
    this.#route = new SignalRoute(model, this.peerId, this.#onKernelMessage);
    model.on("change:_start", this.#onStartChange);
    model.on("change:echo", this.#onEchoChange);
    for (const name of RESTART_TRAITS) model.on(`change:${name}`, this.#onDeviceChange);
  }

  /** Start now if the kernel already asked for it (`_start` > 0). Call once after construction. */
  activate(): void {
    if (this.#startSeen > 0) this.start();
  }

  /** Called by each view; the first view starts the peer if nothing started it yet. */
  viewRendered(): void {
    if (this.#rendered) return;
    this.#rendered = true;
    if (this.status === "idle") this.start();
  }

  /** Start a new session, replacing the current one (without `bye`: the kernel replaces on a new session). */
  start(): void {
    if (this.#disposed) return;
    this.#teardown();
    const gen = this.#gen;
    this.session = newSessionId();
    this.status = "starting";
    this.error = "";
    this.#reported.clear();
    // Counters are per session, like the kernel's; the log keeps running across sessions.
    Object.assign(this.counters, { messagesSent: 0, messagesReceived: 0, bytesSent: 0, bytesReceived: 0 });

    const host = this.#host;
    const pc = createConnection(host, () => this.#createPc(rtcConfiguration(connectionTraits(this.#model))));
    if (!pc) return;
    this.pc = pc;
    registry().peers.set(this.peerId, this);
    this.stats.attach(pc, this.session);
    const session = this.session;
    const trickle = new Trickle(
      (c) => this.#signal(candidateMsg(session, c)),
      DEFAULTS.iceGatheringTimeoutMs,
    );
    this.#trickle = trickle;
    const output = outputKind(this.#model.get("_kind"));
    // Media and output widgets carry no user channel.
    if (!openChannels(host, gen, pc, !this.#mediaKind() && !output)) return;
    wireConnection(host, gen, pc, trickle, output);

    this.#notify();
    const kind = this.#mediaKind();
    if (kind) void captureThenNegotiate(host, gen, pc, trickle, new LocalMedia(kind));
    else void negotiate(host, gen, pc, trickle);
  }

  /** End the session: send `bye` (unless told not to) and close the connection. */
  close(sendBye = true): void {
    if (sendBye && this.pc && this.session) this.#signal(byeMsg(this.session));
    const hadSession = this.pc !== null;
    this.#teardown();
    if (hadSession || this.status !== "idle") this.status = "closed";
    this.#notify();
  }

  /** Close with `bye` and stop listening to the model (initialize cleanup). */
  dispose(): void {
    if (this.#disposed) return;
    this.close(true);
    this.#disposed = true;
    this.#model.off("msg:custom", this.#onKernelMessage);
    this.#route.dispose();
    this.#model.off("change:_start", this.#onStartChange);
    this.#model.off("change:echo", this.#onEchoChange);
    for (const name of RESTART_TRAITS) this.#model.off(`change:${name}`, this.#onDeviceChange);
    this.#listeners.clear();
  }

  /**
   * Send one message on the user channel. Returns false (and shows why) when it was not sent:
   * channel not open, message over the connection's max message size, or the browser refused it.
   */
  send(data: string | ArrayBuffer | Uint8Array): boolean {
    return sendOnUserChannel(this.#host, data);
  }

  /** Show `stream` as what the kernel sends (VideoOutput, AudioOutput): set on `track`, or by another transport. */
  setRemoteStream(stream: MediaStream | null): void {
    if (this.remoteStream === stream) return;
    this.remoteStream = stream;
    this.#notify();
  }

  /** Call `fn` after any change a view may show. Returns the unsubscribe function. */
  subscribe(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /**
   * The kernel gave up on WebRTC for this session: end ICE and carry the user channel, and the captured media,
   * over the signaling path (bus or comm). The capture keeps running; only the connection closes.
   */
  #startRelay(reason: string): void {
    const stream = this.media?.stream ?? null;
    const output = outputKind(this.#model.get("_kind"));
    if (!this.session || this.#relay || this.relayMedia || (!this.channel && !stream && !output)) return;
    const gen = ++this.#gen; // the WebRTC attempt's listeners (closing channels) fall silent
    this.#trickle?.stop();
    this.#closeConnection();
    this.pc = null;
    this.control = null;
    this.error = ""; // the kernel's error line carries the reason; an earlier ICE failure no longer applies
    if (this.channel) {
      const relay = new RelayChannel(String(this.#model.get("label") ?? ""), this.session, reason, (m) =>
        this.#signal(m),
      );
      this.#relay = relay;
      this.channel = relay as unknown as RTCDataChannel;
      wireChannel(this.#host, gen, this.channel);
      relay.open();
    }
    if (stream || output) startRelayMedia(this.#host, gen, stream, output, () => this.#route.buffered);
    const none = { framesSent: 0, videoBytesSent: 0, audioBytesSent: 0 };
    this.stats.attachRelay(this.session, () => ({
      ...none,
      framesReceived: 0,
      videoBytesReceived: 0,
      audioBytesReceived: 0,
      ...this.relayMedia?.counters(),
      ...this.counters,
    }));
    this.#notify();
  }

  // --- model events ------------------------------------------------------------------------------------

  /** A kernel message from the comm (buffers: DataView[]) or the bus (an ArrayBuffer payload). */
  readonly #onKernelMessage = (content: unknown, extra?: DataView[] | ArrayBuffer): void => {
    if (this.#disposed) return;
    onKernelMessage(this.#host, content, extra);
  };

  readonly #onStartChange = (): void => {
    const n = Number(this.#model.get("_start")) || 0;
    if (n > this.#startSeen) {
      this.#startSeen = n;
      this.start();
    }
  };

  /** A new device or facing mode needs a new capture: restart a running session. */
  readonly #onDeviceChange = (): void => {
    if (this.#mediaKind() && this.status !== "idle" && this.status !== "closed") this.start();
  };

  #mediaKind() {
    return mediaKind(this.#model.get("_kind"));
  }

  readonly #onEchoChange = (): void => {
    this.#echo = Boolean(this.#model.get("echo"));
    this.#notify();
  };

  // --- helpers -----------------------------------------------------------------------------------------

  /** Send a signaling message (with a relayed frame's bytes) to the kernel; false if it was not valid to send. */
  #signal(msg: Message, payload?: ArrayBuffer): boolean {
    const r = validate(msg);
    if (!r.ok) {
      this.#showError(`rtc_widgets built an invalid ${msg.type} message (${r.error}); please report this.`);
      return false;
    }
    try {
      this.#route.send(msg, payload);
      return true;
    } catch (e) {
      this.#showError(`Could not reach the kernel (${errText(e)}). Is the kernel still running?`);
      return false;
    }
  }

  #showError(text: string): void {
    this.error = text;
    this.#notify();
  }

  /** Show the problem and tell the kernel (once per code per session, so a storm stays one message). */
  #report(code: ErrorCode, text: string): void {
    this.#showError(text);
    if (this.#reported.has(code)) return;
    this.#reported.add(code);
    this.#signal(errorMsg(this.session || undefined, code, text));
  }

  /** A failure that ends this session's chances: report it and mark the peer failed. */
  #fail(code: ErrorCode, text: string): void {
    this.status = "failed";
    this.#report(code, text);
  }

  /** Close the user and control channels and the connection; each may already be closed. */
  #closeConnection(): void {
    for (const closable of [this.channel, this.control, this.pc]) {
      try {
        closable?.close();
      } catch {
        // already closed
      }
    }
  }

  #teardown(): void {
    this.#gen++;
    this.stats.detach();
    this.#trickle?.stop();
    this.#trickle = null;
    this.#closeConnection();
    this.media?.stop();
    this.media = null;
    this.remoteStream = null;
    const reg = registry();
    if (reg.peers.get(this.peerId) === this) reg.peers.delete(this.peerId);
    this.pc = null;
    this.channel = null;
    this.control = null;
    this.#relay = null;
    this.relayMedia?.stop();
    this.relayMedia = null;
  }

  #notify(): void {
    for (const fn of this.#listeners) {
      try {
        fn();
      } catch (e) {
        console.error("rtc_widgets: a view failed to update", e);
      }
    }
  }
}

// BrowserPeer: the browser end of one widget model's WebRTC connection to the kernel (aiortc).
// One instance per widget model (created in anywidget `initialize`), shared by all of that model's views.
// The browser offers and trickles its candidates; the kernel answers with all of its candidates in the SDP.
import type { AnyModel } from "@anywidget/types";
import { SignalRoute } from "./bus";
import {
  answerPing,
  type ConnectionTraits,
  candidateInit,
  rtcConfiguration,
  userChannelInit,
} from "./channels";
import { errName, errText, formatBytes, formatCount } from "./format";
import { MessageLog } from "./log";
import {
  LocalMedia,
  type MediaFailure,
  type MediaTraits,
  mediaKind,
  mediaTraitsOf,
  RESTART_TRAITS,
} from "./media";
import { addOutputTransceiver, outputKind, outputTrackKind, streamOfTrackEvent } from "./output";
import {
  byeMsg,
  type CandidateInit,
  candidateMsg,
  DEFAULTS,
  type ErrorCode,
  errorMsg,
  LIMITS,
  type Message,
  newSessionId,
  offerMsg,
  pongMsg,
  utf8Length,
  validate,
} from "./protocol";
import { RelayChannel, RelayMedia } from "./relay";
import { StatsSampler } from "./stats";
import { Trickle } from "./trickle";

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

export interface PeerRegistry {
  peers: Map<string, BrowserPeer>;
}

/** `globalThis.rtcWidgets`: running peers by peer_id, for debugging and browser tests. */
export function registry(): PeerRegistry {
  const g = globalThis as { rtcWidgets?: Partial<PeerRegistry> };
  if (!g.rtcWidgets) g.rtcWidgets = {};
  if (!(g.rtcWidgets.peers instanceof Map)) g.rtcWidgets.peers = new Map();
  return g.rtcWidgets as PeerRegistry;
}

/** The one binary attachment of a kernel message, as an ArrayBuffer (comm: DataView[]; bus: ArrayBuffer). */
function attachment(extra: DataView[] | ArrayBuffer | undefined): ArrayBuffer | null {
  if (extra instanceof ArrayBuffer) return extra;
  if (!Array.isArray(extra) || extra.length !== 1) return null;
  const v = extra[0] as DataView;
  return v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength) as ArrayBuffer;
}

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

    let pc: RTCPeerConnection;
    try {
      pc = this.#createPc(rtcConfiguration(this.#traits()));
    } catch (e) {
      this.#fail(
        "browser-error",
        `This browser could not create a WebRTC connection (${errText(e)}). ` +
          "Check that WebRTC is not disabled by a browser policy or extension, or use a current Chrome, Firefox or Safari.",
      );
      return;
    }
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

    try {
      // The control channel first, so it gets stream id 0 on every session.
      const control = pc.createDataChannel(DEFAULTS.controlChannelLabel, { ordered: true });
      control.binaryType = "arraybuffer";
      control.addEventListener("message", (e) => {
        if (gen === this.#gen) answerPing(control, (e as MessageEvent).data);
      });
      this.control = control;

      const traits = this.#traits();
      if (!this.#mediaKind() && !output) {
        const channel = pc.createDataChannel(String(traits.label ?? ""), userChannelInit(traits));
        channel.binaryType = "arraybuffer";
        this.#wireChannel(gen, channel);
        this.channel = channel;
      }
    } catch (e) {
      this.#fail(
        "browser-error",
        `The browser refused the data channel options (${errText(e)}). ` +
          "Set at most one of max_retransmits and max_packet_life_time, and keep label and protocol short.",
      );
      return;
    }
    if (output) {
      addOutputTransceiver(pc, output);
      pc.addEventListener("track", (e) => {
        if (gen === this.#gen)
          this.setRemoteStream(streamOfTrackEvent(e as RTCTrackEvent, this.remoteStream));
      });
    }

    pc.addEventListener("icecandidate", (e) => {
      if (gen !== this.#gen) return;
      const c = (e as RTCPeerConnectionIceEvent).candidate;
      // A null candidate (or an empty one, in older browsers) marks the end of gathering.
      if (c?.candidate) trickle.candidate(candidateInit(c));
      else trickle.end();
    });
    pc.addEventListener("icegatheringstatechange", () => {
      if (gen === this.#gen && pc.iceGatheringState === "complete") trickle.end();
    });
    pc.addEventListener("iceconnectionstatechange", () => {
      if (gen !== this.#gen) return;
      if (pc.iceConnectionState === "failed") this.#iceFailed();
      this.#notify();
    });
    pc.addEventListener("connectionstatechange", () => {
      if (gen !== this.#gen) return;
      if (pc.connectionState === "failed") this.#iceFailed();
      // Media and output sessions have no user channel: connected is open.
      if (pc.connectionState === "connected" && (this.media || output)) this.status = "open";
      this.#notify();
    });

    this.#notify();
    const kind = this.#mediaKind();
    if (kind) void this.#captureThenNegotiate(gen, pc, trickle, new LocalMedia(kind));
    else void this.#negotiate(gen, pc, trickle);
  }

  /** Capture first (the browser may ask the user), then offer with the tracks. */
  async #captureThenNegotiate(
    gen: number,
    pc: RTCPeerConnection,
    trickle: Trickle,
    media: LocalMedia,
  ): Promise<void> {
    this.media = media;
    try {
      await media.capture(mediaTraitsOf(this.#model));
    } catch (e) {
      if (gen === this.#gen) this.#mediaFailed(e as MediaFailure);
      media.stop();
      return;
    }
    if (gen !== this.#gen) {
      media.stop();
      return;
    }
    media.attach(pc, (failure) => {
      if (gen === this.#gen) this.#mediaFailed(failure);
    });
    this.#notify();
    await this.#negotiate(gen, pc, trickle);
  }

  /** Capture failed or a track ended: tell the kernel, release the device, close this session's connection. */
  #mediaFailed(f: MediaFailure): void {
    this.#fail(f.code ?? "media-error", f.text ?? String(f));
    this.media?.stop();
    this.#trickle?.stop();
    try {
      this.pc?.close();
    } catch {
      // already closed
    }
    this.#notify();
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
    const ch = this.channel;
    if (ch?.readyState !== "open") {
      this.#showError(
        "The data channel is not open yet: wait until the badge says connected, then send again.",
      );
      return false;
    }
    const size = typeof data === "string" ? utf8Length(data) : data.byteLength;
    const max = this.pc?.sctp?.maxMessageSize ?? 0;
    if (max > 0 && size > max) {
      this.#report(
        "too-large",
        `This message is ${formatCount(size)} bytes, but this connection carries at most ${formatCount(max)} bytes ` +
          "per message. Split it into smaller messages.",
      );
      return false;
    }
    try {
      if (typeof data === "string") ch.send(data);
      else if (data instanceof ArrayBuffer) ch.send(data);
      else ch.send(data as Uint8Array<ArrayBuffer>);
    } catch (e) {
      this.#sendFailed(e, size);
      return false;
    }
    this.counters.messagesSent++;
    this.counters.bytesSent += size;
    this.log.add("out", data, size, false);
    this.#notify();
    return true;
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

  // --- negotiation -------------------------------------------------------------------------------------

  async #negotiate(gen: number, pc: RTCPeerConnection, trickle: Trickle): Promise<void> {
    let sdp: string;
    try {
      const offer = await pc.createOffer();
      if (gen !== this.#gen) return;
      await pc.setLocalDescription(offer);
      if (gen !== this.#gen) return;
      sdp = offer.sdp ?? pc.localDescription?.sdp ?? "";
    } catch (e) {
      if (gen === this.#gen) {
        this.#fail(
          "browser-error",
          `The browser could not create a WebRTC offer (${errText(e)}). Reload the page; if it persists, ` +
            "check that WebRTC is allowed in this browser.",
        );
      }
      return;
    }
    trickle.gatheringStarted();
    // Sent at once: the kernel can start its side while the browser is still gathering.
    if (!this.#signal(offerMsg(this.session, sdp))) {
      this.#fail(
        "too-large",
        "The browser's offer is too large for the signaling channel; use fewer channels.",
      );
      return;
    }
    this.status = "offered";
    trickle.offerSent();
    if (pc.iceGatheringState === "complete") trickle.end();
    this.#notify();
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
      this.#wireChannel(gen, this.channel);
      relay.open();
    }
    if (stream || output) {
      const session = this.session;
      const media = new RelayMedia({
        session,
        send: (m, payload) => gen === this.#gen && this.#signal(m, payload),
        buffered: () => this.#route.buffered,
        fail: (text) => {
          if (gen === this.#gen) this.#report("media-error", text);
        },
      });
      this.relayMedia = media;
      this.status = "open";
      if (output) {
        // the kernel's media, decoded here (WebCodecs or JPEG/PCM), shown by the same view as a WebRTC stream
        media.receiveKinds([outputTrackKind(output)]);
        this.setRemoteStream(media.streams()[0] ?? null);
      }
      if (stream)
        void media
          .send(stream, {
            codec: String(this.#model.get("relay_codec") ?? "auto"),
            fps: Number(this.#model.get("frame_rate")) || undefined,
          })
          .then(() => {
            if (gen === this.#gen) this.#notify();
          });
    }
    this.#notify();
  }

  #iceFailed(): void {
    this.#fail(
      "ice-failed",
      "No network path between this browser and the kernel was found (ICE failed). If the kernel runs on " +
        "another machine, behind NAT or in a container, give both sides a STUN/TURN server with ice_servers=[...].",
    );
  }

  // --- messages from the kernel ------------------------------------------------------------------------

  /** A kernel message from the comm (buffers: DataView[]) or the bus (an ArrayBuffer payload). */
  readonly #onKernelMessage = (content: unknown, extra?: DataView[] | ArrayBuffer): void => {
    if (this.#disposed) return;
    const r = validate(content);
    if (!r.ok) {
      this.#report(
        "bad-message",
        `The kernel sent a signaling message the browser cannot accept (${r.error}). If this persists, the ` +
          "Python package and the page's widget code may be different versions: restart the kernel and reload the page.",
      );
      return;
    }
    const msg: Message = r.msg;
    // Old sessions' messages are late, not wrong: drop them quietly.
    if (msg.session !== undefined && msg.session !== this.session) return;
    switch (msg.type) {
      case "answer":
        this.#applyAnswer(msg.sdp);
        break;
      case "candidate":
        this.#addRemoteCandidate(msg.candidate);
        break;
      case "error":
        this.#showError(`The kernel reported a problem (${msg.code}): ${msg.message}`);
        break;
      case "bye":
        if (this.pc) this.close(false);
        break;
      case "ping":
        this.#signal(pongMsg(msg.seq, msg.t));
        break;
      case "pong":
        break;
      case "relay":
        this.#startRelay(msg.reason);
        break;
      case "data":
        if (!this.#relay?.receive(msg)) {
          this.#report("out-of-order", "A relay message arrived out of sequence or with no relay in use.");
        }
        break;
      case "media": {
        const payload = attachment(extra);
        if (!payload || payload.byteLength !== msg.size) {
          this.#report(
            "bad-message",
            "A relayed media frame arrived without its bytes, or with the wrong size.",
          );
        } else if (!this.relayMedia?.receive(msg, payload)) {
          this.#report(
            "out-of-order",
            "A relayed media frame arrived, but this widget receives no relayed media.",
          );
        }
        break;
      }
      case "ack":
        this.relayMedia?.ack(msg);
        break;
      case "offer":
        this.#report(
          "out-of-order",
          "The kernel sent an offer, but in rtc_widgets the browser always offers.",
        );
        break;
    }
  };

  #applyAnswer(sdp: string): void {
    const pc = this.pc;
    if (!pc) return;
    if (pc.signalingState !== "have-local-offer") {
      this.#report(
        "out-of-order",
        `The kernel sent an answer while the browser was in ${pc.signalingState}.`,
      );
      return;
    }
    const gen = this.#gen;
    pc.setRemoteDescription({ type: "answer", sdp }).then(
      () => {
        if (gen !== this.#gen) return;
        if (this.status === "offered" || this.status === "starting") this.status = "connecting";
        this.#notify();
      },
      (e) => {
        if (gen !== this.#gen) return;
        this.#fail(
          "bad-sdp",
          `The browser could not apply the kernel's answer (${errText(e)}). Restart the widget; if it persists, ` +
            "update rtc_widgets and aiortc.",
        );
      },
    );
  }

  /** The kernel does not trickle today (aiortc puts its candidates in the answer), but accept it if it does. */
  #addRemoteCandidate(c: CandidateInit | null): void {
    const pc = this.pc;
    if (!pc) return;
    if (!pc.remoteDescription) {
      this.#report("out-of-order", "The kernel sent an ICE candidate before its answer.");
      return;
    }
    const gen = this.#gen;
    (c ? pc.addIceCandidate(c) : pc.addIceCandidate()).catch((e) => {
      if (gen === this.#gen)
        this.#report("bad-candidate", `The browser rejected a kernel ICE candidate (${errText(e)}).`);
    });
  }

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

  // --- channels ----------------------------------------------------------------------------------------

  #wireChannel(gen: number, channel: RTCDataChannel): void {
    channel.addEventListener("message", (e) => {
      const data = (e as MessageEvent).data as unknown;
      // Echo before any bookkeeping: echo mode measures the round trip.
      let echoed = false;
      if (this.#echo && gen === this.#gen) {
        try {
          channel.send(data as string);
          echoed = true;
        } catch (err) {
          this.#sendFailed(
            err,
            typeof data === "string" ? utf8Length(data) : (data as ArrayBuffer).byteLength,
          );
        }
      }
      if (gen !== this.#gen) return;
      const size = typeof data === "string" ? utf8Length(data) : (data as ArrayBuffer).byteLength;
      this.counters.messagesReceived++;
      this.counters.bytesReceived += size;
      if (echoed) {
        this.counters.messagesSent++;
        this.counters.bytesSent += size;
      }
      this.log.add("in", data as string | ArrayBuffer, size, echoed);
      this.#notify();
    });
    channel.addEventListener("open", () => {
      if (gen !== this.#gen) return;
      this.status = "open";
      this.#notify();
    });
    channel.addEventListener("close", () => {
      if (gen !== this.#gen) return;
      if (this.status !== "failed") this.status = "closed";
      this.#notify();
    });
    channel.addEventListener("error", (e) => {
      if (gen !== this.#gen) return;
      const err = (e as Event & { error?: unknown }).error;
      this.#report(
        "browser-error",
        `The data channel reported an error (${err ? errText(err) : "no details"}). ` +
          "The connection may have dropped: restart the widget to reconnect.",
      );
    });
  }

  #sendFailed(e: unknown, size: number): void {
    const name = errName(e);
    if (name === "TypeError") {
      this.#report(
        "too-large",
        `The browser refused a ${formatBytes(size)} message as too large for this connection. Split it into smaller messages.`,
      );
    } else if (name === "OperationError") {
      this.#report(
        "browser-error",
        `The data channel's send buffer is full (${formatBytes(this.channel?.bufferedAmount ?? 0)} queued). ` +
          "Send more slowly, or wait for the bufferedamountlow event.",
      );
    } else {
      this.#report("browser-error", `The browser could not send on the data channel (${errText(e)}).`);
    }
  }

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

  #traits(): ConnectionTraits {
    const m = this.#model;
    return {
      label: m.get("label"),
      ordered: m.get("ordered"),
      max_retransmits: m.get("max_retransmits"),
      max_packet_life_time: m.get("max_packet_life_time"),
      protocol: m.get("protocol"),
      ice_servers: m.get("ice_servers"),
      ice_transport_policy: m.get("ice_transport_policy"),
    };
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

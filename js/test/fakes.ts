// Stand-ins for the anywidget model and the browser's WebRTC objects, just rich enough for the peer's logic.
import type { PeerModel, PeerTraits } from "../src/peer";

type Handler = (...args: unknown[]) => void;

export const DEFAULT_TRAITS: PeerTraits = {
  _kind: "datachannel",
  peer_id: "peer-1",
  label: "chat",
  ordered: true,
  max_retransmits: null,
  max_packet_life_time: null,
  protocol: "",
  echo: false,
  ice_servers: [],
  ice_transport_policy: "all",
  _start: 0,
  connection_state: "new",
  ice_connection_state: "new",
  transport: "webrtc",
  error: "",
  messages_sent: 0,
  messages_received: 0,
  bytes_sent: 0,
  bytes_received: 0,
  max_message_size: 0,
};

/** A model like anywidget's: traits with change events, custom messages both ways. */
export class FakeModel {
  traits: PeerTraits;
  /** Everything the browser sent to the kernel with model.send. */
  sent: Record<string, unknown>[] = [];
  handlers = new Map<string, Set<Handler>>();
  widget_manager = { get_model: () => Promise.reject(new Error("not in tests")) };

  constructor(traits: Partial<PeerTraits> = {}) {
    this.traits = { ...DEFAULT_TRAITS, ...traits };
  }
  get<K extends keyof PeerTraits>(key: K): PeerTraits[K] {
    return this.traits[key];
  }
  set<K extends keyof PeerTraits>(key: K, value: PeerTraits[K]): void {
    this.traits[key] = value;
    this.emit(`change:${String(key)}`);
  }
  save_changes(): void {}
  on(event: string, fn: Handler): void {
    let set = this.handlers.get(event);
    if (!set) {
      set = new Set();
      this.handlers.set(event, set);
    }
    set.add(fn);
  }
  off(event?: string | null, fn?: Handler | null): void {
    if (!event) {
      this.handlers.clear();
      return;
    }
    if (!fn) this.handlers.delete(event);
    else this.handlers.get(event)?.delete(fn);
  }
  send(content: unknown): void {
    this.sent.push(JSON.parse(JSON.stringify(content)));
  }
  emit(event: string, ...args: unknown[]): void {
    for (const fn of [...(this.handlers.get(event) ?? [])]) fn(...args);
  }
  /** A kernel→browser custom message. */
  fromKernel(msg: unknown): void {
    this.emit("msg:custom", msg, []);
  }
  sentOfType(type: string): Record<string, unknown>[] {
    return this.sent.filter((m) => m.type === type);
  }
  asModel(): PeerModel {
    return this as unknown as PeerModel;
  }
}

function event<T extends object>(type: string, props: T): Event & T {
  return Object.assign(new Event(type), props);
}

export class FakeDataChannel extends EventTarget {
  readyState: RTCDataChannelState = "connecting";
  binaryType = "blob";
  bufferedAmount = 0;
  /** What the browser code sent on this channel. */
  sent: unknown[] = [];
  /** Makes send() throw this error, for failure tests. */
  sendError: Error | null = null;

  constructor(
    public label: string,
    public init: RTCDataChannelInit,
  ) {
    super();
  }
  send(data: unknown): void {
    if (this.readyState !== "open") throw Object.assign(new Error("not open"), { name: "InvalidStateError" });
    if (this.sendError) throw this.sendError;
    this.sent.push(data);
  }
  close(): void {
    if (this.readyState === "closed") return;
    this.readyState = "closed";
    this.dispatchEvent(new Event("close"));
  }
  /** Simulate the remote end: open, deliver a message, fail. */
  open(): void {
    this.readyState = "open";
    this.dispatchEvent(new Event("open"));
  }
  receive(data: unknown): void {
    this.dispatchEvent(event("message", { data }));
  }
  fail(message: string): void {
    this.dispatchEvent(
      event("error", { error: Object.assign(new Error(message), { name: "OperationError" }) }),
    );
  }
}

export class FakeIceCandidate {
  constructor(
    public candidate: string,
    public sdpMid: string | null = "0",
    public sdpMLineIndex: number | null = 0,
    public usernameFragment: string | null = "ufrag",
  ) {}
  toJSON(): RTCIceCandidateInit {
    return {
      candidate: this.candidate,
      sdpMid: this.sdpMid,
      sdpMLineIndex: this.sdpMLineIndex,
      usernameFragment: this.usernameFragment,
    };
  }
}

export const FAKE_OFFER_SDP =
  "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";

export class FakePeerConnection extends EventTarget {
  static instances: FakePeerConnection[] = [];
  channels: FakeDataChannel[] = [];
  signalingState: RTCSignalingState = "stable";
  iceGatheringState: RTCIceGatheringState = "new";
  iceConnectionState: RTCIceConnectionState = "new";
  connectionState: RTCPeerConnectionState = "new";
  localDescription: RTCSessionDescriptionInit | null = null;
  remoteDescription: RTCSessionDescriptionInit | null = null;
  sctp: { maxMessageSize: number } | null = null;
  closed = false;
  addedCandidates: unknown[] = [];
  /** Failure switches for tests. */
  failCreateOffer: Error | null = null;
  failSetRemote: Error | null = null;

  constructor(public config: RTCConfiguration) {
    super();
    FakePeerConnection.instances.push(this);
  }
  transceivers: { track: MediaStreamTrack; init: RTCRtpTransceiverInit }[] = [];
  addTransceiver(track: MediaStreamTrack, init: RTCRtpTransceiverInit = {}): void {
    this.transceivers.push({ track, init });
  }
  async getStats(): Promise<Map<string, Record<string, unknown>>> {
    return new Map([["s1", { type: "media-source", kind: "audio", audioLevel: 0.25 }]]);
  }
  createDataChannel(label: string, init: RTCDataChannelInit = {}): FakeDataChannel {
    const ch = new FakeDataChannel(label, init);
    this.channels.push(ch);
    return ch;
  }
  async createOffer(): Promise<RTCSessionDescriptionInit> {
    if (this.failCreateOffer) throw this.failCreateOffer;
    return { type: "offer", sdp: FAKE_OFFER_SDP };
  }
  async setLocalDescription(desc: RTCSessionDescriptionInit): Promise<void> {
    this.localDescription = desc;
    this.signalingState = "have-local-offer";
    this.iceGatheringState = "gathering";
  }
  async setRemoteDescription(desc: RTCSessionDescriptionInit): Promise<void> {
    if (this.failSetRemote) throw this.failSetRemote;
    this.remoteDescription = desc;
    this.signalingState = "stable";
  }
  async addIceCandidate(c?: RTCIceCandidateInit): Promise<void> {
    this.addedCandidates.push(c ?? null);
  }
  close(): void {
    this.closed = true;
    this.signalingState = "closed";
    for (const ch of this.channels) ch.close();
  }
  // --- test controls ---
  get control(): FakeDataChannel {
    return this.channels[0] as FakeDataChannel;
  }
  get user(): FakeDataChannel {
    return this.channels[1] as FakeDataChannel;
  }
  emitCandidate(candidate: FakeIceCandidate | null): void {
    this.dispatchEvent(event("icecandidate", { candidate }));
  }
  completeGathering(): void {
    this.iceGatheringState = "complete";
    this.dispatchEvent(new Event("icegatheringstatechange"));
    this.emitCandidate(null);
  }
  setIceState(state: RTCIceConnectionState): void {
    this.iceConnectionState = state;
    this.dispatchEvent(new Event("iceconnectionstatechange"));
  }
}

export function createFakePc(config: RTCConfiguration): RTCPeerConnection {
  return new FakePeerConnection(config) as unknown as RTCPeerConnection;
}

/** Let pending promise callbacks (createOffer → setLocalDescription → send) run. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

/** A MediaStreamTrack stand-in: `stop()` records, `end()` fires "ended" as when a device is unplugged. */
export class FakeTrack extends EventTarget {
  readyState: MediaStreamTrackState = "live";
  stopped = false;
  contentHint = "";
  constructor(
    public kind: string,
    public label = "fake device",
  ) {
    super();
  }
  stop(): void {
    this.stopped = true;
    this.readyState = "ended";
  }
  end(): void {
    this.readyState = "ended";
    this.dispatchEvent(new Event("ended"));
  }
}

export class FakeStream {
  constructor(public tracks: FakeTrack[]) {}
  getTracks(): FakeTrack[] {
    return this.tracks;
  }
}

/** navigator.mediaDevices whose calls resolve with fake tracks or reject with `fail`. */
export function fakeMediaDevices(fail: { name: string; constraint?: string } | null = null) {
  const calls: { fn: string; constraints: MediaStreamConstraints }[] = [];
  const streams: FakeStream[] = [];
  const make = (fn: string) => async (constraints: MediaStreamConstraints) => {
    calls.push({ fn, constraints });
    if (fail) throw Object.assign(new Error(fail.name), fail);
    const tracks = [];
    if (constraints.video) tracks.push(new FakeTrack("video"));
    if (constraints.audio) tracks.push(new FakeTrack("audio"));
    const stream = new FakeStream(tracks);
    streams.push(stream);
    return stream;
  };
  return {
    calls,
    streams,
    getUserMedia: make("getUserMedia"),
    getDisplayMedia: make("getDisplayMedia"),
    enumerateDevices: async () => [
      { kind: "videoinput", deviceId: "cam-1", label: "Front", groupId: "g" },
      { kind: "audioinput", deviceId: "mic-1", label: "Mic", groupId: "g" },
    ],
  };
}

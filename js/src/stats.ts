// Browser half of the stats (ARCHITECTURE.md, decision 7): sample getStats() every `stats_interval` ms, compact it
// into a few named numbers (the metric names of protocol.json `statsMetrics`) and send them to the kernel as a
// `stats` message. On the control data channel when it is open: that lands on the kernel's engine thread even
// while a cell runs synchronous code; before that (or when it is gone) over the widget comm, so the state events
// of a connection that never opens still reach the kernel.
import type { AnyModel } from "@anywidget/types";
import protocol from "../../rtc_widgets/protocol/protocol.json";
import { DEFAULTS, LIMITS, VERSION, validate } from "./protocol";

/** The schema's pattern for an event's state: checked here so one odd state cannot void a whole sample. */
const STATE_PATTERN = new RegExp(protocol.schema.properties.ev.items.properties.s.pattern);

export type EventKind = "signaling" | "gathering" | "ice" | "dtls" | "connection";
export interface StatsEvent {
  k: EventKind;
  s: string;
  t: number;
}
export interface CandidateEnd {
  type?: "host" | "srflx" | "prflx" | "relay";
  protocol?: string;
  address?: string;
  port?: number;
  relayProtocol?: string;
}
export interface SelectedPair {
  local: CandidateEnd;
  remote: CandidateEnd;
  state?: string;
}
export interface StatsMsg {
  v: number;
  type: "stats";
  session?: string;
  t: number;
  m?: Record<string, number>;
  ev?: StatsEvent[];
  pair?: SelectedPair;
}

type Report = Record<string, unknown> & { type: string; id: string; timestamp?: number };
const num = (x: unknown): number | undefined => (typeof x === "number" && Number.isFinite(x) ? x : undefined);
const round = (x: number): number => Math.round(x * 1000) / 1000;

/** Cumulative counters of one report, keyed for rate computation. */
type Counters = Record<string, number>;

/** Turn one getStats() report into metrics; `prev` holds last sample's cumulative counters (updated in place). */
/** What the relay transport counts in the page, cumulative (RelayMedia.counters() plus the user channel's). */
export type RelayCounters = Record<
  | "framesSent"
  | "videoBytesSent"
  | "audioBytesSent"
  | "framesReceived"
  | "videoBytesReceived"
  | "audioBytesReceived"
  | "messagesSent"
  | "messagesReceived"
  | "bytesSent"
  | "bytesReceived",
  number
>;

/** Metrics of the relay transport (no RTCPeerConnection to ask) from its counters; `prev` as for compact(). */
export function compactRelay(
  c: RelayCounters,
  prev: { counters: Counters; t: number },
  t: number,
): Record<string, number> {
  const m: Record<string, number> = {};
  const dt = (t - prev.t) / 1000;
  const p = prev.counters;
  if (prev.t > 0 && dt > 0) {
    // a direction that never carried anything (a Camera receives nothing) reports nothing, not a row of zeros
    const rate = (key: keyof RelayCounters, factor = 1) =>
      p[key] === undefined || !c[key]
        ? undefined
        : round((Math.max(0, c[key] - (p[key] ?? 0)) * factor) / dt);
    const put = (name: string, v: number | undefined) => {
      if (v !== undefined) m[name] = v;
    };
    const kbps = 8 / 1000;
    put("fps_out", rate("framesSent"));
    put("video_out_kbps", rate("videoBytesSent", kbps));
    put("audio_out_kbps", rate("audioBytesSent", kbps));
    put("fps_in", rate("framesReceived"));
    put("video_in_kbps", rate("videoBytesReceived", kbps));
    put("audio_in_kbps", rate("audioBytesReceived", kbps));
    put("messages_out_per_s", rate("messagesSent"));
    put("messages_in_per_s", rate("messagesReceived"));
    put("channel_out_kbps", rate("bytesSent", kbps));
    put("channel_in_kbps", rate("bytesReceived", kbps));
    const out = ["videoBytesSent", "audioBytesSent", "bytesSent"] as const;
    const inn = ["videoBytesReceived", "audioBytesReceived", "bytesReceived"] as const;
    const sum = (keys: readonly (keyof RelayCounters)[]) => {
      const rates = keys.map((k) => rate(k, kbps)).filter((v) => v !== undefined);
      return rates.length ? round(rates.reduce((a, v) => a + v, 0)) : undefined;
    };
    put("bitrate_out_kbps", sum(out));
    put("bitrate_in_kbps", sum(inn));
  }
  prev.counters = { ...c };
  prev.t = t;
  return m;
}

export function compact(
  reports: Iterable<Report>,
  prev: { counters: Counters; t: number },
  t: number,
  controlLabel: string,
): { metrics: Record<string, number>; pair?: SelectedPair; dtls?: string } {
  const byId = new Map<string, Report>();
  for (const r of reports) byId.set(r.id, r);
  const cur: Counters = {};
  const m: Record<string, number> = {};
  const add = (key: string, x: unknown) => {
    const v = num(x);
    if (v !== undefined) cur[key] = (cur[key] ?? 0) + v;
  };
  let selected: Report | undefined;
  let dtls: string | undefined;
  for (const r of byId.values()) {
    if (r.type === "transport") {
      const id = r.selectedCandidatePairId;
      if (typeof id === "string" && byId.get(id)) selected = byId.get(id);
      if (typeof r.dtlsState === "string") dtls = r.dtlsState;
    }
  }
  if (!selected) {
    for (const r of byId.values()) {
      if (r.type === "candidate-pair" && r.nominated && r.state === "succeeded") selected = r;
    }
  }
  let pair: SelectedPair | undefined;
  if (selected) {
    const rtt = num(selected.currentRoundTripTime);
    if (rtt !== undefined) m.rtt_ms = rtt * 1000;
    const avail = num(selected.availableOutgoingBitrate);
    if (avail !== undefined) m.available_out_kbps = avail / 1000;
    add("tx", selected.bytesSent);
    add("rx", selected.bytesReceived);
    add("ptx", selected.packetsSent);
    add("prx", selected.packetsReceived);
    const end = (id: unknown): CandidateEnd => {
      const c = typeof id === "string" ? byId.get(id) : undefined;
      const out: CandidateEnd = {};
      if (!c) return out;
      const type = c.candidateType;
      if (type === "host" || type === "srflx" || type === "prflx" || type === "relay") out.type = type;
      if (typeof c.protocol === "string") out.protocol = c.protocol.slice(0, 8);
      const address = c.address ?? c.ip;
      if (typeof address === "string") out.address = address.slice(0, 256);
      if (Number.isInteger(c.port)) out.port = c.port as number;
      if (typeof c.relayProtocol === "string") out.relayProtocol = c.relayProtocol.slice(0, 8);
      return out;
    };
    pair = { local: end(selected.localCandidateId), remote: end(selected.remoteCandidateId) };
    if (typeof selected.state === "string") pair.state = selected.state.slice(0, 32);
  }
  let lost = 0;
  let hasRtp = false;
  for (const r of byId.values()) {
    const kind = r.kind === "audio" || r.kind === "video" ? r.kind : undefined;
    if (r.type === "data-channel" && r.label !== controlLabel) {
      add("msgtx", r.messagesSent);
      add("msgrx", r.messagesReceived);
      add("chtx", r.bytesSent);
      add("chrx", r.bytesReceived);
    } else if (r.type === "outbound-rtp" && kind) {
      add(`${kind}tx`, r.bytesSent);
      if (kind === "video") {
        add("frames", r.framesEncoded);
        add("nack", r.nackCount);
        const w = num(r.frameWidth);
        const h = num(r.frameHeight);
        if (w !== undefined) m.frame_width = w;
        if (h !== undefined) m.frame_height = h;
      }
    } else if (r.type === "inbound-rtp" && kind) {
      add(`${kind}rx`, r.bytesReceived);
      if (kind === "video") add("framesin", r.framesDecoded);
      const j = num(r.jitter);
      if (j !== undefined) m[`${kind}_jitter_ms`] = j * 1000;
    } else if (r.type === "remote-inbound-rtp" && kind) {
      hasRtp = true;
      const f = num(r.fractionLost);
      if (f !== undefined) m[`${kind}_loss`] = f;
      const j = num(r.jitter);
      if (j !== undefined) m[`${kind}_jitter_ms`] = j * 1000;
      lost += num(r.packetsLost) ?? 0;
    } else if (r.type === "media-source" && kind === "audio") {
      const level = num(r.audioLevel);
      if (level !== undefined) m.audio_level = level;
    }
  }
  if (hasRtp) m.packets_lost = lost;
  const dt = (t - prev.t) / 1000;
  if (dt > 0 && prev.t > 0) {
    const rate = (key: string, metric: string, factor: number) => {
      const now = cur[key];
      const before = prev.counters[key];
      if (now !== undefined && before !== undefined) m[metric] = (Math.max(0, now - before) * factor) / dt;
    };
    rate("tx", "bitrate_out_kbps", 8 / 1000);
    rate("rx", "bitrate_in_kbps", 8 / 1000);
    rate("ptx", "packets_out_per_s", 1);
    rate("prx", "packets_in_per_s", 1);
    rate("msgtx", "messages_out_per_s", 1);
    rate("msgrx", "messages_in_per_s", 1);
    rate("chtx", "channel_out_kbps", 8 / 1000);
    rate("chrx", "channel_in_kbps", 8 / 1000);
    rate("videotx", "video_out_kbps", 8 / 1000);
    rate("audiotx", "audio_out_kbps", 8 / 1000);
    rate("videorx", "video_in_kbps", 8 / 1000);
    rate("audiorx", "audio_in_kbps", 8 / 1000);
    rate("frames", "fps_out", 1);
    rate("framesin", "fps_in", 1);
    rate("nack", "nack_in", 1);
  }
  prev.counters = cur;
  prev.t = t;
  for (const [k, v] of Object.entries(m)) m[k] = round(v);
  return { metrics: m, pair, dtls };
}

/** Samples one session's RTCPeerConnection and sends compact `stats` messages to the kernel. */
export class StatsSampler {
  /** The newest metrics sent (for debugging and browser tests). */
  latest: Record<string, number> = {};
  /** How many `stats` messages were sent, and how many took the comm instead of the control channel. */
  sent = 0;
  sentOverComm = 0;
  /** Wall-clock ms the last getStats() + compaction took (cost of sampling). */
  lastCostMs = 0;

  readonly #model: AnyModel;
  readonly #control: () => RTCDataChannel | null;
  #pc: RTCPeerConnection | null = null;
  /** On the relay transport: the counters to sample instead of a connection's getStats(). */
  #relay: (() => RelayCounters) | null = null;
  #session = "";
  #timer: ReturnType<typeof setTimeout> | null = null;
  #pending: StatsEvent[] = [];
  #prev = { counters: {} as Counters, t: 0 };
  #pairKey = "";
  #gen = 0;
  readonly #off: (() => void)[] = [];

  constructor(model: AnyModel, control: () => RTCDataChannel | null) {
    this.#model = model;
    this.#control = control;
  }

  intervalMs(): number {
    const v = Number(this.#model.get("stats_interval"));
    const min = DEFAULTS.stats.minIntervalMs;
    return Number.isFinite(v) && v > 0 ? Math.max(min, v) : DEFAULTS.stats.intervalMs;
  }

  /** Start sampling a new session's connection (replaces any earlier one). */
  attach(pc: RTCPeerConnection, session: string): void {
    this.detach();
    const gen = this.#gen;
    this.#pc = pc;
    this.#session = session;
    this.#prev = { counters: {}, t: 0 };
    this.#pairKey = "";
    const on = (type: string, fn: () => void) => {
      pc.addEventListener(type, fn);
      this.#off.push(() => pc.removeEventListener(type, fn));
    };
    const watchDtls = () => {
      const tr = pc.sctp?.transport ?? pc.getSenders().find((s) => s.transport)?.transport;
      if (!tr || (tr as { __rtcwWatched?: boolean }).__rtcwWatched) return;
      (tr as { __rtcwWatched?: boolean }).__rtcwWatched = true;
      this.#event("dtls", tr.state);
      const fn = () => {
        if (gen === this.#gen) this.#event("dtls", tr.state);
      };
      tr.addEventListener("statechange", fn);
      this.#off.push(() => tr.removeEventListener("statechange", fn));
    };
    this.#event("signaling", pc.signalingState);
    this.#event("gathering", pc.iceGatheringState);
    this.#event("ice", pc.iceConnectionState);
    this.#event("connection", pc.connectionState);
    on("signalingstatechange", () => {
      this.#event("signaling", pc.signalingState);
      watchDtls();
    });
    on("icegatheringstatechange", () => this.#event("gathering", pc.iceGatheringState));
    on("iceconnectionstatechange", () => this.#event("ice", pc.iceConnectionState));
    on("connectionstatechange", () => {
      this.#event("connection", pc.connectionState);
      // flush at once: a failure or the connection itself is worth not waiting an interval for
      void this.tick(gen);
    });
    // a new interval takes effect at once, not after a long old one
    const reschedule = () => {
      if (gen !== this.#gen) return;
      if (this.#timer !== null) clearTimeout(this.#timer);
      this.#schedule(gen);
    };
    this.#model.on("change:stats_interval", reschedule);
    this.#off.push(() => this.#model.off("change:stats_interval", reschedule));
    this.#schedule(gen);
  }

  /** Sample the relay transport of `session` (WebRTC gave up): metrics from the relay's own counters. */
  attachRelay(session: string, read: () => RelayCounters): void {
    this.detach();
    const gen = this.#gen;
    this.#relay = read;
    this.#session = session;
    this.#prev = { counters: {}, t: 0 };
    this.#schedule(gen);
  }

  /** Stop sampling (session ended); pending events are sent now. */
  detach(): void {
    this.#gen++;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    for (const off of this.#off.splice(0)) off();
    if (this.#pending.length && this.#pc)
      this.#send({ v: VERSION, type: "stats", session: this.#session, t: Date.now() });
    this.#pc = null;
    this.#relay = null;
  }

  #event(k: EventKind, s: string): void {
    if (!STATE_PATTERN.test(s)) return;
    this.#pending.push({ k, s, t: Date.now() });
    // bounded: a storm of transitions keeps the newest
    if (this.#pending.length > LIMITS.maxStatsEvents)
      this.#pending.splice(0, this.#pending.length - LIMITS.maxStatsEvents);
  }

  #schedule(gen: number): void {
    this.#timer = setTimeout(async () => {
      if (gen !== this.#gen) return;
      await this.tick(gen);
      if (gen === this.#gen) this.#schedule(gen);
    }, this.intervalMs());
  }

  /** Take one sample now and send it (with any pending events). */
  async tick(gen = this.#gen): Promise<void> {
    const relay = this.#relay;
    if (relay && gen === this.#gen) {
      const m = compactRelay(relay(), this.#prev, Date.now());
      if (Object.keys(m).length)
        this.#send({ v: VERSION, type: "stats", session: this.#session, t: Date.now(), m });
      return;
    }
    const pc = this.#pc;
    if (!pc || gen !== this.#gen) return;
    const t0 = performance.now();
    let result: ReturnType<typeof compact> | null = null;
    try {
      const report = await pc.getStats();
      if (gen !== this.#gen) return;
      result = compact(
        report.values() as Iterable<Report>,
        this.#prev,
        Date.now(),
        DEFAULTS.controlChannelLabel,
      );
    } catch {
      // a closed connection has no stats; events still go out
    }
    const msg: StatsMsg = { v: VERSION, type: "stats", session: this.#session, t: Date.now() };
    if (result) {
      if (result.dtls) this.#event("dtls", result.dtls);
      if (Object.keys(result.metrics).length) msg.m = result.metrics;
      const key = JSON.stringify(result.pair ?? null);
      if (result.pair && key !== this.#pairKey) {
        this.#pairKey = key;
        msg.pair = result.pair;
      }
    }
    this.lastCostMs = performance.now() - t0;
    if (msg.m || msg.pair || this.#pending.length) this.#send(msg);
  }

  #send(msg: StatsMsg): void {
    if (this.#pending.length) msg.ev = this.#pending.splice(0);
    if (msg.m) this.latest = msg.m;
    const r = validate(msg, LIMITS.maxControlBytes);
    if (!r.ok) {
      console.warn(`rtc_widgets: dropped a stats sample (${r.error})`);
      return;
    }
    const control = this.#control();
    try {
      if (control?.readyState === "open") {
        control.send(JSON.stringify(msg));
        this.sent++;
        return;
      }
    } catch {
      // closing: fall back to the comm
    }
    try {
      this.#model.send(msg);
      this.sent++;
      this.sentOverComm++;
    } catch {
      // no kernel: the sample is lost, the next one carries on
    }
  }
}

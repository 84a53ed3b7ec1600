import { describe, expect, it } from "vitest";
import protocol from "../../rtc_widgets/protocol/protocol.json";
import { DEFAULTS, LIMITS, VERSION, validate } from "../src/protocol";
import { compact, compactRelay } from "../src/stats";
import { PeerRows } from "../src/widgets/statsview";

/** A Chromium-like getStats() report of a data-channel connection at time `ms`, after `bytes` each way. */
function report(bytes: number, messages: number) {
  return [
    { id: "T01", type: "transport", selectedCandidatePairId: "CP1", dtlsState: "connected" },
    {
      id: "CP1",
      type: "candidate-pair",
      state: "succeeded",
      nominated: true,
      localCandidateId: "L1",
      remoteCandidateId: "R1",
      currentRoundTripTime: 0.0025,
      availableOutgoingBitrate: 3_000_000,
      bytesSent: bytes,
      bytesReceived: 2 * bytes,
      packetsSent: messages,
      packetsReceived: messages,
    },
    {
      id: "L1",
      type: "local-candidate",
      candidateType: "host",
      protocol: "udp",
      address: "198.18.0.2",
      port: 5000,
    },
    {
      id: "R1",
      type: "remote-candidate",
      candidateType: "prflx",
      protocol: "udp",
      address: "198.18.0.3",
      port: 6000,
    },
    {
      id: "D1",
      type: "data-channel",
      label: "chat",
      messagesSent: messages,
      messagesReceived: 0,
      bytesSent: bytes,
    },
    // the control channel carries pings and these samples: not the user's traffic
    {
      id: "D0",
      type: "data-channel",
      label: DEFAULTS.controlChannelLabel,
      messagesSent: 1e6,
      bytesSent: 1e9,
    },
    {
      id: "O1",
      type: "outbound-rtp",
      kind: "video",
      bytesSent: bytes,
      framesEncoded: messages,
      frameWidth: 640,
    },
    {
      id: "RI1",
      type: "remote-inbound-rtp",
      kind: "video",
      fractionLost: 0.25,
      packetsLost: 7,
      jitter: 0.004,
    },
    { id: "M1", type: "media-source", kind: "audio", audioLevel: 0.5 },
  ];
}

describe("compact", () => {
  it("turns a getStats report into named metrics, rates from the second sample on", () => {
    const prev = { counters: {}, t: 0 };
    const first = compact(report(0, 0), prev, 10_000, DEFAULTS.controlChannelLabel);
    expect(first.metrics).toEqual({
      rtt_ms: 2.5,
      available_out_kbps: 3000,
      frame_width: 640,
      video_loss: 0.25,
      video_jitter_ms: 4,
      audio_level: 0.5,
      packets_lost: 7,
    });
    expect(first.pair).toEqual({
      local: { type: "host", protocol: "udp", address: "198.18.0.2", port: 5000 },
      remote: { type: "prflx", protocol: "udp", address: "198.18.0.3", port: 6000 },
      state: "succeeded",
    });
    expect(first.dtls).toBe("connected");
    // 500 ms later: 125,000 bytes out = 2,000 kbit/s; 50 messages = 100/s; 50 frames = 100 fps
    const second = compact(report(125_000, 50), prev, 10_500, DEFAULTS.controlChannelLabel).metrics;
    expect(second.bitrate_out_kbps).toBe(2000);
    expect(second.bitrate_in_kbps).toBe(4000);
    expect(second.messages_out_per_s).toBe(100);
    expect(second.messages_in_per_s).toBe(0);
    expect(second.channel_out_kbps).toBe(2000);
    expect(second.video_out_kbps).toBe(2000);
    expect(second.fps_out).toBe(100);
  });

  it("builds a stats message that the shared schema accepts within the control-channel limit", () => {
    const prev = { counters: {}, t: 0 };
    compact(report(0, 0), prev, 1, DEFAULTS.controlChannelLabel);
    const { metrics, pair } = compact(report(1000, 5), prev, 1001, DEFAULTS.controlChannelLabel);
    const msg = {
      v: VERSION,
      type: "stats",
      session: "abc",
      t: Date.now(),
      m: metrics,
      pair,
      ev: [{ k: "ice", s: "checking", t: 1 }],
    };
    const r = validate(msg, LIMITS.maxControlBytes);
    expect(r.ok).toBe(true);
    expect(validate({ ...msg, m: { "Bad-Name": 1 } }, LIMITS.maxControlBytes).ok).toBe(false);
    expect(validate({ ...msg, ev: [{ k: "nope", s: "x", t: 1 }] }, LIMITS.maxControlBytes).ok).toBe(false);
  });
});

function block(rows: number[][]): Float64Array {
  // rows of [seq, t, side, ...metrics] -> column-major, like rtc_widgets.widgets.statsview.encode_rows
  const n = rows.length;
  const width = rows[0]?.length ?? 3;
  const out = new Float64Array(width * n);
  rows.forEach((r, j) => {
    r.forEach((v, c) => {
      out[c * n + j] = v;
    });
  });
  return out;
}

describe("PeerRows", () => {
  it("waits for its snapshot, then applies rows once each, aligned by metric", () => {
    const rows = new PeerRows();
    rows.add(["rtt_ms"], block([[2, 101, 0, 2.0]]), [], false); // before the snapshot: buffered
    expect(rows.t).toEqual([]);
    rows.add(
      ["rtt_ms"],
      block([
        [1, 100, 0, 1.0],
        [2, 101, 0, 2.0],
      ]),
      [[99, "browser", "ice", "new"]],
      true,
    );
    expect(rows.seq).toEqual([1, 2]); // the buffered seq 2 was already in the snapshot
    rows.add(["fps_in"], block([[3, 102, 1, 30]]), [[99, "browser", "ice", "new"]], false);
    expect(rows.cols.get("rtt_ms")).toEqual([1, 2, null]);
    expect(rows.cols.get("fps_in")).toEqual([null, null, 30]);
    expect(rows.events).toHaveLength(1); // deduplicated
    const rtt = { side: "browser" as const, metric: "rtt_ms", label: "", color: "" };
    expect(rows.data([rtt], 100.5, 200)).toEqual([[101], [2]]);
  });

  it("keeps at most ten minutes of rows", () => {
    const rows = new PeerRows();
    rows.add([], block([[1, 0, 0]]), [], true);
    rows.add(
      [],
      block([
        [2, 500, 0],
        [3, 1000, 0],
      ]),
      [],
      false,
    );
    expect(rows.t).toEqual([500, 1000]);
  });
});

describe("compactRelay", () => {
  it("turns the relay's cumulative counters into the same metrics as getStats gives", () => {
    const prev = { counters: {}, t: 0 };
    const zero = {
      framesSent: 0,
      videoBytesSent: 0,
      audioBytesSent: 0,
      framesReceived: 0,
      videoBytesReceived: 0,
      audioBytesReceived: 0,
      messagesSent: 0,
      messagesReceived: 0,
      bytesSent: 0,
      bytesReceived: 0,
    };
    expect(compactRelay(zero, prev, 10_000)).toEqual({}); // a rate needs two samples
    const m = compactRelay(
      {
        ...zero,
        framesSent: 30,
        videoBytesSent: 125_000,
        audioBytesSent: 8_000,
        messagesSent: 4,
        bytesSent: 1000,
      },
      prev,
      12_000,
    );
    expect(m).toMatchObject({
      fps_out: 15,
      video_out_kbps: 500,
      audio_out_kbps: 32,
      messages_out_per_s: 2,
      channel_out_kbps: 4,
      bitrate_out_kbps: 536,
    });
    expect(m).not.toHaveProperty("fps_in"); // nothing ever came in: no row of zeros
    expect(m).not.toHaveProperty("bitrate_in_kbps");
    const r = validate({ v: VERSION, type: "stats", t: 12_000, m }, LIMITS.maxControlBytes);
    expect(r.ok).toBe(true);
    expect(Object.keys(m).every((k) => k in protocol.statsMetrics)).toBe(true);
  });
});

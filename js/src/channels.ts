// How the peer's pieces are configured from the model's traits, and the control channel's ping responder.
import { type CandidateInit, parseControl, pongMsg } from "./protocol";

/** The traits that shape a connection and its user data channel. */
export interface ConnectionTraits {
  label: string;
  ordered: boolean;
  max_retransmits: number | null;
  max_packet_life_time: number | null;
  protocol: string;
  ice_servers: RTCIceServer[];
  ice_transport_policy: RTCIceTransportPolicy;
}

/** RTCConfiguration from the traits. Unknown keys and the nulls Python sends for absent ones are dropped. */
export function rtcConfiguration(
  t: Pick<ConnectionTraits, "ice_servers" | "ice_transport_policy">,
): RTCConfiguration {
  const servers = Array.isArray(t.ice_servers) ? t.ice_servers : [];
  return {
    iceServers: servers.map((s) => {
      const out: RTCIceServer = { urls: s.urls };
      if (typeof s.username === "string") out.username = s.username;
      if (typeof s.credential === "string") out.credential = s.credential;
      return out;
    }),
    iceTransportPolicy: t.ice_transport_policy === "relay" ? "relay" : "all",
  };
}

/** RTCDataChannelInit for the user channel: the partial-reliability options only when set. */
export function userChannelInit(t: ConnectionTraits): RTCDataChannelInit {
  const init: RTCDataChannelInit = { ordered: t.ordered !== false };
  if (t.max_retransmits !== null && t.max_retransmits !== undefined) init.maxRetransmits = t.max_retransmits;
  if (t.max_packet_life_time !== null && t.max_packet_life_time !== undefined) {
    init.maxPacketLifeTime = t.max_packet_life_time;
  }
  if (t.protocol) init.protocol = t.protocol;
  return init;
}

/** A local candidate as the schema wants it: exactly the RTCIceCandidateInit keys. */
export function candidateInit(c: RTCIceCandidate): CandidateInit {
  const j = c.toJSON();
  const out: CandidateInit = { candidate: j.candidate ?? c.candidate };
  if (j.sdpMid !== undefined) out.sdpMid = j.sdpMid;
  if (j.sdpMLineIndex !== undefined) out.sdpMLineIndex = j.sdpMLineIndex;
  if (j.usernameFragment !== undefined) out.usernameFragment = j.usernameFragment;
  return out;
}

/**
 * The kernel measures round trips with pings on the control channel; answer each at once with a pong carrying
 * the same seq and t. Anything invalid or oversized is ignored: the probe is best-effort.
 */
export function answerPing(control: RTCDataChannel, data: unknown): void {
  const r = parseControl(data);
  if (!r.ok || r.msg.type !== "ping") return;
  try {
    control.send(JSON.stringify(pongMsg(r.msg.seq, r.msg.t)));
  } catch {
    // The channel is closing; the kernel will time the probe out.
  }
}

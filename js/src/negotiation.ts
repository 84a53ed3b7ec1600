// One session's RTCPeerConnection, browser side: create it from the traits, open the control and user channels,
// follow ICE and connection state, capture first when the widget sends media, then offer. The browser offers
// and trickles its candidates; the kernel answers (kernelmessages.ts applies the answer).
import { answerPing, type ConnectionTraits, candidateInit, userChannelInit } from "./channels";
import { errText } from "./format";
import { type LocalMedia, type MediaFailure, mediaTraitsOf } from "./media";
import { addOutputTransceiver, type OutputKind, streamOfTrackEvent } from "./output";
import type { PeerHost, PeerModel } from "./peertypes";
import { DEFAULTS, offerMsg } from "./protocol";
import type { Trickle } from "./trickle";
import { wireChannel } from "./userchannel";

/** The traits that shape the connection and its user channel, as the model holds them now. */
export function connectionTraits(m: PeerModel): ConnectionTraits {
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

/** `create(config)`, or null (and the peer failed, with what to do) when this browser cannot do WebRTC. */
export function createConnection(host: PeerHost, create: () => RTCPeerConnection): RTCPeerConnection | null {
  try {
    return create();
  } catch (e) {
    host.fail(
      "browser-error",
      `This browser could not create a WebRTC connection (${errText(e)}). ` +
        "Check that WebRTC is not disabled by a browser policy or extension, or use a current Chrome, Firefox or Safari.",
    );
    return null;
  }
}

/**
 * The control channel (answering the kernel's pings) and, when `withUserChannel`, the user's channel, set on
 * the peer. False (and the peer failed) when the browser refused the channel options.
 */
export function openChannels(
  host: PeerHost,
  gen: number,
  pc: RTCPeerConnection,
  withUserChannel: boolean,
): boolean {
  const peer = host.peer;
  try {
    // The control channel first, so it gets stream id 0 on every session.
    const control = pc.createDataChannel(DEFAULTS.controlChannelLabel, { ordered: true });
    control.binaryType = "arraybuffer";
    control.addEventListener("message", (e) => {
      if (host.current(gen)) answerPing(control, (e as MessageEvent).data);
    });
    peer.control = control;

    const traits = connectionTraits(host.model);
    if (withUserChannel) {
      const channel = pc.createDataChannel(String(traits.label ?? ""), userChannelInit(traits));
      channel.binaryType = "arraybuffer";
      wireChannel(host, gen, channel);
      peer.channel = channel;
    }
  } catch (e) {
    host.fail(
      "browser-error",
      `The browser refused the data channel options (${errText(e)}). ` +
        "Set at most one of max_retransmits and max_packet_life_time, and keep label and protocol short.",
    );
    return false;
  }
  return true;
}

/** Receive the kernel's media (VideoOutput, AudioOutput), trickle local candidates, follow ICE and connection state. */
export function wireConnection(
  host: PeerHost,
  gen: number,
  pc: RTCPeerConnection,
  trickle: Trickle,
  output: OutputKind | null,
): void {
  const peer = host.peer;
  if (output) {
    addOutputTransceiver(pc, output);
    pc.addEventListener("track", (e) => {
      if (host.current(gen)) peer.setRemoteStream(streamOfTrackEvent(e as RTCTrackEvent, peer.remoteStream));
    });
  }

  pc.addEventListener("icecandidate", (e) => {
    if (!host.current(gen)) return;
    const c = (e as RTCPeerConnectionIceEvent).candidate;
    // A null candidate (or an empty one, in older browsers) marks the end of gathering.
    if (c?.candidate) trickle.candidate(candidateInit(c));
    else trickle.end();
  });
  pc.addEventListener("icegatheringstatechange", () => {
    if (host.current(gen) && pc.iceGatheringState === "complete") trickle.end();
  });
  pc.addEventListener("iceconnectionstatechange", () => {
    if (!host.current(gen)) return;
    if (pc.iceConnectionState === "failed") iceFailed(host);
    host.notify();
  });
  pc.addEventListener("connectionstatechange", () => {
    if (!host.current(gen)) return;
    if (pc.connectionState === "failed") iceFailed(host);
    // Media and output sessions have no user channel: connected is open.
    if (pc.connectionState === "connected" && (peer.media || output)) peer.status = "open";
    host.notify();
  });
}

function iceFailed(host: PeerHost): void {
  host.fail(
    "ice-failed",
    "No network path between this browser and the kernel was found (ICE failed). If the kernel runs on " +
      "another machine, behind NAT or in a container, give both sides a STUN/TURN server with ice_servers=[...].",
  );
}

/** Capture first (the browser may ask the user), then offer with the tracks. */
export async function captureThenNegotiate(
  host: PeerHost,
  gen: number,
  pc: RTCPeerConnection,
  trickle: Trickle,
  media: LocalMedia,
): Promise<void> {
  host.peer.media = media;
  try {
    await media.capture(mediaTraitsOf(host.model));
  } catch (e) {
    if (host.current(gen)) mediaFailed(host, trickle, e as MediaFailure);
    media.stop();
    return;
  }
  if (!host.current(gen)) {
    media.stop();
    return;
  }
  media.attach(pc, (failure) => {
    if (host.current(gen)) mediaFailed(host, trickle, failure);
  });
  host.notify();
  await negotiate(host, gen, pc, trickle);
}

/**
 * Capture failed or a track ended: tell the kernel, release the device, close this session's connection.
 * Only called for the current generation, whose candidates `trickle` carries.
 */
function mediaFailed(host: PeerHost, trickle: Trickle, f: MediaFailure): void {
  const peer = host.peer;
  host.fail(f.code ?? "media-error", f.text ?? String(f));
  peer.media?.stop();
  trickle.stop();
  try {
    peer.pc?.close();
  } catch {
    // already closed
  }
  host.notify();
}

/** Create the offer, send it at once, and let the trickle release the candidates that waited for it. */
export async function negotiate(
  host: PeerHost,
  gen: number,
  pc: RTCPeerConnection,
  trickle: Trickle,
): Promise<void> {
  const peer = host.peer;
  let sdp: string;
  try {
    const offer = await pc.createOffer();
    if (!host.current(gen)) return;
    await pc.setLocalDescription(offer);
    if (!host.current(gen)) return;
    sdp = offer.sdp ?? pc.localDescription?.sdp ?? "";
  } catch (e) {
    if (host.current(gen)) {
      host.fail(
        "browser-error",
        `The browser could not create a WebRTC offer (${errText(e)}). Reload the page; if it persists, ` +
          "check that WebRTC is allowed in this browser.",
      );
    }
    return;
  }
  trickle.gatheringStarted();
  // Sent at once: the kernel can start its side while the browser is still gathering.
  if (!host.signal(offerMsg(peer.session, sdp))) {
    host.fail("too-large", "The browser's offer is too large for the signaling channel; use fewer channels.");
    return;
  }
  peer.status = "offered";
  trickle.offerSent();
  if (pc.iceGatheringState === "complete") trickle.end();
  host.notify();
}

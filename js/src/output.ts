// VideoOutput and AudioOutput: media the kernel sends to the browser. The browser offers a recvonly transceiver
// (aiortc's addTrack reuses it for the answer) and keeps what arrives as the peer's remoteStream; another transport
// (the relay) can set that stream instead with peer.setRemoteStream().

export type OutputKind = "video-output" | "audio-output";

const OUTPUT_KINDS: Record<OutputKind, "video" | "audio"> = {
  "video-output": "video",
  "audio-output": "audio",
};

export function outputKind(kind: unknown): OutputKind | null {
  return typeof kind === "string" && kind in OUTPUT_KINDS ? (kind as OutputKind) : null;
}

/** The track kind an output widget receives. */
export function outputTrackKind(kind: OutputKind): "video" | "audio" {
  return OUTPUT_KINDS[kind];
}

/** Offer to receive (never send) the output's media kind. */
export function addOutputTransceiver(pc: RTCPeerConnection, kind: OutputKind): void {
  pc.addTransceiver(outputTrackKind(kind), { direction: "recvonly" });
}

/**
 * The stream a `track` event belongs to: the kernel's stream (aiortc signals its msid), else `current` with the
 * track added, else a new stream holding it. `makeStream` is injected in tests (no MediaStream in Node).
 */
export function streamOfTrackEvent(
  e: Pick<RTCTrackEvent, "track" | "streams">,
  current: MediaStream | null,
  makeStream: (tracks: MediaStreamTrack[]) => MediaStream = (tracks) => new MediaStream(tracks),
): MediaStream {
  const stream = e.streams?.[0];
  if (stream) return stream;
  if (current) {
    if (!current.getTracks().includes(e.track)) current.addTrack(e.track);
    return current;
  }
  return makeStream([e.track]);
}

/** The level (0..1) of the audio being received, from the browser's inbound-rtp stats; null when unknown. */
export async function receivingAudioLevel(pc: RTCPeerConnection): Promise<number | null> {
  const stats = await pc.getStats();
  let level: number | null = null;
  stats.forEach((s: { type?: string; kind?: string; audioLevel?: number }) => {
    if (s.type === "inbound-rtp" && s.kind === "audio" && typeof s.audioLevel === "number")
      level = s.audioLevel;
  });
  return level;
}

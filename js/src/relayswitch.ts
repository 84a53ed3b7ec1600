// The switch to the relay transport, media side: once the kernel gives up on WebRTC for a session, the captured
// stream is encoded and sent over the signaling path (bus or comm), and the kernel's media is decoded from it.
import { type OutputKind, outputTrackKind } from "./output";
import type { PeerHost } from "./peertypes";
import { RelayMedia } from "./relay";

/**
 * Carry generation `gen`'s media over the relay: send `stream` (Camera, Screen, Microphone) and/or receive the
 * kernel's `output` (VideoOutput, AudioOutput). Sets the peer's relayMedia and opens the session.
 */
export function startRelayMedia(
  host: PeerHost,
  gen: number,
  stream: MediaStream | null,
  output: OutputKind | null,
  buffered: () => number,
): void {
  const peer = host.peer;
  const media = new RelayMedia({
    session: peer.session,
    send: (m, payload) => host.current(gen) && host.signal(m, payload),
    buffered,
    fail: (text) => {
      if (host.current(gen)) host.report("media-error", text);
    },
  });
  peer.relayMedia = media;
  peer.status = "open";
  if (output) {
    // the kernel's media, decoded here (WebCodecs or JPEG/PCM), shown by the same view as a WebRTC stream
    media.receiveKinds([outputTrackKind(output)]);
    peer.setRemoteStream(media.streams()[0] ?? null);
  }
  if (stream)
    void media
      .send(stream, {
        codec: String(host.model.get("relay_codec") ?? "auto"),
        fps: Number(host.model.get("frame_rate")) || undefined,
      })
      .then(() => {
        if (host.current(gen)) host.notify();
      });
}

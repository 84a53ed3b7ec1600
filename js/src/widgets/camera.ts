// The Camera and Screen views: a live preview of what is being sent (mirrored for a user-facing camera, like a
// mirror), plus the shared frame (badge, device picker, start/stop, errors, kernel counters).
import { formatCount } from "../format";
import type { MediaKind } from "../media";
import type { BrowserPeer, PeerModel } from "../peer";
import { mutedVideo, setText } from "./dom";
import { mediaFrame } from "./mediaview";

export function mirrored(kind: MediaKind, facingMode: unknown): boolean {
  return kind === "camera" && (facingMode === "user" || facingMode === "" || facingMode == null);
}

function renderVideo(kind: MediaKind, model: PeerModel, el: HTMLElement, peer: BrowserPeer): () => void {
  let video: HTMLVideoElement;
  const draw = () => {
    const stream = peer.media?.stream ?? null;
    if (video.srcObject !== stream) {
      video.srcObject = stream;
      if (stream) void video.play().catch(() => undefined); // muted: allowed without a gesture
    }
    video.classList.toggle("rtcw-mirror", mirrored(kind, model.get("facing_mode")));
    video.hidden = !stream;
    const fps = Number(model.get("fps")) || 0;
    const w = Number(model.get("frame_width")) || 0;
    const hgt = Number(model.get("frame_height")) || 0;
    setText(
      frame.stats,
      `kernel: ${formatCount(Number(model.get("frames_received")) || 0)} frames` +
        `${w ? ` · ${w}×${hgt}` : ""} · ${fps.toFixed(1)} fps · ` +
        `${formatCount(Number(model.get("frames_dropped")) || 0)} dropped by slow consumers`,
    );
  };
  const frame = mediaFrame(kind, model, el, peer, () => draw());
  video = mutedVideo("rtcw-preview", frame.body);
  draw();
  return () => {
    video.srcObject = null;
    frame.cleanup();
  };
}

export function renderCamera(model: PeerModel, el: HTMLElement, peer: BrowserPeer): () => void {
  return renderVideo("camera", model, el, peer);
}

export function renderScreen(model: PeerModel, el: HTMLElement, peer: BrowserPeer): () => void {
  return renderVideo("screen", model, el, peer);
}

// The VideoOutput and AudioOutput views: what the kernel sends (peer.remoteStream), in a <video> or an <audio>,
// plus the shared frame (badge, start/stop, errors, kernel counters). Browsers may refuse to start sound without
// a click on the page: the audio view then shows a button that starts it.
import { formatCount } from "../format";
import { receivingAudioLevel } from "../output";
import type { BrowserPeer, PeerModel } from "../peer";
import { h, mutedVideo, setText } from "./dom";
import { mediaFrame } from "./mediaview";
import { type LevelMeter, levelMeter } from "./meter";

/** Point a media element at `stream` and start it; resolves false when the browser refused to autoplay it. */
export async function attachStream(media: HTMLMediaElement, stream: MediaStream | null): Promise<boolean> {
  media.srcObject = stream;
  if (!stream) return true;
  try {
    await media.play();
    return true;
  } catch {
    return false; // NotAllowedError: no user gesture yet (an AbortError when replaced: the next attach retries)
  }
}

export function renderVideoOutput(model: PeerModel, el: HTMLElement, peer: BrowserPeer): () => void {
  let video: HTMLVideoElement;
  const draw = () => {
    if (video.srcObject !== peer.remoteStream) void attachStream(video, peer.remoteStream);
    video.hidden = !peer.remoteStream;
    const w = Number(model.get("frame_width")) || 0;
    const hgt = Number(model.get("frame_height")) || 0;
    setText(
      frame.stats,
      `kernel: ${formatCount(Number(model.get("frames_sent")) || 0)} frames sent` +
        `${w ? ` · ${w}×${hgt}` : ""} · ${(Number(model.get("fps")) || 0).toFixed(1)} fps · ` +
        `${formatCount(Number(model.get("frames_dropped")) || 0)} replaced by newer frames`,
    );
  };
  const frame = mediaFrame("video-output", model, el, peer, () => draw());
  video = mutedVideo("rtcw-preview rtcw-output-video", frame.body);
  draw();
  return () => {
    video.srcObject = null;
    frame.cleanup();
  };
}

export function renderAudioOutput(model: PeerModel, el: HTMLElement, peer: BrowserPeer): () => void {
  let audio: HTMLAudioElement;
  let unlock: HTMLButtonElement;
  let meter: LevelMeter;
  let blocked = false;
  const draw = () => {
    if (audio.srcObject !== peer.remoteStream) {
      void attachStream(audio, peer.remoteStream).then((playing) => {
        blocked = !playing;
        frame.schedule();
      });
    }
    unlock.hidden = !blocked || !peer.remoteStream;
    meter.draw();
    setText(
      frame.stats,
      `kernel: ${((Number(model.get("samples_sent")) || 0) / 48000).toFixed(1)} s played · ` +
        `${(Number(model.get("queued_seconds")) || 0).toFixed(1)} s queued · ` +
        `${formatCount(Number(model.get("samples_dropped")) || 0)} samples dropped (queue full)`,
    );
  };
  const frame = mediaFrame("audio-output", model, el, peer, () => draw());
  audio = h("audio", "rtcw-output-audio", "", frame.body);
  audio.autoplay = true;
  unlock = h("button", "rtcw-button rtcw-unlock", "▶ Click to play sound", frame.body);
  unlock.type = "button";
  unlock.title = "The browser blocked sound until you click on the page";
  unlock.hidden = true;
  unlock.addEventListener("click", () => {
    audio.play().then(
      () => {
        blocked = false;
        frame.schedule();
      },
      () => undefined,
    );
  });
  meter = levelMeter(
    frame.body,
    "received sound level",
    () => (peer.pc && peer.remoteStream ? receivingAudioLevel(peer.pc) : null),
    () => frame.schedule(),
  );
  draw();
  return () => {
    meter.stop();
    audio.srcObject = null;
    frame.cleanup();
  };
}

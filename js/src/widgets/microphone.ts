// The Microphone view: a level meter of what is being sent (from the browser's media-source stats, so it needs
// no AudioContext and works before any click), plus the shared frame.
import { formatCount } from "../format";
import { sendingAudioLevel } from "../media";
import type { BrowserPeer, PeerModel } from "../peer";
import { DEFAULTS } from "../protocol";
import { h, setText } from "./dom";
import { mediaFrame } from "./mediaview";

/** Meter position 0..1 for an audio level 0..1: logarithmic (-60 dBFS .. 0 dBFS), as ears hear it. */
export function meterPosition(level: number): number {
  if (!(level > 0)) return 0;
  const db = 20 * Math.log10(level);
  return Math.max(0, Math.min(1, (db + 60) / 60));
}

export function renderMicrophone(model: PeerModel, el: HTMLElement, peer: BrowserPeer): () => void {
  let level = 0;
  let bar: HTMLElement;
  let meter: HTMLElement;
  const draw = () => {
    bar.style.width = `${(meterPosition(level) * 100).toFixed(1)}%`;
    meter.title = level > 0 ? `${(20 * Math.log10(level)).toFixed(1)} dBFS` : "silence";
    meter.setAttribute("aria-valuenow", String(Math.round(meterPosition(level) * 100)));
    const rate = Number(model.get("sample_rate")) || 0;
    const samples = Number(model.get("samples_received")) || 0;
    setText(
      frame.stats,
      `kernel: ${rate ? (samples / rate).toFixed(1) : "0"} s received at ${formatCount(rate)} Hz · ` +
        `${formatCount(Number(model.get("samples_dropped")) || 0)} samples lost by slow consumers`,
    );
  };
  const frame = mediaFrame("microphone", model, el, peer, () => draw());
  meter = h("div", "rtcw-meter", "", frame.body);
  meter.setAttribute("role", "meter");
  meter.setAttribute("aria-label", "microphone level");
  meter.setAttribute("aria-valuemin", "0");
  meter.setAttribute("aria-valuemax", "100");
  bar = h("div", "rtcw-meter-bar", "", meter);

  let busy = false;
  const timer = setInterval(async () => {
    const pc = peer.pc;
    if (busy || !pc || !peer.media) {
      if (level !== 0 && !peer.media) {
        level = 0;
        frame.schedule();
      }
      return;
    }
    busy = true;
    try {
      level = (await sendingAudioLevel(pc)) ?? 0;
      frame.schedule();
    } catch {
      // the connection closed between two polls
    } finally {
      busy = false;
    }
  }, DEFAULTS.media.meterIntervalMs);
  draw();
  return () => {
    clearInterval(timer);
    frame.cleanup();
  };
}

// A sound level meter for the Microphone and AudioOutput views, polled from the browser's RTP stats (no
// AudioContext needed, so it works before any click on the page).
import { DEFAULTS } from "../protocol";
import { h } from "./dom";

/** Meter position 0..1 for an audio level 0..1: logarithmic (-60 dBFS .. 0 dBFS), as ears hear it. */
export function meterPosition(level: number): number {
  if (!(level > 0)) return 0;
  const db = 20 * Math.log10(level);
  return Math.max(0, Math.min(1, (db + 60) / 60));
}

export interface LevelMeter {
  /** Draw the latest level (call from the view's draw). */
  draw(): void;
  stop(): void;
}

/**
 * A meter labelled `label` in `parent`. Every `meterIntervalMs` it calls `read()`: null when there is nothing to
 * measure (the level falls to 0), else a promise of the level 0..1. `changed` asks the view to redraw.
 */
export function levelMeter(
  parent: HTMLElement,
  label: string,
  read: () => Promise<number | null> | null,
  changed: () => void,
): LevelMeter {
  let level = 0;
  let busy = false;
  const meter = h("div", "rtcw-meter", "", parent);
  meter.setAttribute("role", "meter");
  meter.setAttribute("aria-label", label);
  meter.setAttribute("aria-valuemin", "0");
  meter.setAttribute("aria-valuemax", "100");
  const bar = h("div", "rtcw-meter-bar", "", meter);
  const timer = setInterval(async () => {
    if (busy) return;
    const pending = read();
    if (!pending) {
      if (level !== 0) {
        level = 0;
        changed();
      }
      return;
    }
    busy = true;
    try {
      level = (await pending) ?? 0;
      changed();
    } catch {
      // the connection closed between two polls
    } finally {
      busy = false;
    }
  }, DEFAULTS.media.meterIntervalMs);
  return {
    draw: () => {
      bar.style.width = `${(meterPosition(level) * 100).toFixed(1)}%`;
      meter.title = level > 0 ? `${(20 * Math.log10(level)).toFixed(1)} dBFS` : "silence";
      meter.setAttribute("aria-valuenow", String(Math.round(meterPosition(level) * 100)));
    },
    stop: () => clearInterval(timer),
  };
}

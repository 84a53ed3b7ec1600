// The Microphone view: a level meter of what is being sent (from the browser's media-source stats, so it needs
// no AudioContext and works before any click), plus the shared frame.
import { formatCount } from "../format";
import { sendingAudioLevel } from "../media";
import type { BrowserPeer, PeerModel } from "../peer";
import { setText } from "./dom";
import { mediaFrame } from "./mediaview";
import { type LevelMeter, levelMeter } from "./meter";

export { meterPosition } from "./meter";

export function renderMicrophone(model: PeerModel, el: HTMLElement, peer: BrowserPeer): () => void {
  let meter: LevelMeter;
  const draw = () => {
    meter.draw();
    const rate = Number(model.get("sample_rate")) || 0;
    const samples = Number(model.get("samples_received")) || 0;
    setText(
      frame.stats,
      `kernel: ${rate ? (samples / rate).toFixed(1) : "0"} s received at ${formatCount(rate)} Hz · ` +
        `${formatCount(Number(model.get("samples_dropped")) || 0)} samples lost by slow consumers`,
    );
  };
  const frame = mediaFrame("microphone", model, el, peer, () => draw());
  meter = levelMeter(
    frame.body,
    "microphone level",
    () => (peer.pc && peer.media ? sendingAudioLevel(peer.pc) : null),
    () => frame.schedule(),
  );
  draw();
  return () => {
    meter.stop();
    frame.cleanup();
  };
}

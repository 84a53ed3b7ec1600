// What the Camera, Screen, Microphone, VideoOutput and AudioOutput views share: state badge, title, transport chip,
// error lines, a device picker (capturing kinds), a start/stop button and a line of kernel-side counters. Each view
// adds its own body (preview, player or meter).
import { listDevices, type MediaKind } from "../media";
import type { OutputKind } from "../output";
import type { BrowserPeer, PeerModel, PeerTraits } from "../peer";
import { drawState, makeBadge } from "./badge";
import { h, setText } from "./dom";
import { injectStyle } from "./style";

const TITLES: Record<MediaKind | OutputKind, string> = {
  camera: "Camera",
  screen: "Screen",
  microphone: "Microphone",
  "video-output": "Video output",
  "audio-output": "Audio output",
};
const SHOWN: (keyof PeerTraits)[] = [
  "connection_state",
  "ice_connection_state",
  "transport",
  "error",
  "frames_received",
  "frames_dropped",
  "fps",
  "frame_width",
  "frame_height",
  "samples_received",
  "samples_dropped",
  "frames_sent",
  "samples_sent",
  "queued_seconds",
  "device_id",
  "facing_mode",
];

export interface MediaFrame {
  root: HTMLElement;
  /** Where the view puts its preview or meter. */
  body: HTMLElement;
  /** Kernel-side counters, one short line. */
  stats: HTMLElement;
  /** Redraw soon (batched into one animation frame). */
  schedule: () => void;
  cleanup: () => void;
}

/** True while a session is starting or running (the button then stops it). */
function running(peer: BrowserPeer): boolean {
  return ["starting", "offered", "connecting", "open"].includes(peer.status);
}

/** The shared frame; `draw` is called (batched) after any change of the model or the peer. */
export function mediaFrame(
  kind: MediaKind | OutputKind,
  model: PeerModel,
  el: HTMLElement,
  peer: BrowserPeer,
  draw: () => void,
): MediaFrame {
  injectStyle(el.ownerDocument);
  // the kinds with a device to pick (screen sharing and outputs have none)
  const device = kind === "camera" || kind === "microphone" ? kind : null;
  const root = h("div", `rtcw rtcw-media rtcw-${kind}`, "", el);
  const head = h("div", "rtcw-head", "", root);
  const badge = makeBadge(head);
  h("span", "rtcw-title", TITLES[kind], head);
  const transport = h("span", "rtcw-chip rtcw-transport", "", head);
  transport.title = "transport in use";
  const picker = h("select", "rtcw-devices", "", head);
  picker.setAttribute("aria-label", `${TITLES[kind]} device`);
  picker.hidden = !device;
  const button = h("button", "rtcw-button rtcw-startstop", "", head);
  button.type = "button";

  const errors = h("div", "rtcw-errors", "", root);
  errors.setAttribute("role", "alert");
  const kernelError = h("div", "rtcw-error rtcw-kernel-error", "", errors);
  h("b", "", "Kernel: ", kernelError);
  const kernelText = h("span", "", "", kernelError);
  const browserError = h("div", "rtcw-error rtcw-browser-error", "", errors);
  h("b", "", "Browser: ", browserError);
  const browserText = h("span", "", "", browserError);

  const body = h("div", "rtcw-body", "", root);
  const stats = h("div", "rtcw-medstats", "", root);

  button.addEventListener("click", () => {
    if (running(peer)) peer.close(true);
    else peer.start();
  });
  picker.addEventListener("change", () => {
    model.set("device_id", picker.value);
    model.save_changes(); // the peer restarts on change:device_id
  });

  let listed: string | null = null;
  const refreshDevices = async () => {
    if (!device) return;
    const devices = await listDevices(device);
    const key = devices.map((d) => `${d.deviceId}\u0000${d.label}`).join("\u0001");
    if (key === listed) return;
    listed = key;
    const options = [new Option("default device", "")];
    devices.forEach((d, i) => {
      options.push(new Option(d.label || `${TITLES[device].toLowerCase()} ${i + 1}`, d.deviceId));
    });
    picker.replaceChildren(...options);
    picker.value = String(model.get("device_id") || "");
  };

  let frame = 0;
  let lastStatus = "";
  const redraw = () => {
    frame = 0;
    drawState(badge, transport, model, peer);
    const kErr = String(model.get("error") || "");
    kernelError.hidden = !kErr;
    setText(kernelText, kErr);
    browserError.hidden = !peer.error;
    setText(browserText, peer.error);
    errors.hidden = !kErr && !peer.error;
    setText(button, running(peer) ? "Stop" : "Start");
    if (peer.status !== lastStatus) {
      lastStatus = peer.status;
      if (peer.status === "open" && device) void refreshDevices(); // labels appear after a grant
    }
    if (picker.value !== String(model.get("device_id") || ""))
      picker.value = String(model.get("device_id") || "");
    draw();
  };
  const schedule = () => {
    if (frame === 0) frame = requestAnimationFrame(redraw);
  };
  for (const name of SHOWN) model.on(`change:${name}`, schedule);
  const unsubscribe = peer.subscribe(schedule);
  if (device) void refreshDevices();
  schedule(); // after the view has built its body

  return {
    root,
    body,
    stats,
    schedule,
    cleanup: () => {
      if (frame) cancelAnimationFrame(frame);
      frame = 0;
      unsubscribe();
      for (const name of SHOWN) model.off(`change:${name}`, schedule);
      root.remove();
    },
  };
}

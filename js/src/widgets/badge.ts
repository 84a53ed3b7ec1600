// The connection-state badge and transport chip every peer view shows.
import type { BrowserPeer, PeerModel } from "../peer";
import { h, setText } from "./dom";

export interface StateBadge {
  badge: HTMLSpanElement;
  text: HTMLSpanElement;
}

export function makeBadge(parent: HTMLElement): StateBadge {
  const badge = h("span", "rtcw-badge", "", parent);
  h("span", "rtcw-dot", "", badge);
  return { badge, text: h("span", "", "", badge) };
}

/** After a local close or failure the browser knows first; otherwise the kernel's view is the truth. */
export function drawState(b: StateBadge, transport: HTMLElement, model: PeerModel, peer: BrowserPeer): void {
  const kernelState = String(model.get("connection_state") || "new");
  const state = peer.status === "closed" || peer.status === "failed" ? peer.status : kernelState;
  b.badge.className = `rtcw-badge rtcw-state-${state.replace(/[^a-z-]/g, "")}`;
  setText(b.text, state);
  b.badge.title = `kernel: ${kernelState} · ICE: ${model.get("ice_connection_state") || "new"} · browser: ${peer.status}`;
  setText(transport, String(model.get("transport") || "webrtc"));
}

// `globalThis.rtcWidgets.peers`: every running BrowserPeer by peer_id, for debugging and the browser tests.
import type { BrowserPeer } from "./peer";

export interface PeerRegistry {
  peers: Map<string, BrowserPeer>;
}

/** `globalThis.rtcWidgets`: running peers by peer_id, for debugging and browser tests. */
export function registry(): PeerRegistry {
  const g = globalThis as { rtcWidgets?: Partial<PeerRegistry> };
  if (!g.rtcWidgets) g.rtcWidgets = {};
  if (!(g.rtcWidgets.peers instanceof Map)) g.rtcWidgets.peers = new Map();
  return g.rtcWidgets as PeerRegistry;
}

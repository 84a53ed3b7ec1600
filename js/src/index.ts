// anywidget entry point shared by every rtc_widgets widget; the model's `_kind` trait picks the view.
// `initialize` runs once per model and owns the BrowserPeer; `render` runs per view and only draws.
import type { Initialize, Render } from "@anywidget/types";
import { BrowserPeer, type PeerModel, type PeerTraits } from "./peer";
import { renderCamera, renderScreen } from "./widgets/camera";
import { renderDataChannel } from "./widgets/datachannel";
import { renderInspector } from "./widgets/inspector";
import { renderMicrophone } from "./widgets/microphone";
import { renderAudioOutput, renderVideoOutput } from "./widgets/output";

type KindView = (model: PeerModel, el: HTMLElement, peer: BrowserPeer) => () => void;

const VIEWS: Record<string, KindView> = {
  datachannel: renderDataChannel,
  camera: renderCamera,
  screen: renderScreen,
  microphone: renderMicrophone,
  "video-output": renderVideoOutput,
  "audio-output": renderAudioOutput,
};

/** The peer of each live model, by peer_id: how a view finds the peer its model's initialize created. */
const controllers = new Map<string, BrowserPeer>();

function peerFor(model: PeerModel): BrowserPeer {
  const id = String(model.get("peer_id") ?? "");
  let peer = controllers.get(id);
  if (!peer) {
    // Only when the host never called initialize (very old anywidget): the first view creates the peer.
    peer = new BrowserPeer(model);
    controllers.set(id, peer);
    peer.activate();
  }
  return peer;
}

const initialize: Initialize<PeerTraits> = ({ model }) => {
  const kind = String(model.get("_kind") ?? "");
  if (!(kind in VIEWS)) return;
  const id = String(model.get("peer_id") ?? "");
  controllers.get(id)?.dispose(); // a re-initialize (hot reload) replaces the old peer
  const peer = new BrowserPeer(model);
  controllers.set(id, peer);
  const onPageHide = () => peer.close(true);
  globalThis.addEventListener?.("pagehide", onPageHide);
  peer.activate();
  return () => {
    globalThis.removeEventListener?.("pagehide", onPageHide);
    peer.dispose();
    if (controllers.get(id) === peer) controllers.delete(id);
  };
};

const render: Render<PeerTraits> = ({ model, el }) => {
  const kind = String(model.get("_kind") ?? "");
  const view = VIEWS[kind];
  if (!view) {
    const note = document.createElement("div");
    note.textContent =
      `rtc_widgets: this page's widget code does not know the widget kind "${kind}". ` +
      "Reload the page after upgrading rtc_widgets.";
    el.appendChild(note);
    return () => note.remove();
  }
  const peer = peerFor(model);
  const cleanup = view(model, el, peer);
  const inspector = renderInspector(model, el);
  peer.viewRendered();
  return () => {
    inspector();
    cleanup();
  };
};

export default { initialize, render };

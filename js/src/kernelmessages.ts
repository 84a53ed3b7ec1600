// Messages from the kernel to one BrowserPeer: validate, drop other sessions' late ones, and act on each type
// (answer, candidate, error, bye, ping, relay switch, relayed data, relayed media frames and their acks).
import { errText } from "./format";
import type { PeerHost } from "./peertypes";
import { type CandidateInit, type Message, pongMsg, validate } from "./protocol";

/** The one binary attachment of a kernel message, as an ArrayBuffer (comm: DataView[]; bus: ArrayBuffer). */
function attachment(extra: DataView[] | ArrayBuffer | undefined): ArrayBuffer | null {
  if (extra instanceof ArrayBuffer) return extra;
  if (!Array.isArray(extra) || extra.length !== 1) return null;
  const v = extra[0] as DataView;
  return v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength) as ArrayBuffer;
}

/** A kernel message from the comm (buffers: DataView[]) or the bus (an ArrayBuffer payload). */
export function onKernelMessage(host: PeerHost, content: unknown, extra?: DataView[] | ArrayBuffer): void {
  const r = validate(content);
  if (!r.ok) {
    host.report(
      "bad-message",
      `The kernel sent a signaling message the browser cannot accept (${r.error}). If this persists, the ` +
        "Python package and the page's widget code may be different versions: restart the kernel and reload the page.",
    );
    return;
  }
  const msg: Message = r.msg;
  const peer = host.peer;
  // Old sessions' messages are late, not wrong: drop them quietly.
  if (msg.session !== undefined && msg.session !== peer.session) return;
  switch (msg.type) {
    case "answer":
      applyAnswer(host, msg.sdp);
      break;
    case "candidate":
      addRemoteCandidate(host, msg.candidate);
      break;
    case "error":
      host.showError(`The kernel reported a problem (${msg.code}): ${msg.message}`);
      break;
    case "bye":
      if (peer.pc) peer.close(false);
      break;
    case "ping":
      host.signal(pongMsg(msg.seq, msg.t));
      break;
    case "pong":
      break;
    case "relay":
      host.startRelay(msg.reason);
      break;
    case "data":
      if (!host.relay()?.receive(msg)) {
        host.report("out-of-order", "A relay message arrived out of sequence or with no relay in use.");
      }
      break;
    case "media": {
      const payload = attachment(extra);
      if (!payload || payload.byteLength !== msg.size) {
        host.report(
          "bad-message",
          "A relayed media frame arrived without its bytes, or with the wrong size.",
        );
      } else if (!peer.relayMedia?.receive(msg, payload)) {
        host.report(
          "out-of-order",
          "A relayed media frame arrived, but this widget receives no relayed media.",
        );
      }
      break;
    }
    case "ack":
      peer.relayMedia?.ack(msg);
      break;
    case "offer":
      host.report("out-of-order", "The kernel sent an offer, but in rtc_widgets the browser always offers.");
      break;
  }
}

function applyAnswer(host: PeerHost, sdp: string): void {
  const peer = host.peer;
  const pc = peer.pc;
  if (!pc) return;
  if (pc.signalingState !== "have-local-offer") {
    host.report("out-of-order", `The kernel sent an answer while the browser was in ${pc.signalingState}.`);
    return;
  }
  const gen = host.gen();
  pc.setRemoteDescription({ type: "answer", sdp }).then(
    () => {
      if (!host.current(gen)) return;
      if (peer.status === "offered" || peer.status === "starting") peer.status = "connecting";
      host.notify();
    },
    (e) => {
      if (!host.current(gen)) return;
      host.fail(
        "bad-sdp",
        `The browser could not apply the kernel's answer (${errText(e)}). Restart the widget; if it persists, ` +
          "update rtc_widgets and aiortc.",
      );
    },
  );
}

/** The kernel does not trickle today (aiortc puts its candidates in the answer), but accept it if it does. */
function addRemoteCandidate(host: PeerHost, c: CandidateInit | null): void {
  const pc = host.peer.pc;
  if (!pc) return;
  if (!pc.remoteDescription) {
    host.report("out-of-order", "The kernel sent an ICE candidate before its answer.");
    return;
  }
  const gen = host.gen();
  (c ? pc.addIceCandidate(c) : pc.addIceCandidate()).catch((e) => {
    if (host.current(gen))
      host.report("bad-candidate", `The browser rejected a kernel ICE candidate (${errText(e)}).`);
  });
}

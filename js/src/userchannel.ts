// The user's data channel (WebRTC, or the relay standing in for it): counting, logging and echoing what
// arrives, sending with the size checks the connection needs, and send errors in words the user can act on.
import { errName, errText, formatBytes, formatCount } from "./format";
import type { PeerHost } from "./peertypes";
import { utf8Length } from "./protocol";

/** Listen to `channel` for generation `gen`: count, log and (in echo mode) echo each message; track open/close. */
export function wireChannel(host: PeerHost, gen: number, channel: RTCDataChannel): void {
  const peer = host.peer;
  channel.addEventListener("message", (e) => {
    const data = (e as MessageEvent).data as unknown;
    // Echo before any bookkeeping: echo mode measures the round trip.
    let echoed = false;
    if (host.echo() && host.current(gen)) {
      try {
        channel.send(data as string);
        echoed = true;
      } catch (err) {
        sendFailed(host, err, typeof data === "string" ? utf8Length(data) : (data as ArrayBuffer).byteLength);
      }
    }
    if (!host.current(gen)) return;
    const size = typeof data === "string" ? utf8Length(data) : (data as ArrayBuffer).byteLength;
    peer.counters.messagesReceived++;
    peer.counters.bytesReceived += size;
    if (echoed) {
      peer.counters.messagesSent++;
      peer.counters.bytesSent += size;
    }
    peer.log.add("in", data as string | ArrayBuffer, size, echoed);
    host.notify();
  });
  channel.addEventListener("open", () => {
    if (!host.current(gen)) return;
    peer.status = "open";
    host.notify();
  });
  channel.addEventListener("close", () => {
    if (!host.current(gen)) return;
    if (peer.status !== "failed") peer.status = "closed";
    host.notify();
  });
  channel.addEventListener("error", (e) => {
    if (!host.current(gen)) return;
    const err = (e as Event & { error?: unknown }).error;
    host.report(
      "browser-error",
      `The data channel reported an error (${err ? errText(err) : "no details"}). ` +
        "The connection may have dropped: restart the widget to reconnect.",
    );
  });
}

/** BrowserPeer.send: one message on the user channel, or false (and the reason shown) when it was not sent. */
export function sendOnUserChannel(host: PeerHost, data: string | ArrayBuffer | Uint8Array): boolean {
  const peer = host.peer;
  const ch = peer.channel;
  if (ch?.readyState !== "open") {
    host.showError("The data channel is not open yet: wait until the badge says connected, then send again.");
    return false;
  }
  const size = typeof data === "string" ? utf8Length(data) : data.byteLength;
  const max = peer.pc?.sctp?.maxMessageSize ?? 0;
  if (max > 0 && size > max) {
    host.report(
      "too-large",
      `This message is ${formatCount(size)} bytes, but this connection carries at most ${formatCount(max)} bytes ` +
        "per message. Split it into smaller messages.",
    );
    return false;
  }
  try {
    if (typeof data === "string") ch.send(data);
    else if (data instanceof ArrayBuffer) ch.send(data);
    else ch.send(data as Uint8Array<ArrayBuffer>);
  } catch (e) {
    sendFailed(host, e, size);
    return false;
  }
  peer.counters.messagesSent++;
  peer.counters.bytesSent += size;
  peer.log.add("out", data, size, false);
  host.notify();
  return true;
}

/** The browser refused a send: say why (too large, buffer full, or anything else) and tell the kernel. */
function sendFailed(host: PeerHost, e: unknown, size: number): void {
  const name = errName(e);
  if (name === "TypeError") {
    host.report(
      "too-large",
      `The browser refused a ${formatBytes(size)} message as too large for this connection. Split it into smaller messages.`,
    );
  } else if (name === "OperationError") {
    host.report(
      "browser-error",
      `The data channel's send buffer is full (${formatBytes(host.peer.channel?.bufferedAmount ?? 0)} queued). ` +
        "Send more slowly, or wait for the bufferedamountlow event.",
    );
  } else {
    host.report("browser-error", `The browser could not send on the data channel (${errText(e)}).`);
  }
}

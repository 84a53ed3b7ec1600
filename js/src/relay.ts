// The relay transport, browser end: the user data channel's messages as protocol `data` messages over the
// signaling path (server bus, or the comm), once the kernel says `relay` (WebRTC found no path in time).
// RelayChannel looks enough like an RTCDataChannel for BrowserPeer to wire it the same way.
import protocol from "../../rtc_widgets/protocol/protocol.json";
import { type DataMsg, type Message, VERSION } from "./protocol";

export const RELAY_MAX_MESSAGE_BYTES: number = protocol.bus.relayMaxMessageBytes;

function toBase64(bytes: Uint8Array): string {
  let bin = "";
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    bin += String.fromCharCode(...bytes.subarray(i, i + chunk));
  }
  return btoa(bin);
}

function fromBase64(text: string): ArrayBuffer {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out.buffer;
}

function domError(name: string, message: string): Error {
  const e = new Error(message);
  e.name = name;
  return e;
}

export class RelayChannel extends EventTarget {
  readonly label: string;
  readonly session: string;
  readyState: RTCDataChannelState = "connecting";
  binaryType: BinaryType = "arraybuffer";
  bufferedAmount = 0;
  /** Why the kernel switched to the relay, in words for the user. */
  readonly reason: string;
  readonly #send: (msg: Message) => boolean;
  #sent = 0;
  #expected = 0;

  constructor(label: string, session: string, reason: string, send: (msg: Message) => boolean) {
    super();
    this.label = label;
    this.session = session;
    this.reason = reason;
    this.#send = send;
  }

  open(): void {
    this.readyState = "open";
    this.dispatchEvent(new Event("open"));
  }

  /** Same contract as RTCDataChannel.send: throws InvalidStateError, TypeError (too large) or OperationError. */
  send(data: string | ArrayBuffer | ArrayBufferView): void {
    if (this.readyState !== "open") throw domError("InvalidStateError", "the relay channel is not open");
    const msg: DataMsg = {
      v: VERSION,
      type: "data",
      session: this.session,
      label: this.label,
      seq: this.#sent,
    };
    if (typeof data === "string") {
      if (new TextEncoder().encode(data).length > RELAY_MAX_MESSAGE_BYTES) {
        throw new TypeError(`message over the relay's ${RELAY_MAX_MESSAGE_BYTES}-byte maximum`);
      }
      msg.text = data;
    } else {
      const bytes =
        data instanceof ArrayBuffer
          ? new Uint8Array(data)
          : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      if (bytes.length > RELAY_MAX_MESSAGE_BYTES) {
        throw new TypeError(`message over the relay's ${RELAY_MAX_MESSAGE_BYTES}-byte maximum`);
      }
      msg.b64 = toBase64(bytes);
    }
    if (!this.#send(msg)) throw domError("OperationError", "the signaling path refused the message");
    this.#sent++;
  }

  /** A `data` message from the kernel; false if it is out of sequence (then it is dropped). */
  receive(msg: DataMsg): boolean {
    if (msg.seq !== this.#expected || this.readyState !== "open") return false;
    this.#expected++;
    const data = msg.text !== undefined ? msg.text : fromBase64(msg.b64 ?? "");
    this.dispatchEvent(new MessageEvent("message", { data }));
    return true;
  }

  close(): void {
    if (this.readyState === "closed") return;
    this.readyState = "closed";
    this.dispatchEvent(new Event("close"));
  }
}

// The page's end of the server extension's signaling bus (rtc_widgets/server/bus.py).
// One websocket per page, shared by every widget; messages are routed to the kernel that owns a peer id.
// Why: a kernel reads comm messages on its main thread, so an offer sent over the comm waits until the running
// cell ends; the kernel reads the bus on its engine thread. Without the bus (no server extension, VS Code,
// Colab, the socket refused) every message goes over the comm as before.
import type { AnyModel } from "@anywidget/types";
import protocol from "../../rtc_widgets/protocol/protocol.json";
import type { Message } from "./protocol";

export const BUS = Object.freeze({ ...protocol.bus });

type BusState = "connecting" | "open" | "closed";
type Fallback = () => void;
/** A kernel message and, for relayed media, its bytes. */
type Handler = (msg: unknown, payload?: ArrayBuffer) => void;

interface PageConfig {
  baseUrl: string;
  wsUrl: string;
  token: string;
}

/** JupyterLab's and Notebook 7's page config, or null on pages that have none (VS Code, Colab). */
function pageConfig(): PageConfig | null {
  const el = globalThis.document?.getElementById("jupyter-config-data");
  if (!el?.textContent) return null;
  try {
    const data = JSON.parse(el.textContent) as Record<string, unknown>;
    return {
      baseUrl: typeof data.baseUrl === "string" ? data.baseUrl : "/",
      wsUrl: typeof data.wsUrl === "string" ? data.wsUrl : "",
      token: typeof data.token === "string" ? data.token : "",
    };
  } catch {
    return null;
  }
}

/** The bus websocket URL for this page, or null when the page is not served by a Jupyter server. */
export function busUrl(config: PageConfig | null = pageConfig()): string | null {
  if (!config) return null;
  let base = config.wsUrl;
  if (!base) {
    const loc = globalThis.location;
    if (!loc?.host) return null;
    base = `${loc.protocol === "https:" ? "wss:" : "ws:"}//${loc.host}${config.baseUrl}`;
  }
  if (!base.endsWith("/")) base += "/";
  const url = `${base}${BUS.browserPath}`;
  return config.token ? `${url}?token=${encodeURIComponent(config.token)}` : url;
}

export class Bus {
  state: BusState = "connecting";
  /** Counters for diagnostics and tests (`globalThis.rtcWidgets.bus`). */
  sent = 0;
  received = 0;
  lastError = "";
  /** Date.now() when the socket closed (0 while it has not). */
  closedAt = 0;
  readonly #ws: WebSocket;
  readonly #queue: [string | ArrayBuffer, Fallback][] = [];
  readonly #handlers = new Map<string, Handler>();

  constructor(url: string, createSocket: (url: string) => WebSocket = (u) => new WebSocket(u)) {
    this.#ws = createSocket(url);
    this.#ws.binaryType = "arraybuffer";
    this.#ws.addEventListener("open", () => {
      this.state = "open";
      for (const peer of this.#handlers.keys()) this.#raw({ op: "sub", peer });
      for (const [text] of this.#queue.splice(0)) this.#ws.send(text);
    });
    this.#ws.addEventListener("message", (e) => this.#onFrame((e as MessageEvent).data));
    this.#ws.addEventListener("close", () => {
      this.state = "closed";
      this.closedAt = Date.now();
      // Never opened, or dropped: whatever waited goes over the comm instead.
      for (const [, fallback] of this.#queue.splice(0)) fallback();
    });
  }

  /** Listen to the kernel messages of `peer`. */
  subscribe(peer: string, handler: Handler): void {
    this.#handlers.set(peer, handler);
    if (this.state === "open") this.#raw({ op: "sub", peer });
  }

  unsubscribe(peer: string): void {
    if (this.#handlers.delete(peer) && this.state === "open") this.#raw({ op: "unsub", peer });
  }

  /**
   * Send to the kernel owning `peer`; `fallback` runs instead if the bus is (or goes) down first.
   * With a `payload` (a relayed media frame) it goes as one binary frame: 4-byte big-endian length of the
   * envelope, the envelope, the payload (rtc_widgets/server/bus.py).
   */
  send(peer: string, msg: Message, fallback: Fallback, payload?: ArrayBuffer): void {
    if (this.state === "closed") {
      fallback();
      return;
    }
    const text = JSON.stringify({ op: "msg", peer, msg });
    const frame = payload ? binaryFrame(text, payload) : text;
    this.sent++;
    if (this.state === "open") this.#ws.send(frame);
    else this.#queue.push([frame, fallback]);
  }

  /** Bytes queued in the socket and not yet sent: relayed video backs off above a limit. */
  get buffered(): number {
    return this.#ws.bufferedAmount ?? 0;
  }

  close(): void {
    this.#ws.close();
  }

  #raw(env: Record<string, unknown>): void {
    this.#ws.send(JSON.stringify(env));
  }

  #onFrame(data: unknown): void {
    let text: string;
    let payload: ArrayBuffer | undefined;
    if (typeof data === "string") text = data;
    else if (data instanceof ArrayBuffer) {
      const split = splitBinary(data);
      if (!split) return;
      [text, payload] = split;
    } else return;
    let env: { op?: unknown; peer?: unknown; msg?: unknown; message?: unknown };
    try {
      env = JSON.parse(text);
    } catch {
      return;
    }
    if (env.op === "msg" && typeof env.peer === "string") {
      this.received++;
      this.#handlers.get(env.peer)?.(env.msg, payload);
    } else if (env.op === "error") {
      this.lastError = String(env.message ?? "");
      console.warn("rtc_widgets: signaling bus:", this.lastError);
    }
  }
}

const utf8 = new TextEncoder();

/** A binary bus frame: 4-byte big-endian envelope length, the envelope as UTF-8, the payload. */
export function binaryFrame(envelope: string, payload: ArrayBuffer): ArrayBuffer {
  const head = utf8.encode(envelope);
  const out = new Uint8Array(4 + head.length + payload.byteLength);
  new DataView(out.buffer).setUint32(0, head.length);
  out.set(head, 4);
  out.set(new Uint8Array(payload), 4 + head.length);
  return out.buffer;
}

/** The envelope text and payload of a binary bus frame, or null when it is malformed. */
export function splitBinary(frame: ArrayBuffer): [string, ArrayBuffer] | null {
  if (frame.byteLength < 4) return null;
  const n = new DataView(frame).getUint32(0);
  if (4 + n > frame.byteLength) return null;
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array(frame, 4, n));
    return [text, frame.slice(4 + n)];
  } catch {
    return null;
  }
}

let shared: Bus | null = null;
const RETRY_MS = 5000;

/** The page's bus (opened on first use), or null where there is none. A closed bus is retried after 5 s. */
export function pageBus(): Bus | null {
  if (shared && shared.state !== "closed") return shared;
  if (shared && Date.now() - shared.closedAt < RETRY_MS) return null;
  const url = busUrl();
  if (!url || typeof WebSocket === "undefined") return null;
  const bus = new Bus(url);
  shared = bus;
  const g = globalThis as { rtcWidgets?: Record<string, unknown> };
  g.rtcWidgets = g.rtcWidgets ?? {};
  g.rtcWidgets.bus = bus;
  return bus;
}

/**
 * One widget's signaling path: the bus when the kernel says it listens there (`_bus` trait) and the page has
 * one, otherwise the comm. Messages from the kernel are accepted on both paths.
 */
export class SignalRoute {
  readonly #model: AnyModel;
  readonly #peerId: string;
  readonly #onMessage: Handler;
  #bus: Bus | null = null;

  constructor(model: AnyModel, peerId: string, onMessage: Handler) {
    this.#model = model;
    this.#peerId = peerId;
    this.#onMessage = onMessage;
    this.#connect();
  }

  /** "bus" or "comm": where the next message goes. */
  get path(): "bus" | "comm" {
    return this.#bus && this.#bus.state !== "closed" ? "bus" : "comm";
  }

  /** Send a message (with a relayed media frame's bytes as a binary attachment). */
  send(msg: Message, payload?: ArrayBuffer): void {
    if (!this.#bus || this.#bus.state === "closed") this.#connect();
    const bus = this.#bus;
    const viaComm = () => (payload ? this.#model.send(msg, undefined, [payload]) : this.#model.send(msg));
    if (bus) bus.send(this.#peerId, msg, viaComm, payload);
    else viaComm();
  }

  /** Bytes waiting in the bus socket; 0 on the comm (unknown there). */
  get buffered(): number {
    return this.#bus && this.#bus.state !== "closed" ? this.#bus.buffered : 0;
  }

  dispose(): void {
    this.#bus?.unsubscribe(this.#peerId);
    this.#bus = null;
  }

  #connect(): void {
    this.#bus = null;
    if (!this.#model.get("_bus") || !this.#peerId) return;
    const bus = pageBus();
    if (!bus) return;
    bus.subscribe(this.#peerId, this.#onMessage);
    this.#bus = bus;
  }
}

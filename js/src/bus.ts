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
type Handler = (msg: unknown) => void;

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
  readonly #queue: [string, Fallback][] = [];
  readonly #handlers = new Map<string, Handler>();

  constructor(url: string, createSocket: (url: string) => WebSocket = (u) => new WebSocket(u)) {
    this.#ws = createSocket(url);
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

  /** Send to the kernel owning `peer`; `fallback` runs instead if the bus is (or goes) down first. */
  send(peer: string, msg: Message, fallback: Fallback): void {
    if (this.state === "closed") {
      fallback();
      return;
    }
    const text = JSON.stringify({ op: "msg", peer, msg });
    this.sent++;
    if (this.state === "open") this.#ws.send(text);
    else this.#queue.push([text, fallback]);
  }

  close(): void {
    this.#ws.close();
  }

  #raw(env: Record<string, unknown>): void {
    this.#ws.send(JSON.stringify(env));
  }

  #onFrame(data: unknown): void {
    if (typeof data !== "string") return;
    let env: { op?: unknown; peer?: unknown; msg?: unknown; message?: unknown };
    try {
      env = JSON.parse(data);
    } catch {
      return;
    }
    if (env.op === "msg" && typeof env.peer === "string") {
      this.received++;
      this.#handlers.get(env.peer)?.(env.msg);
    } else if (env.op === "error") {
      this.lastError = String(env.message ?? "");
      console.warn("rtc_widgets: signaling bus:", this.lastError);
    }
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

  send(msg: Message): void {
    if (!this.#bus || this.#bus.state === "closed") this.#connect();
    const bus = this.#bus;
    if (bus) bus.send(this.#peerId, msg, () => this.#model.send(msg));
    else this.#model.send(msg);
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

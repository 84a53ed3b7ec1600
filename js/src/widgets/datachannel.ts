// The DataChannel widget's view. It only draws: the BrowserPeer (one per model) owns the connection.
// Updates are batched into one requestAnimationFrame so thousands of messages per second cost one redraw.
import { formatBytes, formatCount, formatTime } from "../format";
import type { BrowserPeer, PeerModel, PeerTraits } from "../peer";
import { drawState, makeBadge } from "./badge";
import { h, setText } from "./dom";
import { injectStyle } from "./style";

/** Kernel-written traits this view shows; any change redraws. */
const SHOWN_TRAITS: (keyof PeerTraits)[] = [
  "connection_state",
  "ice_connection_state",
  "transport",
  "error",
  "messages_sent",
  "messages_received",
  "bytes_sent",
  "bytes_received",
  "max_message_size",
  "label",
  "ordered",
  "max_retransmits",
  "max_packet_life_time",
  "protocol",
  "echo",
];

function optionsText(model: PeerModel): string {
  const parts: string[] = [model.get("ordered") === false ? "unordered" : "ordered"];
  const rtx = model.get("max_retransmits");
  const life = model.get("max_packet_life_time");
  if (rtx !== null && rtx !== undefined) parts.push(`max ${rtx} retransmits`);
  if (life !== null && life !== undefined) parts.push(`max ${life} ms packet life`);
  if (rtx == null && life == null) parts.push("reliable");
  const protocol = model.get("protocol");
  if (protocol) parts.push(`protocol ${protocol}`);
  if (model.get("echo")) parts.push("echo on");
  return parts.join(" · ");
}

export function renderDataChannel(model: PeerModel, el: HTMLElement, peer: BrowserPeer): () => void {
  injectStyle(el.ownerDocument);
  const root = h("div", "rtcw rtcw-datachannel", "", el);

  const head = h("div", "rtcw-head", "", root);
  const badge = makeBadge(head);
  const title = h("span", "rtcw-title", "", head);
  h("span", "rtcw-kind", "DataChannel", title);
  const labelEl = h("span", "rtcw-label", "", title);
  const transport = h("span", "rtcw-chip rtcw-transport", "", head);
  transport.title = "transport in use";
  const opts = h("span", "rtcw-opts", "", head);

  const errors = h("div", "rtcw-errors", "", root);
  errors.setAttribute("role", "alert");
  const errorLine = (who: string) => {
    const line = h("div", `rtcw-error rtcw-${who.toLowerCase()}-error`, "", errors);
    h("b", "", `${who}: `, line);
    return { line, text: h("span", "", "", line) };
  };
  const kernelError = errorLine("Kernel");
  const browserError = errorLine("Browser");

  const stats = h("div", "rtcw-stats", "", root);
  for (const t of ["", "sent", "received", "bytes sent", "bytes received", ""])
    h("span", "rtcw-h rtcw-num", t, stats);
  const row = (name: string, tip: string) => {
    const rowName = h("span", "rtcw-rowname", name, stats);
    rowName.title = tip;
    const cells = [0, 1, 2, 3].map(() => h("span", "rtcw-num", "", stats));
    const note = h("span", "rtcw-note", "", stats);
    return { cells, note };
  };
  const kernelRow = row("kernel", "counted by the Python kernel");
  const browserRow = row("browser", "counted in this browser tab");

  const log = h("div", "rtcw-log", "", root);
  log.setAttribute("role", "log");
  log.setAttribute("aria-live", "off");

  const form = h("form", "rtcw-send", "", root);
  const input = h("input", "rtcw-input", "", form);
  input.type = "text";
  input.placeholder = "Message to send to the kernel…";
  input.setAttribute("aria-label", "message to send");
  const button = h("button", "rtcw-button", "Send", form);
  button.type = "submit";

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (!input.value) return;
    if (peer.send(input.value)) input.value = "";
    input.focus();
  });
  // Keep Enter/Shift+Enter inside the box from reaching notebook shortcuts (run cell, etc.).
  input.addEventListener("keydown", (e) => e.stopPropagation());

  let drawnSeq = -1;
  const drawLog = () => {
    if (peer.log.seq === drawnSeq) return;
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
    const entries = peer.log.entries();
    // New entries since the last frame (all of them after a reset or a burst longer than the ring).
    const fresh = Math.min(entries.length, drawnSeq < 0 ? entries.length : peer.log.seq - drawnSeq);
    if (fresh >= entries.length) log.replaceChildren();
    const frag = document.createDocumentFragment();
    for (const entry of entries.slice(entries.length - fresh)) {
      const row = h("div", `rtcw-entry rtcw-${entry.dir}${entry.binary ? " rtcw-binary" : ""}`);
      h("span", "rtcw-time", formatTime(entry.time), row);
      const dir = h("span", "rtcw-dir", entry.dir === "in" ? (entry.echoed ? "↩" : "↓") : "↑", row);
      dir.title = entry.dir === "in" ? (entry.echoed ? "received and echoed back" : "received") : "sent";
      h("span", "rtcw-text", entry.text, row);
      frag.appendChild(row);
    }
    log.appendChild(frag);
    while (log.childElementCount > peer.log.capacity) log.firstElementChild?.remove();
    drawnSeq = peer.log.seq;
    if (atBottom) log.scrollTop = log.scrollHeight;
  };

  const draw = () => {
    frame = 0;
    drawState(badge, transport, model, peer);
    setText(labelEl, JSON.stringify(model.get("label") ?? ""));
    setText(opts, optionsText(model));

    const kErr = String(model.get("error") || "");
    kernelError.line.hidden = !kErr;
    setText(kernelError.text, kErr);
    browserError.line.hidden = !peer.error;
    setText(browserError.text, peer.error);
    errors.hidden = !kErr && !peer.error;

    const k = [
      model.get("messages_sent"),
      model.get("messages_received"),
      model.get("bytes_sent"),
      model.get("bytes_received"),
    ].map((n) => Number(n) || 0);
    const b = peer.counters;
    const kCells = [
      formatCount(k[0] ?? 0),
      formatCount(k[1] ?? 0),
      formatBytes(k[2] ?? 0),
      formatBytes(k[3] ?? 0),
    ];
    const bCells = [
      formatCount(b.messagesSent),
      formatCount(b.messagesReceived),
      formatBytes(b.bytesSent),
      formatBytes(b.bytesReceived),
    ];
    kernelRow.cells.forEach((c, i) => {
      setText(c, kCells[i] ?? "");
    });
    browserRow.cells.forEach((c, i) => {
      setText(c, bCells[i] ?? "");
    });
    const maxMsg = Number(model.get("max_message_size")) || 0;
    setText(
      kernelRow.note,
      `ICE ${model.get("ice_connection_state") || "new"}${maxMsg ? ` · max message ${formatBytes(maxMsg)}` : ""}`,
    );
    const ch = peer.channel;
    setText(browserRow.note, `channel ${ch ? ch.readyState : peer.status}`);

    const open = ch?.readyState === "open";
    input.disabled = !open;
    button.disabled = !open;
    input.placeholder = open ? "Message to send to the kernel…" : "Waiting for the data channel to open…";
    drawLog();
  };

  let frame = 0;
  const schedule = () => {
    if (frame === 0) frame = requestAnimationFrame(draw);
  };
  for (const name of SHOWN_TRAITS) model.on(`change:${name}`, schedule);
  const unsubscribe = peer.subscribe(schedule);
  draw();

  return () => {
    if (frame) cancelAnimationFrame(frame);
    frame = 0;
    unsubscribe();
    for (const name of SHOWN_TRAITS) model.off(`change:${name}`, schedule);
    root.remove();
  };
}

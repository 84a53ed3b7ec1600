// The inspector panel under every peer widget (collapsed by default): SDP sections and codecs, ICE candidates,
// the selected pair and the latest state events -- drawn from the kernel's `inspector` trait (rtc_widgets/stats.py
// parses SDP once, in Python) and only while the panel is open.
import type { AnyModel } from "@anywidget/types";

interface Codec {
  payload_type: number | string | null;
  name: string;
  clock_rate: number | null;
  channels: number | null;
  fmtp: string;
}
interface Section {
  kind: string;
  mid: string | null;
  direction: string;
  protocol: string;
  codecs: Codec[];
}
interface Candidate {
  type?: string;
  protocol?: string;
  address?: string;
  port?: number;
  related_address?: string;
  related_port?: number;
}
export interface InspectorData {
  local?: Section[];
  remote?: Section[];
  candidates?: {
    local?: Candidate[];
    remote?: Candidate[];
    selected?: { local: Candidate; remote: Candidate } | null;
  };
  events?: { time: number; side: string; kind: string; state: string }[];
}

const CSS = `
.rtcw-inspector { font-size: 0.92em; }
.rtcw-inspector > div { max-height: 420px; overflow: auto; }
.rtcw-inspector > summary { cursor: pointer; color: var(--rtcw-muted, #59636e); user-select: none; }
.rtcw-inspector h4 { margin: 8px 0 2px; font-size: 0.95em; }
.rtcw-inspector table { border-collapse: collapse; width: 100%; }
.rtcw-inspector th, .rtcw-inspector td {
  text-align: left; padding: 1px 8px 1px 0; border-bottom: 1px solid var(--rtcw-border, #d1d9e0);
  font-family: var(--jp-code-font-family, ui-monospace, monospace); font-size: 0.92em; vertical-align: top;
}
.rtcw-inspector th { font-family: inherit; color: var(--rtcw-muted, #59636e); font-weight: 600; }
.rtcw-inspector .rtcw-selected td { font-weight: 700; }
.rtcw-inspector .rtcw-empty { color: var(--rtcw-muted, #59636e); font-style: italic; }
`;

function injectCss(doc: Document): void {
  if (doc.getElementById("rtcw-inspector-css")) return;
  const style = doc.createElement("style");
  style.id = "rtcw-inspector-css";
  style.textContent = CSS;
  doc.head.appendChild(style);
}

function table(
  parent: HTMLElement,
  title: string,
  head: string[],
  rows: string[][],
  selected?: (i: number) => boolean,
) {
  const h = document.createElement("h4");
  h.textContent = title;
  parent.appendChild(h);
  if (!rows.length) {
    const p = document.createElement("div");
    p.className = "rtcw-empty";
    p.textContent = "none yet";
    parent.appendChild(p);
    return;
  }
  const t = document.createElement("table");
  t.className = `rtcw-insp-${title.toLowerCase().replace(/[^a-z]+/g, "-")}`;
  const tr = t.createTHead().insertRow();
  for (const c of head) {
    const th = document.createElement("th");
    th.textContent = c;
    tr.appendChild(th);
  }
  const body = t.createTBody();
  rows.forEach((r, i) => {
    const row = body.insertRow();
    if (selected?.(i)) row.className = "rtcw-selected";
    for (const c of r) row.insertCell().textContent = c;
  });
  parent.appendChild(t);
}

const codecText = (c: Codec) =>
  c.name === "SCTP"
    ? "SCTP"
    : `${c.name}/${c.clock_rate ?? ""}${c.channels ? `/${c.channels}` : ""} (${c.payload_type})${c.fmtp ? ` ${c.fmtp}` : ""}`;
const endText = (c: Candidate | undefined) => (c ? `${c.address ?? "?"}:${c.port ?? "?"}` : "");

/** Fill `body` with the inspector tables for `data`. */
export function drawInspector(body: HTMLElement, data: InspectorData): void {
  body.replaceChildren();
  const cands = data.candidates ?? {};
  const sel = cands.selected;
  table(
    body,
    "Selected pair",
    ["end", "type", "protocol", "address"],
    sel
      ? [
          ["kernel", sel.local.type ?? "", sel.local.protocol ?? "", endText(sel.local)],
          ["browser", sel.remote.type ?? "", sel.remote.protocol ?? "", endText(sel.remote)],
        ]
      : [],
  );
  const candRows: [string, Candidate][] = [
    ...(cands.local ?? []).map((c): [string, Candidate] => ["kernel", c]),
    ...(cands.remote ?? []).map((c): [string, Candidate] => ["browser", c]),
  ];
  table(
    body,
    "Candidates",
    ["end", "type", "protocol", "address", "related"],
    candRows.map(([end, c]) => [
      end,
      c.type ?? "",
      c.protocol ?? "",
      endText(c),
      c.related_address ? `${c.related_address}:${c.related_port ?? ""}` : "",
    ]),
    (i) => {
      const [end, c] = candRows[i] ?? ["", {}];
      const s = end === "kernel" ? sel?.local : sel?.remote;
      return !!s && s.port === c.port && (!s.address || s.address === c.address);
    },
  );
  const sdpRows = (who: string, sections: Section[] | undefined) =>
    (sections ?? []).map((m) => [
      who,
      m.mid ?? "",
      m.kind,
      m.direction,
      m.protocol,
      m.codecs.map(codecText).join(", "),
    ]);
  table(
    body,
    "SDP",
    ["from", "mid", "kind", "direction", "protocol", "codecs"],
    [...sdpRows("browser (offer)", data.remote), ...sdpRows("kernel (answer)", data.local)],
  );
  const events = data.events ?? [];
  const t0 = events[0]?.time ?? 0;
  table(
    body,
    "Events",
    ["+s", "end", "kind", "state"],
    events.map((e) => [(e.time - t0).toFixed(3), e.side, e.kind, e.state]),
  );
}

/** Append the collapsed inspector to a widget's view; returns its cleanup. */
export function renderInspector(model: AnyModel, el: HTMLElement): () => void {
  injectCss(el.ownerDocument);
  const details = document.createElement("details");
  details.className = "rtcw-inspector";
  const summary = document.createElement("summary");
  summary.textContent = "Inspector: SDP, candidates, selected pair, events";
  const body = document.createElement("div");
  details.append(summary, body);
  (el.querySelector(".rtcw") ?? el).appendChild(details);
  const update = () => {
    if (details.open) drawInspector(body, (model.get("inspector") as InspectorData) ?? {});
  };
  details.addEventListener("toggle", update);
  model.on("change:inspector", update);
  return () => {
    model.off("change:inspector", update);
    details.remove();
  };
}

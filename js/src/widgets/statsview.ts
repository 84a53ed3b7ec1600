// StatsView's view (its own bundle, static/statsview.js, so uPlot only loads where charts are shown). Each view
// asks the kernel for a snapshot, then applies incremental binary updates: float64 columns seq, t, side, metrics.
import type { Render } from "@anywidget/types";
import type uPlot from "uplot";
import uplotCss from "uplot/dist/uPlot.min.css";
import { defaults } from "../../../rtc_widgets/protocol/protocol.json";
import {
  CHARTS,
  type ChartDef,
  drawTimeline,
  makeChart,
  type SeriesDef,
  type Side,
  type TimelineEvent,
  themeColors,
} from "../plots";
import { h } from "./dom";
import { injectStyle } from "./style";

interface ViewTraits {
  peers: string[];
  window: number;
  charts: string[];
  live: boolean;
}

/** Rows older than the kernel's default window (seconds, newest row's clock) are dropped: memory stays bounded. */
const KEEP_S: number = defaults.stats.windowS;
const SIDES: Side[] = ["browser", "kernel"];
const WINDOWS: [number, string][] = [
  [15, "15 s"],
  [30, "30 s"],
  [60, "1 min"],
  [300, "5 min"],
  [600, "10 min"],
];

/** One peer's rows, column-aligned (null where a row lacks a metric). */
export class PeerRows {
  seq: number[] = [];
  t: number[] = [];
  side: number[] = [];
  cols = new Map<string, (number | null)[]>();
  events: TimelineEvent[] = [];
  #eventKeys = new Set<string>();
  ready = false;
  #buffered: [string[], Float64Array, unknown[][]][] = [];

  add(names: string[], block: Float64Array, events: unknown[][], snapshot: boolean): void {
    if (!snapshot && !this.ready) {
      this.#buffered.push([names, block, events]);
      return;
    }
    this.#apply(names, block, events);
    if (snapshot) {
      this.ready = true;
      for (const [n, b, e] of this.#buffered.splice(0)) this.#apply(n, b, e);
    }
  }

  #apply(names: string[], block: Float64Array, events: unknown[][]): void {
    for (const e of events) {
      const [t, side, kind, state] = e as [number, Side, string, string];
      const key = `${t}|${side}|${kind}|${state}`;
      if (this.#eventKeys.has(key)) continue;
      this.#eventKeys.add(key);
      this.events.push({ t, side, kind, state });
    }
    const n = names.length ? block.length / (3 + names.length) : block.length / 3;
    const last = this.seq.length ? (this.seq[this.seq.length - 1] as number) : 0;
    for (const name of names) {
      if (!this.cols.has(name)) this.cols.set(name, new Array(this.t.length).fill(null));
    }
    for (let j = 0; j < n; j++) {
      const seq = block[j] as number;
      if (seq <= last) continue; // already in the snapshot
      this.seq.push(seq);
      this.t.push(block[n + j] as number);
      this.side.push(block[2 * n + j] as number);
      for (const [name, col] of this.cols) {
        const i = names.indexOf(name);
        const v = i < 0 ? Number.NaN : (block[(3 + i) * n + j] as number);
        col.push(Number.isNaN(v) ? null : v);
      }
    }
    this.#trim();
  }

  #trim(): void {
    const newest = this.t[this.t.length - 1] ?? 0;
    let k = 0;
    while (k < this.t.length && (this.t[k] as number) < newest - KEEP_S) k++;
    if (k === 0) return;
    this.seq.splice(0, k);
    this.t.splice(0, k);
    this.side.splice(0, k);
    for (const col of this.cols.values()) col.splice(0, k);
    if (this.events.length > 2000) this.events.splice(0, this.events.length - 2000);
  }

  /** Series of `def` that have at least one value. */
  present(def: ChartDef): SeriesDef[] {
    return def.series.filter((s) => {
      const col = this.cols.get(s.metric);
      const side = SIDES.indexOf(s.side);
      return col?.some((v, i) => v !== null && this.side[i] === side) ?? false;
    });
  }

  /** uPlot data for `series` in [t0, t1]. */
  data(series: SeriesDef[], t0: number, t1: number): uPlot.AlignedData {
    const xs: number[] = [];
    const ys: (number | null)[][] = series.map(() => []);
    const sides = series.map((s) => SIDES.indexOf(s.side));
    const cols = series.map((s) => this.cols.get(s.metric));
    for (let i = 0; i < this.t.length; i++) {
      const t = this.t[i] as number;
      if (t < t0 || t > t1) continue;
      let any = false;
      const row = series.map((s, k) => {
        const v = this.side[i] === sides[k] ? (cols[k]?.[i] ?? null) : null;
        if (v !== null) any = true;
        return v === null ? null : v * (s.factor ?? 1);
      });
      if (!any) continue;
      xs.push(t);
      row.forEach((v, k) => {
        ys[k]?.push(v);
      });
    }
    return [xs, ...ys] as uPlot.AlignedData;
  }
}

interface ViewDebug {
  peers: PeerRows[];
  draws: number;
  drawMs: number;
  updates: number;
  charts: () => string[];
}

function injectUplotCss(doc: Document): void {
  if (doc.getElementById("rtcw-uplot-css")) return;
  const style = doc.createElement("style");
  style.id = "rtcw-uplot-css";
  style.textContent = `${uplotCss}
.rtcw-statsview { max-width: 1000px; }
.rtcw-statsview .rtcw-sv-peer { border-top: 1px solid var(--rtcw-border); padding-top: 6px; }
.rtcw-statsview .rtcw-sv-name { font-weight: 600; }
.rtcw-statsview .rtcw-sv-grid { display: flex; flex-wrap: wrap; gap: 6px 12px; }
.rtcw-statsview .u-title { font-size: 12px; font-weight: 600; color: var(--rtcw-fg); }
.rtcw-statsview .u-legend { font-size: 10px; color: var(--rtcw-muted); }
.rtcw-statsview .rtcw-sv-controls { display: flex; flex-wrap: wrap; gap: 4px 10px; align-items: center; }
.rtcw-statsview select, .rtcw-statsview label { font-size: 0.92em; color: var(--rtcw-fg); }
.rtcw-statsview select { background: var(--rtcw-bg); border: 1px solid var(--rtcw-border); border-radius: 4px; }
.rtcw-statsview canvas.rtcw-sv-timeline { width: 100%; display: block; }
.rtcw-statsview .rtcw-sv-empty { color: var(--rtcw-muted); font-style: italic; }
`;
  doc.head.appendChild(style);
}

const render: Render<ViewTraits> = ({ model, el }) => {
  injectStyle(el.ownerDocument);
  injectUplotCss(el.ownerDocument);
  const viewId = `v${Math.random().toString(36).slice(2, 10)}`;
  const root = h("div", "rtcw rtcw-statsview", "", el);
  root.dataset.view = viewId;
  const head = h("div", "rtcw-head", "", root);
  h("span", "rtcw-title", "StatsView", head);
  const controls = h("div", "rtcw-sv-controls", "", head);
  const win = h("select", "rtcw-sv-window", "", controls);
  for (const [s, label] of WINDOWS) {
    const o = h("option", "", label, win);
    o.value = String(s);
  }
  win.addEventListener("change", () => {
    model.set("window", Number(win.value));
    model.save_changes();
  });
  const toggles = new Map<string, HTMLInputElement>();
  for (const id of [...CHARTS.map((c) => c.id), "timeline"]) {
    const label = h("label", "", "", controls);
    const box = h("input", "", "", label);
    box.type = "checkbox";
    label.append(` ${id}`);
    toggles.set(id, box);
    box.addEventListener("change", () => {
      const on = [...toggles].filter(([, b]) => b.checked).map(([k]) => k);
      model.set("charts", on);
      model.save_changes();
    });
  }

  const peers: PeerRows[] = [];
  const sections: {
    el: HTMLElement;
    holders: Map<string, HTMLElement>;
    summary: HTMLElement;
    timeline: HTMLCanvasElement;
  }[] = [];
  const charts = new Map<string, { plot: uPlot; key: string }>();
  const debug: ViewDebug = { peers, draws: 0, drawMs: 0, updates: 0, charts: () => [...charts.keys()] };
  const reg = globalThis as { rtcWidgets?: { statsViews?: Map<string, ViewDebug> } };
  reg.rtcWidgets = reg.rtcWidgets ?? {};
  reg.rtcWidgets.statsViews = reg.rtcWidgets.statsViews ?? new Map();
  reg.rtcWidgets.statsViews.set(viewId, debug);

  const layout = () => {
    const names = model.get("peers") ?? [];
    while (sections.length < names.length) {
      const sec = h("div", "rtcw-sv-peer", "", root);
      const title = h("div", "", "", sec);
      h("span", "rtcw-sv-name", names[sections.length] ?? "", title);
      const summary = h("span", "rtcw-opts", "", title);
      const grid = h("div", "rtcw-sv-grid", "", sec);
      // one holder per chart, in a fixed order, hidden until the chart has data
      const holders = new Map<string, HTMLElement>();
      for (const def of CHARTS) {
        const holder = h("div", `rtcw-sv-chart rtcw-sv-${def.id}`, "", grid);
        holder.hidden = true;
        holders.set(def.id, holder);
      }
      const timeline = h("canvas", "rtcw-sv-timeline", "", sec);
      sections.push({ el: sec, holders, summary, timeline });
      peers.push(new PeerRows());
    }
  };

  let frame = 0;
  const schedule = () => {
    if (!frame) frame = requestAnimationFrame(draw);
  };
  function draw(): void {
    frame = 0;
    const t0p = performance.now();
    const colors = themeColors(root);
    const windowS = Number(model.get("window")) || 60;
    const enabled = new Set(model.get("charts") ?? []);
    win.value = String(windowS);
    for (const [id, box] of toggles) box.checked = enabled.has(id);
    const width = Math.max(260, Math.floor((root.clientWidth - 40) / 2));
    peers.forEach((rows, p) => {
      const sec = sections[p];
      if (!sec) return;
      const newest = rows.t[rows.t.length - 1] ?? Date.now() / 1000;
      const t1 = model.get("live") ? Math.max(newest, Date.now() / 1000) : newest;
      const t0 = t1 - windowS;
      for (const def of CHARTS) {
        const key = `${p}:${def.id}`;
        const shown = enabled.has(def.id) ? rows.present(def) : [];
        const sig = `${shown.map((s) => s.metric).join(",")}|${width}|${colors.fg}|${colors.grid}`;
        let chart = charts.get(key);
        if (chart && chart.key !== sig) {
          chart.plot.destroy();
          charts.delete(key);
          chart = undefined;
        }
        const holder = sec.holders.get(def.id);
        if (holder) holder.hidden = !shown.length;
        if (!shown.length || !holder) continue;
        if (!chart) {
          chart = { plot: makeChart(def, shown, width, holder, colors), key: sig };
          charts.set(key, chart);
        }
        chart.plot.batch(() => {
          chart.plot.setData(rows.data(shown, t0, t1), false);
          chart.plot.setScale("x", { min: t0, max: t1 });
        });
      }
      sec.timeline.hidden = !enabled.has("timeline");
      if (enabled.has("timeline")) drawTimeline(sec.timeline, rows.events, t0, t1, colors);
      const last = (side: number, metric: string) => {
        const col = rows.cols.get(metric);
        for (let i = rows.t.length - 1; i >= 0; i--) {
          const v = col?.[i];
          if (rows.side[i] === side && v !== null && v !== undefined) return v;
        }
        return null;
      };
      const rtt = last(0, "rtt_ms");
      const out = last(0, "bitrate_out_kbps");
      const inn = last(0, "bitrate_in_kbps");
      sec.summary.textContent = rows.t.length
        ? ` · ${rows.t.length} samples` +
          (rtt !== null ? ` · RTT ${rtt.toFixed(1)} ms` : "") +
          (out !== null && inn !== null ? ` · ↑ ${out.toFixed(0)} ↓ ${inn.toFixed(0)} kbit/s` : "")
        : " · waiting for samples…";
    });
    debug.draws++;
    debug.drawMs = performance.now() - t0p;
  }

  const onMsg = (msg: unknown, buffers: DataView[]) => {
    const m = msg as { type?: string; peer?: number; names?: string[]; events?: unknown[][]; view?: string };
    if (m.type !== "rows" && m.type !== "snapshot") return;
    if (m.type === "snapshot" && m.view !== viewId) return;
    const rows = peers[m.peer ?? -1];
    const buf = buffers[0];
    if (!rows || !buf) return;
    // copy: a DataView's offset need not be 8-aligned
    const block = new Float64Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
    rows.add(m.names ?? [], block, m.events ?? [], m.type === "snapshot");
    debug.updates++;
    schedule();
  };
  model.on("msg:custom", onMsg);
  const onChange = () => {
    layout();
    schedule();
  };
  model.on("change:peers", onChange);
  model.on("change:window", schedule);
  model.on("change:charts", schedule);
  layout();
  model.send({ type: "hello", view: viewId });
  // the x axis keeps moving between samples; redraw after a theme change
  const tick = setInterval(() => model.get("live") && schedule(), 1000);
  const themeObserver = new MutationObserver(schedule);
  themeObserver.observe(el.ownerDocument.body, {
    attributes: true,
    attributeFilter: ["data-jp-theme-light"],
  });
  schedule();

  return () => {
    clearInterval(tick);
    themeObserver.disconnect();
    if (frame) cancelAnimationFrame(frame);
    model.off("msg:custom", onMsg);
    model.off("change:peers", onChange);
    model.off("change:window", schedule);
    model.off("change:charts", schedule);
    for (const c of charts.values()) c.plot.destroy();
    reg.rtcWidgets?.statsViews?.delete(viewId);
    root.remove();
  };
};

export default { render };

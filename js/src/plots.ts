// Charts of the StatsView: which metrics each chart shows, uPlot set-up that follows the JupyterLab theme, and the
// state timeline (drawn on a plain canvas: uPlot has no band/state chart).
import uPlot from "uplot";

export type Side = "browser" | "kernel";
export interface SeriesDef {
  side: Side;
  metric: string;
  label: string;
  color: string;
  scale?: string;
  factor?: number;
}
export interface ChartDef {
  id: string;
  title: string;
  unit: string;
  series: SeriesDef[];
  /** a second y axis (loss & jitter) */
  scale2?: { id: string; unit: string };
}

export const CHARTS: ChartDef[] = [
  {
    id: "rtt",
    title: "Round trip",
    unit: "ms",
    series: [
      { side: "browser", metric: "rtt_ms", label: "ICE (browser)", color: "#1976d2" },
      { side: "kernel", metric: "probe_rtt_ms", label: "control ping (kernel)", color: "#e65100" },
      // one way, not a round trip: on the relay transport the only latency of media there is to show
      { side: "kernel", metric: "relay_latency_ms", label: "relay: capture → kernel", color: "#6a1b9a" },
    ],
  },
  {
    id: "bitrate",
    title: "Bitrate",
    unit: "kbit/s",
    series: [
      { side: "browser", metric: "bitrate_out_kbps", label: "browser → kernel", color: "#2e7d32" },
      { side: "browser", metric: "bitrate_in_kbps", label: "kernel → browser", color: "#8e24aa" },
      { side: "browser", metric: "available_out_kbps", label: "available out", color: "#9e9e9e" },
      { side: "kernel", metric: "bitrate_in_kbps", label: "received (kernel)", color: "#ef6c00" },
    ],
  },
  {
    id: "messages",
    title: "Data-channel messages",
    unit: "msg/s",
    series: [
      { side: "browser", metric: "messages_out_per_s", label: "browser → kernel", color: "#2e7d32" },
      { side: "browser", metric: "messages_in_per_s", label: "kernel → browser", color: "#8e24aa" },
    ],
  },
  {
    id: "fps",
    title: "Frame rate",
    unit: "fps",
    series: [
      { side: "browser", metric: "fps_out", label: "sent (browser)", color: "#1976d2" },
      { side: "kernel", metric: "fps_in", label: "received (kernel)", color: "#e65100" },
      { side: "kernel", metric: "frames_dropped_per_s", label: "dropped by sinks", color: "#c62828" },
    ],
  },
  {
    id: "loss",
    title: "Loss & jitter",
    unit: "%",
    scale2: { id: "ms", unit: "ms" },
    series: [
      { side: "browser", metric: "video_loss", label: "video loss", color: "#c62828", factor: 100 },
      { side: "browser", metric: "audio_loss", label: "audio loss", color: "#ad1457", factor: 100 },
      { side: "kernel", metric: "video_jitter_ms", label: "video jitter", color: "#00838f", scale: "ms" },
      { side: "kernel", metric: "audio_jitter_ms", label: "audio jitter", color: "#6d4c41", scale: "ms" },
    ],
  },
];

/** Colours from the JupyterLab theme (with fallbacks for other hosts), read from the element. */
export function themeColors(el: HTMLElement): { fg: string; grid: string; muted: string } {
  const css = getComputedStyle(el);
  const v = (name: string, fallback: string) => css.getPropertyValue(name).trim() || fallback;
  return {
    fg: v("--jp-ui-font-color1", "#1f2328"),
    muted: v("--jp-ui-font-color2", "#59636e"),
    grid: v("--jp-border-color2", "rgba(128,128,128,0.3)"),
  };
}

/** A uPlot chart for `def`, drawing only the series listed in `shown` (indices into def.series). */
export function makeChart(
  def: ChartDef,
  shown: SeriesDef[],
  width: number,
  el: HTMLElement,
  colors: ReturnType<typeof themeColors>,
): uPlot {
  const axis = (scale: string, unit: string, side?: 1): uPlot.Axis => ({
    scale,
    stroke: colors.muted,
    grid: { stroke: colors.grid, width: 1 },
    ticks: { stroke: colors.grid, width: 1 },
    size: 48,
    label: unit,
    labelSize: 14,
    labelFont: "11px sans-serif",
    font: "10px sans-serif",
    ...(side ? { side, grid: { show: false } } : {}),
  });
  const axes: uPlot.Axis[] = [
    {
      stroke: colors.muted,
      grid: { stroke: colors.grid, width: 1 },
      ticks: { stroke: colors.grid },
      font: "10px sans-serif",
    },
    axis("y", def.unit),
  ];
  if (def.scale2 && shown.some((s) => s.scale === def.scale2?.id))
    axes.push(axis(def.scale2.id, def.scale2.unit, 1));
  const opts: uPlot.Options = {
    width,
    height: 150,
    title: `${def.title} (${def.unit})`,
    cursor: { sync: { key: "rtcw" }, drag: { x: false, y: false } },
    legend: { show: true, live: true },
    scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    axes,
    series: [
      {},
      ...shown.map(
        (s): uPlot.Series => ({
          label: s.label,
          stroke: s.color,
          width: 1.5,
          spanGaps: true,
          scale: s.scale ?? "y",
          points: { show: false },
        }),
      ),
    ],
  };
  if (def.scale2)
    (opts.scales as uPlot.Scales)[def.scale2.id] = { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] };
  return new uPlot(opts, [[], ...shown.map(() => [])] as uPlot.AlignedData, el);
}

export interface TimelineEvent {
  t: number;
  side: Side;
  kind: string;
  state: string;
}

const STATE_COLORS: Record<string, string> = {
  new: "#9e9e9e",
  stable: "#9e9e9e",
  connecting: "#f9a825",
  checking: "#f9a825",
  "have-local-offer": "#f9a825",
  "have-remote-offer": "#f9a825",
  gathering: "#f9a825",
  connected: "#2e7d32",
  completed: "#2e7d32",
  complete: "#2e7d32",
  disconnected: "#ef6c00",
  failed: "#c62828",
  closed: "#616161",
};
export const TIMELINE_LANES: [Side, string][] = [
  ["browser", "connection"],
  ["kernel", "connection"],
  ["browser", "ice"],
  ["kernel", "ice"],
  ["browser", "dtls"],
  ["kernel", "dtls"],
];

/** Draw the state timeline on `canvas`: one lane per (side, kind), a coloured span per state. */
export function drawTimeline(
  canvas: HTMLCanvasElement,
  events: TimelineEvent[],
  t0: number,
  t1: number,
  colors: ReturnType<typeof themeColors>,
): void {
  const dpr = globalThis.devicePixelRatio || 1;
  const w = canvas.clientWidth || 600;
  const laneH = 14;
  const h = TIMELINE_LANES.length * laneH + 4;
  if (canvas.width !== Math.round(w * dpr)) canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  canvas.style.height = `${h}px`;
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const labelW = 110;
  const x = (t: number) => labelW + ((t - t0) / Math.max(1e-9, t1 - t0)) * (w - labelW - 4);
  ctx.font = "10px sans-serif";
  ctx.textBaseline = "middle";
  TIMELINE_LANES.forEach(([side, kind], lane) => {
    const y = 2 + lane * laneH;
    ctx.fillStyle = colors.muted;
    ctx.fillText(`${side} ${kind}`, 2, y + laneH / 2);
    const mine = events.filter((e) => e.side === side && e.kind === kind).sort((a, b) => a.t - b.t);
    mine.forEach((e, i) => {
      const next = mine[i + 1];
      const a = Math.max(labelW, x(e.t));
      const b = Math.min(w - 4, x(next ? next.t : t1));
      if (b <= labelW || a >= w - 4) return;
      ctx.fillStyle = STATE_COLORS[e.state] ?? "#5c6bc0";
      ctx.fillRect(a, y + 2, Math.max(1, b - a), laneH - 4);
      if (b - a > 40) {
        ctx.fillStyle = "#fff";
        ctx.fillText(e.state, a + 3, y + laneH / 2);
      }
    });
  });
}

// The widgets' CSS, injected once per document. JupyterLab's --jp-* variables make it follow the light and dark
// themes; the fallbacks keep it readable in hosts without them (VS Code, Colab, plain pages).
const CSS = `
.rtcw {
  --rtcw-fg: var(--jp-ui-font-color1, #1f2328);
  --rtcw-muted: var(--jp-ui-font-color2, #59636e);
  --rtcw-faint: var(--jp-ui-font-color3, #818b98);
  --rtcw-bg: var(--jp-layout-color1, #ffffff);
  --rtcw-bg2: var(--jp-layout-color2, #f6f8fa);
  --rtcw-border: var(--jp-border-color2, #d1d9e0);
  --rtcw-accent: var(--jp-brand-color1, #1976d2);
  --rtcw-ok: var(--jp-success-color1, #1a7f37);
  --rtcw-warn: var(--jp-warn-color1, #b35900);
  --rtcw-err: var(--jp-error-color1, #cf222e);
  --rtcw-radius: 6px;
  box-sizing: border-box;
  max-width: 720px;
  padding: 10px 12px;
  border: 1px solid var(--rtcw-border);
  border-radius: var(--rtcw-radius);
  background: var(--rtcw-bg);
  color: var(--rtcw-fg);
  font-family: var(--jp-ui-font-family, system-ui, -apple-system, "Segoe UI", sans-serif);
  font-size: var(--jp-ui-font-size1, 13px);
  line-height: 1.4;
  display: flex;
  flex-direction: column;
  gap: 8px;
}
.rtcw *, .rtcw *::before, .rtcw *::after { box-sizing: border-box; }
.rtcw [hidden] { display: none !important; }
.rtcw-head { display: flex; flex-wrap: wrap; align-items: center; gap: 6px 10px; }
.rtcw-badge {
  display: inline-flex; align-items: center; gap: 6px;
  padding: 1px 9px 1px 7px; border-radius: 999px;
  font-weight: 600; font-size: 0.92em; letter-spacing: 0.01em;
  color: var(--rtcw-muted); background: rgba(128, 128, 128, 0.16);
}
.rtcw-dot { width: 8px; height: 8px; border-radius: 50%; background: currentColor; flex: none; }
.rtcw-state-connecting .rtcw-dot, .rtcw-state-checking .rtcw-dot { animation: rtcw-pulse 1.2s ease-in-out infinite; }
.rtcw-state-connecting, .rtcw-state-checking { color: var(--rtcw-warn); background: rgba(212, 140, 0, 0.16); }
.rtcw-state-connected, .rtcw-state-completed { color: var(--rtcw-ok); background: rgba(46, 160, 67, 0.16); }
.rtcw-state-failed { color: var(--rtcw-err); background: rgba(207, 34, 46, 0.14); }
.rtcw-state-closed, .rtcw-state-disconnected { color: var(--rtcw-faint); background: rgba(128, 128, 128, 0.12); }
@keyframes rtcw-pulse { 50% { opacity: 0.3; } }
.rtcw-title { font-weight: 600; }
.rtcw-title .rtcw-kind { color: var(--rtcw-muted); font-weight: 400; margin-right: 4px; }
.rtcw-chip {
  font-size: 0.85em; padding: 0 6px; border-radius: 4px;
  border: 1px solid var(--rtcw-border); color: var(--rtcw-muted);
  font-family: var(--jp-code-font-family, ui-monospace, SFMono-Regular, Menlo, monospace);
}
.rtcw-opts { color: var(--rtcw-muted); font-size: 0.92em; }
.rtcw-errors { display: flex; flex-direction: column; gap: 4px; }
.rtcw-error {
  padding: 5px 8px; border-radius: 4px;
  border-left: 3px solid var(--rtcw-err);
  background: rgba(207, 34, 46, 0.1);
  color: var(--rtcw-fg);
  white-space: pre-wrap; overflow-wrap: anywhere;
}
.rtcw-error b { color: var(--rtcw-err); }
.rtcw-stats {
  display: grid; grid-template-columns: auto repeat(4, minmax(60px, auto)) 1fr;
  gap: 1px 14px; align-items: baseline; font-variant-numeric: tabular-nums;
}
.rtcw-stats .rtcw-h { color: var(--rtcw-faint); font-size: 0.85em; }
.rtcw-stats .rtcw-rowname { color: var(--rtcw-muted); }
.rtcw-stats .rtcw-num { text-align: right; }
.rtcw-stats .rtcw-note { color: var(--rtcw-faint); font-size: 0.88em; padding-left: 4px; }
.rtcw-log {
  height: 140px; overflow-y: auto; margin: 0; padding: 4px 6px;
  border: 1px solid var(--rtcw-border); border-radius: 4px;
  background: var(--rtcw-bg2);
  font-family: var(--jp-code-font-family, ui-monospace, SFMono-Regular, Menlo, monospace);
  font-size: var(--jp-code-font-size, 12px);
}
.rtcw-log:empty::before { content: "No messages yet."; color: var(--rtcw-faint); }
.rtcw-entry { display: flex; gap: 8px; white-space: pre; }
.rtcw-entry .rtcw-time { color: var(--rtcw-faint); flex: none; }
.rtcw-entry .rtcw-dir { flex: none; width: 1.2em; text-align: center; font-weight: 700; }
.rtcw-entry.rtcw-in .rtcw-dir { color: var(--rtcw-accent); }
.rtcw-entry.rtcw-out .rtcw-dir { color: var(--rtcw-ok); }
.rtcw-entry .rtcw-text { overflow: hidden; text-overflow: ellipsis; }
.rtcw-entry.rtcw-binary .rtcw-text { color: var(--rtcw-muted); font-style: italic; }
.rtcw-send { display: flex; gap: 6px; margin: 0; }
.rtcw-input {
  flex: 1; min-width: 0; padding: 4px 8px;
  border: 1px solid var(--jp-input-border-color, var(--rtcw-border)); border-radius: 4px;
  background: var(--jp-input-background, var(--rtcw-bg)); color: var(--rtcw-fg);
  font: inherit;
}
.rtcw-input:focus { outline: 2px solid var(--rtcw-accent); outline-offset: -1px; }
.rtcw-button {
  padding: 4px 14px; border: 0; border-radius: 4px; cursor: pointer;
  background: var(--rtcw-accent); color: var(--jp-ui-inverse-font-color1, #ffffff);
  font: inherit; font-weight: 600;
}
.rtcw-button:disabled, .rtcw-input:disabled { opacity: 0.5; cursor: not-allowed; }
.rtcw-media .rtcw-startstop { margin-left: auto; padding: 2px 12px; }
.rtcw-devices {
  max-width: 220px; padding: 2px 4px; border-radius: 4px;
  border: 1px solid var(--jp-input-border-color, var(--rtcw-border));
  background: var(--jp-input-background, var(--rtcw-bg)); color: var(--rtcw-fg); font: inherit;
}
.rtcw-preview {
  display: block; width: 100%; max-height: 360px; object-fit: contain;
  background: #000; border-radius: 4px;
}
.rtcw-preview.rtcw-mirror { transform: scaleX(-1); }
.rtcw-meter {
  height: 12px; border-radius: 6px; overflow: hidden;
  background: var(--rtcw-bg2); border: 1px solid var(--rtcw-border);
}
.rtcw-meter-bar {
  height: 100%; width: 0; background: linear-gradient(90deg, var(--rtcw-ok) 70%, var(--rtcw-warn) 90%, var(--rtcw-err));
  transition: width 80ms linear;
}
.rtcw-medstats { color: var(--rtcw-muted); font-size: 0.92em; font-variant-numeric: tabular-nums; }
`;

const STYLE_ID = "rtcw-style";

export function injectStyle(doc: Document = document): void {
  if (doc.getElementById(STYLE_ID)) return;
  const style = doc.createElement("style");
  style.id = STYLE_ID;
  style.textContent = CSS;
  doc.head.appendChild(style);
}

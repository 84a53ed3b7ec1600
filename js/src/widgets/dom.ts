// The small DOM helpers every view uses.

/** Create a `tag` element with a class and text, appended to `parent` when given. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = "",
  text = "",
  parent?: HTMLElement,
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text) el.textContent = text;
  parent?.appendChild(el);
  return el;
}

/** Set text only when it changed, so a redraw that changes nothing touches no DOM. */
export function setText(el: HTMLElement, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

/** A muted, inline, autoplaying <video> (a video track only: muted also lets it start without a click). */
export function mutedVideo(className: string, parent: HTMLElement): HTMLVideoElement {
  const video = h("video", className, "", parent);
  video.muted = true;
  video.autoplay = true;
  video.playsInline = true;
  video.setAttribute("playsinline", "");
  return video;
}

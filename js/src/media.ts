// Local media for the Camera, Screen and Microphone widgets: constraints from the model's traits, capture with
// getUserMedia/getDisplayMedia, sendonly transceivers, and every capture failure turned into one of the protocol's
// error codes with a sentence that says what to do next.
import { errText } from "./format";
import { DEFAULTS, type ErrorCode } from "./protocol";

export type MediaKind = "camera" | "screen" | "microphone";

/** Traits of the media widgets (absent on other kinds). */
export interface MediaTraits {
  width: number;
  height: number;
  frame_rate: number;
  facing_mode: string;
  device_id: string;
  sample_rate: number;
  channels: number;
  echo_cancellation: boolean;
  noise_suppression: boolean;
  auto_gain_control: boolean;
}

const MEDIA_TRAITS: (keyof MediaTraits)[] = [
  "width",
  "height",
  "frame_rate",
  "facing_mode",
  "device_id",
  "sample_rate",
  "channels",
  "echo_cancellation",
  "noise_suppression",
  "auto_gain_control",
];
/** Changing one of these restarts a running media session (a new capture). */
export const RESTART_TRAITS: (keyof MediaTraits)[] = ["device_id", "facing_mode"];

/** The media traits a model has (Python sends null for unset ones: those are left out). */
export function mediaTraitsOf(model: { get(name: string): unknown }): Partial<MediaTraits> {
  const out: Record<string, unknown> = {};
  for (const name of MEDIA_TRAITS) {
    const value = model.get(name);
    if (value !== undefined && value !== null) out[name] = value;
  }
  return out as Partial<MediaTraits>;
}

export interface MediaFailure {
  code: ErrorCode;
  text: string;
}

const MEDIA_KINDS: readonly string[] = ["camera", "screen", "microphone"];

export function mediaKind(kind: unknown): MediaKind | null {
  return typeof kind === "string" && MEDIA_KINDS.includes(kind) ? (kind as MediaKind) : null;
}

const NOUN: Record<MediaKind, string> = {
  camera: "camera",
  screen: "screen sharing",
  microphone: "microphone",
};
const VAR: Record<MediaKind, string> = { camera: "cam", screen: "scr", microphone: "mic" };

function num(value: unknown, fallback: number): number {
  const n = Number(value);
  return Number.isFinite(n) && n > 0 ? n : fallback;
}

/** getUserMedia/getDisplayMedia constraints for `kind` from the traits (sizes and rates are preferences). */
export function constraintsFor(kind: MediaKind, t: Partial<MediaTraits>): MediaStreamConstraints {
  const d = DEFAULTS.media;
  if (kind === "microphone") {
    const audio: MediaTrackConstraints = {
      channelCount: { ideal: num(t.channels, d.microphone.channels) },
      echoCancellation: t.echo_cancellation ?? d.microphone.echoCancellation,
      noiseSuppression: t.noise_suppression ?? d.microphone.noiseSuppression,
      autoGainControl: t.auto_gain_control ?? d.microphone.autoGainControl,
    };
    if (t.device_id) audio.deviceId = { exact: t.device_id };
    return { audio, video: false };
  }
  const preset = kind === "camera" ? d.camera : d.screen;
  const video: MediaTrackConstraints = {
    width: { ideal: num(t.width, preset.width) },
    height: { ideal: num(t.height, preset.height) },
    frameRate: { ideal: num(t.frame_rate, preset.fps) },
  };
  if (kind === "camera") {
    if (t.device_id) video.deviceId = { exact: t.device_id };
    else if (t.facing_mode) video.facingMode = { ideal: t.facing_mode };
  }
  return { video, audio: false };
}

/** What went wrong, as a protocol error code and an actionable sentence. */
export function captureFailure(kind: MediaKind, e: unknown, deviceId = ""): MediaFailure {
  const name = e && typeof e === "object" && "name" in e ? String((e as { name: unknown }).name) : "";
  const noun = NOUN[kind];
  const again = `then call ${VAR[kind]}.start() again`;
  switch (name) {
    case "NotAllowedError":
    case "PermissionDeniedError":
    case "SecurityError":
      return {
        code: "permission-denied",
        text:
          kind === "screen"
            ? `Screen sharing was cancelled or denied. Pick a screen, window or tab to share when the browser asks, ${again}.`
            : `Access to the ${noun} was denied (by you or by a browser policy). Allow the ${noun} for this site ` +
              `(the ${noun} icon in the address bar, or the site settings), ${again}.`,
      };
    case "NotFoundError":
    case "DevicesNotFoundError":
      return {
        code: "no-device",
        text: `No ${noun} was found. Plug one in (or enable it in the system settings), ${again}.`,
      };
    case "OverconstrainedError": {
      const constraint = String((e as { constraint?: unknown }).constraint ?? "");
      if (constraint === "deviceId" || (deviceId && !constraint)) {
        return {
          code: "no-device",
          text: `No ${noun} has device_id "${deviceId}". Pick one in the device list, or set device_id="", ${again}.`,
        };
      }
      return {
        code: "media-error",
        text: `The ${noun} cannot satisfy the requested ${constraint || "settings"}. Ask for less, ${again}.`,
      };
    }
    case "NotReadableError":
    case "TrackStartError":
    case "AbortError":
      return {
        code: "device-busy",
        text:
          `The ${noun} exists but could not be started: another program or tab may be using it. ` +
          `Close that, ${again}.`,
      };
    default:
      return {
        code: "media-error",
        text: `The browser could not start the ${noun} (${errText(e)}); ${again}.`,
      };
  }
}

/** The failure when the page cannot capture at all, or null when it can. */
export function unavailable(kind: MediaKind, g: typeof globalThis = globalThis): MediaFailure | null {
  const md = g.navigator?.mediaDevices;
  if (g.isSecureContext === false || !md) {
    return {
      code: "insecure-context",
      text:
        `This page is not a secure context (plain http on a host other than localhost), so the browser hides the ` +
        `${NOUN[kind]}. Open JupyterLab over https, or through localhost (for example ssh -L 8888:localhost:8888), ` +
        `then call ${VAR[kind]}.start() again.`,
    };
  }
  const fn = kind === "screen" ? md.getDisplayMedia : md.getUserMedia;
  if (typeof fn !== "function") {
    return {
      code: "media-error",
      text: `This browser has no ${kind === "screen" ? "getDisplayMedia" : "getUserMedia"}: use a current Chrome, Firefox or Safari.`,
    };
  }
  return null;
}

/** Why a track that was live has ended. */
export function endedFailure(kind: MediaKind, track: MediaStreamTrack): MediaFailure {
  const what = track.label ? `"${track.label}"` : `the ${NOUN[kind]}`;
  return {
    code: "track-ended",
    text:
      kind === "screen"
        ? `Screen sharing stopped (${what} ended, or sharing was stopped in the browser). Call scr.start() to share again.`
        : `The ${NOUN[kind]} ${what} stopped delivering (unplugged, or taken by the system). ` +
          `Reconnect it, then call ${VAR[kind]}.start() again.`,
  };
}

/** The captured stream of one session and the transceivers that send it; `stop()` releases the device. */
export class LocalMedia {
  readonly kind: MediaKind;
  stream: MediaStream | null = null;
  #stopped = false;

  constructor(kind: MediaKind) {
    this.kind = kind;
  }

  /** Capture with the traits' constraints; rejects with a MediaFailure. */
  async capture(t: Partial<MediaTraits>, g: typeof globalThis = globalThis): Promise<MediaStream> {
    const missing = unavailable(this.kind, g);
    if (missing) throw missing;
    const md = g.navigator.mediaDevices;
    const constraints = constraintsFor(this.kind, t);
    let stream: MediaStream;
    try {
      stream =
        this.kind === "screen" ? await md.getDisplayMedia(constraints) : await md.getUserMedia(constraints);
    } catch (e) {
      throw captureFailure(this.kind, e, t.device_id ?? "");
    }
    if (this.#stopped) {
      for (const track of stream.getTracks()) track.stop();
      throw { code: "media-error", text: "capture finished after the session ended" } satisfies MediaFailure;
    }
    this.stream = stream;
    return stream;
  }

  /** Send every captured track (sendonly) and call `onEnded` when one ends while live. */
  attach(pc: RTCPeerConnection, onEnded: (f: MediaFailure) => void): void {
    const stream = this.stream;
    if (!stream) return;
    for (const track of stream.getTracks()) {
      if (this.kind === "screen" && "contentHint" in track) track.contentHint = "detail";
      pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
      track.addEventListener("ended", () => {
        if (!this.#stopped) onEnded(endedFailure(this.kind, track));
      });
    }
  }

  stop(): void {
    this.#stopped = true;
    for (const track of this.stream?.getTracks() ?? []) track.stop();
  }
}

/** The level (0..1) of the audio being sent, from the browser's media-source stats; null when unknown. */
export async function sendingAudioLevel(pc: RTCPeerConnection): Promise<number | null> {
  const stats = await pc.getStats();
  let level: number | null = null;
  stats.forEach((s: { type?: string; kind?: string; audioLevel?: number }) => {
    if (s.type === "media-source" && s.kind === "audio" && typeof s.audioLevel === "number")
      level = s.audioLevel;
  });
  return level;
}

/** Devices of the kind a widget captures (labels are empty until the user granted access once). */
export async function listDevices(
  kind: MediaKind,
  g: typeof globalThis = globalThis,
): Promise<MediaDeviceInfo[]> {
  const md = g.navigator?.mediaDevices;
  if (kind === "screen" || !md?.enumerateDevices) return [];
  const want = kind === "camera" ? "videoinput" : "audioinput";
  try {
    return (await md.enumerateDevices()).filter((d) => d.kind === want);
  } catch {
    return [];
  }
}

// Trickle ICE, browser side: local candidates go to the kernel as they are found, and end-of-candidates
// (candidate: null) goes exactly once, when gathering completes or after defaults.iceGatheringTimeoutMs,
// whichever comes first. Candidates found before the offer went out wait for it, so the kernel never
// sees a candidate before its offer.
import type { CandidateInit } from "./protocol";

export class Trickle {
  readonly #send: (candidate: CandidateInit | null) => void;
  readonly #timeoutMs: number;
  #offerSent = false;
  #endSent = false;
  #endPending = false;
  #pending: CandidateInit[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(send: (candidate: CandidateInit | null) => void, timeoutMs: number) {
    this.#send = send;
    this.#timeoutMs = timeoutMs;
  }

  /** Gathering has begun (setLocalDescription resolved): start the clock on it. */
  gatheringStarted(): void {
    if (this.#endSent || this.#endPending || this.#timer !== undefined) return;
    this.#timer = setTimeout(() => this.end(), this.#timeoutMs);
  }

  /** The offer went to the kernel: release what waited for it. */
  offerSent(): void {
    this.#offerSent = true;
    for (const c of this.#pending) this.#send(c);
    this.#pending = [];
    if (this.#endPending) this.end();
  }

  candidate(c: CandidateInit): void {
    if (this.#endSent) return; // after end-of-candidates the kernel no longer listens
    if (this.#offerSent) this.#send(c);
    else this.#pending.push(c);
  }

  /** Gathering is over (complete, or given up on): send end-of-candidates, once. */
  end(): void {
    if (this.#endSent) return;
    if (!this.#offerSent) {
      this.#endPending = true;
      return;
    }
    this.#endSent = true;
    this.stop();
    this.#send(null);
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

// A fixed-size ring of the latest user-channel messages, for the view's log. Adding is O(1) and allocates
// one small object, so thousands of messages per second cost little; views redraw at most once per frame.

export interface LogEntry {
  dir: "in" | "out";
  /** The text, cut for display, or "‹binary N bytes›". */
  text: string;
  binary: boolean;
  bytes: number;
  /** Date.now() when it crossed the channel. */
  time: number;
  /** For incoming messages: whether echo mode sent it straight back. */
  echoed: boolean;
}

/** Longest text kept per entry; the log is for eyes, not for data. */
const TEXT_CHARS = 300;

export class MessageLog {
  readonly capacity: number;
  /** How many entries were ever added; a view compares it with what it has drawn. */
  seq = 0;
  readonly #ring: LogEntry[] = [];
  #head = 0;

  constructor(capacity: number) {
    this.capacity = Math.max(1, capacity);
  }

  add(dir: "in" | "out", data: string | ArrayBuffer | ArrayBufferView, bytes: number, echoed = false): void {
    const binary = typeof data !== "string";
    const text = binary
      ? `‹binary ${bytes} bytes›`
      : data.length > TEXT_CHARS
        ? `${data.slice(0, TEXT_CHARS)}…`
        : data;
    const entry: LogEntry = { dir, text, binary, bytes, time: Date.now(), echoed };
    if (this.#ring.length < this.capacity) this.#ring.push(entry);
    else {
      this.#ring[this.#head] = entry;
      this.#head = (this.#head + 1) % this.capacity;
    }
    this.seq++;
  }

  /** The kept entries, oldest first. */
  entries(): LogEntry[] {
    return this.#ring.slice(this.#head).concat(this.#ring.slice(0, this.#head));
  }

  clear(): void {
    this.#ring.length = 0;
    this.#head = 0;
  }
}

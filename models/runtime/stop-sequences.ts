// Stop sequences over streamed text (OpenAI's `stop`): text that could still turn into a stop string is
// held back, and the text before a match is all that is ever emitted (the match itself never is).

/** Cuts a stream of text pieces at the first occurrence of any stop string. */
export class StopSequences {
  private held = '';
  private done = false;
  private readonly stops: readonly string[];

  constructor(stops: readonly string[]) {
    this.stops = stops.filter((s) => s.length > 0);
  }

  /** Whether a stop string has been seen. */
  get stopped(): boolean {
    return this.done;
  }

  /** Feeds one piece; returns what may be emitted now (everything before a stop string, once one appears). */
  push(piece: string): string {
    if (this.done) return '';
    const text = this.held + piece;
    let cut = -1;
    for (const s of this.stops) {
      const at = text.indexOf(s);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.done = true;
      this.held = '';
      return text.slice(0, cut);
    }
    // Hold back the longest tail that is the start of some stop string: the next piece may complete it.
    let keep = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, text.length); n > keep; n--) {
        if (text.endsWith(s.slice(0, n))) {
          keep = n;
          break;
        }
      }
    }
    this.held = text.slice(text.length - keep);
    return text.slice(0, text.length - keep);
  }

  /** At the end of generation: the held-back tail (it never became a stop string). */
  flush(): string {
    const rest = this.done ? '' : this.held;
    this.held = '';
    return rest;
  }
}

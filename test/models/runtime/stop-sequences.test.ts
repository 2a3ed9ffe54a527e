// Stop strings over streamed text: for every way of cutting a text into pieces, what StopSequences
// emits equals the reference (the text up to the first stop string), and the match never leaks out.
import { describe, expect, it } from 'vitest';
import { StopSequences } from '../../../models/runtime/stop-sequences.ts';

/** Reference: cut the whole text at the earliest occurrence of any stop string. */
function reference(text: string, stops: readonly string[]): { text: string; stopped: boolean } {
  let cut = -1;
  for (const s of stops) {
    const at = text.indexOf(s);
    if (at >= 0 && (cut < 0 || at < cut)) cut = at;
  }
  return cut < 0 ? { text, stopped: false } : { text: text.slice(0, cut), stopped: true };
}

/** Seeded splits of `text` into pieces of 0..4 code units (mulberry32). */
function pieces(text: string, seed: number): string[] {
  let a = seed >>> 0;
  const rand = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out: string[] = [];
  for (let i = 0; i < text.length; ) {
    const n = Math.floor(rand() * 5);
    out.push(text.slice(i, i + n));
    i += n;
  }
  return out;
}

describe('StopSequences', () => {
  const cases: Array<[string, string[]]> = [
    ['Call me Ishmael. Some years ago', ['.']],
    ['the whale, the whale! thar she blows', ['whale!', 'she']],
    ['aaab', ['aab']], // a held tail must restart the match one character later
    ['no stop here at all', ['STOP', 'xyz']],
    ['🐋 spouts 🐳 twice', ['🐳']],
    ['ends with a partial sto', ['stop']], // the held tail comes back at the end
  ];
  it('emits exactly the text before the first stop string, however the text is split', () => {
    for (const [text, stops] of cases) {
      const want = reference(text, stops);
      for (let seed = 1; seed <= 40; seed++) {
        const s = new StopSequences(stops);
        let got = '';
        for (const p of pieces(text, seed)) got += s.push(p);
        got += s.flush();
        expect({ text: got, stopped: s.stopped }, `${text} / ${stops.join('|')} / seed ${seed}`).toEqual(want);
      }
    }
  });

  it('holds back only what could still become a stop string', () => {
    const s = new StopSequences(['\n\nUser:']);
    expect(s.push('Hello')).toBe('Hello');
    expect(s.push(' there\n')).toBe(' there');
    expect(s.push('\nUs')).toBe('');
    expect(s.push('ually')).toBe('\n\nUsually');
    expect(s.stopped).toBe(false);
    expect(s.push('\n\nUser: hi')).toBe('');
    expect(s.stopped).toBe(true);
    expect(s.push('more')).toBe('');
  });
});

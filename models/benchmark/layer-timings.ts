// From the timed grid files to table entries: a layer's cost is the time difference of its two depths
// over the depth difference (the per-model costs cancel), and a width's per-model cost is its fixed
// file's time less the layers in it. Pure arithmetic, so the device and the tests share it. Llama files
// give entries marked `family: 'llama'` (with their K/V heads); gpt2 entries carry no family, as before.
import { kvHeadsOf, layerKeyOf, type GridFamily, type GridFile } from './grid-file.ts';

/** Median time of one decode step of one file at one KV length. */
export interface FileTiming {
  name: string;
  kvLength: number;
  ms: number;
  samples: number;
}

export interface LayerEntry {
  width: number;
  ffnWidth: number;
  heads: number;
  headDim: number;
  seqLen: number;
  ms: number;
  samples: number;
  /** Absent: gpt2. */
  family?: GridFamily;
  /** llama entries: K/V heads of the layer. */
  kvHeads?: number;
}

export interface HeadEntry {
  width: number;
  vocabSize: number;
  seqLen: number;
  ms: number;
  samples: number;
  /** Absent: gpt2 (learned positions, LayerNorm); llama: rotary (no position row), RMSNorm. */
  family?: GridFamily;
}

/** Entries of a device table, and the grid points noise left without a positive figure. */
export interface TimedEntries {
  layers: LayerEntry[];
  heads: HeadEntry[];
  /** Why a grid point has no entry (e.g. "w64 f256 h1x64 @ 32: depth 3 was not slower than depth 1"). */
  dropped: string[];
}

const layerKey = layerKeyOf;
/** The family fields an entry of file `f` carries: none for gpt2, so gpt2 tables read as before. */
const familyFields = (f: GridFile, withKv: boolean): { family?: GridFamily; kvHeads?: number } =>
  f.family === 'llama' ? { family: 'llama', ...(withKv ? { kvHeads: kvHeadsOf(f) } : {}) } : {};

const headName = (f: GridFile): string => `${f.family === 'llama' ? 'llama ' : ''}w${f.width} v${f.vocabSize}`;

/** Table entries from the timings of `files` (missing timings, e.g. after a time limit, leave entries out). */
export function entriesFromTimings(files: readonly GridFile[], timings: readonly FileTiming[]): TimedEntries {
  const at = new Map(timings.map((t) => [`${t.name}@${t.kvLength}`, t]));
  const layerFiles = new Map<string, GridFile[]>();
  for (const f of files) {
    if (f.role !== 'layer') continue;
    const list = layerFiles.get(layerKey(f)) ?? [];
    list.push(f);
    layerFiles.set(layerKey(f), list);
  }
  const kvLengths = [...new Set(timings.map((t) => t.kvLength))].sort((a, b) => a - b);
  const layers: LayerEntry[] = [];
  const dropped: string[] = [];
  const layerMsAt = new Map<string, number>();
  for (const [key, list] of layerFiles) {
    const [lo, hi] = [...list].sort((a, b) => a.depth - b.depth);
    if (!lo || !hi || lo.depth === hi.depth) continue;
    for (const s of kvLengths) {
      const t1 = at.get(`${lo.name}@${s}`);
      const t2 = at.get(`${hi.name}@${s}`);
      if (!t1 || !t2) continue;
      const ms = (t2.ms - t1.ms) / (hi.depth - lo.depth);
      if (!(ms > 0)) {
        dropped.push(`${key} @ ${s}: depth ${hi.depth} was not slower than depth ${lo.depth} (${t2.ms.toFixed(3)} vs ${t1.ms.toFixed(3)} ms)`);
        continue;
      }
      layerMsAt.set(`${key}@${s}`, ms);
      layers.push({ width: lo.width, ffnWidth: lo.ffnWidth, heads: lo.heads, headDim: lo.headDim, seqLen: s, ms, samples: Math.min(t1.samples, t2.samples), ...familyFields(lo, true) });
    }
  }
  const heads: HeadEntry[] = [];
  for (const f of files) {
    if (f.role !== 'fixed') continue;
    for (const s of kvLengths) {
      const t = at.get(`${f.name}@${s}`);
      if (!t) continue;
      const layer = layerMsAt.get(`${layerKey(f)}@${s}`);
      if (layer === undefined) {
        dropped.push(`per-model cost ${headName(f)} @ ${s}: its layer has no figure`);
        continue;
      }
      const ms = t.ms - f.depth * layer;
      if (!(ms > 0)) {
        dropped.push(`per-model cost ${headName(f)} @ ${s}: not above its layers (${t.ms.toFixed(3)} ms for ${f.depth} x ${layer.toFixed(3)} ms)`);
        continue;
      }
      heads.push({ width: f.width, vocabSize: f.vocabSize, seqLen: s, ms, samples: t.samples, ...familyFields(f, false) });
    }
  }
  return { layers, heads, dropped };
}

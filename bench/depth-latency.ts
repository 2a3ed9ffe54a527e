// Depth and per-layer cost: does the search still pick 60-70-layer designs once each layer's fixed
// cost is in the latency budget, and how fast does the searched design decode against the uniform
// GPT-2-style design of the same parameter budget?
// Part 1 (computed): searches at --params with a latency budget equal to the uniform design's
// predicted latency, on the jetson-nano and rpi4 profiles, with per-operator overheads from the
// profile's default up; prints the layers the search picks.
// Part 2 (measured on this machine as the device): read bandwidth; decode tokens/s (onnxruntime,
// random weights) of the uniform design and of the design searched under the roofline; a fit
// measured = a x roofline(bytes, no overhead) + c x layers; a search with the fitted per-layer cost;
// that design measured too.
// Run: npx tsx bench/depth-latency.ts [--params 64000000 --seq 128 --repeats 3 --threads 2 --iterations 30000 --no-measure]
// Writes bench/results/depth-latency.json.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { countParameters } from '../models/arch/accounting.ts';
import type { ArchSpec } from '../models/arch/spec.ts';
import { buildModelFile } from '../models/onnx/build-model-file.ts';
import { loadLanguageModel } from '../models/runtime/index.ts';
import { mulberry32 } from '../models/random.ts';
import { uniformGpt2Design } from '../models/search/baselines.ts';
import { deviceProfile, type DeviceProfile } from '../models/search/device-profiles.ts';
import { predictLatencyMs } from '../models/search/latency-model.ts';
import { RooflineLatencyModel } from '../models/search/roofline-latency.ts';
import { searchArchitecture, type SearchObjective } from '../models/search/search.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CACHE = path.join(os.tmpdir(), 'fleetlm-bench-models');
const { values: args } = parseArgs({
  options: {
    params: { type: 'string', default: '64000000' },
    seq: { type: 'string', default: '128' },
    repeats: { type: 'string', default: '3' },
    threads: { type: 'string', default: '2' },
    iterations: { type: 'string', default: '30000' },
    'no-measure': { type: 'boolean', default: false },
    child: { type: 'string' },
  },
});
const PARAMS = Number(args.params);
const SEQ = Number(args.seq);
const REPEATS = Number(args.repeats);
const THREADS = Number(args.threads);
const ITERATIONS = Number(args.iterations);
/** Operators of one GPT-family decoder layer in the roofline (LN, QKV, attention, output, add, LN, up, down, add). */
const OPS_PER_LAYER = 9;

const layersOf = (s: ArchSpec): number => s.blocks.reduce((n, b) => n + b.layers, 0);
const shapeOf = (s: ArchSpec): string => s.blocks.map((b) => `${b.width}x${b.layers}(R${b.ffnRatio},H${b.heads})`).join(' | ');

/** A profile's compute unit with another per-operator overhead (and optionally bandwidth efficiency). */
function withOverhead(p: DeviceProfile, overheadS: number, memoryEfficiency?: number): DeviceProfile {
  const unit = p.units[p.defaultUnit]!;
  return { ...p, units: { ...p.units, [p.defaultUnit]: { ...unit, opOverheadS: overheadS, ...(memoryEfficiency ? { memoryEfficiency } : {}) } } };
}

function latencyOf(spec: ArchSpec, p: DeviceProfile): number {
  return predictLatencyMs(spec, new RooflineLatencyModel(p.units[p.defaultUnit]!, { seqLen: SEQ }));
}

/** The search at the parameter budget with the uniform design's predicted latency as the latency budget. */
function searchAt(p: DeviceProfile, latencyMs: number, objective: SearchObjective): ArchSpec {
  return searchArchitecture({ budgets: { params: PARAMS, latencyMs }, device: p, seqLen: SEQ, objective, iterations: ITERATIONS, seed: 1 }).spec;
}

// ---------------------------------------------------------------------------------------------
// Child: one model's decode speed in a fresh process.

async function child(modelPath: string): Promise<void> {
  const model = await loadLanguageModel(modelPath, { intraOpNumThreads: THREADS });
  const rng = mulberry32(1);
  const prompt = Array.from({ length: SEQ / 2 }, () => Math.floor(rng() * 50000));
  await model.generateText(prompt, { maxTokens: 4, ignoreEos: true });
  const tps: number[] = [];
  for (let r = 0; r < REPEATS; r++) tps.push((await model.generateText(prompt, { maxTokens: SEQ / 2, ignoreEos: true })).tokensPerSecond);
  await model.dispose();
  process.stdout.write(`${JSON.stringify({ tokensPerSecond: tps })}\n`);
}

function measure(modelPath: string): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--child', modelPath, '--seq', String(SEQ), '--repeats', String(REPEATS), '--threads', String(THREADS)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('exit', (code) => (code === 0 ? resolve((JSON.parse(out.trim().split('\n').at(-1)!) as { tokensPerSecond: number[] }).tokensPerSecond) : reject(new Error(`decode child exited with ${code}`))));
  });
}

async function built(spec: ArchSpec): Promise<string> {
  const file = path.join(CACHE, `depth-${createHash('sha256').update(JSON.stringify(spec)).digest('hex').slice(0, 12)}.onnx`);
  if (!existsSync(file)) {
    mkdirSync(CACHE, { recursive: true });
    await buildModelFile(spec, { outPath: file, fused: false, seed: 1 });
  }
  return file;
}

const BW_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const buf = Buffer.from(workerData.sab, workerData.offset, workerData.length);
parentPort.on('message', () => { buf.indexOf(7); parentPort.postMessage(0); });
`;

/** Best-of-5 read bandwidth with `threads` workers scanning disjoint 256 MiB slices (memchr). */
async function readBandwidth(threads: number): Promise<number> {
  const per = 256 * 2 ** 20;
  const sab = new SharedArrayBuffer(per * threads);
  new Uint8Array(sab).fill(1);
  const workers = Array.from({ length: threads }, (_, i) => new Worker(BW_WORKER, { eval: true, workerData: { sab, offset: i * per, length: per } }));
  let best = 0;
  try {
    for (let r = 0; r < 5; r++) {
      const t = performance.now();
      await Promise.all(workers.map((w) => new Promise((ok) => (w.once('message', ok), w.postMessage('go')))));
      best = Math.max(best, (per * threads) / ((performance.now() - t) / 1000));
    }
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
  return best;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

async function main(): Promise<void> {
  const uniform = uniformGpt2Design(PARAMS)!;
  // Entropy is what makes the deep designs; params is the baseline objective the study compares it with.
  const objectives: SearchObjective[] = ['entropy', 'params'];
  console.log(`uniform GPT-2-style design within ${(PARAMS / 1e6).toFixed(0)}M: ${shapeOf(uniform)}, ${layersOf(uniform)} layers; decode latency at context ${SEQ}`);
  const computed: Array<Record<string, unknown>> = [];
  console.log('\nPart 1: layers the search picks with the uniform design\'s latency as the budget, by per-operator overhead');
  for (const id of ['jetson-nano', 'rpi4']) {
    const base = deviceProfile(id);
    for (const overheadUs of [...new Set([base.units[base.defaultUnit]!.opOverheadS * 1e6, 10, 25, 50, 100])]) {
      const p = withOverhead(base, overheadUs / 1e6);
      const budget = latencyOf(uniform, p);
      for (const objective of objectives) {
        const spec = searchAt(p, budget, objective);
        computed.push({ device: id, overheadUs, objective, latencyBudgetMs: budget, layers: layersOf(spec), params: countParameters(spec), design: shapeOf(spec) });
        console.log(`  ${id.padEnd(11)} ${String(overheadUs).padStart(3)} us/op (${(overheadUs * OPS_PER_LAYER).toFixed(0).padStart(3)} us/layer) budget ${budget.toFixed(2).padStart(6)} ms  ${objective.padEnd(8)} ${String(layersOf(spec)).padStart(3)} layers  ${(countParameters(spec) / 1e6).toFixed(1)}M  ${shapeOf(spec)}`);
      }
    }
  }
  const out: Record<string, unknown> = { benchmark: 'depth-latency', date: new Date().toISOString(), params: PARAMS, seqLen: SEQ, iterations: ITERATIONS, uniform: { design: shapeOf(uniform), layers: layersOf(uniform), spec: uniform }, computed };
  if (!args['no-measure']) {
    console.log('\nPart 2: this machine as the device');
    const bandwidth = await readBandwidth(THREADS);
    const host: DeviceProfile = {
      id: 'this-host',
      name: `this machine (${os.cpus()[0]?.model ?? 'cpu'}, ${THREADS} threads)`,
      memoryBytes: os.totalmem(),
      defaultUnit: 'cpu',
      units: {
        cpu: {
          description: `measured read bandwidth ${(bandwidth / 1e9).toFixed(1)} GB/s (memchr, ${THREADS} threads); compute nominal 100 GFLOPS (decode at batch 1 is bandwidth-bound)`,
          peakFlops: 100e9,
          memoryBandwidth: bandwidth,
          computeEfficiency: 0.5,
          memoryEfficiency: 1,
          opOverheadS: 2e-6,
        },
      },
      sources: [{ claim: 'read bandwidth measured by bench/depth-latency.ts', url: 'https://onnxruntime.ai/docs/performance/' }],
    };
    const roofline = latencyOf(uniform, host);
    const searched = searchAt(host, roofline, 'entropy');
    const noOverhead = withOverhead(host, 0);
    const rows: Array<{ name: string; spec: ArchSpec; tokensPerSecond: number[]; ms: number; rooflineMs: number; bytesMs: number }> = [];
    for (const [name, spec] of [['uniform', uniform], ['searched (entropy, roofline 2 us/op)', searched]] as const) {
      const tps = await measure(await built(spec));
      rows.push({ name, spec, tokensPerSecond: tps, ms: 1000 / median(tps), rooflineMs: latencyOf(spec, host), bytesMs: latencyOf(spec, noOverhead) });
    }
    // measured = a x bytes-only roofline + c x layers, from the two designs.
    const [u, s] = rows as [(typeof rows)[0], (typeof rows)[0]];
    const lu = layersOf(u.spec);
    const ls = layersOf(s.spec);
    const det = u.bytesMs * ls - s.bytesMs * lu;
    const a = (u.ms * ls - s.ms * lu) / det;
    const c = (u.bytesMs * s.ms - s.bytesMs * u.ms) / det;
    console.log(`  fit: measured ms = ${a.toFixed(2)} x roofline(bytes at ${(bandwidth / 1e9).toFixed(1)} GB/s) + ${(c * 1000).toFixed(0)} us x layers`);
    let fitted: Record<string, unknown> | null = null;
    if (a > 0 && c > 0) {
      const fittedHost = withOverhead(host, c / 1000 / OPS_PER_LAYER, Math.min(1, 1 / a));
      const budget = latencyOf(uniform, fittedHost);
      const refit = searchAt(fittedHost, budget, 'entropy');
      const tps = await measure(await built(refit));
      rows.push({ name: 'searched (entropy, fitted per-layer cost)', spec: refit, tokensPerSecond: tps, ms: 1000 / median(tps), rooflineMs: latencyOf(refit, fittedHost), bytesMs: latencyOf(refit, noOverhead) });
      fitted = { a, perLayerUs: c * 1000, opOverheadUs: (c * 1000) / OPS_PER_LAYER, memoryEfficiency: Math.min(1, 1 / a), latencyBudgetMs: budget };
    }
    for (const r of rows) {
      console.log(
        `  ${r.name.padEnd(42)} ${String(layersOf(r.spec)).padStart(3)} layers ${(countParameters(r.spec) / 1e6).toFixed(1).padStart(5)}M  predicted ${r.rooflineMs.toFixed(1).padStart(6)} ms  measured ${r.ms.toFixed(1).padStart(6)} ms = ${median(r.tokensPerSecond).toFixed(1).padStart(5)} tok/s (runs ${r.tokensPerSecond.map((t) => t.toFixed(1)).join(', ')})  ${shapeOf(r.spec)}`,
      );
    }
    console.log(`  load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} (${os.cpus().length} CPUs): timings are provisional on a shared machine`);
    out.measured = {
      bandwidthBytesPerS: bandwidth,
      threads: THREADS,
      repeats: REPEATS,
      decode: `prompt ${SEQ / 2} random tokens, ${SEQ / 2} generated (greedy), median of ${REPEATS}`,
      fit: fitted ?? { a, perLayerUs: c * 1000, note: 'fit not usable (a or c not positive)' },
      rows: rows.map((r) => ({ name: r.name, design: shapeOf(r.spec), layers: layersOf(r.spec), params: countParameters(r.spec), predictedMs: r.rooflineMs, measuredMs: r.ms, tokensPerSecond: median(r.tokensPerSecond), runs: r.tokensPerSecond, spec: r.spec })),
      loadAverage: os.loadavg(),
    };
  }
  mkdirSync(path.join(HERE, 'results'), { recursive: true });
  writeFileSync(path.join(HERE, 'results', 'depth-latency.json'), `${JSON.stringify(out, null, 2)}\n`);
}

if (args.child) await child(args.child);
else await main();

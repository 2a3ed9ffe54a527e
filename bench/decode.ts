// Decode benchmark: first-token latency, decode tokens/s and peak RSS of the runtime on shapes with
// random weights (a MeRino-like 64M design, GPT-2 small, OPT-350m, SmolLM2-135M, Qwen2.5-0.5B), plain,
// fused and int8/int4 weight-quantized (MatMulNBits) graphs, set against this machine's memory read
// bandwidth: the bound is bandwidth / bytes the graph actually reads per token (from its initializers).
// Run: npx tsx bench/decode.ts [--tokens 64 --prompt 32 --repeats 3 --threads N --shapes merino,gpt2-small,opt-350m,smollm2-135m,qwen2.5-0.5b
//      --variants plain,fused,int8,int4 --block 32 --symmetric --accuracy-level 4 --spin --no-prepack --compare-reuse --merino-spec file.json
//      --bandwidth-gbs N --torch --out file.json --quick]
import { mulberry32 } from '../models/random.ts';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { parseArgs } from 'node:util';
import { GPT2_SMALL, OPT_350M, QWEN25_05B, SMOLLM2_135M } from '../models/arch/presets.ts';
import { embeddingWidthOf, kvWidthOf, parseArchSpec, type ArchSpec } from '../models/arch/spec.ts';
import { loadOnnxModel, saveOnnxModel, tensorDataBytes } from '../models/onnx/proto.ts';
import { quantizeModel, type AccuracyLevel } from '../models/quantization/onnx-quantize.ts';
import type { BlockQuantConfig } from '../models/quantization/block-quantizer.ts';
import { countParameters } from '../models/arch/accounting.ts';
import { buildModelFile } from '../models/onnx/build-model-file.ts';
import { defaultThreadCount, loadLanguageModel } from '../models/runtime/index.ts';


const HERE = path.dirname(fileURLToPath(import.meta.url));
const RESULTS = path.join(HERE, 'results', 'decode.json');
const CACHE = path.join(os.tmpdir(), 'fleetlm-bench-models');

/** Hand-written wide-shallow design at ~65M parameters in the spirit of MeRino's 64M model. */
const MERINO_LIKE_64M: ArchSpec = parseArchSpec({
  name: 'merino-like-64m',
  vocabSize: 50257,
  contextLength: 1024,
  embeddingWidth: 512,
  blocks: [{ width: 1024, ffnRatio: 2.5, layers: 4, heads: 16 }],
  tiedHead: true,
});

interface ChildResult {
  loadMs: number;
  firstTokenMs: number[];
  tokensPerSecond: number[];
  tokens: number;
  maxRssMiB: number;
  /** RSS once loaded and warmed up: what the model keeps resident. */
  rssAfterLoadMiB: number;
  reusesBuffers: boolean;
  threads: number;
}

/** VmHWM from /proc (Linux), else getrusage's maxRSS (which can include a spawning parent's peak). */
function peakRssMiB(): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) / 1024;
  } catch {
    // Not Linux: fall through.
  }
  return process.resourceUsage().maxRSS / 1024;
}

// ---------------------------------------------------------------------------------------------
// Child mode: measure one model in a fresh process so peak RSS belongs to that model alone.

async function child(modelPath: string, tokens: number, promptLen: number, repeats: number, threads: number, reuse: boolean, spin: boolean, prepack: boolean): Promise<void> {
  const t0 = performance.now();
  const model = await loadLanguageModel(modelPath, {
    intraOpNumThreads: threads,
    reuseBuffers: reuse,
    allowSpinning: spin,
    sessionConfig: prepack ? {} : { 'session.disable_prepacking': '1' },
  });
  const loadMs = performance.now() - t0;
  const rng = mulberry32(1);
  const V = Math.min(model.info.vocabSize, model.tokenizer.vocabSize);
  const prompt = Array.from({ length: promptLen }, () => Math.floor(rng() * V));
  await model.generateText(prompt, { maxTokens: 4, ignoreEos: true });
  const rssAfterLoadMiB = process.memoryUsage().rss / 2 ** 20;
  const firstTokenMs: number[] = [];
  const tokensPerSecond: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const res = await model.generateText(prompt, { maxTokens: tokens, ignoreEos: true });
    firstTokenMs.push(res.firstTokenMs);
    tokensPerSecond.push(res.tokensPerSecond);
  }
  const out: ChildResult = {
    loadMs,
    firstTokenMs,
    tokensPerSecond,
    tokens,
    maxRssMiB: peakRssMiB(),
    rssAfterLoadMiB,
    reusesBuffers: model.reusesBuffers,
    threads: model.info.threads,
  };
  await model.dispose();
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

// ---------------------------------------------------------------------------------------------
// Memory bandwidth: read a buffer far larger than the caches with memchr (Buffer.indexOf of a
// byte that is absent), in 1..threads workers at once over disjoint slices of shared memory.

const BW_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const buf = Buffer.from(workerData.sab, workerData.offset, workerData.length);
parentPort.on('message', () => { const t = performance.now(); buf.indexOf(7); parentPort.postMessage(performance.now() - t); });
`;

async function readBandwidth(threads: number, bytesPerThread = 256 * 1024 * 1024, rounds = 5): Promise<number> {
  const sab = new SharedArrayBuffer(bytesPerThread * threads);
  new Uint8Array(sab).fill(1);
  const workers = Array.from({ length: threads }, (_, i) => new Worker(BW_WORKER, { eval: true, workerData: { sab, offset: i * bytesPerThread, length: bytesPerThread } }));
  let best = 0;
  try {
    for (let r = 0; r < rounds; r++) {
      const start = performance.now();
      await Promise.all(workers.map((w) => new Promise<number>((resolve) => {
        w.once('message', resolve);
        w.postMessage('go');
      })));
      const seconds = (performance.now() - start) / 1000;
      best = Math.max(best, (bytesPerThread * threads) / seconds);
    }
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
  return best;
}

/** A plain JavaScript read loop, for comparison (often compute-bound rather than memory-bound). */
function loopBandwidth(bytes = 256 * 1024 * 1024, rounds = 3): number {
  const a = new Float64Array(bytes / 8).fill(1);
  let best = 0;
  let sink = 0;
  for (let r = 0; r < rounds; r++) {
    const start = performance.now();
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    for (let i = 0; i < a.length; i += 4) {
      s0 += a[i]!;
      s1 += a[i + 1]!;
      s2 += a[i + 2]!;
      s3 += a[i + 3]!;
    }
    sink += s0 + s1 + s2 + s3;
    best = Math.max(best, bytes / ((performance.now() - start) / 1000));
  }
  if (sink === 42) console.log('');
  return best;
}

// ---------------------------------------------------------------------------------------------

async function merinoSpec(specFile: string | undefined): Promise<{ spec: ArchSpec; source: string }> {
  if (specFile) {
    const raw = JSON.parse(readFileSync(specFile, 'utf8')) as { spec?: unknown };
    return { spec: parseArchSpec(raw.spec ?? raw), source: specFile };
  }
  try {
    const mod = (await import('../models/search/search.ts')) as {
      searchArchitecture?: (o: Record<string, unknown>) => { spec: ArchSpec; params: number };
    };
    if (typeof mod.searchArchitecture === 'function') {
      const result = mod.searchArchitecture({ objective: 'entropy', budgets: { params: 64e6 }, seed: 1, iterations: 20000 });
      const spec = parseArchSpec({ ...result.spec, name: 'merino-search-64m' });
      return { spec, source: "models/search searchArchitecture({ objective: 'entropy', budgets: { params: 64e6 }, seed: 1, iterations: 20000 })" };
    }
  } catch (err) {
    process.stderr.write(`[bench] search unavailable (${(err as Error).message.split('\n')[0]}); using the hand-written 64M design\n`);
  }
  return { spec: MERINO_LIKE_64M, source: 'hand-written wide-shallow 64M spec (bench/decode.ts)' };
}

/** The graph variants: plain ONNX ops, com.microsoft fused ops, and the fused graph with int8/int4 weights. */
type Variant = 'plain' | 'fused' | 'int8' | 'int4';
const VARIANTS: readonly Variant[] = ['plain', 'fused', 'int8', 'int4'];

/** Builds (or reuses) the model file of a variant; quantized variants are the fused graph through quantizeModel. */
async function ensureVariant(spec: ArchSpec, variant: Variant, quant: { blockSize: number; symmetric: boolean; accuracyLevel: AccuracyLevel }): Promise<string> {
  if (variant === 'plain' || variant === 'fused') return ensureModel(spec, variant === 'fused');
  const fusedPath = await ensureModel(spec, true);
  const config: BlockQuantConfig = { bits: variant === 'int8' ? 8 : 4, blockSize: quant.blockSize, symmetric: quant.symmetric };
  const file = fusedPath.replace(/\.onnx$/, `-${variant}-b${quant.blockSize}${quant.symmetric ? 's' : 'a'}-acc${quant.accuracyLevel}.onnx`);
  if (existsSync(file)) return file;
  const t = performance.now();
  process.stderr.write(`[bench] quantizing ${path.basename(file)} ...`);
  const r = quantizeModel(loadOnnxModel(fusedPath), { ...config, accuracyLevel: quant.accuracyLevel });
  await saveOnnxModel(r.model, file);
  process.stderr.write(` ${((performance.now() - t) / 1000).toFixed(1)} s\n`);
  return file;
}

/**
 * Bytes one decode step reads, from the graph itself: an initializer read only by Gathers costs one
 * row per Gather (the token's embedding), any other one is read whole (weights, quantized blobs,
 * scales, norms, biases); plus the KV cache up to `position`. Also returns the initializer total.
 */
function graphBytesPerToken(modelPath: string, spec: ArchSpec, position: number): { bytesPerToken: number; weightBytes: number; kvBytes: number } {
  const model = loadOnnxModel(modelPath, { resolveExternalData: false });
  const nodes = model.graph?.node ?? [];
  let bytes = 0;
  let total = 0;
  for (const t of model.graph?.initializer ?? []) {
    const size = tensorDataBytes(t);
    total += size;
    const readers = nodes.filter((n) => (n.input ?? []).includes(t.name ?? ''));
    const gathers = readers.filter((n) => n.opType === 'Gather' && n.input?.[0] === t.name);
    if (readers.length > 0 && gathers.length === readers.length) {
      const rows = Number(t.dims?.[0] ?? 1);
      bytes += gathers.length * (size / Math.max(1, rows));
    } else bytes += size;
  }
  let kv = 0;
  for (const b of spec.blocks) kv += b.layers * 2 * position * kvWidthOf(b) * 4;
  return { bytesPerToken: bytes + kv, weightBytes: total, kvBytes: kv };
}

async function ensureModel(spec: ArchSpec, fused: boolean): Promise<string> {
  const hash = createHash('sha256').update(JSON.stringify(spec)).digest('hex').slice(0, 12);
  const file = path.join(CACHE, `${spec.name ?? 'model'}-${fused ? 'fused' : 'plain'}-${hash}.onnx`);
  if (existsSync(file)) return file;
  mkdirSync(CACHE, { recursive: true });
  const t = performance.now();
  process.stderr.write(`[bench] building ${path.basename(file)} ...`);
  await buildModelFile(spec, { outPath: file, fused, seed: 1 });
  process.stderr.write(` ${((performance.now() - t) / 1000).toFixed(1)} s\n`);
  return file;
}

function runChild(modelPath: string, args: string[]): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', modelPath, ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`benchmark child for ${modelPath} exited with ${code}`));
      try {
        resolve(JSON.parse(out.trim().split('\n').at(-1)!) as ChildResult);
      } catch (err) {
        reject(err);
      }
    });
  });
}

interface TorchResult {
  name: string;
  torch: string;
  threads: number;
  firstTokenMs: number[];
  tokensPerSecond: number[];
  tokensPerSecondMedian: number;
  tokensPerSecondBest: number;
  maxRssMiB: number;
}

/** Runs bench/decode_torch.py on one spec in its own process (peak RSS per shape). */
function runTorch(python: string, spec: ArchSpec, args: string[], spin: boolean): Promise<TorchResult & { quantize: string }> {
  const specPath = path.join(CACHE, `${spec.name ?? 'spec'}.torch.json`);
  mkdirSync(CACHE, { recursive: true });
  writeFileSync(specPath, JSON.stringify(spec));
  return new Promise((resolve, reject) => {
    // Same waiting policy as onnxruntime's: without spinning, OpenMP workers sleep between regions.
    const env = { ...process.env, OMP_WAIT_POLICY: spin ? 'ACTIVE' : 'PASSIVE' };
    const p = spawn(python, [path.join(HERE, 'decode_torch.py'), '--spec', specPath, ...args], { stdio: ['ignore', 'pipe', 'inherit'], env });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`decode_torch.py exited with ${code} (is python3-torch installed?)`));
      try {
        resolve(JSON.parse(out.trim().split('\n').at(-1)!) as TorchResult & { quantize: string });
      } catch (err) {
        reject(err);
      }
    });
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      child: { type: 'string' },
      tokens: { type: 'string', default: '64' },
      prompt: { type: 'string', default: '32' },
      repeats: { type: 'string', default: '3' },
      threads: { type: 'string' },
      shapes: { type: 'string', default: 'merino,gpt2-small,opt-350m' },
      variants: { type: 'string', default: 'plain,fused' },
      block: { type: 'string', default: '32' },
      symmetric: { type: 'boolean', default: false },
      'accuracy-level': { type: 'string', default: '4' },
      'merino-spec': { type: 'string' },
      'no-reuse': { type: 'boolean', default: false },
      spin: { type: 'boolean', default: false },
      'no-prepack': { type: 'boolean', default: false },
      'compare-reuse': { type: 'boolean', default: false },
      quick: { type: 'boolean', default: false },
      torch: { type: 'boolean', default: false },
      python: { type: 'string', default: '/usr/bin/python3' },
      'bandwidth-gbs': { type: 'string' },
      out: { type: 'string', default: RESULTS },
    },
  });
  const tokens = values.quick ? 16 : Number(values.tokens);
  const promptLen = Number(values.prompt);
  const repeats = values.quick ? 1 : Number(values.repeats);
  const threads = values.threads ? Number(values.threads) : defaultThreadCount();
  const childArgs = (reuse: boolean) => ['--tokens', String(tokens), '--prompt', String(promptLen), '--repeats', String(repeats), '--threads', String(threads), ...(reuse ? [] : ['--no-reuse']), ...(values.spin ? ['--spin'] : []), ...(values['no-prepack'] ? ['--no-prepack'] : [])];

  if (values.child) {
    await child(values.child, tokens, promptLen, repeats, threads, !values['no-reuse'], values.spin === true, !values['no-prepack']);
    return;
  }

  const load = os.loadavg()[0]!;
  console.log(
    `decode benchmark: ${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, ${threads} onnxruntime threads (spinning ${values.spin ? 'on' : 'off'}), load average ${load.toFixed(2)}`,
  );
  console.log(`prompt ${promptLen} random tokens, ${tokens} generated tokens (greedy), ${repeats} repeat(s), medians shown`);
  if (load > os.cpus().length * 0.5) console.log('NOTE: the machine is busy (other work shares the cores); figures are noisy and pessimistic.');

  // Other work on shared cores depresses both the decode speed and the bandwidth measurement, so
  // bandwidth is re-measured between models and the best figure stands for the machine.
  const bwLoop = loopBandwidth();
  const bw1 = await readBandwidth(1);
  const bwN = threads > 1 ? await readBandwidth(threads) : bw1;
  const samples = [bw1, bwN];
  const override = values['bandwidth-gbs'] ? Number(values['bandwidth-gbs']) * 1e9 : undefined;
  const bandwidthNow = () => override ?? Math.max(...samples);
  console.log(
    `memory read bandwidth: ${(bw1 / 1e9).toFixed(1)} GB/s (memchr, 1 thread), ${(bwN / 1e9).toFixed(1)} GB/s (${threads} threads), ` +
      `${(bwLoop / 1e9).toFixed(1)} GB/s (JS Float64Array loop)${override ? `; bound uses --bandwidth-gbs ${values['bandwidth-gbs']}` : '; re-measured between models, the best is used'}`,
  );

  const wanted = values.shapes!.split(',');
  const merino = wanted.includes('merino') ? await merinoSpec(values['merino-spec']) : { spec: MERINO_LIKE_64M, source: 'hand-written wide-shallow 64M spec (bench/decode.ts)' };
  const catalogue: Record<string, ArchSpec> = {
    merino: merino.spec,
    'merino-hand': MERINO_LIKE_64M,
    'gpt2-small': GPT2_SMALL,
    'opt-350m': OPT_350M,
    'smollm2-135m': SMOLLM2_135M,
    'qwen2.5-0.5b': QWEN25_05B,
  };
  const shapes = wanted.map((s) => {
    const spec = catalogue[s];
    if (!spec) throw new Error(`unknown shape ${s}; allowed: ${Object.keys(catalogue).join(', ')}`);
    return [s, spec] as const;
  });
  const variants = values.variants!.split(',').map((v) => {
    if (!(VARIANTS as readonly string[]).includes(v)) throw new Error(`unknown variant ${v}; allowed: ${VARIANTS.join(', ')}`);
    return v as Variant;
  });
  const quant = { blockSize: Number(values.block), symmetric: values.symmetric === true, accuracyLevel: Number(values['accuracy-level']) as AccuracyLevel };
  console.log(`quantized variants: fused graph, weights int8/int4 block ${quant.blockSize} ${quant.symmetric ? 'symmetric' : 'asymmetric'} (MatMulNBits, accuracy_level ${quant.accuracyLevel})`);
  const describe = (spec: ArchSpec) =>
    `embedding ${embeddingWidthOf(spec)}, blocks ${spec.blocks.map((b) => `${b.layers}x(E ${b.width}, ffn ${b.ffnRatio}, heads ${b.heads}${b.shareWeights ? ', shared' : ''})`).join(' + ')}`;
  console.log(`merino shape: ${merino.source}: ${describe(merino.spec)}`);

  interface Row {
    shape: string;
    name: string;
    params: number;
    variant: Variant;
    reuseBuffers: boolean;
    /** Bytes of all initializers in the file (weights, quantized blobs, scales, norms). */
    weightBytes: number;
    loadMs: number;
    firstTokenMs: number;
    tokensPerSecond: number;
    tokensPerSecondRuns: number[];
    /** Best run: the least disturbed by other work on shared cores. */
    tokensPerSecondBest: number;
    peakRssMiB: number;
    rssAfterLoadMiB: number;
    bytesPerToken: number;
    boundTokensPerSecond: number;
    fractionOfBound: number;
  }
  const rows: Row[] = [];
  const header = 'shape              params   variant  reuse  load ms  first-token ms  tok/s med (best)  peak/resident MiB  weights MB  bound tok/s  of bound (best)';
  console.log(header);
  for (const [shape, spec] of shapes) {
    const position = promptLen + tokens / 2;
    for (const variant of variants) {
      const modelPath = await ensureVariant(spec, variant, quant);
      const { bytesPerToken, weightBytes } = graphBytesPerToken(modelPath, spec, position);
      const reuseModes = values['compare-reuse'] ? [true, false] : [!values['no-reuse']];
      for (const reuse of reuseModes) {
        const r = await runChild(modelPath, childArgs(reuse));
        samples.push(await readBandwidth(threads, 256 * 1024 * 1024, 3));
        const bound = bandwidthNow() / bytesPerToken;
        const tps = median(r.tokensPerSecond);
        const row: Row = {
          shape,
          name: spec.name ?? shape,
          params: countParameters(spec),
          variant,
          reuseBuffers: r.reusesBuffers,
          weightBytes,
          loadMs: r.loadMs,
          firstTokenMs: median(r.firstTokenMs),
          tokensPerSecond: tps,
          tokensPerSecondRuns: r.tokensPerSecond,
          tokensPerSecondBest: Math.max(...r.tokensPerSecond),
          peakRssMiB: r.maxRssMiB,
          rssAfterLoadMiB: r.rssAfterLoadMiB,
          bytesPerToken,
          boundTokensPerSecond: bound,
          fractionOfBound: tps / bound,
        };
        rows.push(row);
        console.log(
          `${row.name.padEnd(18)} ${(row.params / 1e6).toFixed(1).padStart(5)}M  ${row.variant.padEnd(7)}  ${String(row.reuseBuffers).padEnd(5)}  ${row.loadMs.toFixed(0).padStart(7)}  ` +
            `${row.firstTokenMs.toFixed(1).padStart(14)}  ${tps.toFixed(2).padStart(7)} (${row.tokensPerSecondBest.toFixed(2).padStart(6)})  ` +
            `${`${row.peakRssMiB.toFixed(0)}/${row.rssAfterLoadMiB.toFixed(0)}`.padStart(17)}  ${(row.weightBytes / 1e6).toFixed(0).padStart(10)}  ${bound.toFixed(1).padStart(11)}  ` +
            `${(100 * row.fractionOfBound).toFixed(0).padStart(4)}% (${(100 * row.tokensPerSecondBest / bound).toFixed(0)}%)`,
        );
      }
    }
  }

  // Restate every row against the final (best) bandwidth figure.
  const bandwidth = bandwidthNow();
  for (const row of rows) {
    row.boundTokensPerSecond = bandwidth / row.bytesPerToken;
    row.fractionOfBound = row.tokensPerSecond / row.boundTokensPerSecond;
  }
  console.log(`bandwidth used for the bound: ${(bandwidth / 1e9).toFixed(1)} GB/s (best of ${samples.length} measurements${override ? ', overridden' : ''})`);
  for (const row of rows) {
    console.log(`  ${row.name.padEnd(18)} ${row.variant.padEnd(6)} bound ${row.boundTokensPerSecond.toFixed(1)} tok/s: ${(100 * row.fractionOfBound).toFixed(0)}% (best run ${(100 * row.tokensPerSecondBest / row.boundTokensPerSecond).toFixed(0)}%)`);
  }

  const torchRows: Array<TorchResult & { quantize: string; shape: string; boundTokensPerSecond: number; fractionOfBound: number }> = [];
  if (values.torch) {
    console.log('\nPyTorch anchor (bench/decode_torch.py, same specs, KV cache, greedy; int8 = torch.quantization.quantize_dynamic on every Linear):');
    const torchModes = variants.some((v) => v === 'int8' || v === 'int4') ? ['none', 'int8'] : ['none'];
    for (const [shape, spec] of shapes) for (const mode of torchModes) {
      try {
        const t = await runTorch(values.python!, spec, ['--tokens', String(tokens), '--prompt', String(promptLen), '--repeats', String(repeats), '--threads', String(threads), '--quantize', mode], values.spin === true);
        // fp32 reads what the fused fp32 graph reads; dynamic int8 reads 1 byte per weight instead of 4 (KV cache stays float).
        const fp32 = graphBytesPerToken(await ensureModel(spec, true), spec, promptLen + tokens / 2);
        const bound = bandwidthNow() / (mode === 'int8' ? (fp32.bytesPerToken - fp32.kvBytes) / 4 + fp32.kvBytes : fp32.bytesPerToken);
        torchRows.push({ ...t, shape, boundTokensPerSecond: bound, fractionOfBound: t.tokensPerSecondMedian / bound });
        console.log(
          `  ${(spec.name ?? shape).padEnd(18)} ${mode === 'int8' ? 'int8 ' : 'fp32 '} torch ${t.torch}, ${t.threads} threads: first token ${median(t.firstTokenMs).toFixed(1)} ms, ` +
            `${t.tokensPerSecondMedian.toFixed(2)} (best ${t.tokensPerSecondBest.toFixed(2)}) tokens/s, peak RSS ${t.maxRssMiB.toFixed(0)} MiB, ${(100 * t.tokensPerSecondMedian / bound).toFixed(0)}% of bound`,
        );
      } catch (err) {
        console.log(`  ${shape}: skipped (${(err as Error).message})`);
      }
    }
  }

  const pick = (shape: string, variant: Variant) => rows.find((r) => r.shape === shape && r.variant === variant && r.reuseBuffers === !values['no-reuse']) ?? rows.find((r) => r.shape === shape && r.variant === variant);
  const ratios: Record<string, number> = {};
  console.log('\nratios (tokens/s):');
  for (const [shape] of shapes) {
    const p = pick(shape, 'plain');
    const f = pick(shape, 'fused');
    if (p && f) {
      ratios[`${shape} fused/plain`] = f.tokensPerSecond / p.tokensPerSecond;
      console.log(`  ${shape.padEnd(12)} fused / plain: ${(f.tokensPerSecond / p.tokensPerSecond).toFixed(2)}x (goal >= 1.3x)`);
    }
    for (const q of ['int8', 'int4'] as const) {
      const r = pick(shape, q);
      if (!r) continue;
      if (f) {
        const goal = q === 'int8' ? 1.6 : shape === 'smollm2-135m' ? 3 : shape === 'gpt2-small' ? 2.5 : undefined;
        ratios[`${shape} ${q}/fused`] = r.tokensPerSecond / f.tokensPerSecond;
        console.log(`  ${shape.padEnd(12)} ${q} / fused fp32: ${(r.tokensPerSecond / f.tokensPerSecond).toFixed(2)}x (best runs ${(r.tokensPerSecondBest / f.tokensPerSecondBest).toFixed(2)}x)${goal ? ` (goal >= ${goal}x)` : ''}`);
      }
      console.log(`  ${shape.padEnd(12)} ${q} of its own bandwidth bound: ${(100 * r.fractionOfBound).toFixed(0)}% (best run ${(100 * r.tokensPerSecondBest / r.boundTokensPerSecond).toFixed(0)}%) (goal >= 50%)`);
    }
  }
  for (const variant of ['plain', 'fused'] as const) {
    const opt = pick('opt-350m', variant);
    for (const shape of ['merino', 'gpt2-small']) {
      const r = pick(shape, variant);
      if (opt && r) {
        ratios[`${shape}/opt-350m ${variant}`] = r.tokensPerSecond / opt.tokensPerSecond;
        console.log(`  ${variant} ${shape} / opt-350m: ${(r.tokensPerSecond / opt.tokensPerSecond).toFixed(2)}x` + (shape === 'merino' ? ' (MeRino paper, Jetson Nano: 4.1x = 25.97 / 6.38 tokens/s)' : ''));
      }
    }
  }

  for (const t of torchRows) {
    const mine: readonly Variant[] = t.quantize === 'int8' ? ['int8', 'int4'] : ['plain', 'fused'];
    for (const variant of mine) {
      const r = pick(t.shape, variant);
      if (r) {
        const key = `${t.shape} ${variant}/torch${t.quantize === 'int8' ? '-int8' : ''}`;
        ratios[key] = r.tokensPerSecond / t.tokensPerSecondMedian;
        console.log(`  ${variant} ${t.shape} / pytorch ${t.quantize === 'int8' ? 'dynamic int8' : 'fp32'}: ${(r.tokensPerSecond / t.tokensPerSecondMedian).toFixed(2)}x (goal > 1)`);
      }
    }
  }

  const result = {
    benchmark: 'decode',
    date: new Date().toISOString(),
    machine: { cpu: os.cpus()[0]?.model ?? null, cores: os.cpus().length, loadAverage: os.loadavg(), node: process.version },
    settings: { promptTokens: promptLen, generatedTokens: tokens, repeats, threads, allowSpinning: values.spin === true, prepacking: !values['no-prepack'], sampling: 'greedy', quantization: quant },
    bandwidth: { memchr1Thread: bw1, memchrThreads: bwN, jsLoop: bwLoop, samples, used: bandwidth, overridden: override !== undefined },
    merinoSource: merino.source,
    merinoSpec: merino.spec,
    rows,
    torch: torchRows,
    ratios,
  };
  const outPath = values.out!;
  mkdirSync(path.dirname(outPath), { recursive: true });
  writeFileSync(outPath, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`\nwrote ${path.relative(process.cwd(), outPath)}`);
}

await main();

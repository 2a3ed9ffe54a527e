// How well does a measured layer table predict a model's decode latency? On this machine as the device:
// builds the layer grid of the model's own design (layerGridOf), times it with the device timer a
// benchmark@1 job runs (decode-step-timer.ts), turns the timings into a layer-latency@1 table, and
// compares its prediction (and the roofline's) with the decode latency of the model itself, timed with
// the runtime the agent serves with (same threads, greedy, prompt + generated tokens within the grid's
// KV lengths). Alternates grid timing and model decoding over repeats so drift hits both alike.
// Run: npx tsx bench/latency-prediction.ts [--arch assets/demo-model/arch.json --weights assets/demo-model/weights.safetensors
//        --storage int4 --threads 1 --tokens 24 --prompt-tokens 8 --repeats 5 --kv 32,128]
// Writes bench/results/latency-prediction.json.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildGridFiles, layerGridOf, planGrid } from '../models/benchmark/grid.ts';
import type { GridStorage } from '../models/benchmark/grid-file.ts';
import { timeGridFiles } from '../models/benchmark/decode-step-timer.ts';
import { entriesFromTimings } from '../models/benchmark/layer-timings.ts';
import { weightStorageOfBits } from '../models/arch/weight-storage.ts';
import { buildModelFile, loadArchSpec } from '../models/onnx/build-model-file.ts';
import { loadOnnxModel, saveOnnxModel } from '../models/onnx/proto.ts';
import { quantizeModel } from '../models/quantization/onnx-quantize.ts';
import { loadLanguageModel } from '../models/runtime/index.ts';
import { loadTokenizer } from '../models/runtime/tokenizer-file.ts';
import { computeUnitOf, deviceProfile } from '../models/search/device-profiles.ts';
import { predictLatencyMs } from '../models/search/latency-model.ts';
import { parseLatencyTable, type LayerLatencyTable } from '../models/search/latency-table.ts';
import { MeasuredLatencyModel } from '../models/search/measured-latency.ts';
import { RooflineLatencyModel } from '../models/search/roofline-latency.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.join(HERE, '..');
const { values: args } = parseArgs({
  options: {
    arch: { type: 'string', default: path.join(ROOT, 'assets/demo-model/arch.json') },
    weights: { type: 'string', default: path.join(ROOT, 'assets/demo-model/weights.safetensors') },
    tokenizer: { type: 'string', default: path.join(ROOT, 'assets/demo-model/tokenizer.json') },
    storage: { type: 'string', default: 'int4' },
    device: { type: 'string', default: 'rpi4' },
    threads: { type: 'string', default: '1' },
    tokens: { type: 'string', default: '24' },
    'prompt-tokens': { type: 'string', default: '8' },
    repeats: { type: 'string', default: '5' },
    kv: { type: 'string', default: '32,128' },
    samples: { type: 'string', default: '15' },
    /** Time this ONNX file (e.g. a bundle's model.onnx: compressed embedding, quantized) instead of building one from --weights. */
    model: { type: 'string' },
  },
});
const storage = args.storage as GridStorage;
if (!['fp32', 'int8', 'int4'].includes(storage)) throw new Error(`--storage must be fp32, int8 or int4; got ${storage}`);
const THREADS = Number(args.threads);
const TOKENS = Number(args.tokens);
const PROMPT = Number(args['prompt-tokens']);
const REPEATS = Number(args.repeats);
const KV = args.kv!.split(',').map(Number);
const SAMPLES = Number(args.samples);

const median = (v: readonly number[]): number => {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const spec = await loadArchSpec(args.arch!);
const grid = layerGridOf(spec);
if (!grid) throw new Error(`${args.arch}: its blocks mix head widths; one grid has one`);
const dir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-latency-prediction-'));
try {
  // The model as it ships: trained weights, weights block-quantized as the grid is (or --model as given).
  const modelPath = args.model ?? path.join(dir, 'model.onnx');
  if (!args.model) await buildModelFile(spec, { outPath: modelPath, fused: false, externalData: 'never', weightsPath: args.weights });
  if (!args.model && storage !== 'fp32') {
    const q = quantizeModel(loadOnnxModel(modelPath), { bits: storage === 'int8' ? 8 : 4, blockSize: 32, symmetric: false });
    await saveOnnxModel(q.model, modelPath, { externalData: 'never' });
  }
  const files = planGrid({ ...grid, maxKvLength: Math.max(...KV), storage });
  await buildGridFiles(files, { storage, maxKvLength: Math.max(...KV) }, dir);
  const tokenizer = await loadTokenizer(args.tokenizer!);
  const lm = await loadLanguageModel(modelPath, { tokenizer, intraOpNumThreads: THREADS });
  const prompt = Array.from({ length: PROMPT }, (_, i) => 100 + i);

  const decodeMs: number[] = [];
  const tables: LayerLatencyTable[] = [];
  for (let r = 0; r < REPEATS; r++) {
    const { timings } = await timeGridFiles(dir, files, { threads: THREADS, samples: SAMPLES, warmup: 2, kvLengths: KV, deadline: Date.now() + 600_000, waitIdle: async () => {} });
    const entries = entriesFromTimings(files, timings);
    tables.push(parseLatencyTable({ format: 'fleetlm/layer-latency@1', device: args.device, seqLen: KV[0], storage, bytesPerWeight: storage === 'fp32' ? 4 : storage === 'int8' ? 1 : 0.5, layers: entries.layers, heads: entries.heads }));
    // Decode as the agent serves the demo's completions (TOKENS tokens, temperature 0.8, top-p 0.95), five
    // times; the figure the agent reports per request.
    for (let k = 0; k < 5; k++) {
      const g = await lm.generateText(prompt, { maxTokens: TOKENS, ignoreEos: true, temperature: 0.8, topP: 0.95, seed: r * 5 + k });
      decodeMs.push(1000 / g.tokensPerSecond);
    }
  }
  await lm.dispose();

  // One table per repeat; predictions at the table's KV length (what `latency --check` uses) and at the
  // mean KV length of the timed decode (prompt + half the generated tokens).
  const meanKv = Math.round(PROMPT + TOKENS / 2);
  const unit = computeUnitOf(deviceProfile(args.device!), 'cpu').unit;
  const weights = storage === 'fp32' ? null : weightStorageOfBits(storage === 'int8' ? 8 : 4, { blockSize: 32 });
  const predict = (seqLen: number) =>
    tables.map((t) => {
      const roofline = new RooflineLatencyModel(unit, weights ? { seqLen, weights } : { seqLen, bytesPerWeight: 4 });
      return { table: predictLatencyMs(spec, new MeasuredLatencyModel(t, roofline)), roofline: predictLatencyMs(spec, roofline) };
    });
  const measured = median(decodeMs);
  const atTable = predict(KV[0]!);
  const atMean = predict(meanKv);
  const err = (p: number) => (p - measured) / measured;
  const pct = (x: number) => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)}%`;
  const tableAt = median(atTable.map((p) => p.table));
  const tableMean = median(atMean.map((p) => p.table));
  const load = os.loadavg()[0]!;
  console.log(`model ${spec.name}: ${spec.blocks.map((b) => `${b.layers}x(E=${b.width},F=${Math.round(b.width * (b.ffnRatio ?? 4))},H=${b.heads}x${b.headDim})`).join(' ')}, vocab ${spec.vocabSize}, ${storage}, ${THREADS} thread(s)`);
  console.log(`grid: ${files.length} files (${grid.widths.join('/')} wide), ${SAMPLES} samples per file and KV length, ${REPEATS} repeats`);
  console.log(`decode (runtime, ${PROMPT}-token prompt, ${TOKENS} tokens sampled at temperature 0.8 / top-p 0.95, ${decodeMs.length} requests): median ${measured.toFixed(3)} ms/token (range ${Math.min(...decodeMs).toFixed(3)}-${Math.max(...decodeMs).toFixed(3)})`);
  console.log(`measured table at KV ${KV[0]}: ${tableAt.toFixed(3)} ms (${pct(err(tableAt))}; per repeat ${atTable.map((p) => pct(err(p.table))).join(', ')})`);
  console.log(`measured table at KV ${meanKv} (mean of the decode): ${tableMean.toFixed(3)} ms (${pct(err(tableMean))})`);
  console.log(`roofline at KV ${KV[0]}: ${atTable[0]!.roofline.toFixed(3)} ms (${pct(err(atTable[0]!.roofline))})`);
  console.log(`load average ${load.toFixed(2)} on ${os.cpus().length} cores`);
  mkdirSync(path.join(HERE, 'results'), { recursive: true });
  writeFileSync(
    path.join(HERE, 'results', 'latency-prediction.json'),
    JSON.stringify(
      {
        model: { name: spec.name, blocks: spec.blocks, vocabSize: spec.vocabSize, storage },
        settings: { threads: THREADS, tokens: TOKENS, promptTokens: PROMPT, repeats: REPEATS, kvLengths: KV, samples: SAMPLES, device: args.device },
        decodeMsPerRequest: decodeMs,
        measuredMs: measured,
        tableMsAtTableKv: atTable.map((p) => p.table),
        tableMsAtMeanKv: atMean.map((p) => p.table),
        rooflineMs: atTable[0]!.roofline,
        tableError: err(tableAt),
        tableErrorAtMeanKv: err(tableMean),
        rooflineError: err(atTable[0]!.roofline),
        tables,
        loadAverage1m: load,
        measuredAt: new Date().toISOString(),
      },
      null,
      2,
    ),
  );
  console.log('wrote bench/results/latency-prediction.json');
} finally {
  rmSync(dir, { recursive: true, force: true });
}

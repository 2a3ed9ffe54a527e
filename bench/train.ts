// Training-throughput benchmark of the CPU trainer on the 5.8M-parameter model (vocab 4096,
// width 256, 6 layers, seq 128, batch 8): tokens/s per step with a phase split, against a CPU-time
// figure (immune to other processes on shared cores) and onnxruntime's forward pass of the same
// model as a bound on what moving the forward to onnxruntime could give.
// Run: npx tsx bench/train.ts [--steps 3 --warmup 1 --threads 2 --no-ort] (--threads: trainer GEMM and
// onnxruntime threads; default FLEETLM_TRAIN_THREADS, else the cores, at most 2)
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { countForwardFlops, countParameters } from '../models/arch/accounting.ts';
import { parseArchSpec } from '../models/arch/spec.ts';
import { buildModelFile } from '../models/onnx/build-model-file.ts';
import { initWeights, layerPlan } from '../models/arch/weights.ts';
import { createSession, float32Tensor, int64Tensor } from '../models/runtime/onnx-backend.ts';
import { TrainableDecoder } from '../models/training/model.ts';
import { AdamW, clipGradNorm } from '../models/training/optimizer.ts';
import { SeededRandom } from '../models/random.ts';
import { gemmNT } from '../models/training/kernels.ts';
import { gemmThreads, setGemmThreads } from '../models/training/wasm-gemm.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    steps: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '1' },
    threads: { type: 'string' },
    'no-ort': { type: 'boolean', default: false },
  },
});
const STEPS = Number(args.steps);
const WARMUP = Number(args.warmup);
if (args.threads !== undefined) setGemmThreads(Number(args.threads));
const THREADS = gemmThreads();

/** The speed-anchor model. */
const spec = parseArchSpec({
  name: 'bench-5.8m',
  vocabSize: 4096,
  contextLength: 128,
  blocks: [{ width: 256, ffnRatio: 4, layers: 6, heads: 4, headDim: 64 }],
});
const B = 8;
const S = 128;

const cpuSeconds = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

function measureGemm(): { cpu: number; wall: number } {
  const [M, N, K] = [1024, 1024, 256];
  const a = new Float32Array(M * K).fill(0.5);
  const b = new Float32Array(N * K).fill(0.25);
  const c = new Float32Array(M * N);
  gemmNT(a, b, c, M, N, K);
  const c0 = cpuSeconds();
  const w0 = performance.now();
  const reps = 4;
  for (let i = 0; i < reps; i++) gemmNT(a, b, c, M, N, K);
  const flops = reps * 2 * M * N * K;
  return { cpu: flops / (cpuSeconds() - c0) / 1e9, wall: flops / ((performance.now() - w0) / 1000) / 1e9 };
}

async function main(): Promise<void> {
  const params = countParameters(spec);
  const rng = new SeededRandom(1);
  const tokens = Int32Array.from({ length: B * (S + 1) }, () => rng.int(spec.vocabSize));
  const model = new TrainableDecoder(spec, initWeights(spec, 0));
  const opt = new AdamW(model.params);
  const steps: Array<{ wallMs: number; cpuMs: number; forwardMs: number; backwardMs: number; optimizerMs: number; loss: number }> = [];
  for (let i = 0; i < WARMUP + STEPS; i++) {
    const w0 = performance.now();
    const c0 = cpuSeconds();
    model.params.zeroGrads();
    const loss = model.loss(tokens, B, true);
    const w1 = performance.now();
    model.backward();
    const w2 = performance.now();
    clipGradNorm(model.params.grads, 1);
    opt.step(1e-4);
    const w3 = performance.now();
    const row = { wallMs: w3 - w0, cpuMs: (cpuSeconds() - c0) * 1000, forwardMs: w1 - w0, backwardMs: w2 - w1, optimizerMs: w3 - w2, loss };
    if (i >= WARMUP) steps.push(row);
    process.stderr.write(`step ${i + 1}/${WARMUP + STEPS}${i < WARMUP ? ' (warm-up)' : ''}: ${(row.wallMs / 1000).toFixed(2)} s wall, ${(row.cpuMs / 1000).toFixed(2)} s cpu, loss ${loss.toFixed(3)}\n`);
  }
  const mean = (k: keyof (typeof steps)[number]): number => steps.reduce((s, r) => s + r[k], 0) / steps.length;
  const tokensPerStep = B * S;
  const trainer = {
    threads: THREADS,
    wallMsPerStep: mean('wallMs'),
    cpuMsPerStep: mean('cpuMs'),
    forwardMs: mean('forwardMs'),
    backwardMs: mean('backwardMs'),
    optimizerMs: mean('optimizerMs'),
    tokensPerSecondWall: tokensPerStep / (mean('wallMs') / 1000),
    tokensPerSecondCpu: tokensPerStep / (mean('cpuMs') / 1000),
    // Training FLOPs ~ 3x forward (forward + backward for inputs and weights).
    gflopsPerSecondCpu: (3 * countForwardFlops(spec, S) * B) / (mean('cpuMs') / 1000) / 1e9,
  };

  let ort: Record<string, number> | null = null;
  if (!args['no-ort']) {
    const dir = path.join(os.tmpdir(), 'fleetlm-bench-train');
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, 'bench-5.8m.onnx');
    await buildModelFile(spec, { outPath: file, seed: 0 });
    const session = await createSession(file, { intraOpNumThreads: THREADS });
    const ids = BigInt64Array.from({ length: B * S }, (_, i) => BigInt(tokens[i]!));
    const pos = BigInt64Array.from({ length: B * S }, (_, i) => BigInt(i % S));
    const mask = new BigInt64Array(B * S).fill(1n);
    const feeds: Record<string, ReturnType<typeof float32Tensor>> = {
      input_ids: int64Tensor(ids, [B, S]),
      position_ids: int64Tensor(pos, [B, S]),
      attention_mask: int64Tensor(mask, [B, S]),
    };
    for (const l of layerPlan(spec)) {
      feeds[`past_key_values.${l.index}.key`] = float32Tensor(new Float32Array(0), [B, l.heads, 0, l.headDim]);
      feeds[`past_key_values.${l.index}.value`] = float32Tensor(new Float32Array(0), [B, l.heads, 0, l.headDim]);
    }
    await session.run(feeds);
    const runs = 3;
    const w0 = performance.now();
    const c0 = cpuSeconds();
    for (let i = 0; i < runs; i++) await session.run(feeds);
    const wallMs = (performance.now() - w0) / runs;
    const cpuMs = ((cpuSeconds() - c0) * 1000) / runs;
    await session.dispose();
    ort = { threads: THREADS, forwardWallMs: wallMs, forwardCpuMs: cpuMs, forwardSpeedupVsTrainerWall: trainer.forwardMs / wallMs };
  }

  let torch: string;
  try {
    execFileSync('python3', ['-c', 'import torch'], { stdio: 'ignore' });
    torch = 'available but not run by this script';
  } catch {
    torch = "not installed (python3 -c 'import torch' fails); the issue quotes ~1,200 tokens/s with OpenBLAS on this machine class";
  }
  const load = os.loadavg()[0]!;
  const result = {
    benchmark: 'train',
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? 'unknown', node: process.version, loadAverage1m: load },
    model: { ...spec, parameters: params },
    batch: B,
    seq: S,
    steps: STEPS,
    gemm: measureGemm(),
    trainer,
    onnxruntimeForward: ort,
    pytorch: torch,
    goal: 'at least half of PyTorch CPU tokens/s (~600 tokens/s)',
  };
  console.log(`model ${spec.name}: ${params.toLocaleString('en-US')} parameters, batch ${B} x seq ${S} (${tokensPerStep} tokens/step), load average ${load.toFixed(1)} on ${os.cpus().length} cores`);
  console.log(`GEMM kernel (1024x1024x256): ${result.gemm.cpu.toFixed(2)} GFLOP/s per CPU-second, ${result.gemm.wall.toFixed(2)} GFLOP/s wall`);
  console.log(`trainer (${THREADS} GEMM thread${THREADS === 1 ? '' : 's'}): ${(trainer.wallMsPerStep / 1000).toFixed(2)} s/step wall (forward ${(trainer.forwardMs / 1000).toFixed(2)}, backward ${(trainer.backwardMs / 1000).toFixed(2)}, clip+AdamW ${(trainer.optimizerMs / 1000).toFixed(2)})`);
  console.log(`trainer: ${trainer.tokensPerSecondWall.toFixed(0)} tokens/s wall, ${trainer.tokensPerSecondCpu.toFixed(0)} tokens/s per CPU-second (${trainer.gflopsPerSecondCpu.toFixed(2)} GFLOP/s)`);
  if (ort) console.log(`onnxruntime forward (${THREADS} thread${THREADS === 1 ? '' : 's'}): ${ort.forwardWallMs!.toFixed(0)} ms wall, ${ort.forwardCpuMs!.toFixed(0)} ms cpu vs trainer forward ${trainer.forwardMs.toFixed(0)} ms (${ort.forwardSpeedupVsTrainerWall!.toFixed(1)}x)`);
  console.log(`pytorch: ${torch}`);
  mkdirSync(path.join(HERE, 'results'), { recursive: true });
  writeFileSync(path.join(HERE, 'results', 'train.json'), `${JSON.stringify(result, null, 2)}\n`);
}

await main();

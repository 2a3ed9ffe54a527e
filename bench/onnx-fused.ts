// Plain vs fused ONNX decoder, A/B in one process: both graphs decode the same tokens with steps
// interleaved, so machine load drifts hit both alike. Prints graph sizes, per-token decode times
// and the fused/plain speed ratio. Run: npx tsx bench/onnx-fused.ts [--arch gpt2-small] [--steps 48]
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildModelFile, loadArchSpec } from '../models/onnx/build-model-file.ts';
import { loadLanguageModel } from '../models/runtime/index.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    arch: { type: 'string', default: 'gpt2-small' },
    steps: { type: 'string', default: '48' },
    prompt: { type: 'string', default: '16' },
    threads: { type: 'string', default: '2' },
  },
});
const steps = Number(values.steps);
const promptLen = Number(values.prompt);
const threads = Number(values.threads);

const spec = await loadArchSpec(values.arch!);
const dir = path.join(os.tmpdir(), 'fleetlm-bench-onnx-fused');
mkdirSync(dir, { recursive: true });
const variants = [] as Array<{ name: 'plain' | 'fused'; nodes: number; buildMs: number; path: string }>;
for (const fused of [false, true]) {
  const name = fused ? 'fused' : 'plain';
  const out = path.join(dir, `${spec.name ?? 'model'}-${name}.onnx`);
  const t0 = performance.now();
  const r = await buildModelFile(spec, { outPath: out, fused, seed: 1 });
  variants.push({ name, nodes: r.nodes, buildMs: performance.now() - t0, path: out });
  process.stderr.write(`built ${name}: ${r.nodes} nodes, ${r.parameters} parameters\n`);
}

const models = [];
for (const v of variants) {
  const m = await loadLanguageModel(v.path, { intraOpNumThreads: threads });
  await m.warmUp();
  models.push(m);
}
const states = models.map((m) => m.createState(promptLen + steps + 1));
const prompt = Array.from({ length: promptLen }, (_, i) => (i * 7919) % spec.vocabSize);
const prefillMs: number[] = [];
for (let i = 0; i < models.length; i++) {
  const t0 = performance.now();
  await models[i]!.step(states[i]!, prompt);
  prefillMs.push(performance.now() - t0);
}
const times: number[][] = models.map(() => []);
const cpu: number[][] = models.map(() => []);
for (let s = 0; s < steps; s++) {
  const token = (s * 104729) % spec.vocabSize;
  for (let i = 0; i < models.length; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await models[i]!.step(states[i]!, [token]);
    times[i]!.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpu[i]!.push((c.user + c.system) / 1000);
  }
}
for (const m of models) await m.dispose();

const summary = variants.map((v, i) => {
  const sorted = [...times[i]!].sort((a, b) => a - b);
  const median = sorted[sorted.length >> 1]!;
  const cpuSorted = [...cpu[i]!].sort((a, b) => a - b);
  return {
    variant: v.name,
    nodes: v.nodes,
    buildMs: Math.round(v.buildMs),
    prefillMs: prefillMs[i]!,
    decodeMsMin: sorted[0]!,
    decodeMsMedian: median,
    tokensPerSecond: 1000 / median,
    /** CPU time of the process per decode step (all threads): less sensitive to other load than wall time. */
    decodeCpuMsMedian: cpuSorted[cpuSorted.length >> 1]!,
  };
});
const ratio = summary[1]!.tokensPerSecond / summary[0]!.tokensPerSecond;
for (const s of summary) {
  console.log(
    `${(spec.name ?? values.arch!).padEnd(12)} ${s.variant.padEnd(6)} nodes ${String(s.nodes).padStart(4)}  prefill(${promptLen}) ${s.prefillMs.toFixed(1).padStart(7)} ms  decode median ${s.decodeMsMedian.toFixed(2).padStart(7)} ms (min ${s.decodeMsMin.toFixed(2)})  ${s.tokensPerSecond.toFixed(2)} tok/s  cpu/step ${s.decodeCpuMsMedian.toFixed(2)} ms`,
  );
}
const cpuRatio = summary[0]!.decodeCpuMsMedian / summary[1]!.decodeCpuMsMedian;
console.log(`fused/plain decode speed: ${ratio.toFixed(3)}x wall, ${cpuRatio.toFixed(3)}x CPU time (load average ${os.loadavg()[0]!.toFixed(2)})`);
mkdirSync(path.join(HERE, 'results'), { recursive: true });
writeFileSync(
  path.join(HERE, 'results', 'onnx-fused.json'),
  `${JSON.stringify({ benchmark: 'onnx-fused', date: new Date().toISOString(), arch: spec.name ?? values.arch, threads, steps, promptLen, loadAverage: os.loadavg(), summary, fusedOverPlain: ratio, fusedOverPlainCpu: cpuRatio }, null, 2)}\n`,
);

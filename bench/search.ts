// Times the full default MeRino search (100,000 iterations, population 512, parent set 64) and
// compares the best design's entropy with the uniform GPT-2-style design of the same parameter budget.
// A third scenario turns the embedding and attention floors off to show what they cost in entropy.
// Run: npx tsx bench/search.ts
import os from 'node:os';
import { writeJsonAtomic } from '../common/atomic-file.ts';
import { formatCount } from '../common/units.ts';
import { countForwardFlops, countParameters } from '../models/arch/accounting.ts';
import { networkEntropy } from '../models/entropy/network-entropy.ts';
import { uniformGpt2Design } from '../models/search/baselines.ts';
import { computeUnitOf, deviceProfile } from '../models/search/device-profiles.ts';
import { predictLatencyMs } from '../models/search/latency-model.ts';
import { RooflineLatencyModel } from '../models/search/roofline-latency.ts';
import { searchArchitecture, type SearchOptions } from '../models/search/search.ts';

const PARAMS = 64e6;
const FLOPS = 160e9;
const DEVICE = 'jetson-nano';
const RUNS = 5;

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

const shape = (blocks: ReadonlyArray<{ width: number; layers: number; ffnRatio: number; heads: number }>): string =>
  blocks.map((b) => `${b.width}x${b.layers} (R ${b.ffnRatio}, ${b.heads} heads)`).join(' | ');

const scenarios: Array<{ name: string; options: SearchOptions }> = [
  { name: `params ${formatCount(PARAMS)} + FLOPs ${formatCount(FLOPS)} on ${DEVICE}`, options: { objective: 'entropy', budgets: { params: PARAMS, flops: FLOPS }, device: DEVICE } },
  { name: `params ${formatCount(PARAMS)} only`, options: { objective: 'entropy', budgets: { params: PARAMS } } },
  {
    name: `params ${formatCount(PARAMS)} + FLOPs ${formatCount(FLOPS)} on ${DEVICE}, floors off (minEmbeddingWidth 64, minAttentionRatio 0)`,
    options: { objective: 'entropy', budgets: { params: PARAMS, flops: FLOPS }, device: DEVICE, minEmbeddingWidth: 64, minAttentionRatio: 0 },
  },
];

const latencyModel = new RooflineLatencyModel(computeUnitOf(deviceProfile(DEVICE)).unit, { seqLen: 1024 });
const baseline = uniformGpt2Design(PARAMS)!;
const baselineFigures = {
  spec: shape(baseline.blocks),
  params: countParameters(baseline),
  flops: countForwardFlops(baseline, 1024),
  entropy: networkEntropy(baseline).entropy,
  latencyMs: predictLatencyMs(baseline, latencyModel),
};
console.log(`uniform GPT-2-style design within ${formatCount(PARAMS)} params: ${baselineFigures.spec}`);
console.log(
  `  params ${formatCount(baselineFigures.params)}, FLOPs ${formatCount(baselineFigures.flops)}, entropy ${baselineFigures.entropy.toFixed(0)} nats, ${baselineFigures.latencyMs.toFixed(2)} ms/token on ${DEVICE}`,
);

const results = [];
for (const sc of scenarios) {
  const times: number[] = [];
  const cpuTimes: number[] = [];
  let best = searchArchitecture({ ...sc.options, seed: 1 }); // warm-up (JIT), not timed
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    best = searchArchitecture({ ...sc.options, seed: 1 });
    const c = process.cpuUsage(c0);
    times.push(performance.now() - t0);
    cpuTimes.push((c.user + c.system) / 1000);
  }
  const seeds = [1, 2, 3, 4, 5].map((seed) => searchArchitecture({ ...sc.options, seed }).entropy);
  const row = {
    scenario: sc.name,
    iterations: best.settings.iterations,
    population: best.settings.population,
    parentSetSize: best.settings.parentSetSize,
    medianMs: median(times),
    timesMs: times,
    medianCpuMs: median(cpuTimes),
    bestEntropy: best.entropy,
    bestSpec: shape(best.spec.blocks),
    embeddingWidth: best.spec.embeddingWidth ?? best.spec.blocks[0]!.width,
    minEmbeddingWidth: best.settings.minEmbeddingWidth,
    minAttentionRatio: best.settings.minAttentionRatio,
    params: best.params,
    flops: best.flops,
    rho: best.rho,
    latencyMs: best.latencyMs,
    entropyBySeed: seeds,
    entropyVsUniformGpt2: best.entropy / baselineFigures.entropy,
  };
  results.push(row);
  console.log(`\n${sc.name}: ${row.iterations} iterations, population ${row.population}, parents ${row.parentSetSize}`);
  console.log(`  time: median ${row.medianMs.toFixed(1)} ms wall, ${row.medianCpuMs.toFixed(1)} ms CPU over ${RUNS} runs (wall ${times.map((t) => t.toFixed(0)).join(', ')} ms)`);
  console.log(`  best entropy ${row.bestEntropy.toFixed(0)} nats = ${row.entropyVsUniformGpt2.toFixed(2)}x the uniform GPT-2-style design`);
  console.log(`  design ${row.bestSpec}; embedding ${row.embeddingWidth}; params ${formatCount(row.params)}, FLOPs ${formatCount(row.flops)}, rho ${row.rho.toFixed(3)}`);
  console.log(`  best entropy by seed 1..5: ${seeds.map((e) => e.toFixed(0)).join(', ')}`);
}

await writeJsonAtomic('bench/results/search.json', {
  bench: 'search',
  date: new Date().toISOString(),
  node: process.version,
  cpus: os.cpus().length,
  cpuModel: os.cpus()[0]?.model,
  loadAverage1m: os.loadavg()[0],
  baseline: baselineFigures,
  results,
});
console.log(`\nmachine: ${os.cpus().length} CPUs, load average ${os.loadavg()[0]!.toFixed(1)} (other processes share the cores)`);
console.log('wrote bench/results/search.json');

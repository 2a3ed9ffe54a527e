// Study: which zero-cost objective ranks designs by trained quality? Trains 12 designs at one
// parameter budget (the entropy search's pick, the uniform GPT-2 recipe, a depth x width grid and
// seeded random two-block designs) for several epochs with several seeds each, then reports Kendall
// tau-b and Spearman rho with bootstrap intervals between each objective and validation quality.
// Run: npx tsx bench/entropy-quality.ts [--budget 280000 --train-tokens 24000 --epochs 3 --seeds 3 --random 2 --jobs 2 --list]
// Writes bench/results/entropy-quality.json and .svg.
import { fork } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { countParameters } from '../models/arch/accounting.ts';
import { parseArchSpec, type ArchSpec } from '../models/arch/spec.ts';
import { objectiveValue } from '../models/search/objective.ts';
import { searchArchitecture } from '../models/search/search.ts';
import { bpeTokenizer, trainBpe } from '../models/training/bpe-trainer.ts';
import { loadDocuments, splitDocuments, tokenizeDocuments } from '../models/training/data.ts';
import { SeededRandom } from '../models/random.ts';
import { trainModel } from '../models/training/trainer.ts';
import { bootstrapPaired, kendallTauB, spearman, type BootstrapEstimate } from './rank-stats.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const { values: args } = parseArgs({
  options: {
    budget: { type: 'string', default: '280000' },
    'train-tokens': { type: 'string', default: '24000' },
    epochs: { type: 'string', default: '3' },
    seeds: { type: 'string', default: '3' },
    random: { type: 'string', default: '2' },
    vocab: { type: 'string', default: '512' },
    jobs: { type: 'string', default: String(Math.min(2, os.availableParallelism())) },
    resamples: { type: 'string', default: '10000' },
    worker: { type: 'boolean', default: false },
    list: { type: 'boolean', default: false },
    /** Report from the cached runs only (no training); designs without a run are left out. */
    'report-only': { type: 'boolean', default: false },
  },
});
const BUDGET = Number(args.budget);
const TRAIN_TOKENS = Number(args['train-tokens']);
const EPOCHS = Number(args.epochs);
const SEEDS = Array.from({ length: Number(args.seeds) }, (_, i) => i + 1);
const VOCAB = Number(args.vocab);
const JOBS = Math.max(1, Number(args.jobs));
const RESAMPLES = Number(args.resamples);
const CONTEXT = 64;
const SEQ = 64;
const BATCH = 8;
const LR = 2e-3;
const EVAL_TOKENS = 16384;
const HEAD_DIM = 32;
/** The data split, tokenizer and design list use this seed; the training seeds vary init and batch order only. */
const DATA_SEED = 1;
const WIDTHS = Array.from({ length: 7 }, (_, i) => 64 + 32 * i); // 64..256
const FFN = [1, 1.5, 2, 2.5, 3, 3.5, 4];

interface BlockIn {
  width: number;
  ffnRatio: number;
  layers: number;
  heads?: number;
}
const design = (name: string, blocks: BlockIn[]): ArchSpec =>
  parseArchSpec({ name, vocabSize: VOCAB, contextLength: CONTEXT, blocks: blocks.map((b) => ({ ...b, heads: b.heads ?? b.width / HEAD_DIM, headDim: HEAD_DIM })) });

/** The most layers of width w (FFN ratio r) that fit `budget`. */
function fill(name: string, width: number, ffnRatio: number, budget = BUDGET): ArchSpec {
  let layers = 1;
  if (countParameters(design(name, [{ width, ffnRatio, layers }])) > budget) throw new Error(`${name}: one layer is over the budget`);
  while (countParameters(design(name, [{ width, ffnRatio, layers: layers + 1 }])) <= budget) layers++;
  return design(name, [{ width, ffnRatio, layers }]);
}

/**
 * The uniform GPT-2-style baseline at the budget: GPT-2's layer (FFN 4x, heads of 64, width / 64 of
 * them) in one block filled to the budget, at the width (a multiple of 64) with the most parameters.
 * (uniformGpt2Design also ties depth to width, E / 64 layers, which at this size leaves a 1-layer
 * 64-wide model far under the budget.)
 */
function uniformGpt2(budget: number): ArchSpec {
  let best: ArchSpec | null = null;
  for (let width = 64; width <= 1024; width += 64) {
    const one = parseArchSpec({ name: 'uniform', vocabSize: VOCAB, contextLength: CONTEXT, blocks: [{ width, ffnRatio: 4, layers: 1, heads: width / 64, headDim: 64 }] });
    if (countParameters(one) > budget) break;
    let layers = 1;
    const at = (l: number): ArchSpec => ({ ...one, blocks: [{ ...one.blocks[0]!, layers: l }] });
    while (countParameters(at(layers + 1)) <= budget) layers++;
    if (!best || countParameters(at(layers)) >= countParameters(best)) best = at(layers);
  }
  if (!best) throw new Error(`no GPT-2-style layer fits ${budget} parameters`);
  return best;
}

/** The designs, in a fixed order: the search's, the uniform baseline, the grid, then random ones. */
function designs(): ArchSpec[] {
  const out: ArchSpec[] = [];
  const searched = searchArchitecture({
    objective: 'entropy',
    budgets: { params: BUDGET },
    vocabSize: VOCAB,
    contextLength: CONTEXT,
    widths: WIDTHS,
    ffnRatios: FFN,
    headDim: HEAD_DIM,
    blocks: 2,
    maxLayersPerBlock: 16,
    iterations: 20000,
    population: 256,
    seed: DATA_SEED,
  });
  out.push({ ...searched.spec, name: 'entropy search' });
  const gpt2 = uniformGpt2(BUDGET);
  out.push({ ...gpt2, name: `uniform gpt2 ${gpt2.blocks[0]!.width}x${gpt2.blocks[0]!.layers}` });
  // Depth x width grid, filled to the budget, plus two at about half of it (so size varies too).
  for (const [w, r] of [[64, 4], [64, 1], [96, 4], [96, 1], [128, 1], [160, 1.5]] as const) {
    const s = fill('grid', w, r);
    out.push({ ...s, name: `${w}x${s.blocks[0]!.layers} ffn${r}` });
  }
  for (const [w, r] of [[64, 4], [96, 2]] as const) {
    const s = fill('grid', w, r, BUDGET / 2);
    out.push({ ...s, name: `${w}x${s.blocks[0]!.layers} ffn${r} (half)` });
  }
  const rng = new SeededRandom(DATA_SEED * 7919 + 13);
  for (let made = 0, tries = 0; made < Number(args.random) && tries < 100000; tries++) {
    const blocks: Array<Required<BlockIn>> = [];
    let w = 0;
    for (let b = 0; b < 2; b++) {
      const width = Math.max(w, WIDTHS[rng.int(WIDTHS.length)]!);
      w = width;
      blocks.push({ width, ffnRatio: FFN[rng.int(FFN.length)]!, layers: 1 + rng.int(6), heads: 1 + rng.int(width / HEAD_DIM) });
    }
    const spec = design(`random ${made + 1}`, blocks);
    const p = countParameters(spec);
    if (p <= BUDGET && p >= 0.5 * BUDGET) {
      out.push({ ...spec, name: `random ${made + 1} ${blocks.map((b) => `${b.width}x${b.layers}/f${b.ffnRatio}/h${b.heads}`).join('+')}` });
      made++;
    }
  }
  return out;
}

/** The objectives under test (each "higher is predicted better"), as the search computes them (objective.ts). */
function objectives(spec: ArchSpec): { entropy: number; entropyWithEmbedding: number; params: number; nonEmbeddingParams: number; flops: number } {
  const o = { seqLen: SEQ };
  return {
    entropy: objectiveValue(spec, 'entropy', o),
    // The token embedding (V x E) and the tied head, counted again: it applies a second transform.
    entropyWithEmbedding: objectiveValue(spec, 'entropy-embedding', o),
    params: objectiveValue(spec, 'params', o),
    nonEmbeddingParams: objectiveValue(spec, 'decoder-params', o),
    flops: objectiveValue(spec, 'flops', o),
  };
}

interface Task {
  index: number;
  spec: ArchSpec;
  seed: number;
}
interface TaskResult {
  index: number;
  seed: number;
  evalLoss: number;
  bestEvalLoss: number;
  epochLosses: number[];
  seconds: number;
  tokensPerSecond: number;
}

async function prepareData(): Promise<{ train: Int32Array; validation: Int32Array }> {
  const docs = await loadDocuments(['moby-dick']);
  const { train, validation } = splitDocuments(docs, 0.1, DATA_SEED);
  const tok = bpeTokenizer(trainBpe(train.map((d) => d.text), VOCAB));
  const all = tokenizeDocuments(train, tok);
  if (all.length < TRAIN_TOKENS) throw new Error(`the training split has ${all.length} tokens, fewer than --train-tokens ${TRAIN_TOKENS}`);
  return { train: all.slice(0, TRAIN_TOKENS), validation: tokenizeDocuments(validation, tok) };
}

async function runTask(t: Task, data: { train: Int32Array; validation: Int32Array }): Promise<TaskResult> {
  const stepsPerEpoch = Math.floor((data.train.length - 1) / SEQ / BATCH);
  const r = await trainModel({
    spec: t.spec,
    train: data.train,
    validation: data.validation,
    tokenizer: 'bpe',
    tokens: stepsPerEpoch * EPOCHS * BATCH * SEQ,
    seq: SEQ,
    batch: BATCH,
    lr: LR,
    warmup: 20,
    evalEvery: stepsPerEpoch,
    evalTokens: EVAL_TOKENS,
    seed: t.seed,
  });
  const epochLosses = r.history.filter((h) => h.evalLoss !== undefined).map((h) => h.evalLoss!);
  return { index: t.index, seed: t.seed, evalLoss: r.evalLoss!, bestEvalLoss: r.bestEvalLoss!, epochLosses, seconds: r.seconds, tokensPerSecond: r.tokensPerSecond };
}

/** Child process: prepares the same data, then trains whatever tasks the parent sends. */
async function worker(): Promise<void> {
  const data = await prepareData();
  process.on('message', (t: Task | 'done') => {
    if (t === 'done') process.exit(0);
    void runTask(t, data).then((r) => process.send!(r));
  });
  process.send!('ready');
}

/** Runs the tasks over JOBS single-threaded child processes (each result depends only on its task). */
async function runAll(tasks: Task[], onResult: (r: TaskResult) => void): Promise<void> {
  const queue = [...tasks];
  await Promise.all(
    Array.from({ length: Math.min(JOBS, tasks.length) }, () =>
      new Promise<void>((resolve, reject) => {
        const child = fork(SELF, ['--worker', '--vocab', String(VOCAB), '--train-tokens', String(TRAIN_TOKENS), '--epochs', String(EPOCHS)], {
          env: { ...process.env, FLEETLM_TRAIN_THREADS: '1' },
        });
        const next = (): void => {
          const t = queue.shift();
          child.send(t ?? 'done');
          if (!t) resolve();
        };
        child.on('message', (m: TaskResult | 'ready') => {
          if (m !== 'ready') onResult(m);
          next();
        });
        child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`a training worker exited with ${code}`))));
      }),
    ),
  );
}

const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const sd = (xs: readonly number[]): number => {
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / Math.max(1, xs.length - 1));
};

function svg(rows: Array<{ name: string; entropy: number; perplexity: number }>, tau: number, rho: number): string {
  const W = 720;
  const H = 440;
  const m = { l: 70, r: 160, t: 40, b: 50 };
  const xs = rows.map((r) => r.entropy);
  const ys = rows.map((r) => r.perplexity);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const px = (x: number): number => m.l + ((x - x0) / (x1 - x0 || 1)) * (W - m.l - m.r);
  const py = (y: number): number => H - m.b - ((y - y0) / (y1 - y0 || 1)) * (H - m.t - m.b);
  const dots = rows
    .map((r) => `<circle cx="${px(r.entropy).toFixed(1)}" cy="${py(r.perplexity).toFixed(1)}" r="4" fill="#1f77b4"/><text x="${(px(r.entropy) + 6).toFixed(1)}" y="${(py(r.perplexity) - 6).toFixed(1)}" font-size="9">${r.name}</text>`)
    .join('\n');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="${W / 2}" y="20" text-anchor="middle" font-size="13">MeRino entropy vs validation perplexity, seed means (Kendall tau-b ${tau.toFixed(2)}, Spearman ${rho.toFixed(2)})</text>
<line x1="${m.l}" y1="${H - m.b}" x2="${W - m.r}" y2="${H - m.b}" stroke="black"/><line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${H - m.b}" stroke="black"/>
<text x="${(W - m.r + m.l) / 2}" y="${H - 12}" text-anchor="middle" font-size="12">network entropy (nats), ${x0.toFixed(0)} .. ${x1.toFixed(0)}</text>
<text x="16" y="${H / 2}" font-size="12" transform="rotate(-90 16 ${H / 2})" text-anchor="middle">validation perplexity, ${y0.toFixed(1)} .. ${y1.toFixed(1)}</text>
${dots}
</svg>
`;
}

async function main(): Promise<void> {
  const started = performance.now();
  const specs = designs();
  if (args.list) {
    for (const s of specs) console.log(`${s.name!.padEnd(44)} ${countParameters(s).toLocaleString('en-US').padStart(9)}  ${JSON.stringify(s.blocks.map((b) => [b.width, b.layers, b.ffnRatio, b.heads, b.headDim]))}`);
    return;
  }
  // Seed-major order, so an interrupted run has every design at the first seeds.
  const tasks: Task[] = SEEDS.flatMap((seed) => specs.map((spec, index) => ({ index, spec, seed })));
  // Finished runs are kept in a cache keyed by everything that decides them, so a rerun resumes.
  const settings = { VOCAB, TRAIN_TOKENS, EPOCHS, CONTEXT, SEQ, BATCH, LR, EVAL_TOKENS, DATA_SEED };
  const keyOf = (t: Task): string => createHash('sha256').update(JSON.stringify({ spec: t.spec, seed: t.seed, settings })).digest('hex').slice(0, 24);
  const cacheFile = path.join(os.tmpdir(), 'fleetlm-entropy-quality-runs.jsonl');
  const cached = new Map<string, TaskResult>();
  if (existsSync(cacheFile)) {
    for (const line of readFileSync(cacheFile, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      const { key, result } = JSON.parse(line) as { key: string; result: TaskResult };
      cached.set(key, result);
    }
  }
  const results: TaskResult[] = [];
  const todo: Task[] = [];
  for (const t of tasks) {
    const hit = cached.get(keyOf(t));
    if (hit) results.push({ ...hit, index: t.index, seed: t.seed });
    else todo.push(t);
  }
  console.log(`${specs.length} designs x ${SEEDS.length} seeds at ${BUDGET.toLocaleString('en-US')} parameters; ${TRAIN_TOKENS} training tokens x ${EPOCHS} epochs; ${JOBS} worker(s); ${results.length} run(s) from ${cacheFile}`);
  await runAll(args['report-only'] ? [] : todo, (r) => {
    results.push(r);
    appendFileSync(cacheFile, `${JSON.stringify({ key: keyOf(tasks.find((t) => t.index === r.index && t.seed === r.seed)!), result: r })}\n`);
    console.log(`  [${results.length}/${tasks.length}] ${specs[r.index]!.name!.padEnd(44)} seed ${r.seed}  val loss ${r.evalLoss.toFixed(4)}  (${r.seconds.toFixed(0)} s, ${r.tokensPerSecond.toFixed(0)} tok/s)`);
  });
  const done = specs.map((_, index) => results.filter((r) => r.index === index).length);
  if (done.some((n) => n < SEEDS.length)) console.log(`incomplete: runs per design ${done.join(' ')} (of ${SEEDS.length}); designs without a run are left out`);
  const rows = specs.flatMap((spec, index) => {
    const runs = results.filter((r) => r.index === index).sort((a, b) => a.seed - b.seed);
    if (runs.length === 0) return [];
    const losses = runs.map((r) => r.evalLoss);
    return [{
      name: spec.name!,
      layers: spec.blocks.reduce((s, b) => s + b.layers, 0),
      ...objectives(spec),
      evalLoss: mean(losses),
      evalLossSd: sd(losses),
      perplexity: Math.exp(mean(losses)),
      epochLosses: Array.from({ length: EPOCHS }, (_, e) => mean(runs.map((r) => r.epochLosses[e]!))),
      seeds: runs.map((r) => ({ seed: r.seed, evalLoss: r.evalLoss, bestEvalLoss: r.bestEvalLoss, epochLosses: r.epochLosses, seconds: r.seconds })),
      spec,
    }];
  });
  console.log('\ndesign                                        layers    params  entropy  +emb/head   MFLOPs  val loss (sd)    ppl');
  for (const r of [...rows].sort((a, b) => a.evalLoss - b.evalLoss)) {
    console.log(
      `${r.name.padEnd(44)} ${String(r.layers).padStart(6)} ${r.params.toLocaleString('en-US').padStart(9)} ${r.entropy.toFixed(0).padStart(8)} ${r.entropyWithEmbedding.toFixed(0).padStart(10)} ${(r.flops / 1e6).toFixed(1).padStart(8)}  ${r.evalLoss.toFixed(4)} (${r.evalLossSd.toFixed(4)}) ${r.perplexity.toFixed(1).padStart(6)}`,
    );
  }
  // Quality = -validation loss (seed mean), so a positive correlation means "higher objective, better model".
  const quality = rows.map((r) => -r.evalLoss);
  const names = ['entropy', 'entropyWithEmbedding', 'params', 'nonEmbeddingParams', 'flops'] as const;
  const correlations: Record<string, { kendallTauB: BootstrapEstimate; spearman: BootstrapEstimate; kendallByEpoch: number[] }> = {};
  console.log(`\nrank correlation with quality (-val loss, seed means; 95% percentile bootstrap over the ${rows.length} designs, ${RESAMPLES} resamples)`);
  for (const [k, name] of names.entries()) {
    const x = rows.map((r) => r[name]);
    const tau = bootstrapPaired(x, quality, kendallTauB, { resamples: RESAMPLES, seed: 101 + k });
    const rho = bootstrapPaired(x, quality, spearman, { resamples: RESAMPLES, seed: 201 + k });
    const kendallByEpoch = Array.from({ length: EPOCHS }, (_, e) => kendallTauB(x, rows.map((r) => -r.epochLosses[e]!)));
    correlations[name] = { kendallTauB: tau, spearman: rho, kendallByEpoch };
    console.log(
      `  ${name.padEnd(22)} Kendall tau-b ${tau.estimate.toFixed(2).padStart(5)} [${tau.low.toFixed(2)}, ${tau.high.toFixed(2)}]   Spearman ${rho.estimate.toFixed(2).padStart(5)} [${rho.low.toFixed(2)}, ${rho.high.toFixed(2)}]   tau by epoch ${kendallByEpoch.map((t) => t.toFixed(2)).join(' ')}`,
    );
  }
  // Separation: how far apart the designs are against how much one design moves between seeds.
  const between = sd(rows.map((r) => r.evalLoss));
  const within = Math.sqrt(mean(rows.map((r) => r.evalLossSd ** 2)));
  const byQuality = [...rows].sort((a, b) => a.evalLoss - b.evalLoss);
  const rankOf = (name: string): number => byQuality.findIndex((r) => r.name === name) + 1;
  console.log(`\nseparation: sd of design means ${between.toFixed(4)} vs seed sd within a design ${within.toFixed(4)} (nats)`);
  console.log(`entropy search ranks ${rankOf(rows[0]!.name)} of ${rows.length}; uniform gpt2 ranks ${rankOf(rows[1]!.name)}`);
  const seconds = (performance.now() - started) / 1000;
  console.log(`${(seconds / 60).toFixed(1)} min, load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  const out = {
    experiment: 'entropy-quality',
    date: new Date().toISOString(),
    command: `npx tsx bench/entropy-quality.ts --budget ${BUDGET} --train-tokens ${TRAIN_TOKENS} --epochs ${EPOCHS} --seeds ${SEEDS.length} --random ${args.random} --vocab ${VOCAB} --jobs ${JOBS} --resamples ${RESAMPLES}`,
    setup: {
      budget: BUDGET,
      vocab: VOCAB,
      context: CONTEXT,
      seq: SEQ,
      batch: BATCH,
      lr: LR,
      trainTokens: TRAIN_TOKENS,
      epochs: EPOCHS,
      seeds: SEEDS,
      evalTokens: EVAL_TOKENS,
      data: 'moby-dick: 10% of chapters held out for validation (seed 1); the first train-tokens of the rest for training; BPE trained on the training chapters',
      statistics: 'Kendall tau-b and Spearman rho (average ranks) between each objective and -validation loss averaged over seeds, one point per design; 95% percentile bootstrap resampling designs',
    },
    correlations,
    separation: { sdOfDesignMeans: between, seedSdWithinDesign: within },
    ranks: { entropySearch: rankOf(rows[0]!.name), uniformGpt2: rankOf(rows[1]!.name), of: rows.length },
    seconds,
    loadAverage: os.loadavg(),
    rows,
  };
  mkdirSync(path.join(HERE, 'results'), { recursive: true });
  writeFileSync(path.join(HERE, 'results', 'entropy-quality.json'), `${JSON.stringify(out, null, 2)}\n`);
  writeFileSync(path.join(HERE, 'results', 'entropy-quality.svg'), svg(rows.map((r) => ({ name: r.name, entropy: r.entropy, perplexity: r.perplexity })), correlations.entropy!.kendallTauB.estimate, correlations.entropy!.spearman.estimate));
}

if (args.worker) await worker();
else await main();

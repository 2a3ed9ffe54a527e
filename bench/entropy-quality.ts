// Experiment: does a higher-entropy design (MeRino's objective) train to a better model? Trains
// designs at one parameter budget (the search's entropy-optimal one, the uniform GPT-2 recipe,
// deep-thin, wide-shallow and random feasible ones) on the same Moby-Dick tokens with the CPU
// trainer, then reports validation perplexity and Kendall tau / Spearman rho between entropy and
// quality. Writes bench/results/entropy-quality.json and .svg.
// Run: npx tsx bench/entropy-quality.ts [--budget 1000000 --tokens 150000 --random 6 --seed 1]
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { countParameters } from '../models/arch/accounting.ts';
import { parseArchSpec, type ArchSpec } from '../models/arch/spec.ts';
import { networkEntropy } from '../models/entropy/network-entropy.ts';
import { uniformGpt2Design } from '../models/search/baselines.ts';
import { searchArchitecture } from '../models/search/search.ts';
import { bpeTokenizer, trainBpe } from '../models/training/bpe-trainer.ts';
import { loadDocuments, splitDocuments, tokenizeDocuments } from '../models/training/data.ts';
import { SeededRandom } from '../models/random.ts';
import { trainModel } from '../models/training/trainer.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    budget: { type: 'string', default: '1000000' },
    tokens: { type: 'string', default: '150000' },
    random: { type: 'string', default: '6' },
    seed: { type: 'string', default: '1' },
    vocab: { type: 'string', default: '1024' },
  },
});
const BUDGET = Number(args.budget);
const TOKENS = Number(args.tokens);
const SEED = Number(args.seed);
const VOCAB = Number(args.vocab);
const CONTEXT = 64;
const HEAD_DIM = 32;
const WIDTHS = Array.from({ length: 11 }, (_, i) => 64 + 32 * i); // 64..384
const FFN = [1, 1.5, 2, 2.5, 3, 3.5, 4];

const design = (name: string, blocks: Array<{ width: number; ffnRatio: number; layers: number; heads?: number }>): ArchSpec =>
  parseArchSpec({ name, vocabSize: VOCAB, contextLength: CONTEXT, blocks: blocks.map((b) => ({ ...b, heads: b.heads ?? b.width / HEAD_DIM, headDim: HEAD_DIM })) });

/** The most layers of width w (FFN ratio r) that fit the budget. */
function fill(name: string, width: number, ffnRatio: number): ArchSpec {
  let layers = 1;
  if (countParameters(design(name, [{ width, ffnRatio, layers }])) > BUDGET) throw new Error(`${name}: one layer is over the budget`);
  while (countParameters(design(name, [{ width, ffnRatio, layers: layers + 1 }])) <= BUDGET) layers++;
  return design(name, [{ width, ffnRatio, layers }]);
}

function designs(): ArchSpec[] {
  const out: ArchSpec[] = [];
  const searched = searchArchitecture({
    budgets: { params: BUDGET },
    vocabSize: VOCAB,
    contextLength: CONTEXT,
    widths: WIDTHS,
    ffnRatios: FFN,
    headDim: HEAD_DIM,
    blocks: 2,
    maxLayersPerBlock: 12,
    iterations: 20000,
    population: 256,
    seed: SEED,
  });
  out.push({ ...searched.spec, name: 'entropy-optimal (search)' });
  const gpt2 = uniformGpt2Design(BUDGET, { vocabSize: VOCAB, contextLength: CONTEXT });
  if (gpt2) out.push({ ...gpt2, name: `uniform gpt2-style ${gpt2.blocks[0]!.width}` });
  out.push(fill('deep-thin 64', 64, 4));
  out.push(fill('wide-shallow 320', 320, 1));
  const rng = new SeededRandom(SEED * 7919 + 13);
  let tries = 0;
  for (let made = 0; made < Number(args.random) && tries < 100000; tries++) {
    const nBlocks = 1 + rng.int(2);
    const blocks: Array<{ width: number; ffnRatio: number; layers: number; heads: number }> = [];
    let w = 0;
    for (let b = 0; b < nBlocks; b++) {
      const width = Math.max(w, WIDTHS[rng.int(WIDTHS.length)]!);
      w = width;
      blocks.push({ width, ffnRatio: FFN[rng.int(FFN.length)]!, layers: 1 + rng.int(8), heads: 1 + rng.int(width / HEAD_DIM) });
    }
    const spec = design(`random ${made + 1}`, blocks);
    const p = countParameters(spec);
    if (p <= BUDGET && p >= 0.8 * BUDGET) {
      out.push(spec);
      made++;
    }
  }
  return out;
}

function ranks(xs: number[]): number[] {
  const order = xs.map((x, i) => [x, i] as const).sort((a, b) => a[0] - b[0]);
  const r = new Array<number>(xs.length);
  order.forEach(([, i], k) => (r[i] = k + 1));
  return r;
}
/** Kendall's tau-a. */
function kendall(x: number[], y: number[]): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) for (let j = i + 1; j < x.length; j++) s += Math.sign(x[i]! - x[j]!) * Math.sign(y[i]! - y[j]!);
  return (2 * s) / (x.length * (x.length - 1));
}
function spearman(x: number[], y: number[]): number {
  const rx = ranks(x);
  const ry = ranks(y);
  const n = x.length;
  const d2 = rx.reduce((s, r, i) => s + (r - ry[i]!) ** 2, 0);
  return 1 - (6 * d2) / (n * (n * n - 1));
}

function svg(rows: Array<{ name: string; entropy: number; perplexity: number }>, tau: number, rho: number): string {
  const W = 640;
  const H = 420;
  const m = { l: 70, r: 20, t: 40, b: 50 };
  const xs = rows.map((r) => r.entropy);
  const ys = rows.map((r) => r.perplexity);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const px = (x: number): number => m.l + ((x - x0) / (x1 - x0 || 1)) * (W - m.l - m.r);
  const py = (y: number): number => H - m.b - ((y - y0) / (y1 - y0 || 1)) * (H - m.t - m.b);
  const dots = rows
    .map((r) => `<circle cx="${px(r.entropy).toFixed(1)}" cy="${py(r.perplexity).toFixed(1)}" r="4" fill="#1f77b4"/><text x="${(px(r.entropy) + 6).toFixed(1)}" y="${(py(r.perplexity) - 6).toFixed(1)}" font-size="10">${r.name}</text>`)
    .join('\n');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">Network entropy vs validation perplexity (Kendall tau ${tau.toFixed(2)}, Spearman ${rho.toFixed(2)})</text>
<line x1="${m.l}" y1="${H - m.b}" x2="${W - m.r}" y2="${H - m.b}" stroke="black"/><line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${H - m.b}" stroke="black"/>
<text x="${W / 2}" y="${H - 12}" text-anchor="middle" font-size="12">network entropy (nats), ${x0.toFixed(0)} .. ${x1.toFixed(0)}</text>
<text x="16" y="${H / 2}" font-size="12" transform="rotate(-90 16 ${H / 2})" text-anchor="middle">validation perplexity, ${y0.toFixed(1)} .. ${y1.toFixed(1)}</text>
${dots}
</svg>
`;
}

async function main(): Promise<void> {
  const docs = await loadDocuments(['moby-dick']);
  const { train, validation } = splitDocuments(docs, 0.1, SEED);
  const tok = bpeTokenizer(trainBpe(train.map((d) => d.text), VOCAB));
  const trainTokens = tokenizeDocuments(train, tok);
  const valTokens = tokenizeDocuments(validation, tok);
  const specs = designs();
  const rows: Array<{ name: string; params: number; entropy: number; evalLoss: number; perplexity: number; seconds: number; spec: ArchSpec }> = [];
  for (const spec of specs) {
    const params = countParameters(spec);
    const entropy = networkEntropy(spec).entropy;
    const r = await trainModel({ spec, train: trainTokens, validation: valTokens, tokenizer: 'bpe', tokens: TOKENS, seq: CONTEXT, batch: 8, lr: 2e-3, warmup: 20, evalTokens: 16384, seed: SEED });
    const row = { name: spec.name ?? '?', params, entropy, evalLoss: r.evalLoss!, perplexity: Math.exp(r.evalLoss!), seconds: r.seconds, spec };
    rows.push(row);
    console.log(`${row.name.padEnd(28)} params ${params.toLocaleString('en-US').padStart(9)}  entropy ${entropy.toFixed(1).padStart(8)}  val ppl ${row.perplexity.toFixed(1).padStart(7)}  (${r.seconds.toFixed(0)} s)`);
  }
  // Quality = -perplexity, so a positive correlation means higher entropy, better model.
  const tau = kendall(rows.map((r) => r.entropy), rows.map((r) => -r.perplexity));
  const rho = spearman(rows.map((r) => r.entropy), rows.map((r) => -r.perplexity));
  console.log(`Kendall tau(entropy, quality) = ${tau.toFixed(3)}, Spearman = ${rho.toFixed(3)} over ${rows.length} designs`);
  const out = { experiment: 'entropy-quality', date: new Date().toISOString(), budget: BUDGET, vocab: VOCAB, context: CONTEXT, tokens: TOKENS, seed: SEED, data: 'moby-dick, split by chapter', rows, kendallTau: tau, spearman: rho };
  mkdirSync(path.join(HERE, 'results'), { recursive: true });
  writeFileSync(path.join(HERE, 'results', 'entropy-quality.json'), `${JSON.stringify(out, null, 2)}\n`);
  writeFileSync(path.join(HERE, 'results', 'entropy-quality.svg'), svg(rows, tau, rho));
}

await main();

// Experiment: what embedding compression costs in quality. Takes a trained checkpoint (from
// `fleetlm train`), compresses its token embedding with tt-row, tt-matrix and svd at several
// ratios, and measures validation perplexity on the same held-out documents the training used,
// with the tied head either kept dense (as `fleetlm compress` ships by default) or reconstructed.
// Writes bench/results/compression-quality.json and .svg.
// Run: npx tsx bench/compression-quality.ts --arch A.json --ckpt M.safetensors [--text moby-dick --seq 64
//      --ratios 1.5,2,3,5 --eval-tokens 32768 --seed 0 --val-fraction 0.1]
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { compressEmbedding } from '../models/compression/auto.ts';
import { COMPRESSION_METHODS, compressionRatio, reconstructRows } from '../models/compression/embedding.ts';
import { embeddingWidthOf } from '../models/arch/spec.ts';
import { loadArchSpec } from '../models/onnx/build-model-file.ts';
import type { DecoderWeights } from '../models/arch/weights.ts';
import { gpt2Tokenizer, type Tokenizer } from '../models/runtime/tokenizer.ts';
import { loadBpeTokenizer, tokenizerPathFor } from '../models/training/bpe-trainer.ts';
import { loadWeights } from '../models/training/checkpoint.ts';
import { evaluationWindows, loadDocuments, splitDocuments, tokenizeDocuments } from '../models/training/data.ts';
import { TrainableDecoder } from '../models/training/model.ts';
import { evaluate } from '../models/training/trainer.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    arch: { type: 'string' },
    ckpt: { type: 'string' },
    text: { type: 'string', default: 'moby-dick' },
    seq: { type: 'string', default: '64' },
    ratios: { type: 'string', default: '1.5,2,3,5' },
    'eval-tokens': { type: 'string', default: '32768' },
    seed: { type: 'string', default: '0' },
    'val-fraction': { type: 'string', default: '0.1' },
  },
});
if (!args.arch || !args.ckpt) throw new Error('usage: --arch A.json --ckpt M.safetensors');

async function main(): Promise<void> {
  const spec = await loadArchSpec(args.arch!);
  if (!spec.tiedHead) throw new Error('this experiment expects a tied head (the embedding is also the output layer)');
  const loaded = await loadWeights(args.ckpt!, spec);
  const tokenizer: Tokenizer = loaded.tokenizer?.startsWith('bpe') ? await loadBpeTokenizer(tokenizerPathFor(args.ckpt!)) : gpt2Tokenizer();
  const docs = await loadDocuments(args.text!.split(','));
  const { validation } = splitDocuments(docs, Number(args['val-fraction']), Number(args.seed));
  const seq = Number(args.seq);
  const windows = evaluationWindows(tokenizeDocuments(validation, tokenizer), seq, Number(args['eval-tokens']));
  const V = spec.vocabSize;
  const d = embeddingWidthOf(spec);
  const dense = loaded.weights.get('embed_tokens.weight')!.data;

  /** Perplexity with the input embedding replaced by `table`; the head reads `headTable`. */
  const perplexityWith = (table: Float32Array, headTable: Float32Array): number => {
    let weights: DecoderWeights = new Map(loaded.weights);
    let s = spec;
    weights.set('embed_tokens.weight', { data: table, shape: [V, d] });
    if (headTable !== table) {
      // A tied head reading another matrix is an untied head holding its transpose.
      const last = spec.blocks[spec.blocks.length - 1]!.width;
      if (last !== d) throw new Error('dense-head mode needs the last block width to equal the embedding width');
      const lm = new Float32Array(d * V);
      for (let v = 0; v < V; v++) for (let j = 0; j < d; j++) lm[j * V + v] = headTable[v * d + j]!;
      weights = new Map(weights);
      weights.set('lm_head.weight', { data: lm, shape: [d, V] });
      s = { ...spec, tiedHead: false };
    }
    return Math.exp(evaluate(new TrainableDecoder(s, weights), windows, 8));
  };

  const denseP = perplexityWith(dense, dense);
  console.log(`dense: validation perplexity ${denseP.toFixed(2)} on ${windows.length * seq} tokens (embedding ${V} x ${d})`);
  const rows: Array<{ method: string; target: number; ratio: number; relError: number; perplexityDenseHead: number; perplexityReconstructedHead: number }> = [];
  for (const method of COMPRESSION_METHODS) {
    for (const target of args.ratios!.split(',').map(Number)) {
      try {
        const out = await compressEmbedding(dense, V, d, { method, ratio: target, seed: 1 });
        const approx = reconstructRows(out.embedding);
        let num = 0;
        let den = 0;
        for (let i = 0; i < dense.length; i++) {
          num += (dense[i]! - approx[i]!) ** 2;
          den += dense[i]! ** 2;
        }
        const row = {
          method,
          target,
          ratio: compressionRatio(out.embedding),
          relError: Math.sqrt(num / den),
          perplexityDenseHead: perplexityWith(approx, dense),
          perplexityReconstructedHead: perplexityWith(approx, approx),
        };
        rows.push(row);
        console.log(`${method.padEnd(9)} ${target}x (actual ${row.ratio.toFixed(2)}x): rel. error ${row.relError.toFixed(3)}, perplexity ${row.perplexityDenseHead.toFixed(2)} (dense head) / ${row.perplexityReconstructedHead.toFixed(2)} (reconstructed head)`);
      } catch (err) {
        console.log(`${method.padEnd(9)} ${target}x: skipped (${(err as Error).message})`);
      }
    }
  }
  const result = { experiment: 'compression-quality', date: new Date().toISOString(), arch: spec, checkpoint: args.ckpt, evalTokens: windows.length * seq, densePerplexity: denseP, rows };
  mkdirSync(path.join(HERE, 'results'), { recursive: true });
  writeFileSync(path.join(HERE, 'results', 'compression-quality.json'), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(path.join(HERE, 'results', 'compression-quality.svg'), plot(denseP, rows));
}

function plot(denseP: number, rows: Array<{ method: string; ratio: number; perplexityDenseHead: number; perplexityReconstructedHead: number }>): string {
  const W = 640;
  const H = 420;
  const m = { l: 70, r: 150, t: 40, b: 50 };
  const ys = [denseP, ...rows.flatMap((r) => [r.perplexityDenseHead, r.perplexityReconstructedHead])];
  const xs = [1, ...rows.map((r) => r.ratio)];
  const [x0, x1] = [1, Math.max(...xs)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const px = (x: number): number => m.l + ((x - x0) / (x1 - x0 || 1)) * (W - m.l - m.r);
  const py = (y: number): number => H - m.b - ((y - y0) / (y1 - y0 || 1)) * (H - m.t - m.b);
  const colors: Record<string, string> = { 'tt-row': '#1f77b4', 'tt-matrix': '#2ca02c', svd: '#d62728' };
  const series = Object.entries(colors)
    .flatMap(([method, color], k) =>
      (['perplexityDenseHead', 'perplexityReconstructedHead'] as const).map((key, h) => {
        const pts = rows.filter((r) => r.method === method).sort((a, b) => a.ratio - b.ratio);
        if (pts.length === 0) return '';
        const d = pts.map((r, i) => `${i === 0 ? 'M' : 'L'}${px(r.ratio).toFixed(1)},${py(r[key]).toFixed(1)}`).join(' ');
        const y = m.t + 16 * (2 * k + h);
        return `<path d="${d}" fill="none" stroke="${color}" stroke-width="2"${h ? ' stroke-dasharray="5,3"' : ''}/><text x="${W - m.r + 10}" y="${y}" font-size="11" fill="${color}">${method} ${h ? '(recon. head)' : '(dense head)'}</text>`;
      }),
    )
    .join('\n');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="${(W - m.r) / 2}" y="20" text-anchor="middle" font-size="14">Embedding compression vs validation perplexity</text>
<line x1="${m.l}" y1="${H - m.b}" x2="${W - m.r}" y2="${H - m.b}" stroke="black"/><line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${H - m.b}" stroke="black"/>
<line x1="${m.l}" y1="${py(denseP).toFixed(1)}" x2="${W - m.r}" y2="${py(denseP).toFixed(1)}" stroke="gray" stroke-dasharray="2,2"/><text x="${W - m.r + 10}" y="${py(denseP).toFixed(1)}" font-size="11" fill="gray">dense ${denseP.toFixed(1)}</text>
<text x="${(W - m.r) / 2}" y="${H - 12}" text-anchor="middle" font-size="12">embedding compression ratio (1 .. ${x1.toFixed(1)}x)</text>
<text x="16" y="${H / 2}" font-size="12" transform="rotate(-90 16 ${H / 2})" text-anchor="middle">validation perplexity (${y0.toFixed(1)} .. ${y1.toFixed(1)})</text>
${series}
</svg>
`;
}

await main();

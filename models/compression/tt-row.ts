// Per-row TT of a whole embedding table (TensorSLM, arXiv 2506.13514; TensorGPT, arXiv 2307.00526):
// every row gets its own TT-SVD, stored as cores [V, r_{k-1}, I_k, r_k] at fixed ranks, in worker threads.
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { ValidationError } from '../../common/errors.ts';
import type { TtRowEmbedding } from './embedding.ts';
import type { TtRowPlan } from './shape-selection.ts';
import { TtSvdWorkspace, assertShape, maxTtRanks, ttSvdInto } from './tt-svd.ts';

/** What one worker (or the main thread) needs to process its share of rows. Buffers are shared. */
export interface RowJob {
  input: SharedArrayBuffer | ArrayBuffer;
  V: number;
  d: number;
  paddedDim: number;
  shape: number[];
  /** Storage ranks r_0..r_N; rows needing fewer are zero-padded. In 'ranks' mode: the caps. */
  ranks: number[];
  eps?: number;
  mode: 'fill' | 'ranks';
  cores: Array<SharedArrayBuffer | ArrayBuffer>;
  /** Int32 [nextRow]; claimed with Atomics so faster workers take more chunks. */
  counter: SharedArrayBuffer | ArrayBuffer;
  chunk: number;
}

/** Runs per-row TT-SVD over chunks claimed from `job.counter`; returns the largest ranks seen. */
export function runRowChunks(job: RowJob, onProgress?: (rows: number) => void): number[] {
  const { V, d, paddedDim, shape, ranks, mode } = job;
  const N = shape.length;
  const input = new Float32Array(job.input, 0, V * d);
  const cores = job.cores.map((b) => new Float32Array(b));
  const sizes = shape.map((len, k) => ranks[k]! * len * ranks[k + 1]!);
  const ws = new TtSvdWorkspace(shape);
  const row = new Float64Array(paddedDim);
  const counter = new Int32Array(job.counter);
  const shared = job.counter instanceof SharedArrayBuffer;
  const trunc = { maxRanks: ranks.slice(1, N), eps: job.eps };
  const seen = new Array<number>(N + 1).fill(1);
  for (;;) {
    const start = shared ? Atomics.add(counter, 0, job.chunk) : counter[0]!;
    if (!shared) counter[0] = start + job.chunk;
    if (start >= V) break;
    const end = Math.min(V, start + job.chunk);
    for (let v = start; v < end; v++) {
      const src = v * d;
      for (let j = 0; j < d; j++) row[j] = input[src + j]!;
      ttSvdInto(row, 0, ws, trunc);
      const r = ws.ranks;
      for (let k = 1; k < N; k++) if (r[k]! > seen[k]!) seen[k] = r[k]!;
      if (mode === 'ranks') continue;
      for (let k = 0; k < N; k++) {
        const out = cores[k]!;
        const base = v * sizes[k]!;
        const R0 = ranks[k]!;
        const R1 = ranks[k + 1]!;
        const r0 = r[k]!;
        const r1 = r[k + 1]!;
        const I = shape[k]!;
        const src = ws.cores[k]!;
        if (r0 === R0 && r1 === R1) {
          for (let i = 0; i < sizes[k]!; i++) out[base + i] = src[i]!;
          continue;
        }
        out.fill(0, base, base + sizes[k]!);
        for (let a = 0; a < r0; a++)
          for (let i = 0; i < I; i++)
            for (let b = 0; b < r1; b++) out[base + (a * I + i) * R1 + b] = src[(a * I + i) * r1 + b]!;
      }
    }
    onProgress?.(end - start);
  }
  return seen;
}

/** Options for `compressTtRow`. */
export interface TtRowOptions {
  /** Worker threads; 0 or 1 runs on the calling thread. Default: available cores (max 8) for big tables. */
  workers?: number;
  /** Relative accuracy per row (TT-SVD eps); storage ranks become the largest any row needed. */
  eps?: number;
  onProgress?: (doneRows: number, totalRows: number) => void;
}

const WORKER_URL = new URL('./tt-row-worker.mjs', import.meta.url);

async function runJob(job: RowJob, workers: number, onProgress?: (rows: number) => void): Promise<number[]> {
  if (workers <= 1) return runRowChunks(job, onProgress);
  const results = await Promise.all(
    Array.from(
      { length: workers },
      () =>
        new Promise<number[]>((resolve, reject) => {
          const w = new Worker(WORKER_URL, { workerData: job });
          w.on('message', (msg: { type: string; rows?: number; maxRanks?: number[] }) => {
            if (msg.type === 'progress') onProgress?.(msg.rows ?? 0);
            else if (msg.type === 'done') resolve(msg.maxRanks ?? []);
          });
          w.on('error', reject);
          w.on('exit', (code) => {
            if (code !== 0) reject(new Error(`tt-row worker exited with code ${code}`));
          });
        }),
    ),
  );
  return results.reduce((acc, r) => acc.map((x, k) => Math.max(x, r[k] ?? 1)));
}

/**
 * Per-row TT of a row-major [V, d] table at the plan's shape and ranks (and eps, if given).
 * Cores live in SharedArrayBuffers written by the workers directly.
 */
export async function compressTtRow(
  matrix: Float32Array,
  V: number,
  d: number,
  plan: TtRowPlan,
  options: TtRowOptions = {},
): Promise<TtRowEmbedding> {
  if (matrix.length !== V * d) {
    throw new ValidationError(`embedding table has ${matrix.length} values, expected V*d = ${V}*${d} = ${V * d}`);
  }
  if (plan.paddedDim < d) {
    throw new ValidationError(`TT width ${plan.paddedDim} is smaller than the row width ${d}; it must be >= ${d}`, {
      code: 'VALIDATION_TT_SHAPE',
    });
  }
  assertShape(plan.shape, plan.paddedDim);
  const N = plan.shape.length;
  const caps = [1, ...maxTtRanks(plan.shape), 1];
  const ranks = plan.ranks.map((r, k) => Math.max(1, Math.min(r, caps[k]!)));
  if (ranks.length !== N + 1) {
    throw new ValidationError(`TT ranks must have ${N + 1} entries (r_0..r_N) for shape ${plan.shape.join('x')}, got ${plan.ranks.length}`);
  }
  const workers = Math.max(
    1,
    options.workers ?? (V * d >= 2_000_000 ? Math.min(8, availableParallelism()) : 1),
  );
  let input: SharedArrayBuffer | ArrayBuffer;
  if (workers > 1 && !(matrix.buffer instanceof SharedArrayBuffer && matrix.byteOffset === 0)) {
    const sab = new SharedArrayBuffer(V * d * 4);
    new Float32Array(sab).set(matrix);
    input = sab;
  } else if (matrix.byteOffset === 0 && matrix.buffer.byteLength === V * d * 4) {
    input = matrix.buffer as ArrayBuffer;
  } else {
    input = matrix.slice().buffer;
  }
  const Buf = workers > 1 ? SharedArrayBuffer : ArrayBuffer;
  const chunk = Math.max(16, Math.min(2048, Math.ceil(V / (workers * 32))));
  let done = 0;
  const progress = (rows: number): void => {
    done += rows;
    options.onProgress?.(done, options.eps !== undefined ? 2 * V : V);
  };
  let storeRanks = ranks;
  if (options.eps !== undefined) {
    // First pass learns the largest ranks the eps rule needs; the second stores at those ranks.
    const probe: RowJob = {
      input,
      V,
      d,
      paddedDim: plan.paddedDim,
      shape: plan.shape,
      ranks,
      eps: options.eps,
      mode: 'ranks',
      cores: [],
      counter: new Buf(4),
      chunk,
    };
    storeRanks = await runJob(probe, workers, progress);
    storeRanks[0] = 1;
    storeRanks[N] = 1;
  }
  const cores = plan.shape.map((len, k) => new Buf(V * storeRanks[k]! * len * storeRanks[k + 1]! * 4));
  const job: RowJob = {
    input,
    V,
    d,
    paddedDim: plan.paddedDim,
    shape: plan.shape,
    ranks: storeRanks,
    eps: options.eps,
    mode: 'fill',
    cores,
    counter: new Buf(4),
    chunk,
  };
  await runJob(job, workers, progress);
  return {
    method: 'tt-row',
    vocab: V,
    dim: d,
    paddedDim: plan.paddedDim,
    shape: [...plan.shape],
    ranks: [...storeRanks],
    cores: cores.map((b) => new Float32Array(b)),
  };
}

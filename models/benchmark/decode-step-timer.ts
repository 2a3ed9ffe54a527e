// Times one decode step (one new token over a KV cache of `kvLength - 1` past tokens, batch 1) of each
// grid file with onnxruntime, the way a deployed model decodes. Runs on the device (the agent's
// benchmark worker); the two depths of a layer are timed alternately so slow drift hits both alike.
import { ModelError } from '../../common/errors.ts';
import { createSession, disposeTensor, float32Tensor, int64Tensor, type OnnxSession, type OrtTensor } from '../runtime/onnx-backend.ts';
import { mulberry32 } from '../random.ts';
import { Sampler } from '../runtime/sampling.ts';
import { kvHeadsOf, layerKeyOf, type GridFile } from './grid-file.ts';
import type { FileTiming } from './layer-timings.ts';

export interface TimerOptions {
  /** onnxruntime intra-op threads; 0: the runtime's default (every core). */
  threads: number;
  samples: number;
  warmup: number;
  /** KV lengths to time layer files at; fixed files are timed at the first. */
  kvLengths: readonly number[];
  /** Epoch ms after which no new measurement starts. */
  deadline: number;
  /** Resolves when the device is idle enough to measure (called before each timed block). */
  waitIdle: () => Promise<void>;
  /** Called after each timed block with its figures (progress, and figures that survive a kill). */
  onBlock?: (timings: FileTiming[], done: number, total: number) => void;
}

/**
 * Feeds of one decode step at `kvLength` for a file of this shape. Both families take the same inputs
 * (llama files rotate by position_ids), with the past K/V at the file's K/V heads.
 */
function stepFeeds(s: OnnxSession, f: GridFile, kvLength: number): Record<string, OrtTensor> {
  const past = kvLength - 1;
  const kvHeads = kvHeadsOf(f);
  const feeds: Record<string, OrtTensor> = {};
  for (const input of s.inputs) {
    if (input.name === 'input_ids') feeds[input.name] = int64Tensor(BigInt64Array.from([1n]), [1, 1]);
    else if (input.name === 'attention_mask') feeds[input.name] = int64Tensor(new BigInt64Array(kvLength).fill(1n), [1, kvLength]);
    else if (input.name === 'position_ids') feeds[input.name] = int64Tensor(BigInt64Array.from([BigInt(past)]), [1, 1]);
    else if (input.name.startsWith('past_key_values.')) feeds[input.name] = float32Tensor(new Float32Array(kvHeads * past * f.headDim), [1, kvHeads, past, f.headDim]);
    else throw new ModelError(`grid file ${f.name} has an input ${input.name} a decode step does not feed`, { code: 'MODEL_INVALID' });
  }
  return feeds;
}

/**
 * Preallocated outputs of one decode step (logits and each layer's present K/V), which onnxruntime
 * writes into: the serving runtime reuses its output buffers this way (language-model.ts), so a step
 * timed without them would also time output allocations the deployed model never makes.
 */
function stepFetches(s: OnnxSession, f: GridFile, kvLength: number): Record<string, OrtTensor> {
  const kvHeads = kvHeadsOf(f);
  const fetches: Record<string, OrtTensor> = {};
  for (const output of s.outputs) {
    if (output.name === 'logits') fetches[output.name] = float32Tensor(new Float32Array(f.vocabSize), [1, 1, f.vocabSize]);
    else if (output.name.startsWith('present.')) fetches[output.name] = float32Tensor(new Float32Array(kvHeads * kvLength * f.headDim), [1, kvHeads, kvLength, f.headDim]);
    else throw new ModelError(`grid file ${f.name} has an output ${output.name} a decode step does not fetch`, { code: 'MODEL_INVALID' });
  }
  return fetches;
}

/**
 * What a per-model cost file samples from: logits that follow Zipf's law (token k of a random order
 * at -ln k), the unigram law of text. The sort-based sampler's cost depended on how peaked the logits
 * were (near-uniform 430 us against a trained model's 140 us at 4,096 ids); the radix-select sampler
 * (models/runtime/sampling.ts) costs 43-74 us on flat, Zipf and peaked rows alike (bench/sampling.ts).
 */
export class SamplingLoad {
  private readonly zipf: Float32Array;
  private readonly scratch: Float32Array;
  private readonly sampler: Sampler;

  constructor(vocabSize: number) {
    this.zipf = new Float32Array(vocabSize);
    const order = Int32Array.from({ length: vocabSize }, (_, i) => i);
    const random = mulberry32(vocabSize);
    for (let i = vocabSize - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      const t = order[i]!;
      order[i] = order[j]!;
      order[j] = t;
    }
    for (let k = 0; k < vocabSize; k++) this.zipf[order[k]!] = -Math.log(k + 1);
    this.scratch = new Float32Array(vocabSize);
    // The manifests' default sampling (temperature 0.8, top-p 0.95), as the runtime serves it.
    this.sampler = new Sampler(vocabSize, { temperature: 0.8, topP: 0.95, seed: 1 });
  }

  /** One sampling of the next token, as after every decode step. */
  sample(): number {
    this.scratch.set(this.zipf);
    return this.sampler.sample(this.scratch);
  }

  /**
   * Samples until V8 has compiled the sampler: a serving runtime's sampler is hot after its first
   * tokens, and a cold one costs several times more per call, which would land in the per-model cost
   * the first fixed file records.
   */
  warm(calls = 100): void {
    for (let k = 0; k < calls; k++) this.sample();
  }
}

/**
 * One timed step: the session run, and for per-model cost files also the sampling of the next token
 * (SamplingLoad), a per-token cost of every generation that no layer shows.
 */
async function stepMs(s: OnnxSession, feeds: Record<string, OrtTensor>, fetches: Record<string, OrtTensor>, sampling: SamplingLoad | null): Promise<number> {
  const t0 = performance.now();
  const out = await s.run(feeds, fetches);
  sampling?.sample();
  const ms = performance.now() - t0;
  for (const t of Object.values(out)) disposeTensor(t);
  return ms;
}

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * Times the files in `dir` (layer files in depth pairs at every KV length, fixed files at the first).
 * Stops starting new blocks at the deadline; `complete` says whether every block ran.
 */
export async function timeGridFiles(dir: string, files: readonly GridFile[], o: TimerOptions): Promise<{ timings: FileTiming[]; complete: boolean }> {
  // Blocks: a layer's two depths together (timed alternately), or one fixed file.
  const blocks: GridFile[][] = [];
  const pairs = new Map<string, GridFile[]>();
  for (const f of files) {
    if (f.role === 'fixed') {
      blocks.push([f]);
      continue;
    }
    const key = layerKeyOf(f);
    if (!pairs.has(key)) {
      pairs.set(key, []);
      blocks.push(pairs.get(key)!);
    }
    pairs.get(key)!.push(f);
  }
  // Fixed files last: they need their layer's figure, and a time limit should cut them first.
  blocks.sort((a, b) => Number(a[0]!.role === 'fixed') - Number(b[0]!.role === 'fixed'));
  const timings: FileTiming[] = [];
  const total = blocks.length;
  let done = 0;
  for (const block of blocks) {
    if (Date.now() >= o.deadline) return { timings, complete: false };
    const sessions: OnnxSession[] = [];
    const blockTimings: FileTiming[] = [];
    try {
      for (const f of block) sessions.push(await createSession(`${dir}/${f.name}`, o.threads > 0 ? { intraOpNumThreads: o.threads } : {}));
      const lengths = block[0]!.role === 'fixed' ? o.kvLengths.slice(0, 1) : o.kvLengths;
      for (const kv of lengths) {
        await o.waitIdle();
        if (Date.now() >= o.deadline) return { timings, complete: false };
        const feeds = block.map((f, i) => stepFeeds(sessions[i]!, f, kv));
        const fetches = block.map((f, i) => stepFetches(sessions[i]!, f, kv));
        const samplers = block.map((f) => (f.role === 'fixed' ? new SamplingLoad(f.vocabSize) : null));
        for (let w = 0; w < o.warmup; w++) for (let i = 0; i < block.length; i++) await stepMs(sessions[i]!, feeds[i]!, fetches[i]!, samplers[i]!);
        for (const sampling of samplers) sampling?.warm();
        const samples: number[][] = block.map(() => []);
        for (let n = 0; n < o.samples; n++) for (let i = 0; i < block.length; i++) samples[i]!.push(await stepMs(sessions[i]!, feeds[i]!, fetches[i]!, samplers[i]!));
        block.forEach((f, i) => blockTimings.push({ name: f.name, kvLength: kv, ms: median(samples[i]!), samples: o.samples }));
      }
    } finally {
      for (const s of sessions) await s.dispose();
    }
    timings.push(...blockTimings);
    o.onBlock?.(blockTimings, ++done, total);
  }
  return { timings, complete: true };
}

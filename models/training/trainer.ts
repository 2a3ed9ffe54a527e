// The training loop: batches from the sampler, forward/backward, clipping, AdamW on the
// warm-up + cosine schedule, periodic held-out evaluation, progress reports and checkpoints.
import { ValidationError } from '../../common/errors.ts';
import type { ArchSpec } from '../arch/spec.ts';
import type { DecoderWeights } from '../arch/weights.ts';
import { trainingInitWeights } from './init.ts';
import { loadTrainState, loadWeights, saveCheckpoint, type ResumeConfig } from './checkpoint.ts';
import { BatchSampler, evaluationWindows } from './data.ts';
import { TrainableDecoder } from './model.ts';
import { AdamW, DEFAULT_ADAMW, clipGradNorm, learningRate } from './optimizer.ts';
import { SeededRandom } from '../random.ts';

/** What the loop reports after every step (evalLoss on evaluation steps only). */
export interface TrainProgress {
  step: number;
  steps: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokensSeen: number;
  /** Training throughput of this run so far (targets per second of wall time, evaluation excluded). */
  tokensPerSecond: number;
  evalLoss?: number;
}

export interface TrainOptions {
  spec: ArchSpec;
  /** Training and validation token streams. */
  train: Int32Array;
  validation: Int32Array;
  /** Tokenizer name recorded in the checkpoint (e.g. "gpt2", or a path to a BPE JSON). */
  tokenizer: string;
  /** Training tokens to process (targets); steps = ceil(tokens / (batch * seq)). */
  tokens: number;
  seq: number;
  batch: number;
  lr: number;
  /** Warm-up steps; default 5% of the steps. */
  warmup?: number;
  minLrRatio?: number;
  weightDecay?: number;
  clip?: number;
  /** Evaluate every N steps (and at the end); 0 = only at the end. */
  evalEvery?: number;
  /** Validation targets per evaluation (default 16384). */
  evalTokens?: number;
  seed?: number;
  /** Where to write the final checkpoint (and every `checkpointEvery` steps). */
  out?: string;
  checkpointEvery?: number;
  /** Weights path of a checkpoint to continue from (its train-state sidecar must exist). */
  resume?: string;
  /** Stop after this many steps of this run (the schedule still spans all steps); for tests and time limits. */
  maxStepsThisRun?: number;
  /** Initial weights (default: trainingInitWeights, the GPT-2 scheme with fan-in-scaled width projections). */
  initialWeights?: DecoderWeights;
  onProgress?: (p: TrainProgress) => void;
}

export interface TrainResult {
  steps: number;
  stepsThisRun: number;
  tokensSeen: number;
  finalLoss: number;
  evalLoss: number | null;
  bestEvalLoss: number | null;
  tokensPerSecond: number;
  seconds: number;
  history: Array<{ step: number; loss: number; evalLoss?: number }>;
  model: TrainableDecoder;
}

/** Mean held-out loss over fixed validation windows (no gradients). */
export function evaluate(model: TrainableDecoder, windows: readonly Int32Array[], batch: number): number {
  if (windows.length === 0) return NaN;
  let total = 0;
  let count = 0;
  for (let i = 0; i < windows.length; i += batch) {
    const group = windows.slice(i, i + batch);
    const S1 = group[0]!.length;
    const tokens = new Int32Array(group.length * S1);
    group.forEach((w, j) => tokens.set(w, j * S1));
    total += model.loss(tokens, group.length, false) * group.length;
    count += group.length;
  }
  return total / count;
}

/** Trains (or resumes training) a decoder from scratch on CPU. */
export async function trainModel(o: TrainOptions): Promise<TrainResult> {
  const seed = o.seed ?? 0;
  const steps = Math.max(1, Math.ceil(o.tokens / (o.batch * o.seq)));
  const warmup = o.warmup ?? Math.floor(steps * 0.05);
  if (o.seq > o.spec.contextLength) throw new ValidationError(`--seq ${o.seq} exceeds the architecture's context length ${o.spec.contextLength}`);
  for (const [name, stream] of [['training', o.train], ['validation', o.validation]] as const) {
    for (let i = 0; i < stream.length; i++) {
      if (stream[i]! < 0 || stream[i]! >= o.spec.vocabSize) throw new ValidationError(`${name} token ${stream[i]} at ${i} is outside the architecture's vocabulary of ${o.spec.vocabSize}; use a tokenizer whose vocabulary fits`);
    }
  }
  const config: ResumeConfig = { seq: o.seq, batch: o.batch, seed, tokenizer: o.tokenizer, dataTokens: o.train.length };
  const sampler = new BatchSampler(o.train, o.seq, seed);
  const rng = new SeededRandom(seed);
  let step = 0;
  let tokensSeen = 0;
  let bestEvalLoss: number | null = null;
  let model: TrainableDecoder;
  let optimizer: AdamW;
  const adamOptions = { ...DEFAULT_ADAMW, weightDecay: o.weightDecay ?? DEFAULT_ADAMW.weightDecay };
  if (o.resume) {
    const loaded = await loadWeights(o.resume, o.spec);
    model = new TrainableDecoder(o.spec, loaded.weights);
    optimizer = new AdamW(model.params, adamOptions);
    const snap = await loadTrainState(o.resume, loaded.bytes, model.params.size);
    for (const key of Object.keys(config) as Array<keyof ResumeConfig>) {
      if (snap.state.config[key] !== config[key]) {
        throw new ValidationError(`cannot resume ${o.resume}: it was trained with ${key} = ${snap.state.config[key]}, this run has ${config[key]}; resume with the same ${key}`);
      }
    }
    optimizer.m.set(snap.m);
    optimizer.v.set(snap.v);
    optimizer.t = snap.state.adamT;
    step = snap.state.step;
    tokensSeen = snap.state.tokensSeen;
    rng.state = snap.state.rngState;
    bestEvalLoss = snap.state.bestEvalLoss;
    sampler.seek(snap.state.cursor);
  } else {
    model = new TrainableDecoder(o.spec, o.initialWeights ?? trainingInitWeights(o.spec, seed));
    optimizer = new AdamW(model.params, adamOptions);
  }
  const evalWindows = evaluationWindows(o.validation, o.seq, o.evalTokens ?? 16384);
  const save = async (): Promise<void> => {
    if (!o.out) return;
    await saveCheckpoint(o.out, o.spec, model.params.toWeights(), { tokenizer: o.tokenizer }, {
      m: optimizer.m,
      v: optimizer.v,
      state: { step, adamT: optimizer.t, tokensSeen, rngState: rng.state, cursor: sampler.position, config, bestEvalLoss },
    });
  };
  const batchTokens = new Int32Array(o.batch * (o.seq + 1));
  const history: TrainResult['history'] = [];
  const lastStep = Math.min(steps, o.maxStepsThisRun !== undefined ? step + o.maxStepsThisRun : steps);
  const started = performance.now();
  let trainMs = 0;
  let runTokens = 0;
  let loss = NaN;
  let evalLoss: number | null = null;
  const startStep = step;
  while (step < lastStep) {
    const t0 = performance.now();
    sampler.next(o.batch, batchTokens);
    model.params.zeroGrads();
    loss = model.loss(batchTokens, o.batch, true);
    if (!Number.isFinite(loss)) throw new ValidationError(`training diverged at step ${step + 1}: loss is ${loss}; lower --lr (now ${o.lr})`);
    model.backward();
    const gradNorm = clipGradNorm(model.params.grads, o.clip ?? 1);
    const lr = learningRate(step, o.lr, warmup, steps, o.minLrRatio ?? 0.1);
    optimizer.step(lr);
    step++;
    tokensSeen += o.batch * o.seq;
    runTokens += o.batch * o.seq;
    trainMs += performance.now() - t0;
    const entry: TrainResult['history'][number] = { step, loss };
    const evalNow = step === lastStep || ((o.evalEvery ?? 0) > 0 && step % o.evalEvery! === 0);
    if (evalNow && evalWindows.length > 0) {
      evalLoss = evaluate(model, evalWindows, o.batch);
      entry.evalLoss = evalLoss;
      if (bestEvalLoss === null || evalLoss < bestEvalLoss) bestEvalLoss = evalLoss;
    }
    history.push(entry);
    o.onProgress?.({ step, steps, loss, lr, gradNorm, tokensSeen, tokensPerSecond: runTokens / (trainMs / 1000), evalLoss: entry.evalLoss });
    if (o.checkpointEvery && step % o.checkpointEvery === 0 && step < lastStep) await save();
  }
  await save();
  return {
    steps,
    stepsThisRun: step - startStep,
    tokensSeen,
    finalLoss: loss,
    evalLoss,
    bestEvalLoss,
    tokensPerSecond: runTokens / Math.max(1e-9, trainMs / 1000),
    seconds: (performance.now() - started) / 1000,
    history,
    model,
  };
}

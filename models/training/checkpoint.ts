// Trainer checkpoints as two safetensors files written atomically: the weights under FleetLM native
// names (what `fleetlm build --weights` loads) and a sidecar with the AdamW moments, step, RNG and
// data cursor. The sidecar records the weights' SHA-256 so a mismatched pair is refused.
import { sha256Hex } from '../../common/hash.ts';
import { promises as fs } from 'node:fs';
import { z } from 'zod';
import { ModelError } from '../../common/errors.ts';
import { writeFileAtomic } from '../../common/atomic-file.ts';
import { ArchSpecSchema, type ArchSpec } from '../arch/spec.ts';
import { encodeSafetensors, parseSafetensors, tensorToFloat32 } from '../checkpoint/safetensors.ts';
import { weightsFromCheckpoint } from '../checkpoint/layouts.ts';
import type { DecoderWeights } from '../arch/weights.ts';
import type { DataCursor } from './data.ts';

export const WEIGHTS_FORMAT = 'fleetlm/weights@1';
export const STATE_FORMAT = 'fleetlm/train-state@1';

/** Where the optimizer state of a weights file lives: `x.safetensors` -> `x.train-state.safetensors`. */
export function statePathFor(weightsPath: string): string {
  return weightsPath.endsWith('.safetensors') ? `${weightsPath.slice(0, -'.safetensors'.length)}.train-state.safetensors` : `${weightsPath}.train-state.safetensors`;
}

/** Settings that must match for a run to resume from a checkpoint. */
export const ResumeConfigSchema = z
  .object({
    seq: z.number().int().positive(),
    batch: z.number().int().positive(),
    seed: z.number().int().nonnegative(),
    tokenizer: z.string(),
    dataTokens: z.number().int().nonnegative(),
  })
  .strict();
export type ResumeConfig = z.output<typeof ResumeConfigSchema>;

export const TrainStateSchema = z
  .object({
    format: z.literal(STATE_FORMAT),
    step: z.number().int().nonnegative(),
    adamT: z.number().int().nonnegative(),
    tokensSeen: z.number().int().nonnegative(),
    rngState: z.number().int().nonnegative(),
    cursor: z.object({ epoch: z.number().int().nonnegative(), index: z.number().int().nonnegative() }).strict(),
    config: ResumeConfigSchema,
    weightsSha256: z.string().regex(/^[0-9a-f]{64}$/),
    parameters: z.number().int().positive(),
    bestEvalLoss: z.number().nullable(),
  })
  .strict();
export type TrainState = z.output<typeof TrainStateSchema>;

/** Everything a checkpoint holds besides the weights. */
export interface OptimizerSnapshot {
  m: Float32Array;
  v: Float32Array;
  state: Omit<TrainState, 'format' | 'weightsSha256' | 'parameters'>;
}


/** Writes weights (metadata: format, arch, tokenizer) and, when given, the optimizer sidecar. */
export async function saveCheckpoint(
  weightsPath: string,
  spec: ArchSpec,
  weights: DecoderWeights,
  meta: { tokenizer: string },
  snapshot?: OptimizerSnapshot,
): Promise<void> {
  const bytes = encodeSafetensors(weights, { format: WEIGHTS_FORMAT, arch: JSON.stringify(spec), tokenizer: meta.tokenizer });
  if (snapshot) {
    const state: TrainState = { format: STATE_FORMAT, ...snapshot.state, weightsSha256: sha256Hex(bytes), parameters: snapshot.m.length };
    const tensors = new Map([
      ['adam.m', { data: snapshot.m, shape: [snapshot.m.length] }],
      ['adam.v', { data: snapshot.v, shape: [snapshot.v.length] }],
    ]);
    // The sidecar goes first: a crash between the two writes leaves a sidecar whose hash does not
    // match the old weights, which loading reports instead of resuming from a mixed state.
    await writeFileAtomic(statePathFor(weightsPath), encodeSafetensors(tensors, { state: JSON.stringify(state) }));
  }
  await writeFileAtomic(weightsPath, bytes);
}

/** Specs compare equal when their canonical JSON does (the `name` field is ignored). */
function sameArch(a: ArchSpec, b: ArchSpec): boolean {
  const strip = (s: ArchSpec): string => JSON.stringify({ ...s, name: undefined });
  return strip(a) === strip(b);
}

async function readBytes(file: string, what: string): Promise<Uint8Array> {
  try {
    return await fs.readFile(file);
  } catch (err) {
    throw new ModelError(`cannot read ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { code: 'MODEL_CHECKPOINT', cause: err });
  }
}

/** Loaded weights plus what their metadata says. */
export interface LoadedWeights {
  weights: DecoderWeights;
  tokenizer: string | undefined;
  bytes: Uint8Array;
}

/** Reads a native-layout weights file for `spec`; a different architecture or corrupt file is a ModelError. */
export async function loadWeights(weightsPath: string, spec: ArchSpec): Promise<LoadedWeights> {
  const bytes = await readBytes(weightsPath, 'checkpoint');
  const file = parseSafetensors(bytes, `checkpoint ${weightsPath}`);
  const arch = file.metadata.arch;
  if (arch !== undefined) {
    let stored: ArchSpec;
    try {
      stored = ArchSpecSchema.parse(JSON.parse(arch));
    } catch {
      throw new ModelError(`checkpoint ${weightsPath}: metadata "arch" is not a valid architecture spec`, { code: 'MODEL_CHECKPOINT' });
    }
    if (!sameArch(stored, spec)) {
      throw new ModelError(
        `checkpoint ${weightsPath} was trained for a different architecture (vocab ${stored.vocabSize}, ${stored.blocks.length} block(s), widths ${stored.blocks.map((b) => b.width).join('/')}) than --arch (vocab ${spec.vocabSize}, ${spec.blocks.length} block(s), widths ${spec.blocks.map((b) => b.width).join('/')})`,
        { code: 'MODEL_CHECKPOINT' },
      );
    }
  }
  const weights = weightsFromCheckpoint(spec, file, 'fleetlm');
  for (const [name, t] of weights) {
    for (let i = 0; i < t.data.length; i++) {
      if (!Number.isFinite(t.data[i]!)) throw new ModelError(`checkpoint ${weightsPath}: tensor "${name}" holds a non-finite value at index ${i}`, { code: 'MODEL_CHECKPOINT' });
    }
  }
  return { weights, tokenizer: file.metadata.tokenizer, bytes };
}

/** Reads the optimizer sidecar of `weightsPath` and checks it belongs to those exact weights. */
export async function loadTrainState(weightsPath: string, weightsBytes: Uint8Array, parameters: number): Promise<OptimizerSnapshot> {
  const statePath = statePathFor(weightsPath);
  const file = parseSafetensors(await readBytes(statePath, 'training state'), `training state ${statePath}`);
  let raw: unknown;
  try {
    raw = JSON.parse(file.metadata.state ?? '');
  } catch {
    throw new ModelError(`training state ${statePath}: metadata "state" is missing or not JSON`, { code: 'MODEL_CHECKPOINT' });
  }
  const parsed = TrainStateSchema.safeParse(raw);
  if (!parsed.success) throw new ModelError(`training state ${statePath}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`, { code: 'MODEL_CHECKPOINT' });
  const state = parsed.data;
  if (state.weightsSha256 !== sha256Hex(weightsBytes)) {
    throw new ModelError(`training state ${statePath} belongs to other weights than ${weightsPath} (SHA-256 differs); the pair was mixed or a save was interrupted`, { code: 'MODEL_CHECKPOINT' });
  }
  const m = file.tensors.get('adam.m');
  const v = file.tensors.get('adam.v');
  if (!m || !v) throw new ModelError(`training state ${statePath} lacks tensors adam.m and adam.v`, { code: 'MODEL_CHECKPOINT' });
  const mf = tensorToFloat32('adam.m', m).data;
  const vf = tensorToFloat32('adam.v', v).data;
  if (mf.length !== parameters || vf.length !== parameters || state.parameters !== parameters) {
    throw new ModelError(`training state ${statePath} has moments for ${mf.length} parameters; the model has ${parameters}`, { code: 'MODEL_CHECKPOINT' });
  }
  const { format: _f, weightsSha256: _w, parameters: _p, ...rest } = state;
  return { m: mf, v: vf, state: rest };
}

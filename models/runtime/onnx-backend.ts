// The one module that imports onnxruntime-node: session creation, input/output discovery, tensor
// helpers and disposal. Everything else in FleetLM talks to OnnxSession and the helpers below.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import nodePath from 'node:path';
import * as ort from 'onnxruntime-node';
import { ModelError } from '../../common/errors.ts';
import { readOnnxHeader, type OnnxHeader } from './onnx-header.ts';

/** A tensor as onnxruntime sees it (CPU memory, a typed array plus dims). */
export type OrtTensor = ort.Tensor;

/** Element types the runtime creates or reads. */
export type TensorElementType = 'float32' | 'float16' | 'int64' | 'int32' | 'bool' | 'uint8' | 'int8' | 'string' | 'other';

/** An input or output of a session; a dim is a number, or a symbolic name when it varies. */
export interface ValueInfo {
  name: string;
  type: TensorElementType;
  dims: ReadonlyArray<number | string>;
}

/** Session options the runtime exposes; defaults suit a small CPU device. */
export interface BackendOptions {
  /** Threads for one operator; default: the number of cores. */
  intraOpNumThreads?: number;
  /** Graph rewrites onnxruntime applies at load; default 'all'. */
  graphOptimizationLevel?: 'disabled' | 'basic' | 'extended' | 'all';
  /**
   * Let idle worker threads spin-wait between operators (default false). Spinning shaves wake-up
   * latency on cores the model has to itself, but on shared cores (the agent, other processes)
   * the spinning threads steal time from the working one: measured here, 2-5x slower decoding.
   */
  allowSpinning?: boolean;
  /** onnxruntime's log level: 0 verbose .. 4 fatal; default 3 (errors). */
  logSeverityLevel?: 0 | 1 | 2 | 3 | 4;
  /**
   * Extra onnxruntime session config entries (onnxruntime_session_options_config_keys.h), e.g.
   * { 'session.disable_prepacking': '1' } to trade some speed for resident memory.
   */
  sessionConfig?: Record<string, string>;
  /**
   * onnxruntime execution providers in order of preference, e.g. ['tensorrt', 'cuda', 'cpu'] with a GPU
   * build of onnxruntime; operators a provider cannot run fall to the next. Default ['cpu']. Each must be
   * one availableExecutionProviders() reports as installed.
   */
  executionProviders?: readonly string[];
}

/** An execution provider the installed onnxruntime-node knows, and whether its library is present. */
export interface ExecutionProviderInfo {
  name: string;
  /** False when the binding knows the provider but its shared library (libonnxruntime_providers_<name>.so) is missing. */
  installed: boolean;
}

/**
 * The execution providers of the installed onnxruntime-node (its listSupportedBackends). Providers not
 * bundled with the binding (cuda, tensorrt) count as installed only when their library sits beside it,
 * as `ONNXRUNTIME_NODE_INSTALL=cuda12` or a JetPack build of onnxruntime puts it.
 */
export function availableExecutionProviders(): ExecutionProviderInfo[] {
  const bindingDir = nodePath.join(
    nodePath.dirname(createRequire(import.meta.url).resolve('onnxruntime-node')),
    '..',
    'bin',
    'napi-v6',
    process.platform,
    process.arch,
  );
  return ort.listSupportedBackends().map((b) => ({
    name: b.name,
    installed: b.bundled || existsSync(nodePath.join(bindingDir, `libonnxruntime_providers_${b.name}.so`)),
  }));
}

/** Throws a ModelError naming the installed providers when `wanted` asks for one that is not installed. */
export function checkExecutionProviders(wanted: readonly string[]): void {
  const available = availableExecutionProviders();
  const installed = available.filter((p) => p.installed).map((p) => p.name);
  for (const name of wanted) {
    if (installed.includes(name)) continue;
    const known = available.some((p) => p.name === name);
    throw new ModelError(
      known
        ? `execution provider ${name} is known to onnxruntime-node ${ort.env.versions.node ?? ''} but its library libonnxruntime_providers_${name}.so is not installed; installed: ${installed.join(', ')}`
        : `execution provider ${JSON.stringify(name)} is not in the installed onnxruntime-node ${ort.env.versions.node ?? ''}; installed: ${installed.join(', ')}`,
      { code: 'MODEL_OPTIONS' },
    );
  }
}

const KNOWN_TYPES: ReadonlySet<string> = new Set(['float32', 'float16', 'int64', 'int32', 'bool', 'uint8', 'int8', 'string']);

function toValueInfo(meta: ort.InferenceSession.ValueMetadata): ValueInfo {
  if (!meta.isTensor) return { name: meta.name, type: 'other', dims: [] };
  const type = KNOWN_TYPES.has(meta.type) ? (meta.type as TensorElementType) : 'other';
  return { name: meta.name, type, dims: [...meta.shape] };
}

/** A loaded model. `run` is safe to call from overlapping async callers. */
export class OnnxSession {
  readonly path: string;
  readonly header: OnnxHeader;
  readonly inputs: readonly ValueInfo[];
  readonly outputs: readonly ValueInfo[];
  readonly threads: number;
  private session: ort.InferenceSession | undefined;

  constructor(path: string, header: OnnxHeader, session: ort.InferenceSession, threads: number) {
    this.path = path;
    this.header = header;
    this.session = session;
    this.threads = threads;
    this.inputs = session.inputMetadata.map(toValueInfo);
    this.outputs = session.outputMetadata.map(toValueInfo);
  }

  /** Input description by name, or undefined. */
  input(name: string): ValueInfo | undefined {
    return this.inputs.find((v) => v.name === name);
  }

  /** Output description by name, or undefined. */
  output(name: string): ValueInfo | undefined {
    return this.outputs.find((v) => v.name === name);
  }

  /**
   * Runs the model. `fetches` names the outputs wanted; a tensor there is preallocated storage that
   * onnxruntime writes into (its dims must be the exact output shape), null lets onnxruntime allocate.
   */
  async run(feeds: Record<string, OrtTensor>, fetches?: Record<string, OrtTensor | null>): Promise<Record<string, OrtTensor>> {
    const session = this.session;
    if (session === undefined) throw new ModelError(`model ${this.path} was disposed; load it again`, { code: 'MODEL_DISPOSED' });
    try {
      const result = fetches === undefined ? await session.run(feeds) : await session.run(feeds, fetches);
      return result as Record<string, OrtTensor>;
    } catch (err) {
      throw new ModelError(`inference failed on ${this.path}: ${err instanceof Error ? err.message : String(err)}`, {
        code: 'MODEL_RUN',
        cause: err,
      });
    }
  }

  /** Frees the native session; later runs throw ModelError. Safe to call twice. */
  async dispose(): Promise<void> {
    const session = this.session;
    this.session = undefined;
    if (session !== undefined) await session.release();
  }

  get disposed(): boolean {
    return this.session === undefined;
  }
}

/** Default intra-op thread count: every core this process may use. */
export function defaultThreadCount(): number {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

/**
 * Loads an ONNX model from a file (external data is resolved beside it). A missing, truncated or
 * foreign file gives a ModelError saying which, never a crash.
 */
export async function createSession(path: string, options: BackendOptions = {}): Promise<OnnxSession> {
  const header = await readOnnxHeader(path);
  const threads = options.intraOpNumThreads ?? defaultThreadCount();
  if (!Number.isInteger(threads) || threads < 1) {
    throw new ModelError(`intraOpNumThreads must be a positive integer, got ${threads}`, { code: 'MODEL_OPTIONS' });
  }
  const providers = options.executionProviders ?? ['cpu'];
  if (providers.length !== 1 || providers[0] !== 'cpu') checkExecutionProviders(providers);
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    executionProviders: [...providers],
    graphOptimizationLevel: options.graphOptimizationLevel ?? 'all',
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    enableCpuMemArena: true,
    enableMemPattern: true,
    logSeverityLevel: options.logSeverityLevel ?? 3,
    extra: { ...options.sessionConfig, 'session.intra_op.allow_spinning': options.allowSpinning === true ? '1' : '0' },
  };
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(path, sessionOptions);
  } catch (err) {
    throw new ModelError(`cannot load ONNX model ${path}: ${err instanceof Error ? err.message : String(err)}`, {
      code: 'MODEL_INVALID',
      cause: err,
    });
  }
  return new OnnxSession(path, header, session, threads);
}

/** A float32 tensor over `data` (no copy). */
export function float32Tensor(data: Float32Array, dims: readonly number[]): OrtTensor {
  return new ort.Tensor('float32', data, dims);
}

/** An int64 tensor over `data` (no copy). */
export function int64Tensor(data: BigInt64Array, dims: readonly number[]): OrtTensor {
  return new ort.Tensor('int64', data, dims);
}

/** A bool tensor (merged decoders' use_cache_branch). */
export function boolTensor(values: readonly boolean[], dims: readonly number[]): OrtTensor {
  return new ort.Tensor('bool', Uint8Array.from(values, (v) => (v ? 1 : 0)), dims);
}

/** The float32 data of a tensor; throws TypeError for another element type. */
export function float32Data(t: OrtTensor): Float32Array {
  if (t.type !== 'float32' || !(t.data instanceof Float32Array)) throw new TypeError(`expected a float32 tensor, got ${t.type}`);
  return t.data;
}

/** Frees a tensor's native storage when onnxruntime owns it (a no-op for JS-owned CPU tensors). */
export function disposeTensor(t: OrtTensor): void {
  t.dispose();
}

/** The onnxruntime version this process runs (the native binding's, as onnxruntime-node reports it). */
export function onnxruntimeVersion(): string {
  const v = (ort.env as { versions?: { node?: string; common?: string } }).versions;
  return v?.node ?? v?.common ?? 'unknown';
}

// Loading and saving ONNX ModelProto files (onnx-proto's generated protobufjs code), including
// tensors kept in an external data file once a model would pass protobuf's 2 GB message limit.
import { fsyncDir, writeChunksAtomic } from '../../common/atomic-file.ts';
import { promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import { ModelError } from '../../common/errors.ts';

/** The onnx protobuf namespace (ModelProto, TensorProto, ...). */
export const onnx = onnxProto.onnx;
export type ModelProto = onnxProto.onnx.IModelProto;
export type GraphProto = onnxProto.onnx.IGraphProto;
export type NodeProto = onnxProto.onnx.INodeProto;
export type TensorProto = onnxProto.onnx.ITensorProto;
export type ValueInfoProto = onnxProto.onnx.IValueInfoProto;
export type AttributeProto = onnxProto.onnx.IAttributeProto;

/** TensorProto.DataType values used by FleetLM graphs. */
export const DataType = { FLOAT: 1, UINT8: 2, INT8: 3, INT32: 6, INT64: 7, BOOL: 9, FLOAT16: 10 } as const;

/** Protobuf messages cannot exceed 2 GiB - 1 bytes; ONNX files above it need external data. */
export const PROTOBUF_LIMIT_BYTES = 2 ** 31 - 1;
/** Headroom left under the limit for the graph structure itself when deciding by tensor bytes. */
const GRAPH_HEADROOM_BYTES = 64 * 1024 * 1024;
/** External tensors start on 4 KiB boundaries so onnxruntime can memory-map them. */
const EXTERNAL_ALIGNMENT = 4096;

/** How saveOnnxModel stored the tensors. */
export interface SaveResult {
  modelPath: string;
  /** Path of the external data file, or null when everything is in one file. */
  externalDataPath: string | null;
  modelBytes: number;
  externalDataBytes: number;
}

export interface SaveOptions {
  /** 'auto' (default) moves tensors out only when a single file would pass the protobuf limit. */
  externalData?: 'auto' | 'always' | 'never';
  /** Tensors smaller than this stay inline when data goes external (default 1 KiB). */
  externalMinBytes?: number;
  /** 'auto' goes external above this many tensor bytes (default: protobuf limit minus 64 MiB for the graph). */
  singleFileLimitBytes?: number;
}

export interface LoadOptions {
  /** Read external tensor data into rawData (needs a path, or baseDir for bytes). Default true. */
  resolveExternalData?: boolean;
  /** Directory external data locations are relative to when loading from bytes. */
  baseDir?: string;
}

/** Raw data of an initializer that is produced only when the model is written. */
interface LazyTensorData {
  byteLength: number;
  load: () => Uint8Array;
}

// Keyed by the TensorProto object, so models stay plain protobufjs objects; a copy ({...t}) is not lazy.
const lazyData = new WeakMap<TensorProto, LazyTensorData>();

/**
 * Gives `t` raw data that `load` produces when the model is saved or encoded, then drops: the
 * save path writes tensors one at a time, so memory holds about one tensor, not the model.
 */
export function setLazyTensorData(t: TensorProto, byteLength: number, load: () => Uint8Array): void {
  lazyData.set(t, { byteLength, load });
}

/** Loads a lazy tensor's bytes, checking the loader kept its promise on length. */
function loadLazy(t: TensorProto, lazy: LazyTensorData): Uint8Array {
  const bytes = lazy.load();
  if (bytes.length !== lazy.byteLength) {
    throw new ModelError(`tensor "${t.name}" loaded ${bytes.length} bytes; its dims [${(t.dims ?? []).join(', ')}] need ${lazy.byteLength}`);
  }
  return bytes;
}

/** The raw bytes of a tensor: rawData, or its lazy data loaded now (undefined when it has neither). */
export function tensorRawData(t: TensorProto): Uint8Array | undefined {
  if (t.rawData && t.rawData.length > 0) return t.rawData;
  const lazy = lazyData.get(t);
  return lazy ? loadLazy(t, lazy) : undefined;
}

/** Byte length of a tensor's raw data (rawData or lazy), without loading it. */
function rawByteLength(t: TensorProto): number {
  return t.rawData && t.rawData.length > 0 ? t.rawData.length : (lazyData.get(t)?.byteLength ?? 0);
}

/** A copy of the model whose lazy tensors hold their data (for encoding in one buffer). */
function materializeLazy(model: ModelProto): ModelProto {
  const inits = model.graph?.initializer ?? [];
  if (!inits.some((t) => lazyData.has(t))) return model;
  return { ...model, graph: { ...model.graph, initializer: inits.map((t) => (lazyData.has(t) ? { ...t, rawData: tensorRawData(t) } : t)) } };
}

/** Number of bytes a tensor's data occupies, counting rawData, lazy data or the typed repeated fields. */
export function tensorDataBytes(t: TensorProto): number {
  if (t.rawData && t.rawData.length > 0) return t.rawData.length;
  const lazy = lazyData.get(t);
  if (lazy) return lazy.byteLength;
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
    const len = t.externalData?.find((e) => e.key === 'length')?.value;
    return len ? Number(len) : 0;
  }
  return (
    (t.floatData?.length ?? 0) * 4 +
    (t.int32Data?.length ?? 0) * 4 +
    (t.int64Data?.length ?? 0) * 8 +
    (t.doubleData?.length ?? 0) * 8 +
    (t.uint64Data?.length ?? 0) * 8
  );
}

/** Total bytes of all initializer data in the model. */
export function initializerBytes(model: ModelProto): number {
  return (model.graph?.initializer ?? []).reduce((n, t) => n + tensorDataBytes(t), 0);
}

/** Serialises a model to one protobuf buffer; throws ModelError if it would pass the 2 GB limit. */
export function encodeOnnxModel(model: ModelProto): Uint8Array {
  const estimate = initializerBytes(model);
  if (estimate > PROTOBUF_LIMIT_BYTES) {
    throw new ModelError(
      `ONNX model holds ${estimate} bytes of tensors, over the protobuf limit of ${PROTOBUF_LIMIT_BYTES} bytes; save it with external data`,
    );
  }
  return onnx.ModelProto.encode(materializeLazy(model)).finish();
}

/** Decodes and sanity-checks ONNX bytes; truncated or foreign bytes give a ModelError. */
export function decodeOnnxModel(bytes: Uint8Array, what = 'ONNX model'): ModelProto {
  if (bytes.length === 0) throw new ModelError(`${what} is empty (0 bytes); expected an ONNX ModelProto`);
  let model: onnxProto.onnx.ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (err) {
    throw new ModelError(
      `${what} is not a readable ONNX ModelProto (${(err as Error).message}); the file is truncated or not ONNX`,
      { cause: err, code: 'MODEL_CORRUPT' },
    );
  }
  const ir = Number(model.irVersion ?? 0);
  if (!model.graph || ir <= 0 || ir > 64 || (model.opsetImport ?? []).length === 0) {
    throw new ModelError(
      `${what} does not look like an ONNX model: ir_version=${ir}, graph=${model.graph ? 'present' : 'missing'}, opset_import entries=${(model.opsetImport ?? []).length}; expected ir_version 1..64, a graph and at least one opset`,
      { code: 'MODEL_CORRUPT' },
    );
  }
  for (const t of model.graph.initializer ?? []) {
    const dims = (t.dims ?? []).map(Number);
    if (dims.some((d) => !Number.isSafeInteger(d) || d < 0)) {
      throw new ModelError(`${what}: initializer "${t.name}" has invalid dims [${dims.join(', ')}]`, { code: 'MODEL_CORRUPT' });
    }
  }
  return model;
}

/** Loads an ONNX model from a path or bytes; external data is read into the tensors by default. */
export function loadOnnxModel(source: string | Uint8Array, options: LoadOptions = {}): ModelProto {
  let bytes: Uint8Array;
  let baseDir = options.baseDir;
  const what = typeof source === 'string' ? `ONNX model ${source}` : 'ONNX model bytes';
  if (typeof source === 'string') {
    try {
      bytes = readFileSync(source);
    } catch (err) {
      throw new ModelError(`cannot read ONNX model ${source}: ${(err as Error).message}`, { cause: err });
    }
    baseDir ??= path.dirname(source);
  } else {
    bytes = source;
  }
  const model = decodeOnnxModel(bytes, what);
  if (options.resolveExternalData !== false) resolveExternalData(model, baseDir, what);
  return model;
}

function externalField(t: TensorProto, key: string): string | undefined {
  return t.externalData?.find((e) => e.key === key)?.value ?? undefined;
}

/** Reads every external tensor of `model` into rawData, checking its location stays inside baseDir. */
export function resolveExternalData(model: ModelProto, baseDir: string | undefined, what = 'ONNX model'): void {
  const files = new Map<string, Buffer>();
  for (const t of model.graph?.initializer ?? []) {
    if (t.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) continue;
    const location = externalField(t, 'location');
    if (!location) throw new ModelError(`${what}: external tensor "${t.name}" has no location`, { code: 'MODEL_CORRUPT' });
    if (baseDir === undefined) {
      throw new ModelError(`${what}: tensor "${t.name}" lives in external file ${location}; load the model from a path or pass baseDir`);
    }
    const file = path.resolve(baseDir, location);
    if (path.relative(path.resolve(baseDir), file).startsWith('..') || path.isAbsolute(location)) {
      throw new ModelError(`${what}: external data location "${location}" of tensor "${t.name}" leaves the model directory`, { code: 'MODEL_CORRUPT' });
    }
    let data = files.get(file);
    if (!data) {
      try {
        data = readFileSync(file);
      } catch (err) {
        throw new ModelError(`${what}: cannot read external data ${file} for tensor "${t.name}": ${(err as Error).message}`, { cause: err });
      }
      files.set(file, data);
    }
    const offset = Number(externalField(t, 'offset') ?? 0);
    const lengthField = externalField(t, 'length');
    const length = lengthField === undefined ? data.length - offset : Number(lengthField);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > data.length) {
      throw new ModelError(
        `${what}: external tensor "${t.name}" claims bytes ${offset}..${offset + length} of ${location}, which has ${data.length} bytes`,
        { code: 'MODEL_CORRUPT' },
      );
    }
    t.rawData = data.subarray(offset, offset + length);
    t.dataLocation = onnx.TensorProto.DataLocation.DEFAULT;
    t.externalData = [];
  }
}

function varint(n: number): Uint8Array {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return Uint8Array.from(out);
}

/** Protobuf key + length prefix of a length-delimited field. */
function fieldHeader(field: number, length: number): Uint8Array {
  const tag = varint(field * 8 + 2);
  const len = varint(length);
  const out = new Uint8Array(tag.length + len.length);
  out.set(tag);
  out.set(len, tag.length);
  return out;
}

// Field numbers from onnx.proto: ModelProto.graph = 7, GraphProto.initializer = 5, TensorProto.raw_data = 9.
const MODEL_GRAPH_FIELD = 7;
const GRAPH_INITIALIZER_FIELD = 5;
const TENSOR_RAW_DATA_FIELD = 9;

/**
 * Encodes a model as a sequence of chunks without first copying every tensor into one buffer:
 * tensor raw data is emitted as views of the caller's arrays (peak memory stays near the model's
 * own size). Fields may come in any order and repeated fields concatenate, so the graph's
 * initializers are written after its other fields and the graph after the model's other fields.
 */
function streamEncodeModel(model: ModelProto): { graphBytes: number; chunks: () => Generator<Uint8Array> } {
  const initializers = model.graph?.initializer ?? [];
  const heads = initializers.map((t) => onnx.TensorProto.encode({ ...t, rawData: undefined }).finish());
  const tensorLengths = initializers.map((t, i) => {
    const raw = rawByteLength(t);
    return heads[i]!.length + (raw > 0 ? fieldHeader(TENSOR_RAW_DATA_FIELD, raw).length + raw : 0);
  });
  const graphRest = model.graph ? onnx.GraphProto.encode({ ...model.graph, initializer: [] }).finish() : new Uint8Array(0);
  let graphBytes = graphRest.length;
  tensorLengths.forEach((n) => (graphBytes += fieldHeader(GRAPH_INITIALIZER_FIELD, n).length + n));
  const modelRest = onnx.ModelProto.encode({ ...model, graph: undefined }).finish();
  return {
    graphBytes,
    *chunks() {
      yield modelRest;
      if (!model.graph) return;
      yield fieldHeader(MODEL_GRAPH_FIELD, graphBytes);
      yield graphRest;
      for (let i = 0; i < initializers.length; i++) {
        yield fieldHeader(GRAPH_INITIALIZER_FIELD, tensorLengths[i]!);
        yield heads[i]!;
        const length = rawByteLength(initializers[i]!);
        if (length > 0) {
          yield fieldHeader(TENSOR_RAW_DATA_FIELD, length);
          // Lazy tensors are loaded here, one at a time, and dropped once written.
          yield tensorRawData(initializers[i]!)!;
        }
      }
    },
  };
}


/**
 * Writes `model` to `modelPath` atomically. With external data, initializers of at least
 * externalMinBytes go to `<model file name>.data` beside it (ONNX external-data convention:
 * location/offset/length entries), so the protobuf stays far below its 2 GB limit.
 * The input model is not modified.
 */
export async function saveOnnxModel(model: ModelProto, modelPath: string, options: SaveOptions = {}): Promise<SaveResult> {
  const mode = options.externalData ?? 'auto';
  const tensorBytes = initializerBytes(model);
  const limit = options.singleFileLimitBytes ?? PROTOBUF_LIMIT_BYTES - GRAPH_HEADROOM_BYTES;
  const external = mode === 'always' || (mode === 'auto' && tensorBytes > limit);
  await fs.mkdir(path.dirname(path.resolve(modelPath)), { recursive: true });
  if (!external) {
    const stream = streamEncodeModel(model);
    if (stream.graphBytes > PROTOBUF_LIMIT_BYTES) {
      throw new ModelError(
        `ONNX graph of ${stream.graphBytes} bytes is over the protobuf limit of ${PROTOBUF_LIMIT_BYTES} bytes; save it with external data`,
      );
    }
    const written = await writeChunksAtomic(modelPath, stream.chunks());
    await fsyncDir(path.dirname(path.resolve(modelPath)));
    return { modelPath, externalDataPath: null, modelBytes: written, externalDataBytes: 0 };
  }
  const minBytes = options.externalMinBytes ?? 1024;
  const dataName = `${path.basename(modelPath)}.data`;
  const dataPath = path.join(path.dirname(modelPath), dataName);
  // What goes into the data file, in order: padding, or a tensor whose bytes (lazy ones loaded
  // only as the file is written) follow.
  const pieces: Array<number | TensorProto> = [];
  let offset = 0;
  const initializers = (model.graph?.initializer ?? []).map((t) => {
    const length = rawByteLength(t);
    if (length === 0 || length < minBytes) return lazyData.has(t) ? { ...t, rawData: tensorRawData(t) } : t;
    const pad = (EXTERNAL_ALIGNMENT - (offset % EXTERNAL_ALIGNMENT)) % EXTERNAL_ALIGNMENT;
    if (pad > 0) pieces.push(pad);
    offset += pad;
    pieces.push(t);
    const entry: TensorProto = {
      ...t,
      rawData: null,
      dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: [
        { key: 'location', value: dataName },
        { key: 'offset', value: String(offset) },
        { key: 'length', value: String(length) },
      ],
    };
    offset += length;
    return entry;
  });
  const slim: ModelProto = { ...model, graph: { ...model.graph, initializer: initializers } };
  const bytes = encodeOnnxModel(slim);
  function* dataChunks(): Generator<Uint8Array> {
    for (const piece of pieces) yield typeof piece === 'number' ? new Uint8Array(piece) : tensorRawData(piece)!;
  }
  const dataBytes = await writeChunksAtomic(dataPath, dataChunks());
  await writeChunksAtomic(modelPath, [bytes]);
  await fsyncDir(path.dirname(path.resolve(modelPath)));
  return { modelPath, externalDataPath: dataPath, modelBytes: bytes.length, externalDataBytes: dataBytes };
}

/** Element count of a tensor's dims. */
export function tensorElementCount(t: TensorProto): number {
  return (t.dims ?? []).reduce<number>((n, d) => n * Number(d), 1);
}

/** The float32 values of an initializer (rawData or floatData), copied into an aligned array. */
export function tensorToFloat32(t: TensorProto): Float32Array {
  if (t.dataType !== DataType.FLOAT) {
    throw new ModelError(`tensor "${t.name}" has data type ${t.dataType}; expected FLOAT (1)`);
  }
  const count = tensorElementCount(t);
  const raw = tensorRawData(t);
  if (raw) {
    if (raw.length !== count * 4) {
      throw new ModelError(`tensor "${t.name}" has ${raw.length} raw bytes; dims [${(t.dims ?? []).join(', ')}] need ${count * 4}`, { code: 'MODEL_CORRUPT' });
    }
    const out = new Float32Array(count);
    new Uint8Array(out.buffer).set(raw);
    return out;
  }
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
    throw new ModelError(`tensor "${t.name}" is stored externally; load the model with resolveExternalData`);
  }
  const data = t.floatData ?? [];
  if (data.length !== count) {
    throw new ModelError(`tensor "${t.name}" has ${data.length} floats; dims [${(t.dims ?? []).join(', ')}] need ${count}`, { code: 'MODEL_CORRUPT' });
  }
  return Float32Array.from(data);
}

/** Finds an initializer by name, or throws a ModelError listing what the graph has. */
export function getInitializer(model: ModelProto, name: string): TensorProto {
  const t = (model.graph?.initializer ?? []).find((x) => x.name === name);
  if (!t) throw new ModelError(`initializer "${name}" not found in the ONNX graph`);
  return t;
}

// Rewrites an ONNX decoder's weight matmuls (attention, MLP, LM head) to onnxruntime's block-quantized
// MatMulNBits (com.microsoft); works on FleetLM builds and foreign exports (Optimum) alike.
import { ValidationError } from '../../common/errors.ts';
import { DataType, onnx, tensorToFloat32, type AttributeProto, type ModelProto, type NodeProto, type TensorProto } from '../onnx/proto.ts';
import { quantizeBlockwise, quantizedBytes, validateQuantConfig, viewKN, viewNK, zeroPointOf, type BlockQuantConfig, type MatrixView, type QuantizedMatrix } from './block-quantizer.ts';

/** Opset version of the com.microsoft domain that defines MatMulNBits. */
const MS_DOMAIN = 'com.microsoft';
/** Prefix of the nodes the embedding compression emits (models/compression/onnx-rewrite.ts): left alone. */
const COMPRESSED_EMBEDDING_PREFIX = 'embed_tokens_compressed/';

/** One quantized weight initializer (it may feed several nodes). */
export interface QuantizedWeight {
  /** The float initializer's name. */
  name: string;
  k: number;
  n: number;
  /** 'kn' for MatMul's [K, N] B, 'nk' for Gemm transB's [N, K] B. */
  layout: 'kn' | 'nk';
  nodes: string[];
  floatBytes: number;
  quantizedBytes: number;
  /** ||W - deq(W)||_F / ||W||_F. */
  relativeError: number;
  /** Whether the float initializer stays (another node still reads it, e.g. a tied embedding Gather). */
  floatKept: boolean;
}

/** A matmul the rewrite left in float, and why. */
export interface SkippedNode {
  node: string;
  opType: string;
  reason: string;
}

export interface QuantizeResult {
  model: ModelProto;
  weights: QuantizedWeight[];
  skipped: SkippedNode[];
  /** Bytes of initializer data before and after. */
  initializerBytesBefore: number;
  initializerBytesAfter: number;
}

/**
 * MatMulNBits' accuracy_level: how onnxruntime may treat A. 0 (unset) and 1 keep A in float; 4 lets it
 * quantize A to int8 per block and use integer dot products. Measured with onnxruntime-node 1.30 CPU
 * (K=768, N=3072, M=1): int8 weights at level 0/1 fall back to a path ~30x slower than float MatMul,
 * at level 4 they run the fast kernel; int4 is fastest at level 4 too. Level 4 adds ~1% relative
 * error per product (the int8 activations), which is why it is a choice.
 */
export const ACCURACY_LEVELS = [0, 1, 2, 3, 4] as const;
export type AccuracyLevel = (typeof ACCURACY_LEVELS)[number];
/** Default accuracy level: int8 activations, the only fast CPU path for 8-bit weights. */
export const DEFAULT_ACCURACY_LEVEL: AccuracyLevel = 4;

export interface QuantizeModelOptions extends BlockQuantConfig {
  /** MatMulNBits accuracy_level (default 4: int8 activations). */
  accuracyLevel?: AccuracyLevel;
  /**
   * Quantize embedding tables read by Gather (GatherBlockQuantized): true for every table, 'tied' only
   * for a table a quantized head also reads (otherwise the float table would stay beside the head's
   * int blocks and the model would grow), false for none. Default false.
   */
  embedding?: boolean | 'tied';
  /** Also rewrite MatMuls that read a constant A (constant-only subgraphs); default false. */
  includeConstantInputs?: boolean;
}

function attr(node: NodeProto, name: string): AttributeProto | undefined {
  return (node.attribute ?? []).find((a) => a.name === name);
}
function attrInt(node: NodeProto, name: string, fallback: number): number {
  const a = attr(node, name);
  return a?.i === undefined || a.i === null ? fallback : Number(a.i);
}
function attrFloat(node: NodeProto, name: string, fallback: number): number {
  const a = attr(node, name);
  return a?.f === undefined || a.f === null ? fallback : Number(a.f);
}

function tensorBytes(t: TensorProto): number {
  if (t.rawData && t.rawData.length > 0) return t.rawData.length;
  return (t.floatData?.length ?? 0) * 4 + (t.int64Data?.length ?? 0) * 8 + (t.int32Data?.length ?? 0) * 4;
}

function relativeError(w: MatrixView, q: QuantizedMatrix): number {
  // Dequantize block by block straight from the packed data, so no K x N copy is made.
  let err = 0;
  let norm = 0;
  for (let n = 0; n < q.n; n++) {
    for (let b = 0; b < q.kBlocks; b++) {
      const scale = q.scales[n * q.kBlocks + b]!;
      const zp = zeroPointOf(q, n, b);
      const blob = (n * q.kBlocks + b) * q.blobSize;
      const k1 = Math.min(q.k, (b + 1) * q.blockSize);
      for (let k = b * q.blockSize, j = 0; k < k1; k++, j++) {
        const v = q.bits === 8 ? q.data[blob + j]! : (q.data[blob + (j >> 1)]! >> ((j & 1) * 4)) & 0x0f;
        const x = w.data[k * w.kStride + n * w.nStride]!;
        const d = x - (v - zp) * scale;
        err += d * d;
        norm += x * x;
      }
    }
  }
  return norm > 0 ? Math.sqrt(err / norm) : 0;
}

interface Candidate {
  nodeIndex: number;
  node: NodeProto;
  weight: string;
  layout: 'kn' | 'nk';
  /** Gemm's C (bias), added after the MatMulNBits. */
  bias?: string;
}

/**
 * Quantizes every MatMul whose B is a 2-D float initializer, and every Gemm (alpha = beta = 1,
 * transA = 0) whose B is one (transB = 1, as a tied head reading the [V, E] embedding, needs no
 * transpose: the rows of B already are MatMulNBits' N x K), into MatMulNBits. An initializer shared
 * by several nodes is quantized once; the float copy goes unless another node (a Gather) still
 * reads it. Inputs, outputs and other nodes are unchanged; the input model is not modified.
 */
export function quantizeModel(model: ModelProto, options: QuantizeModelOptions): QuantizeResult {
  validateQuantConfig(options);
  const accuracyLevel = options.accuracyLevel ?? DEFAULT_ACCURACY_LEVEL;
  if (!(ACCURACY_LEVELS as readonly number[]).includes(accuracyLevel)) {
    throw new ValidationError(`MatMulNBits accuracy level must be one of ${ACCURACY_LEVELS.join(', ')}; got ${String(accuracyLevel)}`, { code: 'VALIDATION_QUANT_ACCURACY' });
  }
  const graph = model.graph;
  if (!graph) throw new ValidationError('ONNX model has no graph; expected a decoder with weight MatMuls');
  const nodes = graph.node ?? [];
  const inits = new Map((graph.initializer ?? []).map((t) => [t.name ?? '', t]));
  const producer = new Map<string, NodeProto>();
  for (const n of nodes) for (const o of n.output ?? []) producer.set(o, n);
  const graphInputs = new Set((graph.input ?? []).map((i) => i.name ?? ''));
  // A value is constant if it is an initializer, or every input of its producer is (a folded subgraph).
  const constCache = new Map<string, boolean>();
  const isConstant = (v: string, depth = 0): boolean => {
    if (v === '') return true;
    const hit = constCache.get(v);
    if (hit !== undefined) return hit;
    let r: boolean;
    if (inits.has(v)) r = true;
    else if (graphInputs.has(v) || depth > 64) r = false;
    else {
      const p = producer.get(v);
      r = p !== undefined && (p.input ?? []).every((x) => isConstant(x, depth + 1));
    }
    constCache.set(v, r);
    return r;
  };
  const skipped: SkippedNode[] = [];
  const candidates: Candidate[] = [];
  const bypassed = new Set<NodeProto>();
  nodes.forEach((node, nodeIndex) => {
    const op = node.opType ?? '';
    if ((op !== 'MatMul' && op !== 'Gemm') || (node.domain && node.domain !== 'ai.onnx')) return;
    const label = node.name || node.output?.[0] || `#${nodeIndex}`;
    const skip = (reason: string): void => void skipped.push({ node: label, opType: op, reason });
    let b = node.input?.[1] ?? '';
    let transposed = false;
    const bProducer = producer.get(b);
    // MatMul(A, Transpose(W)) with a 2-D W: a tied head in some exports; W's rows are already N x K.
    if (op === 'MatMul' && bProducer?.opType === 'Transpose' && inits.has(bProducer.input?.[0] ?? '')) {
      const perm = (attr(bProducer, 'perm')?.ints ?? []).map(Number);
      if (perm.length === 0 || (perm[0] === 1 && perm[1] === 0)) {
        b = bProducer.input![0]!;
        transposed = true;
        bypassed.add(bProducer);
      }
    }
    const t = inits.get(b);
    // An activation x activation product (attention scores) is not a weight: not worth listing.
    if (!t && !isConstant(b)) return;
    if (!t) return skip(`B (${b}) is computed from constants in the graph (e.g. an embedding rebuilt from compressed factors), not a stored initializer`);
    if (t.dataType !== DataType.FLOAT) return skip(`B (${b}) has data type ${t.dataType}; only float32 weights are quantized`);
    if ((t.dims ?? []).length !== 2) return skip(`B (${b}) has rank ${(t.dims ?? []).length}; only 2-D weights are quantized`);
    if ((node.name ?? '').startsWith(COMPRESSED_EMBEDDING_PREFIX)) return skip('part of the compressed embedding (its factors stay float; compress first, then quantize)');
    if (!options.includeConstantInputs && isConstant(node.input?.[0] ?? '')) return skip('A is constant too (onnxruntime folds this product once at load)');
    if (op === 'Gemm') {
      if (attrInt(node, 'transA', 0) !== 0) return skip('Gemm with transA = 1');
      if (attrFloat(node, 'alpha', 1) !== 1 || attrFloat(node, 'beta', 1) !== 1) return skip('Gemm with alpha or beta other than 1');
      const c = node.input?.[2];
      if (c && !inits.has(c)) return skip(`Gemm bias C (${c}) is not an initializer`);
      return void candidates.push({ nodeIndex, node, weight: b, layout: attrInt(node, 'transB', 0) === 1 ? 'nk' : 'kn', ...(c ? { bias: c } : {}) });
    }
    candidates.push({ nodeIndex, node, weight: b, layout: transposed ? 'nk' : 'kn' });
  });

  const used = new Set<string>();
  for (const n of nodes) {
    for (const v of [...(n.input ?? []), ...(n.output ?? [])]) used.add(v);
    if (n.name) used.add(n.name);
  }
  for (const t of graph.initializer ?? []) used.add(t.name ?? '');
  const fresh = (hint: string): string => {
    let s = hint;
    for (let i = 1; used.has(s); i++) s = `${hint}_${i}`;
    used.add(s);
    return s;
  };

  const { bits, blockSize, symmetric } = options;
  interface Entry {
    q: QuantizedMatrix;
    base: string;
    scales: string;
    zp: string | null;
    /** MatMulNBits' B [N, k_blocks, blob] and GatherBlockQuantized's rows [V, k_blocks * blob]: same bytes, made when first needed. */
    b?: string;
    rows?: string;
    info: QuantizedWeight;
  }
  const quantized = new Map<string, Entry>();
  const added: TensorProto[] = [];
  const replaced = new Map<number, NodeProto[]>();
  const ints = (name: string, i: number): AttributeProto => ({ name, type: onnx.AttributeProto.AttributeType.INT, i });
  // Scales [N, k_blocks] and zero points [N, ceil(k_blocks * bits / 8)] are 2-D so that a tied head's
  // MatMulNBits and the embedding's GatherBlockQuantized read the same initializers.
  const entryFor = (weight: string, layout: 'kn' | 'nk'): Entry => {
    const key = `${weight}|${layout}`;
    const hit = quantized.get(key);
    if (hit) return hit;
    const t = inits.get(weight)!;
    const [d0, d1] = (t.dims ?? []).map(Number) as [number, number];
    const data = tensorToFloat32(t);
    const view = layout === 'kn' ? viewKN(data, d0, d1) : viewNK(data, d0, d1);
    const q = quantizeBlockwise(view, { bits, blockSize, symmetric });
    const base = `${weight.replace(/\.weight$/, '')}${layout === 'nk' ? '_t' : ''}`;
    const scales = fresh(`${base}.q${bits}_scales`);
    added.push({ name: scales, dataType: DataType.FLOAT, dims: [q.n, q.kBlocks], rawData: new Uint8Array(q.scales.buffer) });
    let zp: string | null = null;
    if (q.zeroPoints) {
      zp = fresh(`${base}.q${bits}_zero_points`);
      added.push({ name: zp, dataType: DataType.UINT8, dims: [q.n, q.zeroPoints.length / q.n], rawData: q.zeroPoints });
    }
    const info: QuantizedWeight = {
      name: weight,
      k: q.k,
      n: q.n,
      layout,
      nodes: [],
      floatBytes: tensorBytes(t),
      quantizedBytes: quantizedBytes(q),
      relativeError: relativeError(view, q),
      floatKept: false,
    };
    const entry: Entry = { q, base, scales, zp, info };
    quantized.set(key, entry);
    return entry;
  };
  const blobOf = (e: Entry, kind: 'b' | 'rows'): string => {
    let name = e[kind];
    if (!name) {
      name = fresh(kind === 'b' ? `${e.base}.q${bits}` : `${e.base}.q${bits}_rows`);
      const dims = kind === 'b' ? [e.q.n, e.q.kBlocks, e.q.blobSize] : [e.q.n, e.q.kBlocks * e.q.blobSize];
      added.push({ name, dataType: DataType.UINT8, dims, rawData: e.q.data });
      e[kind] = name;
      if (kind === 'rows') e.info.quantizedBytes += e.q.data.byteLength;
    }
    return name;
  };
  for (const c of candidates) {
    const entry = entryFor(c.weight, c.layout);
    const label = c.node.name || c.node.output![0]!;
    entry.info.nodes.push(label);
    const out = c.node.output![0]!;
    const mmOut = c.bias ? fresh(`${out}_nobias`) : out;
    const inputs = [c.node.input![0]!, blobOf(entry, 'b'), entry.scales, ...(entry.zp ? [entry.zp] : [])];
    const mm: NodeProto = {
      name: fresh(`${c.node.name || out}_q${bits}`),
      opType: 'MatMulNBits',
      domain: MS_DOMAIN,
      input: inputs,
      output: [mmOut],
      attribute: [ints('K', entry.q.k), ints('N', entry.q.n), ints('bits', bits), ints('block_size', blockSize), ...(accuracyLevel ? [ints('accuracy_level', accuracyLevel)] : [])],
    };
    const emitted = [mm];
    if (c.bias) emitted.push({ name: fresh(`${c.node.name || out}_bias`), opType: 'Add', input: [mmOut, c.bias], output: [out] });
    replaced.set(c.nodeIndex, emitted);
  }

  if (options.embedding) {
    nodes.forEach((node, nodeIndex) => {
      if (node.opType !== 'Gather' || (node.domain && node.domain !== 'ai.onnx')) return;
      const table = node.input?.[0] ?? '';
      const t = inits.get(table);
      if (!t || t.dataType !== DataType.FLOAT || (t.dims ?? []).length !== 2 || attrInt(node, 'axis', 0) !== 0) return;
      const label = node.name || node.output?.[0] || `#${nodeIndex}`;
      if ((node.name ?? '').startsWith(COMPRESSED_EMBEDDING_PREFIX)) return;
      if (options.embedding === 'tied' && !quantized.has(`${table}|nk`)) return;
      const width = Number(t.dims![1]);
      if (width % blockSize !== 0) {
        skipped.push({ node: label, opType: 'Gather', reason: `table width ${width} is not a multiple of the block size ${blockSize} (GatherBlockQuantized)` });
        return;
      }
      // Rows of the [V, E] table are the 'nk' layout: the same quantization a tied head uses.
      const entry = entryFor(table, 'nk');
      entry.info.nodes.push(label);
      replaced.set(nodeIndex, [
        {
          name: fresh(`${node.name || node.output![0]}_q${bits}`),
          opType: 'GatherBlockQuantized',
          domain: MS_DOMAIN,
          input: [blobOf(entry, 'rows'), node.input![1]!, entry.scales, ...(entry.zp ? [entry.zp] : [])],
          output: [node.output![0]!],
          attribute: [ints('gather_axis', 0), ints('quantize_axis', 1), ints('block_size', blockSize), ints('bits', bits)],
        },
      ]);
    });
  }

  let newNodes = nodes.flatMap((n, i) => replaced.get(i) ?? [n]);
  const readsOf = (list: NodeProto[]): Set<string> => {
    const r = new Set<string>();
    for (const n of list) for (const v of n.input ?? []) r.add(v);
    for (const o of graph.output ?? []) r.add(o.name ?? '');
    return r;
  };
  // A Transpose the rewrite looked through is dead once no other node reads its output.
  const reads = readsOf(newNodes);
  newNodes = newNodes.filter((n) => !bypassed.has(n) || (n.output ?? []).some((o) => reads.has(o)));
  const stillRead = readsOf(newNodes);
  const dropped = new Set<string>();
  for (const { info } of quantized.values()) {
    info.floatKept = stillRead.has(info.name);
    if (!info.floatKept) dropped.add(info.name);
  }
  const initializer = [...(graph.initializer ?? []).filter((t) => !dropped.has(t.name ?? '')), ...added];
  const input = (graph.input ?? []).filter((i) => !dropped.has(i.name ?? ''));
  const opsetImport = [...(model.opsetImport ?? [])];
  if (quantized.size > 0 && !opsetImport.some((o) => o.domain === MS_DOMAIN)) opsetImport.push({ domain: MS_DOMAIN, version: 1 });
  const before = (graph.initializer ?? []).reduce((s, t) => s + tensorBytes(t), 0);
  const after = initializer.reduce((s, t) => s + tensorBytes(t), 0);
  return {
    model: { ...model, opsetImport, graph: { ...graph, node: newNodes, initializer, input } },
    weights: [...quantized.values()].map((e) => e.info),
    skipped,
    initializerBytesBefore: before,
    initializerBytesAfter: after,
  };
}

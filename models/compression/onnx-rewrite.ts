// Rewrites an ONNX decoder so its token embedding is looked up from compressed factors: the dense
// Gather becomes Gathers of each core by token id plus a MatMul contraction to [..., d].
import { ModelError, ValidationError } from '../../common/errors.ts';
import { DataType, onnx, tensorToFloat32, type ModelProto, type NodeProto, type TensorProto } from '../onnx/proto.ts';
import type { CompressedEmbedding, TtMatrixEmbedding } from './embedding.ts';

/** Where a model keeps its token embedding. */
export interface EmbeddingSite {
  /** Index of the Gather in graph.node. */
  nodeIndex: number;
  gather: NodeProto;
  initializer: TensorProto;
  name: string;
  vocab: number;
  dim: number;
  /** Other nodes that read the table (a tied LM head). */
  otherConsumers: NodeProto[];
}

/** Ops that pass token ids through unchanged in value (first input is the ids). */
const ID_PASSTHROUGH = new Set(['Cast', 'Identity', 'Reshape', 'Unsqueeze', 'Squeeze', 'Flatten']);

function attrInt(node: NodeProto, name: string, fallback: number): number {
  const a = (node.attribute ?? []).find((x) => x.name === name);
  return a?.i === undefined || a.i === null ? fallback : Number(a.i);
}

/**
 * Finds the token embedding: a Gather on axis 0 whose data is a 2-D float initializer [V, d] and whose
 * indices come from the graph input `input_ids` (possibly through Cast/Reshape/...). Works for FleetLM's
 * `embed_tokens.weight` and Hugging Face Optimum layouts (`model.decoder.embed_tokens.weight`,
 * `transformer.wte.weight`). Throws a ValidationError naming what was found instead.
 */
export function findTokenEmbedding(model: ModelProto): EmbeddingSite {
  const graph = model.graph;
  if (!graph) throw new ValidationError('ONNX model has no graph; expected a decoder with a token embedding Gather');
  const nodes = graph.node ?? [];
  const inits = new Map((graph.initializer ?? []).map((t) => [t.name ?? '', t]));
  const producer = new Map<string, NodeProto>();
  for (const n of nodes) for (const o of n.output ?? []) producer.set(o, n);
  const inputNames = new Set((graph.input ?? []).map((i) => i.name ?? ''));
  const comesFromIds = (value: string): boolean => {
    let cur = value;
    for (let hops = 0; hops < 8; hops++) {
      if (inputNames.has(cur) && !inits.has(cur)) return cur === 'input_ids';
      const p = producer.get(cur);
      if (!p || !ID_PASSTHROUGH.has(p.opType ?? '')) return false;
      cur = p.input?.[0] ?? '';
    }
    return false;
  };
  const seen: string[] = [];
  const candidates: number[] = [];
  nodes.forEach((n, i) => {
    if (n.opType !== 'Gather') return;
    const data = n.input?.[0] ?? '';
    const t = inits.get(data);
    const dims = (t?.dims ?? []).map(Number);
    const ok = t !== undefined && t.dataType === DataType.FLOAT && dims.length === 2 && attrInt(n, 'axis', 0) === 0;
    seen.push(`${n.name || '(unnamed)'} on ${data}${t ? ` [${dims.join(', ')}]` : ' (not an initializer)'}`);
    if (ok && comesFromIds(n.input?.[1] ?? '')) candidates.push(i);
  });
  if (candidates.length === 0) {
    throw new ValidationError(
      `no token embedding found: expected a Gather (axis 0) whose data is a 2-D float initializer [vocab, width] and whose indices come from the graph input "input_ids"; Gathers in this graph: ${seen.length ? seen.join('; ') : 'none'}`,
      { code: 'VALIDATION_NO_EMBEDDING' },
    );
  }
  if (candidates.length > 1) {
    const names = candidates.map((i) => nodes[i]!.input![0]).join(', ');
    throw new ValidationError(`more than one Gather reads a [vocab, width] initializer by input_ids (${names}); expected exactly one token embedding`, {
      code: 'VALIDATION_NO_EMBEDDING',
    });
  }
  const nodeIndex = candidates[0]!;
  const gather = nodes[nodeIndex]!;
  const name = gather.input![0]!;
  const initializer = inits.get(name)!;
  const [vocab, dim] = (initializer.dims ?? []).map(Number) as [number, number];
  const otherConsumers = nodes.filter((n, i) => i !== nodeIndex && (n.input ?? []).includes(name));
  return { nodeIndex, gather, initializer, name, vocab, dim, otherConsumers };
}

/** The dense [V, d] table of the model's token embedding. */
export function extractEmbedding(model: ModelProto): { site: EmbeddingSite; matrix: Float32Array } {
  const site = findTokenEmbedding(model);
  return { site, matrix: tensorToFloat32(site.initializer) };
}

/** How a tied LM head gets its matrix once the dense table is gone. */
export type TiedHeadMode = 'dense' | 'reconstruct';

/** What the rewrite did. */
export interface RewriteResult {
  model: ModelProto;
  tiedHead: boolean;
  tiedHeadMode: TiedHeadMode | null;
  /** Float elements of initializers added for the compressed embedding. */
  addedElements: number;
  /** Float elements removed (the dense table, unless kept for the head). */
  removedElements: number;
}

function floatTensor(name: string, data: Float32Array, dims: number[]): TensorProto {
  // slice() copies into a plain ArrayBuffer (cores may live in SharedArrayBuffers).
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
  return { name, dataType: DataType.FLOAT, dims, rawData: bytes };
}

function int64Tensor(name: string, values: number[], dims: number[] = [values.length]): TensorProto {
  const data = BigInt64Array.from(values.map(BigInt));
  return { name, dataType: DataType.INT64, dims, rawData: new Uint8Array(data.buffer) };
}

/** Emits nodes and initializers with names unique in the graph. */
class Emitter {
  readonly nodes: NodeProto[] = [];
  readonly inits: TensorProto[] = [];
  private n = 0;
  constructor(
    private readonly prefix: string,
    private readonly used: Set<string>,
  ) {}
  name(hint: string): string {
    let s = `${this.prefix}/${hint}`;
    while (this.used.has(s)) s = `${this.prefix}/${hint}_${++this.n}`;
    this.used.add(s);
    return s;
  }
  i64(hint: string, values: number[], dims?: number[]): string {
    const name = this.name(hint);
    this.inits.push(int64Tensor(name, values, dims));
    return name;
  }
  f32(hint: string, data: Float32Array, dims: number[]): string {
    const name = this.name(hint);
    this.inits.push(floatTensor(name, data, dims));
    return name;
  }
  op(opType: string, inputs: string[], hint: string, attrs: Record<string, number | number[]> = {}, out?: string): string {
    const output = out ?? this.name(hint);
    const attribute = Object.entries(attrs).map(([k, v]) =>
      Array.isArray(v)
        ? { name: k, type: onnx.AttributeProto.AttributeType.INTS, ints: v }
        : { name: k, type: onnx.AttributeProto.AttributeType.INT, i: v },
    );
    this.nodes.push({ name: this.name(`${hint}_node`), opType, input: inputs, output: [output], attribute });
    return output;
  }
}

/** Initializers holding the factors; returns their names in method order. */
function addFactors(em: Emitter, e: CompressedEmbedding, base: string): string[] {
  if (e.method === 'svd') {
    return [em.f32(`${base}.svd_left`, e.left, [e.vocab, e.rank]), em.f32(`${base}.svd_right`, e.right, [e.rank, e.dim])];
  }
  const shape = e.method === 'tt-row' ? e.shape : e.dimShape;
  return e.cores.map((c, k) => {
    const lead = e.method === 'tt-row' ? e.vocab : e.vocabShape[k]!;
    return em.f32(`${base}.${e.method}_core${k}`, c, [lead, e.ranks[k]!, shape[k]!, e.ranks[k + 1]!]);
  });
}

/**
 * Emits the lookup of flat int64 ids [n] through the factors; returns a [n, dim] value.
 * TT: acc [n, P, r] x core [n, r, I*r'] -> [n, P*I, r'] per core (batched MatMul), padding sliced off.
 */
function emitLookup(em: Emitter, e: CompressedEmbedding, factors: string[], ids: string): string {
  if (e.method === 'svd') {
    const rows = em.op('Gather', [factors[0]!, ids], 'svd_rows', { axis: 0 });
    return em.op('MatMul', [rows, factors[1]!], 'svd_rows_x_right');
  }
  const shape = e.method === 'tt-row' ? e.shape : e.dimShape;
  const N = shape.length;
  const digitIds: string[] = [];
  if (e.method === 'tt-row') {
    for (let k = 0; k < N; k++) digitIds.push(ids);
  } else {
    let stride = e.vocabShape.reduce((p, x) => p * x, 1);
    for (let k = 0; k < N; k++) {
      stride /= e.vocabShape[k]!;
      const q = em.op('Div', [ids, em.i64(`stride${k}`, [stride], [])], `digit${k}_div`);
      digitIds.push(em.op('Mod', [q, em.i64(`radix${k}`, [e.vocabShape[k]!], [])], `digit${k}`));
    }
  }
  let acc = '';
  let rows = shape[0]!;
  for (let k = 0; k < N; k++) {
    const g = em.op('Gather', [factors[k]!, digitIds[k]!], `core${k}_rows`, { axis: 0 });
    const r0 = e.ranks[k]!;
    const r1 = e.ranks[k + 1]!;
    if (k === 0) {
      acc = em.op('Reshape', [g, em.i64(`core0_shape`, [0, shape[0]!, r1])], 'core0_mat');
      continue;
    }
    const m = em.op('Reshape', [g, em.i64(`core${k}_shape`, [0, r0, shape[k]! * r1])], `core${k}_mat`);
    const prod = em.op('MatMul', [acc, m], `contract${k}`);
    rows *= shape[k]!;
    acc = em.op('Reshape', [prod, em.i64(`contract${k}_shape`, [0, rows, r1])], `contract${k}_mat`);
  }
  let flat = em.op('Reshape', [acc, em.i64('flat_shape', [0, rows])], 'tt_flat');
  if (rows > e.dim) {
    flat = em.op('Slice', [flat, em.i64('pad_start', [0]), em.i64('pad_end', [e.dim]), em.i64('pad_axis', [1])], 'unpadded');
  }
  return flat;
}

/**
 * The whole [V, d] table of a TT-matrix from its cores, contracted core by core in the interleaved
 * (v_1, d_1, v_2, d_2, ...) order and transposed once at the end. A per-token Gather of all V tokens would
 * materialise V x r^2 x d_k floats per core (gigabytes at GPT-2 scale); this stays near V x d.
 */
function emitTtMatrixTable(em: Emitter, e: TtMatrixEmbedding, factors: string[]): string {
  const N = e.vocabShape.length;
  const vs = e.vocabShape;
  const ds = e.dimShape;
  let acc = em.op('Reshape', [factors[0]!, em.i64('tm_core0_shape', [vs[0]! * ds[0]!, e.ranks[1]!])], 'tm_acc0');
  let rows = vs[0]! * ds[0]!;
  for (let k = 1; k < N; k++) {
    const r0 = e.ranks[k]!;
    const r1 = e.ranks[k + 1]!;
    const t = em.op('Transpose', [factors[k]!], `tm_core${k}_t`, { perm: [1, 0, 2, 3] });
    const m = em.op('Reshape', [t, em.i64(`tm_core${k}_shape`, [r0, vs[k]! * ds[k]! * r1])], `tm_core${k}_mat`);
    const prod = em.op('MatMul', [acc, m], `tm_contract${k}`);
    rows *= vs[k]! * ds[k]!;
    acc = em.op('Reshape', [prod, em.i64(`tm_contract${k}_shape`, [rows, r1])], `tm_acc${k}`);
  }
  const interleaved: number[] = [];
  for (let k = 0; k < N; k++) interleaved.push(vs[k]!, ds[k]!);
  const split = em.op('Reshape', [acc, em.i64('tm_split_shape', interleaved)], 'tm_split');
  const perm = [...Array.from({ length: N }, (_, k) => 2 * k), ...Array.from({ length: N }, (_, k) => 2 * k + 1)];
  const ordered = em.op('Transpose', [split], 'tm_ordered', { perm });
  const width = ds.reduce((p, x) => p * x, 1);
  let table = em.op('Reshape', [ordered, em.i64('tm_table_shape', [e.paddedVocab, width])], 'tm_table');
  if (e.paddedVocab > e.vocab || width > e.dim) {
    table = em.op('Slice', [table, em.i64('tm_start', [0, 0]), em.i64('tm_end', [e.vocab, e.dim]), em.i64('tm_axes', [0, 1])], 'tm_table_unpadded');
  }
  return table;
}

/**
 * Replaces the model's token-embedding Gather with a lookup through `e` and removes the dense table.
 * A tied LM head either keeps a dense copy of the table ('dense') or gets it rebuilt in-graph from the
 * factors ('reconstruct'): that subgraph reads only initializers, so onnxruntime constant-folds it
 * once when the session is created. The input model is not modified.
 */
export function rewriteEmbedding(model: ModelProto, e: CompressedEmbedding, options: { tiedHead?: TiedHeadMode } = {}): RewriteResult {
  const site = findTokenEmbedding(model);
  if (site.vocab !== e.vocab || site.dim !== e.dim) {
    throw new ValidationError(
      `compressed embedding is ${e.vocab} x ${e.dim} but the model's table ${site.name} is ${site.vocab} x ${site.dim}; they must match`,
    );
  }
  const graph = model.graph!;
  const used = new Set<string>();
  for (const n of graph.node ?? []) {
    for (const v of [...(n.input ?? []), ...(n.output ?? [])]) used.add(v);
    if (n.name) used.add(n.name);
  }
  for (const t of graph.initializer ?? []) used.add(t.name ?? '');
  for (const v of [...(graph.input ?? []), ...(graph.output ?? [])]) used.add(v.name ?? '');
  const tied = site.otherConsumers.length > 0;
  const mode: TiedHeadMode | null = tied ? (options.tiedHead ?? 'dense') : null;
  const em = new Emitter('embed_tokens_compressed', used);
  const factors = addFactors(em, e, site.name.replace(/\.weight$/, ''));
  // Lookup: flatten ids of any shape, look up, restore [...ids.shape, d].
  const ids = site.gather.input![1]!;
  const ids64 = em.op('Cast', [ids], 'ids_i64', { to: DataType.INT64 });
  const flatIds = em.op('Reshape', [ids64, em.i64('ids_flat_shape', [-1])], 'ids_flat');
  const rows = emitLookup(em, e, factors, flatIds);
  const outShape = em.op('Concat', [em.op('Shape', [ids], 'ids_shape'), em.i64('width', [e.dim])], 'out_shape', { axis: 0 });
  em.op('Reshape', [rows, outShape], 'embedding', {}, site.gather.output![0]!);
  const lookupNodes = em.nodes.splice(0);
  let headNodes: NodeProto[] = [];
  let keepDense = false;
  if (mode === 'reconstruct') {
    // Rebuild the whole table under the original initializer name for the head's consumers.
    let table: string;
    if (e.method === 'tt-matrix') table = emitTtMatrixTable(em, e, factors);
    else if (e.method === 'svd') table = em.op('MatMul', [factors[0]!, factors[1]!], 'svd_table');
    else {
      // Per-row TT: the Gather by all ids is a plain copy of each core, no bigger than the core itself.
      const all = em.op('Range', [em.i64('range_start', [0], []), em.i64('range_limit', [e.vocab], []), em.i64('range_delta', [1], [])], 'all_ids');
      table = emitLookup(em, e, factors, all);
    }
    em.op('Reshape', [table, em.i64('table_shape', [e.vocab, e.dim])], 'table', {}, site.name);
    headNodes = em.nodes.splice(0);
  } else if (mode === 'dense') {
    keepDense = true;
  }
  const nodes = [...headNodes, ...(graph.node ?? [])];
  nodes.splice(headNodes.length + site.nodeIndex, 1, ...lookupNodes);
  const initializer = [...(graph.initializer ?? []).filter((t) => keepDense || t.name !== site.name), ...em.inits];
  const input = (graph.input ?? []).filter((i) => keepDense || i.name !== site.name);
  const added = em.inits.filter((t) => t.dataType === DataType.FLOAT).reduce((s, t) => s + (t.dims ?? []).reduce<number>((p, x) => p * Number(x), 1), 0);
  return {
    model: { ...model, graph: { ...graph, node: nodes, initializer, input } },
    tiedHead: tied,
    tiedHeadMode: mode,
    addedElements: added,
    removedElements: keepDense ? 0 : site.vocab * site.dim,
  };
}

/** Asserts the model's default-domain opset supports the ops the rewrite emits (Range needs 11). */
export function assertRewriteOpset(model: ModelProto): void {
  const opset = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  const v = Number(opset?.version ?? 0);
  if (v < 13) {
    throw new ModelError(`the embedding rewrite needs ONNX opset >= 13 in the default domain; the model declares ${v || 'none'}`);
  }
}

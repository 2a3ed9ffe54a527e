// A small helper for assembling ONNX graphs in code: unique value names, typed initializers,
// cached constants and attribute encoding, so the decoder builder reads like the model it builds.
import { onnx, DataType, setLazyTensorData, type ModelProto, type NodeProto, type TensorProto, type ValueInfoProto, type AttributeProto } from './proto.ts';

/** An attribute value: numbers are INT when integral unless wrapped with `float()`. */
export type AttrValue = number | string | number[] | { float: number } | { floats: number[] } | { tensor: TensorProto };

/** A dimension: fixed size or a symbolic name (dim_param). */
export type Dim = number | string;

/** Marks a number as a FLOAT attribute. */
export function float(value: number): { float: number } {
  return { float: value };
}

function attribute(name: string, value: AttrValue): AttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) return { name, type: T.FLOAT, f: value };
    return { name, type: T.INT, i: value };
  }
  if (typeof value === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) return { name, type: T.INTS, ints: value };
  if ('float' in value) return { name, type: T.FLOAT, f: value.float };
  if ('floats' in value) return { name, type: T.FLOATS, floats: value.floats };
  return { name, type: T.TENSOR, t: value.tensor };
}

/** Bytes of a typed array as a view (no copy). */
function bytesOf(data: Float32Array | BigInt64Array | Int32Array | Uint8Array): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Builds one GraphProto; node and value names are unique within it. */
export class GraphBuilder {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  readonly inputs: ValueInfoProto[] = [];
  readonly outputs: ValueInfoProto[] = [];
  private readonly used = new Set<string>();
  private readonly constCache = new Map<string, string>();
  private counter = 0;

  /** A fresh value name starting with `prefix`. */
  fresh(prefix: string): string {
    let name = prefix;
    while (this.used.has(name)) name = `${prefix}_${++this.counter}`;
    this.used.add(name);
    return name;
  }

  /** Declares a graph input. */
  input(name: string, elemType: number, dims: Dim[]): string {
    this.used.add(name);
    this.inputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  /** Declares a graph output (the value must be produced by a node). */
  output(name: string, elemType: number, dims: Dim[]): void {
    this.outputs.push(valueInfo(name, elemType, dims));
  }

  /** Adds a node; returns its output names (fresh ones from `outs` when a count is given). */
  node(
    opType: string,
    inputs: string[],
    outs: string[] | number = 1,
    attrs: Record<string, AttrValue> = {},
    domain?: string,
  ): string[] {
    const outputs =
      typeof outs === 'number' ? Array.from({ length: outs }, (_, i) => this.fresh(`${opType.toLowerCase()}${outs > 1 ? `_o${i}` : ''}`)) : outs;
    for (const o of outputs) if (o) this.used.add(o);
    const node: NodeProto = {
      name: this.fresh(`n_${opType}`),
      opType,
      input: inputs,
      output: outputs,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    };
    if (domain) node.domain = domain;
    this.nodes.push(node);
    return outputs;
  }

  /** Adds a single-output node and returns the output name (or the name given in `out`). */
  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, out?: string, domain?: string): string {
    return this.node(opType, inputs, out ? [out] : 1, attrs, domain)[0]!;
  }

  /** Adds a float32 initializer (data is referenced, not copied). */
  initFloat(name: string, data: Float32Array, dims: number[]): string {
    this.used.add(name);
    this.initializers.push({ name, dataType: DataType.FLOAT, dims, rawData: bytesOf(data) });
    return name;
  }

  /**
   * Adds a float32 initializer whose data is loaded only when the model is saved (then dropped), so
   * a large model is never whole in memory; see setLazyTensorData in proto.ts.
   */
  initFloatLazy(name: string, dims: number[], load: () => Float32Array): string {
    this.used.add(name);
    const tensor: TensorProto = { name, dataType: DataType.FLOAT, dims };
    setLazyTensorData(tensor, 4 * dims.reduce((a, b) => a * b, 1), () => bytesOf(load()));
    this.initializers.push(tensor);
    return name;
  }

  /** An int64 constant initializer, shared between uses of the same values and dims. */
  constInt64(values: number[], dims: number[] = [values.length]): string {
    const key = `i64:${dims.join('x')}:${values.join(',')}`;
    const cached = this.constCache.get(key);
    if (cached) return cached;
    const name = this.fresh(`const_i64_${values.length <= 4 ? values.join('_').replace(/-/g, 'm') : 'v'}`);
    this.initializers.push({ name, dataType: DataType.INT64, dims, rawData: bytesOf(BigInt64Array.from(values.map(BigInt))) });
    this.constCache.set(key, name);
    return name;
  }

  /** A float32 constant initializer (scalar when dims is []), shared between identical uses. */
  constFloat(values: number[], dims: number[] = []): string {
    const key = `f32:${dims.join('x')}:${values.join(',')}`;
    const cached = this.constCache.get(key);
    if (cached) return cached;
    const name = this.fresh('const_f32');
    this.initializers.push({ name, dataType: DataType.FLOAT, dims, rawData: bytesOf(Float32Array.from(values)) });
    this.constCache.set(key, name);
    return name;
  }

  /** Names of initializers created by constInt64/constFloat (graph plumbing, not parameters). */
  constantNames(): Set<string> {
    return new Set(this.constCache.values());
  }

  /** Wraps the graph into a ModelProto with the given opsets. */
  toModel(options: { graphName: string; opsets: Record<string, number>; docString?: string; metadata?: Record<string, string> }): ModelProto {
    return {
      irVersion: 8,
      producerName: 'fleetlm',
      producerVersion: '0.1.0',
      docString: options.docString ?? '',
      opsetImport: Object.entries(options.opsets).map(([domain, version]) => ({ domain, version })),
      metadataProps: Object.entries(options.metadata ?? {}).map(([key, value]) => ({ key, value })),
      graph: {
        name: options.graphName,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    };
  }
}

function valueInfo(name: string, elemType: number, dims: Dim[]): ValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

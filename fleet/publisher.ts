// Publishing a model bundle: collect the files a device needs from a model directory, check that the
// model runs with its tokenizer (models/runtime/bundle-check.ts), write a manifest listing each file with
// size and sha256, sign it, and upload everything to S3 under models/{modelId}/{version}/. A version,
// once its manifest.json exists, never changes.
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { GetObjectCommand, HeadObjectCommand, NoSuchKey, NotFound, PutObjectCommand, S3ServiceException, type PutObjectCommandInput, type S3Client } from '@aws-sdk/client-s3';
import { z } from 'zod';
import { TransportError, ValidationError } from '../common/errors.ts';
import { parseJsonWith, parseWith } from '../common/validate.ts';
import {
  GenerationDefaultsSchema,
  MANIFEST_FILE,
  MANIFEST_SIGNATURE_FILE,
  ManifestSchema,
  ModelIdSchema,
  ModelVersionSchema,
  modelPrefix,
  parseManifestBytes,
  parseManifestSignature,
  type Manifest,
  type ManifestFile,
  type ManifestInput,
  type ManifestSignature,
} from '../contracts/manifest.ts';
import { signManifestBytes, type ManifestSigner } from '../contracts/manifest-signing.ts';
import { sha256File, sha256Hex } from '../common/hash.ts';
import { uploadFileIfAbsent } from './object-upload.ts';
import { QUALITY_FILE, QualityRecordSchema, rejudge } from '../models/quality/quality-gate.ts';
// The tokenizer modules directly: the runtime's index loads onnxruntime, which only the bundle check
// needs (imported when it runs, so importing this module for its constants stays cheap).
import { loadTokenizerFile } from '../models/runtime/tokenizer-file.ts';
import { isFleetBpeFile } from '../models/runtime/tokenizer-fleetlm-bpe.ts';
import { gpt2Tokenizer, type Tokenizer } from '../models/runtime/tokenizer.ts';
import type { BundleCheckResult } from '../models/runtime/bundle-check.ts';

/** Files in a model directory that carry metadata for the manifest rather than bytes for the device. */
export const BUNDLE_METADATA_FILES = {
  arch: 'arch.json',
  compression: ['compression-report.json', 'compression.json'],
  evaluation: 'evaluation.json',
  lineage: 'lineage.json',
  generation: 'generation.json',
  tokenizer: 'tokenizer.json',
  /** The quality gate's record (models/quality/quality-gate.ts): publish refuses a bundle that fails it. */
  quality: QUALITY_FILE,
  tokenizerConfig: 'tokenizer_config.json',
} as const;

const LineageSchema = z
  .object({ searchSeed: z.number().int().optional(), sourceModel: z.string().optional(), parentVersion: z.string().optional() })
  .strict();
const JsonObjectSchema = z.record(z.string(), z.unknown());

/** A bundle ready to upload: the manifest bytes and the local file behind each entry. */
export interface PreparedBundle {
  manifest: Manifest;
  manifestBytes: Buffer;
  /** manifest file name -> absolute local path */
  paths: Map<string, string>;
  /** Files in the model directory that were neither shipped nor used as metadata. */
  ignored: string[];
  /** What the bundle check found, or 'skipped' under skipBundleChecks. */
  check: BundleCheckResult | 'skipped';
}

export interface PrepareOptions {
  modelDir: string;
  modelId: string;
  version: string;
  /** Entry ONNX file (default: model.onnx, or the only .onnx file). */
  entry?: string;
  /** Extra manifest fields that override the files in the directory. */
  overrides?: Partial<Pick<ManifestInput, 'arch' | 'compression' | 'evaluation' | 'lineage' | 'generation'>>;
  /** Judge quality.json under this limit instead of the one it records (a fraction of the dense perplexity). */
  maxPerplexityIncrease?: number;
  /** Anti-rollback: devices refuse releases of this model with a lower one (contracts/manifest.ts). */
  securityVersion?: number;
  /** Devices refuse to install the release after this ISO time. */
  expiresAt?: string;
  /**
   * Skip the bundle check (model loads, tokenizer fits, finite logits, one token). For testing the
   * agents' safety net only: the manifest records the skip, and a bundle that fails the check fails
   * on every device.
   */
  skipBundleChecks?: boolean;
  now?: Date;
  /** Ship every .onnx file, not only the entry (a benchmark grid is many models, exempt from the LM bundle check); default false. */
  shipEveryModel?: boolean;
}


/**
 * How the manifest names the directory's tokenizer: GPT-2 when there is no tokenizer.json, { kind: 'bpe' }
 * for an older `fleetlm/bpe@1` file (what agents before Hugging Face support read), else { kind:
 * 'huggingface' } with its tokenizer_config.json. The files are loaded first, so a broken tokenizer
 * fails here rather than on every device.
 */
async function tokenizerRef(dir: string, shipped: ReadonlySet<string>): Promise<{ ref: ManifestInput['tokenizer']; tokenizer: Tokenizer; source: string }> {
  const { tokenizer, tokenizerConfig } = BUNDLE_METADATA_FILES;
  if (!shipped.has(tokenizer)) return { ref: { kind: 'gpt2-bpe' }, tokenizer: gpt2Tokenizer(), source: `gpt2 (the bundle has no ${tokenizer})` };
  const file = path.join(dir, tokenizer);
  let loaded: Tokenizer;
  try {
    // With the config exactly when the device gets it (it ships whenever tokenizer.json does).
    loaded = await loadTokenizerFile(file, shipped.has(tokenizerConfig) ? path.join(dir, tokenizerConfig) : null);
  } catch (err) {
    throw new ValidationError(`model directory's ${tokenizer} cannot be loaded: ${(err as Error).message}`, { cause: err });
  }
  let old = false;
  try {
    old = isFleetBpeFile(JSON.parse(await fs.readFile(file, 'utf8')));
  } catch {
    // Loaded above, so it is JSON.
  }
  const ref: ManifestInput['tokenizer'] = old
    ? { kind: 'bpe', file: tokenizer }
    : shipped.has(tokenizerConfig)
      ? { kind: 'huggingface', file: tokenizer, config: tokenizerConfig }
      : { kind: 'huggingface', file: tokenizer };
  return { ref, tokenizer: loaded, source: file };
}

/** The manifest's record of the bundle check: what was checked, without timings (a resumed publish must match). */
function checkRecord(check: BundleCheckResult | 'skipped', benchmarkGrid: boolean): Record<string, unknown> {
  if (check === 'skipped' && benchmarkGrid) return { skipped: true, reason: 'a benchmark grid: layer models that devices time, never serve' };
  if (check === 'skipped') return { skipped: true, reason: 'published with skipBundleChecks (--skip-bundle-checks): for testing the agents\' safety net only' };
  return { passed: true, modelVocabSize: check.modelVocabSize, tokenizerVocabSize: check.tokenizerVocabSize };
}

async function readJsonObject<S extends z.ZodType>(file: string, schema: S): Promise<z.output<S> | undefined> {
  if (!existsSync(file)) return undefined;
  return parseJsonWith(schema, await fs.readFile(file, 'utf8'), path.basename(file));
}

function roleOf(name: string): ManifestFile['role'] | undefined {
  if (name.endsWith('.onnx')) return 'model';
  if (/\.(onnx\.data|onnx_data|data|bin)$/.test(name)) return 'model-data';
  return undefined;
}

/** The evaluation manifest field with the gate's verdict and per-step perplexity changes added. */
function withQuality(evaluation: Record<string, unknown> | undefined, quality: ReturnType<typeof rejudge> | undefined): Record<string, unknown> | undefined {
  if (!quality) return evaluation;
  const { passed, reason, totalChange, maxPerplexityIncrease, baselinePerplexity, steps } = quality;
  return { ...evaluation, quality: { passed, reason, totalChange, maxPerplexityIncrease, baselinePerplexity, steps: steps.map(({ step, change, perplexityAfter, shipped }) => ({ step, change, perplexityAfter, shipped })) } };
}

/**
 * Builds the manifest for a model directory: every .onnx and external-data file is shipped, a
 * tokenizer.json (Hugging Face, or FleetLM's older BPE) and its tokenizer_config.json are shipped when
 * present (else the GPT-2 BPE is referenced), and
 * arch/compression/evaluation/lineage/generation JSON files become manifest fields.
 */
export async function prepareBundle(opts: PrepareOptions): Promise<PreparedBundle> {
  parseWith(ModelIdSchema, opts.modelId, 'model id');
  parseWith(ModelVersionSchema, opts.version, 'model version');
  const dir = path.resolve(opts.modelDir);
  let names: string[];
  try {
    names = (await fs.readdir(dir, { withFileTypes: true })).filter((d) => d.isFile()).map((d) => d.name).sort();
  } catch (err) {
    throw new ValidationError(`model directory ${dir} cannot be read`, { cause: err });
  }
  const onnx = names.filter((n) => n.endsWith('.onnx'));
  const entry = opts.entry ?? (names.includes('model.onnx') ? 'model.onnx' : onnx.length === 1 ? onnx[0] : undefined);
  if (!entry || !names.includes(entry)) {
    throw new ValidationError(
      `model directory ${dir} must hold the entry ONNX file ${opts.entry ?? 'model.onnx'}; it has ${onnx.length ? onnx.join(', ') : 'no .onnx files'}`,
    );
  }
  const metadataNames = new Set<string>([
    BUNDLE_METADATA_FILES.arch,
    ...BUNDLE_METADATA_FILES.compression,
    BUNDLE_METADATA_FILES.evaluation,
    BUNDLE_METADATA_FILES.lineage,
    BUNDLE_METADATA_FILES.generation,
    BUNDLE_METADATA_FILES.quality,
  ]);
  const files: ManifestFile[] = [];
  const paths = new Map<string, string>();
  const ignored: string[] = [];
  for (const name of names) {
    const isTokenizer = name === BUNDLE_METADATA_FILES.tokenizer || (name === BUNDLE_METADATA_FILES.tokenizerConfig && names.includes(BUNDLE_METADATA_FILES.tokenizer));
    const role = isTokenizer ? 'tokenizer' : roleOf(name);
    if (!role) {
      if (!metadataNames.has(name) && name !== MANIFEST_FILE && name !== MANIFEST_SIGNATURE_FILE) ignored.push(name);
      continue;
    }
    // Only the chosen entry among several ONNX files ships; the others are build leftovers.
    if (role === 'model' && name !== entry && !opts.shipEveryModel) {
      ignored.push(name);
      continue;
    }
    const full = path.join(dir, name);
    const stat = await fs.stat(full);
    files.push({ name, size: stat.size, sha256: await sha256File(full), role });
    paths.set(name, full);
  }
  // The gate's verdict is recomputed from the recorded perplexities, never taken from the file's own flag.
  const qualityRecord = await readJsonObject(path.join(dir, BUNDLE_METADATA_FILES.quality), QualityRecordSchema);
  const quality = qualityRecord ? rejudge(qualityRecord, opts.maxPerplexityIncrease) : undefined;
  if (quality && !quality.passed) {
    throw new ValidationError(`quality gate refuses to publish ${dir}: ${quality.reason} (${BUNDLE_METADATA_FILES.quality}: ${quality.steps.map((s) => s.step).join(' -> ')})`, {
      code: 'VALIDATION_QUALITY_GATE',
    });
  }
  let compression: Record<string, unknown> | undefined;
  for (const c of BUNDLE_METADATA_FILES.compression) compression ??= await readJsonObject(path.join(dir, c), JsonObjectSchema);
  const tok = await tokenizerRef(dir, new Set(paths.keys()));
  // Before anything is signed or uploaded: a version is immutable, so a bundle no device can run must never become one.
  // A benchmark grid (shipEveryModel) holds layer models with no tokenizer: devices time them, never serve them.
  const check: BundleCheckResult | 'skipped' = opts.skipBundleChecks || opts.shipEveryModel
    ? 'skipped'
    : await (await import('../models/runtime/bundle-check.ts')).checkBundle({ modelPath: paths.get(entry)!, tokenizer: tok.tokenizer, tokenizerSource: tok.source });
  const evaluation = withQuality(opts.overrides?.evaluation ?? (await readJsonObject(path.join(dir, BUNDLE_METADATA_FILES.evaluation), JsonObjectSchema)), quality);
  const input: ManifestInput = {
    format: 'fleetlm/manifest@1',
    modelId: opts.modelId,
    version: opts.version,
    createdAt: (opts.now ?? new Date()).toISOString(),
    entry,
    files,
    tokenizer: tok.ref,
    generation: opts.overrides?.generation ?? (await readJsonObject(path.join(dir, BUNDLE_METADATA_FILES.generation), GenerationDefaultsSchema)) ?? {},
    arch: opts.overrides?.arch ?? (await readJsonObject(path.join(dir, BUNDLE_METADATA_FILES.arch), JsonObjectSchema)),
    compression: opts.overrides?.compression ?? compression,
    evaluation: { ...evaluation, bundleCheck: checkRecord(check, opts.shipEveryModel === true) },
    lineage: opts.overrides?.lineage ?? (await readJsonObject(path.join(dir, BUNDLE_METADATA_FILES.lineage), LineageSchema)) ?? {},
    ...(opts.securityVersion !== undefined ? { securityVersion: opts.securityVersion } : {}),
    ...(opts.expiresAt !== undefined ? { expiresAt: opts.expiresAt } : {}),
  };
  const manifest = parseWith(ManifestSchema, input, 'model manifest');
  return { manifest, manifestBytes: Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`), paths, ignored, check };
}

export interface PublishOptions extends PrepareOptions {
  s3: S3Client;
  bucket: string;
  signer: ManifestSigner;
  /** Called as bytes go up (after each part of a large file), for progress bars. */
  onProgress?: (uploadedBytes: number, totalBytes: number, file: string) => void;
  /** Files above this many bytes go up as multipart uploads (default fleet/object-upload.ts DEFAULT_MULTIPART_THRESHOLD_BYTES). */
  multipartThresholdBytes?: number;
  /** Multipart part size in bytes, at least 5 MiB (default 16 MiB, raised to fit 10,000 parts). */
  partSizeBytes?: number;
}

export interface PublishResult {
  modelId: string;
  version: string;
  bucket: string;
  prefix: string;
  manifest: Manifest;
  manifestSha256: string;
  manifestSize: number;
  signature: ManifestSignature;
  files: ManifestFile[];
  totalBytes: number;
  ignored: string[];
  /** What the bundle check found before the upload, or 'skipped'. */
  check: BundleCheckResult | 'skipped';
}

function isNotFound(err: unknown): boolean {
  return err instanceof NotFound || err instanceof NoSuchKey || (err instanceof S3ServiceException && err.$metadata?.httpStatusCode === 404);
}

/** S3 answers a failed `If-None-Match: *` with 412 PreconditionFailed (the SDK has no class of its own for it). */
function isPreconditionFailed(err: unknown): boolean {
  return err instanceof S3ServiceException && (err.name === 'PreconditionFailed' || err.$metadata?.httpStatusCode === 412);
}

function versionExists(modelId: string, version: string, bucket: string): ValidationError {
  return new ValidationError(
    `model ${modelId} version ${version} is already published in s3://${bucket}/${modelPrefix(modelId, version)}: versions are immutable, publish a new version`,
    { code: 'VALIDATION_VERSION_EXISTS' },
  );
}

function versionClaimed(modelId: string, version: string, bucket: string, claim: PublishClaim | undefined): ValidationError {
  const prefix = modelPrefix(modelId, version);
  return new ValidationError(
    `model ${modelId} version ${version} is already being published with other content (claim s3://${bucket}/${prefix}${PUBLISH_CLAIM_FILE}` +
      `${claim ? ` of ${claim.startedAt}` : ''}): versions are immutable, publish a new version; if that publisher stopped half-way and nothing uses ` +
      `the version, delete s3://${bucket}/${prefix} first`,
    { code: 'VALIDATION_VERSION_EXISTS' },
  );
}

/**
 * The first object of a publish, written with `If-None-Match: *`: whoever writes it owns the version.
 * It holds the manifest text, so a publisher of the same content (a retried Lambda step, a rerun after a
 * crash) resumes with the very same manifest bytes instead of being locked out or writing a second one.
 */
export const PUBLISH_CLAIM_FILE = '.publish-claim.json';
const PublishClaimSchema = z
  .object({ format: z.literal('fleetlm/publish-claim@1'), contentSha256: z.string(), startedAt: z.string(), manifest: z.string() })
  .strict();
type PublishClaim = z.output<typeof PublishClaimSchema>;

/** sha256 of the manifest without its creation time: equal for two publishes of the same content. */
function contentSha256(manifest: Manifest): string {
  const { createdAt: _createdAt, ...content } = manifest;
  return sha256Hex(Buffer.from(JSON.stringify(content)));
}

/** True when models/{id}/{version}/manifest.json exists in the bucket. */
export async function isPublished(s3: S3Client, bucket: string, modelId: string, version: string): Promise<boolean> {
  try {
    await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: modelPrefix(modelId, version) + MANIFEST_FILE }));
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw new TransportError(`cannot check s3://${bucket}/${modelPrefix(modelId, version)}${MANIFEST_FILE}`, { cause: err });
  }
}

/** PutObject with `If-None-Match: *`; false when the key already exists. */
async function putIfAbsent(s3: S3Client, input: Omit<PutObjectCommandInput, 'IfNoneMatch'>, what: string): Promise<boolean> {
  try {
    await s3.send(new PutObjectCommand({ ...input, IfNoneMatch: '*' }));
    return true;
  } catch (err) {
    if (isPreconditionFailed(err)) return false;
    throw new TransportError(`upload of ${what} to s3://${input.Bucket}/${input.Key} failed`, { cause: err });
  }
}

/** Takes the version's claim, or resumes one of the same content; returns the manifest bytes to publish. */
async function claimVersion(s3: S3Client, bucket: string, prefix: string, bundle: PreparedBundle, opts: PublishOptions): Promise<Buffer> {
  const claim: PublishClaim = {
    format: 'fleetlm/publish-claim@1',
    contentSha256: contentSha256(bundle.manifest),
    startedAt: (opts.now ?? new Date()).toISOString(),
    manifest: bundle.manifestBytes.toString('utf8'),
  };
  const body = Buffer.from(`${JSON.stringify(claim)}\n`);
  if (await putIfAbsent(s3, { Bucket: bucket, Key: prefix + PUBLISH_CLAIM_FILE, Body: body, ContentType: 'application/json' }, 'the publish claim')) {
    return bundle.manifestBytes;
  }
  let existing: PublishClaim | undefined;
  try {
    existing = parseJsonWith(PublishClaimSchema, (await getObjectBytes(s3, bucket, prefix + PUBLISH_CLAIM_FILE)).toString('utf8'), 'publish claim');
  } catch {
    existing = undefined;
  }
  if (!existing || existing.contentSha256 !== claim.contentSha256) throw versionClaimed(opts.modelId, opts.version, bucket, existing);
  return Buffer.from(existing.manifest, 'utf8');
}

/**
 * Publishes a bundle so that a version, once visible, never changes and always matches its manifest:
 * 1. a claim object (`If-None-Match: *`) makes exactly one publisher the owner; a second publisher with
 *    other content is refused before it writes anything;
 * 2. every file and the signature are written with `If-None-Match: *` as well; a file that already exists
 *    (a resumed publish) must carry the manifest's sha256;
 * 3. manifest.json goes last, so the version is visible only when complete.
 * S3 has honoured conditional writes since 2024 (https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html);
 * the local hub's store implements them atomically.
 */
export async function publishBundle(opts: PublishOptions): Promise<PublishResult> {
  const { s3, bucket } = opts;
  if (await isPublished(s3, bucket, opts.modelId, opts.version)) throw versionExists(opts.modelId, opts.version, bucket);
  const prepared = await prepareBundle(opts);
  const prefix = modelPrefix(opts.modelId, opts.version);
  const manifestBytes = await claimVersion(s3, bucket, prefix, prepared, opts);
  const bundle: PreparedBundle = { ...prepared, manifestBytes, manifest: parseManifestBytes(manifestBytes) };
  const signature = await signManifestBytes(bundle.manifestBytes, opts.signer);
  const totalBytes = bundle.manifest.files.reduce((s, f) => s + f.size, 0) + bundle.manifestBytes.length;
  let uploaded = 0;
  for (const f of bundle.manifest.files) {
    const upload = { bucket, key: prefix + f.name, file: bundle.paths.get(f.name)!, size: f.size, contentType: 'application/octet-stream', metadata: { sha256: f.sha256 } };
    const before = uploaded;
    const written = await uploadFileIfAbsent(s3, upload, {
      multipartThresholdBytes: opts.multipartThresholdBytes,
      partSizeBytes: opts.partSizeBytes,
      onBytes: (sent) => opts.onProgress?.(before + sent, totalBytes, f.name),
    });
    if (!written) {
      await expectSameObject(s3, bucket, prefix + f.name, f.sha256, opts);
      opts.onProgress?.(before + f.size, totalBytes, f.name);
    }
    uploaded += f.size;
  }
  let sigBytes: Buffer = Buffer.from(`${JSON.stringify(signature, null, 2)}\n`);
  let written = signature;
  if (!(await putIfAbsent(s3, { Bucket: bucket, Key: prefix + MANIFEST_SIGNATURE_FILE, Body: sigBytes, ContentType: 'application/json' }, MANIFEST_SIGNATURE_FILE))) {
    // A resumed publish of the same manifest may find its earlier signature; any other is not ours.
    sigBytes = await getObjectBytes(s3, bucket, prefix + MANIFEST_SIGNATURE_FILE);
    written = parseManifestSignature(sigBytes.toString('utf8'));
    if (written.manifestSha256 !== signature.manifestSha256) throw versionClaimed(opts.modelId, opts.version, bucket, undefined);
  }
  if (!(await putIfAbsent(s3, { Bucket: bucket, Key: prefix + MANIFEST_FILE, Body: bundle.manifestBytes, ContentType: 'application/json' }, MANIFEST_FILE))) {
    throw versionExists(opts.modelId, opts.version, bucket);
  }
  uploaded += bundle.manifestBytes.length;
  opts.onProgress?.(uploaded, totalBytes, MANIFEST_FILE);
  return {
    modelId: opts.modelId,
    version: opts.version,
    bucket,
    prefix,
    manifest: bundle.manifest,
    manifestSha256: written.manifestSha256,
    manifestSize: bundle.manifestBytes.length,
    signature: written,
    files: bundle.manifest.files,
    totalBytes,
    ignored: bundle.ignored,
    check: bundle.check,
  };
}

/** A file a resumed publish finds already written must be the manifest's bytes (its sha256 metadata says so). */
async function expectSameObject(s3: S3Client, bucket: string, key: string, sha256: string, opts: PublishOptions): Promise<void> {
  let found: string | undefined;
  try {
    found = (await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))).Metadata?.sha256;
  } catch (err) {
    throw new TransportError(`cannot check s3://${bucket}/${key}`, { cause: err });
  }
  if (found !== sha256) throw versionClaimed(opts.modelId, opts.version, bucket, undefined);
}

/** A published version as read back from S3. */
export interface PublishedVersion {
  manifest: Manifest;
  manifestBytes: Buffer;
  manifestSha256: string;
  signature: ManifestSignature;
}

async function getObjectBytes(s3: S3Client, bucket: string, key: string): Promise<Buffer> {
  const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  if (!out.Body) throw new TransportError(`s3://${bucket}/${key} has no body`);
  return Buffer.from(await out.Body.transformToByteArray());
}

/** Reads and validates a published version's manifest and signature. */
export async function readPublishedVersion(s3: S3Client, bucket: string, modelId: string, version: string): Promise<PublishedVersion> {
  const prefix = modelPrefix(modelId, version);
  let manifestBytes: Buffer;
  let sigText: string;
  try {
    manifestBytes = await getObjectBytes(s3, bucket, prefix + MANIFEST_FILE);
    sigText = (await getObjectBytes(s3, bucket, prefix + MANIFEST_SIGNATURE_FILE)).toString('utf8');
  } catch (err) {
    if (isNotFound(err)) {
      throw new ValidationError(`model ${modelId} version ${version} is not published in s3://${bucket}/${prefix}: publish it first with \`fleetlm publish\``);
    }
    throw new TransportError(`cannot read s3://${bucket}/${prefix}`, { cause: err });
  }
  return {
    manifest: parseManifestBytes(manifestBytes),
    manifestBytes,
    manifestSha256: sha256Hex(manifestBytes),
    signature: parseManifestSignature(sigText),
  };
}

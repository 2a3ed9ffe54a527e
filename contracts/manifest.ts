// The model manifest: what a device needs to install a model bundle, and nothing else.
// Publishing writes `manifest.json` (these exact bytes are what is signed) and
// `manifest.sig.json`; the agent verifies the signature over the bytes it downloaded.
import { z } from 'zod';
import { parseJsonWith, parseWith } from '../common/validate.ts';

/** A file name confined to the bundle directory: no absolute paths, no `..`, no backslashes. */
export const BundleFileNameSchema = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/, 'must be a relative path of [A-Za-z0-9._-] segments')
  .refine((n) => !n.split('/').some((seg) => seg === '.' || seg === '..'), 'must not contain . or .. segments');

export const Sha256HexSchema = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex characters');
export const ModelIdSchema = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'must be 1-63 of [a-z0-9-], starting with a letter or digit');
export const ModelVersionSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'must be 1-63 of [A-Za-z0-9._-]');

export const ManifestFileSchema = z
  .object({
    name: BundleFileNameSchema,
    size: z.number().int().nonnegative(),
    sha256: Sha256HexSchema,
    role: z.enum(['model', 'model-data', 'tokenizer', 'generation-config', 'other']),
  })
  .strict();

export const GenerationDefaultsSchema = z
  .object({
    maxTokens: z.number().int().positive().max(4096).default(64),
    temperature: z.number().nonnegative().max(10).default(0.8),
    topP: z.number().positive().max(1).default(0.95),
    topK: z.number().int().nonnegative().default(0),
    stopTokens: z.array(z.number().int().nonnegative()).default([]),
  })
  .strict();

export const TokenizerRefSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('gpt2-bpe') }).strict(),
  /** Older bundles: FleetLM's byte-level BPE (`fleetlm/bpe@1` or a Hugging Face tokenizer.json). */
  z.object({ kind: z.literal('bpe'), file: BundleFileNameSchema }).strict(),
  /** A Hugging Face tokenizer.json and, when shipped, its tokenizer_config.json (special tokens, chat template). */
  z.object({ kind: z.literal('huggingface'), file: BundleFileNameSchema, config: BundleFileNameSchema.optional() }).strict(),
]);

export const ManifestSchema = z
  .object({
    format: z.literal('fleetlm/manifest@1'),
    modelId: ModelIdSchema,
    version: ModelVersionSchema,
    createdAt: z.string().datetime(),
    entry: BundleFileNameSchema,
    files: z.array(ManifestFileSchema).min(1),
    tokenizer: TokenizerRefSchema,
    generation: GenerationDefaultsSchema,
    /**
     * Anti-rollback: devices refuse a manifest whose securityVersion is below the highest they have installed
     * for this modelId (absent = 0), unless the job carries a signed rollback authorization. Raise it when a
     * release fixes a security problem in the one before.
     */
    securityVersion: z.number().int().min(0).max(2 ** 31 - 1).optional(),
    /** Devices refuse to install this manifest after this instant. */
    expiresAt: z.string().datetime().optional(),
    arch: z.record(z.string(), z.unknown()).optional(),
    compression: z.record(z.string(), z.unknown()).optional(),
    evaluation: z.record(z.string(), z.unknown()).optional(),
    lineage: z
      .object({
        searchSeed: z.number().int().optional(),
        sourceModel: z.string().optional(),
        parentVersion: z.string().optional(),
      })
      .strict()
      .default({}),
  })
  .strict()
  .superRefine((m, ctx) => {
    const names = new Set<string>();
    m.files.forEach((f, i) => {
      if (names.has(f.name)) ctx.addIssue({ code: 'custom', path: ['files', i, 'name'], message: `duplicate file ${f.name}` });
      names.add(f.name);
    });
    if (!names.has(m.entry)) ctx.addIssue({ code: 'custom', path: ['entry'], message: `entry ${m.entry} is not listed in files` });
  });

export type Manifest = z.output<typeof ManifestSchema>;
export type ManifestInput = z.input<typeof ManifestSchema>;
export type ManifestFile = z.output<typeof ManifestFileSchema>;

/** Detached signature over the exact bytes of manifest.json. */
export const ManifestSignatureSchema = z
  .object({
    format: z.literal('fleetlm/manifest-signature@1'),
    algorithm: z.literal('ECDSA_SHA_256'),
    /** Which key signed: a local key's fingerprint, or a KMS key ARN. */
    keyId: z.string().min(1).max(2048),
    /** DER-encoded ECDSA signature, base64. */
    signature: z.string().min(1).max(512),
    /** sha256 of the signed manifest bytes, hex (lets a reader match signature and manifest). */
    manifestSha256: Sha256HexSchema,
  })
  .strict();

export type ManifestSignature = z.output<typeof ManifestSignatureSchema>;

/** Validates a manifest object. */
export function parseManifest(value: unknown): Manifest {
  return parseWith(ManifestSchema, value, 'model manifest');
}

/** Validates manifest.json bytes. */
export function parseManifestBytes(bytes: Uint8Array): Manifest {
  return parseJsonWith(ManifestSchema, Buffer.from(bytes).toString('utf8'), 'model manifest');
}

/** Validates manifest.sig.json text. */
export function parseManifestSignature(text: string): ManifestSignature {
  return parseJsonWith(ManifestSignatureSchema, text, 'manifest signature');
}

/** S3 key prefix of a published model version. */
export function modelPrefix(modelId: string, version: string): string {
  return `models/${modelId}/${version}/`;
}

export const MANIFEST_FILE = 'manifest.json';
export const MANIFEST_SIGNATURE_FILE = 'manifest.sig.json';

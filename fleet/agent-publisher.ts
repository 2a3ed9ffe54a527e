// Publishing an agent package for self-update: check the tarball follows the package contract (the same
// entry rules the device enforces), write and sign an agent manifest, and upload both beside the package
// under agents/{version}/{platform}-{arch}/ (manifest last, so a build is visible only when complete).
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { TransportError, ValidationError } from '../common/errors.ts';
import { sha256File, sha256Hex } from '../common/hash.ts';
import { readTarGzFile } from '../common/tar-reader.ts';
import {
  AGENT_PACKAGE_ENTRY,
  AGENT_PACKAGE_JSON,
  AgentManifestSchema,
  DEFAULT_AGENT_PACKAGE_LIMITS,
  agentPackagePrefix,
  packageEntryPath,
  packageLinkTarget,
  parseAgentManifestBytes,
  parseAgentPackageFileName,
  type AgentArch,
  type AgentManifest,
  type AgentPlatform,
} from '../contracts/agent-package.ts';
import { MANIFEST_FILE, MANIFEST_SIGNATURE_FILE } from '../contracts/manifest.ts';
import { signManifestBytes, type ManifestSigner } from '../contracts/manifest-signing.ts';
import { parseWith } from '../common/validate.ts';

export interface AgentPackageInfo {
  file: string;
  name: string;
  version: string;
  platform: AgentPlatform;
  arch: AgentArch;
  size: number;
  sha256: string;
  entries: number;
}

/** Reads a package tarball end to end and refuses one the device would refuse (name, layout, entries, package.json). */
export async function inspectAgentPackage(file: string): Promise<AgentPackageInfo> {
  const name = path.basename(file);
  const parsed = parseAgentPackageFileName(name);
  if (!parsed) throw new ValidationError(`agent package file name must be fleetlm-agent-<version>-linux-<arm64|x64>.tar.gz; got ${name}`);
  let size: number;
  try {
    size = (await fs.stat(file)).size;
  } catch (err) {
    throw new ValidationError(`cannot read agent package ${file}: ${(err as Error).message}`, { cause: err });
  }
  const problem = (m: string) => new ValidationError(`agent package ${name} refused: ${m}`, { code: 'VALIDATION_PACKAGE' });
  const found = new Set<string>();
  let entries = 0;
  let collecting: Buffer[] | null = null;
  let packageJson = '';
  await readTarGzFile(
    file,
    {
      entry: async (e) => {
        entries += 1;
        const where = packageEntryPath(parsed.version, e.name);
        if ('error' in where) throw problem(where.error);
        if (e.type === 'symlink') {
          const t = packageLinkTarget(where.path, e.linkTarget);
          if ('error' in t) throw problem(t.error);
        } else if (e.type === 'hardlink' || e.type === 'other') {
          throw problem(`${e.name} is a ${e.type === 'hardlink' ? 'hard link' : `tar type ${JSON.stringify(e.typeflag)} entry`}; only files, directories and symlinks are allowed`);
        }
        if (e.type === 'file') found.add(where.path);
        collecting = e.type === 'file' && where.path === AGENT_PACKAGE_JSON ? [] : null;
      },
      data: async (chunk) => {
        collecting?.push(chunk);
      },
      end: async () => {
        if (collecting) packageJson = Buffer.concat(collecting).toString('utf8');
        collecting = null;
      },
    },
    { maxEntries: DEFAULT_AGENT_PACKAGE_LIMITS.maxEntries, maxArchiveBytes: DEFAULT_AGENT_PACKAGE_LIMITS.maxTotalBytes },
  );
  for (const required of [AGENT_PACKAGE_ENTRY, AGENT_PACKAGE_JSON]) {
    if (!found.has(required)) throw problem(`it has no ${required} under fleetlm-agent-${parsed.version}/`);
  }
  let pkg: { name?: unknown; version?: unknown } = {};
  try {
    pkg = JSON.parse(packageJson) as typeof pkg;
  } catch {
    throw problem(`${AGENT_PACKAGE_JSON} is not JSON`);
  }
  if (pkg.name !== 'fleetlm-agent' || pkg.version !== parsed.version) {
    throw problem(`${AGENT_PACKAGE_JSON} names ${String(pkg.name)}@${String(pkg.version)}; the file name says fleetlm-agent@${parsed.version}`);
  }
  return { file, name, ...parsed, size, sha256: await sha256File(file), entries };
}

/** One agent build as published: what an update-agent@1 document needs. */
export interface PublishedAgentPackage {
  version: string;
  platform: AgentPlatform;
  arch: AgentArch;
  prefix: string;
  manifest: AgentManifest;
  manifestSha256: string;
  manifestSize: number;
  /** False when the same package was already published (a re-rollout); nothing was uploaded. */
  uploaded: boolean;
}

export interface PublishAgentOptions {
  s3: S3Client;
  bucket: string;
  signer: ManifestSigner;
  file: string;
  now?: Date;
}

function httpStatus(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

async function readExisting(s3: S3Client, bucket: string, key: string): Promise<Buffer | undefined> {
  try {
    await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
  } catch (err) {
    const e = err as { name?: string };
    if (e?.name === 'NotFound' || e?.name === 'NoSuchKey' || httpStatus(err) === 404) return undefined;
    throw new TransportError(`cannot check s3://${bucket}/${key}`, { cause: err });
  }
  const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await out.Body!.transformToByteArray());
}

/**
 * Publishes one agent package. A version is immutable: publishing the same bytes again reuses the published
 * build (so a rollout can be repeated), different bytes under a published version are refused.
 */
export async function publishAgentPackage(opts: PublishAgentOptions): Promise<PublishedAgentPackage> {
  const { s3, bucket } = opts;
  const info = await inspectAgentPackage(opts.file);
  const prefix = agentPackagePrefix(info.version, info.platform, info.arch);
  const existing = await readExisting(s3, bucket, prefix + MANIFEST_FILE);
  if (existing) {
    const manifest = parseAgentManifestBytes(existing);
    if (manifest.package.sha256 !== info.sha256) {
      throw new ValidationError(
        `agent ${info.version} for ${info.platform}-${info.arch} is already published in s3://${bucket}/${prefix} with different bytes: versions are immutable, build a new version`,
        { code: 'VALIDATION_VERSION_EXISTS' },
      );
    }
    return { version: info.version, platform: info.platform, arch: info.arch, prefix, manifest, manifestSha256: sha256Hex(existing), manifestSize: existing.length, uploaded: false };
  }
  const manifest = parseWith(
    AgentManifestSchema,
    {
      format: 'fleetlm/agent-manifest@1',
      version: info.version,
      platform: info.platform,
      arch: info.arch,
      createdAt: (opts.now ?? new Date()).toISOString(),
      package: { name: info.name, size: info.size, sha256: info.sha256 },
    },
    'agent manifest',
  );
  const manifestBytes = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`);
  const signature = await signManifestBytes(manifestBytes, opts.signer);
  try {
    await s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: prefix + info.name,
        Body: createReadStream(info.file),
        ContentLength: info.size,
        ContentType: 'application/gzip',
        Metadata: { sha256: info.sha256 },
      }),
    );
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: prefix + MANIFEST_SIGNATURE_FILE, Body: `${JSON.stringify(signature, null, 2)}\n`, ContentType: 'application/json' }));
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: prefix + MANIFEST_FILE, Body: manifestBytes, ContentType: 'application/json', IfNoneMatch: '*' }));
  } catch (err) {
    if (httpStatus(err) === 412) throw new ValidationError(`agent ${info.version} for ${info.platform}-${info.arch} was published concurrently`, { code: 'VALIDATION_VERSION_EXISTS' });
    throw new TransportError(`upload of agent ${info.version} to s3://${bucket}/${prefix} failed`, { cause: err });
  }
  return { version: info.version, platform: info.platform, arch: info.arch, prefix, manifest, manifestSha256: sha256Hex(manifestBytes), manifestSize: manifestBytes.length, uploaded: true };
}

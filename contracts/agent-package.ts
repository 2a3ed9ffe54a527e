// The agent package contract (see docs/agent.md, "Self-update"): the tarball's name and layout, the signed
// agent manifest published beside it, and the rules every tar entry must follow. Shared by the publisher,
// which refuses a bad package early, and the device, which refuses it again before unpacking.
import path from 'node:path';
import { z } from 'zod';
import { parseJsonWith } from '../common/validate.ts';
import { Sha256HexSchema } from './manifest.ts';

export const AgentVersionSchema = z.string().regex(/^[0-9A-Za-z][0-9A-Za-z._-]{0,62}$/, 'must be 1-63 of [0-9A-Za-z._-], starting with a letter or digit');
export const AgentPlatformSchema = z.enum(['linux']);
export const AgentArchSchema = z.enum(['arm64', 'x64']);
export type AgentArch = z.output<typeof AgentArchSchema>;
export type AgentPlatform = z.output<typeof AgentPlatformSchema>;

const FILE_NAME = /^fleetlm-agent-([0-9A-Za-z][0-9A-Za-z._-]{0,62})-(linux)-(arm64|x64)\.tar\.gz$/;

/** `fleetlm-agent-<version>-linux-<arch>.tar.gz`. */
export function agentPackageFileName(version: string, platform: AgentPlatform, arch: AgentArch): string {
  return `fleetlm-agent-${version}-${platform}-${arch}.tar.gz`;
}

/** Reads version, platform and arch back from a package file name; undefined when it does not follow the contract. */
export function parseAgentPackageFileName(name: string): { version: string; platform: AgentPlatform; arch: AgentArch } | undefined {
  const m = FILE_NAME.exec(name);
  return m ? { version: m[1]!, platform: m[2] as AgentPlatform, arch: m[3] as AgentArch } : undefined;
}

/** True for a name that follows the package file name contract. */
export function isAgentPackageFileName(name: string): boolean {
  return FILE_NAME.test(name);
}

/** The one top folder every entry of the tarball lives under. */
export function agentPackageTopFolder(version: string): string {
  return `fleetlm-agent-${version}`;
}

/** Files a package must hold (relative to its top folder). */
export const AGENT_PACKAGE_ENTRY = 'bin/fleetlm-agent';
export const AGENT_PACKAGE_JSON = 'package.json';

/** Written by the device into an unpacked version; a package may not ship a file of this name. */
export const UNPACKED_MARKER = '.fleetlm-unpacked.json';

/** Signed description of one agent package; the signature format is the model manifest's. */
export const AgentManifestSchema = z
  .object({
    format: z.literal('fleetlm/agent-manifest@1'),
    version: AgentVersionSchema,
    platform: AgentPlatformSchema,
    arch: AgentArchSchema,
    createdAt: z.string().datetime(),
    package: z.object({ name: z.string(), size: z.number().int().positive(), sha256: Sha256HexSchema }).strict(),
  })
  .strict()
  .superRefine((m, ctx) => {
    const expected = agentPackageFileName(m.version, m.platform, m.arch);
    if (m.package.name !== expected) ctx.addIssue({ code: 'custom', path: ['package', 'name'], message: `must be ${expected}, got ${m.package.name}` });
  });

export type AgentManifest = z.output<typeof AgentManifestSchema>;

/** Validates agent manifest.json bytes. */
export function parseAgentManifestBytes(bytes: Uint8Array): AgentManifest {
  return parseJsonWith(AgentManifestSchema, Buffer.from(bytes).toString('utf8'), 'agent manifest');
}

/** S3 key prefix of one published agent build. */
export function agentPackagePrefix(version: string, platform: AgentPlatform, arch: AgentArch): string {
  return `agents/${version}/${platform}-${arch}/`;
}

/** Limits on what a package may unpack to; a bigger package is refused, not truncated. */
export interface AgentPackageLimits {
  maxEntries: number;
  maxFileBytes: number;
  maxTotalBytes: number;
}

export const DEFAULT_AGENT_PACKAGE_LIMITS: AgentPackageLimits = {
  maxEntries: 50_000,
  maxFileBytes: 512 * 1024 ** 2,
  maxTotalBytes: 2 * 1024 ** 3,
};

const SEGMENT = /^[^/\\\0]+$/;

/**
 * Where an entry lands inside the version directory, as a clean relative path ('' for the top folder
 * itself), or an error message. Refuses absolute paths, `..`, empty or `.` segments, and anything outside
 * the top folder, so no entry can be written outside the version directory.
 */
export function packageEntryPath(version: string, entryName: string): { path: string } | { error: string } {
  const top = agentPackageTopFolder(version);
  const name = entryName.replace(/\/+$/, '');
  if (name === top) return { path: '' };
  if (!name.startsWith(`${top}/`)) return { error: `entry ${JSON.stringify(entryName)} is outside the top folder ${top}/` };
  const rel = name.slice(top.length + 1);
  const segments = rel.split('/');
  if (segments.some((s) => s === '' || s === '.' || s === '..' || !SEGMENT.test(s))) {
    return { error: `entry ${JSON.stringify(entryName)} must be a plain relative path (no empty, . or .. segments, backslashes or NUL)` };
  }
  if (rel === UNPACKED_MARKER) return { error: `entry ${JSON.stringify(entryName)} uses the name ${UNPACKED_MARKER}, which the device reserves` };
  return { path: rel };
}

/**
 * Checks a symlink target: it must be relative and, resolved from the link's folder, stay inside the
 * version directory. Returns the resolved path relative to the version directory, or an error message.
 */
export function packageLinkTarget(linkPath: string, target: string): { resolved: string } | { error: string } {
  if (target === '' || target.includes('\0') || path.posix.isAbsolute(target)) {
    return { error: `symlink ${linkPath} -> ${JSON.stringify(target)} must point to a relative path` };
  }
  const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(linkPath), target));
  if (resolved === '..' || resolved.startsWith('../')) {
    return { error: `symlink ${linkPath} -> ${target} points outside the package` };
  }
  return { resolved: resolved === '.' ? '' : resolved };
}

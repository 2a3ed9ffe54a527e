// Unpacks a verified agent package into <agentHome>/versions/<version>/. It unpacks into a hidden
// versions/.partial-* directory first and renames that into place only when complete, so a kill -9 leaves
// either no version or a whole one. Entries must stay inside the version directory: no absolute paths, no
// `..`, no links that point out or that other entries are written through, no hard links or devices, and
// the package must fit the entry and size limits.
import { randomBytes } from 'node:crypto';
import { promises as fs, constants as fsc } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { fsyncDir, writeJsonAtomic } from '../../common/atomic-file.ts';
import { ValidationError } from '../../common/errors.ts';
import { readTarGzFile, type TarEntry } from '../../common/tar-reader.ts';
import {
  AGENT_PACKAGE_ENTRY,
  AGENT_PACKAGE_JSON,
  DEFAULT_AGENT_PACKAGE_LIMITS,
  UNPACKED_MARKER,
  packageEntryPath,
  packageLinkTarget,
  type AgentPackageLimits,
} from '../../contracts/agent-package.ts';
import type { AgentHome } from './agent-home.ts';

function refuse(message: string): ValidationError {
  return new ValidationError(`agent package refused: ${message}`, { code: 'VALIDATION_PACKAGE' });
}

interface Marker {
  version: string;
  packageSha256: string;
  unpackedAt: string;
}

/** True when versions/<version> holds a complete unpack of exactly this package. */
export async function isUnpacked(home: AgentHome, version: string, packageSha256: string): Promise<boolean> {
  try {
    const m = JSON.parse(await fs.readFile(path.join(home.versionDir(version), UNPACKED_MARKER), 'utf8')) as Partial<Marker>;
    return m.packageSha256 === packageSha256 && m.version === version;
  } catch {
    return false;
  }
}

/** Resolves a relative path under root, refusing anything outside it (a second guard behind packageEntryPath). */
function inside(root: string, rel: string): string {
  const full = path.resolve(root, rel);
  if (full !== root && !full.startsWith(`${root}${path.sep}`)) throw refuse(`${rel} resolves outside the version directory`);
  return full;
}

/**
 * Unpacks `packageFile` (already verified against the signed manifest) as `version`; returns the version
 * directory. An existing complete unpack of the same package is kept; anything else under that name is replaced.
 */
export async function unpackAgentPackage(
  home: AgentHome,
  version: string,
  packageFile: string,
  packageSha256: string,
  limits: AgentPackageLimits = DEFAULT_AGENT_PACKAGE_LIMITS,
): Promise<string> {
  const finalDir = home.versionDir(version);
  if (await isUnpacked(home, version, packageSha256)) return finalDir;
  if ((await home.currentVersion()) === version) throw refuse(`version ${version} is the running agent's directory and differs from this package`);
  await fs.mkdir(home.versionsDir, { recursive: true });
  await home.removeLeftovers();
  const root = path.join(home.versionsDir, `.partial-${version}-${randomBytes(4).toString('hex')}`);
  await fs.mkdir(root, { mode: 0o755 });
  try {
    await extractInto(root, version, packageFile, limits);
    await writeJsonAtomic(path.join(root, UNPACKED_MARKER), { version, packageSha256, unpackedAt: new Date().toISOString() } satisfies Marker);
    await fs.rm(finalDir, { recursive: true, force: true });
    await fs.rename(root, finalDir);
    await fsyncDir(home.versionsDir);
    return finalDir;
  } catch (err) {
    await fs.rm(root, { recursive: true, force: true });
    throw err;
  }
}

async function extractInto(root: string, version: string, packageFile: string, limits: AgentPackageLimits): Promise<void> {
  const dirs = new Set<string>(['']);
  const files = new Set<string>();
  const links = new Map<string, string>();
  let totalBytes = 0;
  let current: { handle: FileHandle; rel: string; written: number } | null = null;

  const ensureParents = async (rel: string) => {
    const parts = rel.split('/').slice(0, -1);
    for (let i = 1; i <= parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (files.has(dir)) throw refuse(`${rel} is inside ${dir}, which is a file`);
      if (!dirs.has(dir)) {
        await fs.mkdir(inside(root, dir), { mode: 0o755 });
        dirs.add(dir);
      }
    }
  };

  await readTarGzFile(
    packageFile,
    {
      entry: async (e: TarEntry) => {
        const where = packageEntryPath(version, e.name);
        if ('error' in where) throw refuse(where.error);
        const rel = where.path;
        if (rel === '') {
          if (e.type !== 'directory') throw refuse(`the top folder entry ${e.name} must be a directory`);
          return;
        }
        if (dirs.has(rel) || files.has(rel) || links.has(rel)) {
          if (e.type === 'directory' && dirs.has(rel)) return;
          throw refuse(`${rel} appears twice`);
        }
        // Links are created last, so nothing can be written through one; an entry below a link path is refused.
        for (const link of links.keys()) if (rel.startsWith(`${link}/`)) throw refuse(`${rel} is below the symlink ${link}`);
        switch (e.type) {
          case 'directory':
            await ensureParents(`${rel}/x`);
            return;
          case 'symlink': {
            const t = packageLinkTarget(rel, e.linkTarget);
            if ('error' in t) throw refuse(t.error);
            links.set(rel, e.linkTarget);
            return;
          }
          case 'file': {
            if (e.size > limits.maxFileBytes) throw refuse(`${rel} is ${e.size} bytes; at most ${limits.maxFileBytes} per file`);
            totalBytes += e.size;
            if (totalBytes > limits.maxTotalBytes) throw refuse(`unpacks to more than ${limits.maxTotalBytes} bytes`);
            await ensureParents(rel);
            files.add(rel);
            // O_EXCL|O_NOFOLLOW: never write through something already at that path.
            const handle = await fs.open(inside(root, rel), fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, (e.mode & 0o111) !== 0 ? 0o755 : 0o644);
            current = { handle, rel, written: 0 };
            return;
          }
          case 'hardlink':
            throw refuse(`${rel} is a hard link (to ${e.linkTarget}); packages must not hold hard links`);
          default:
            throw refuse(`${rel} has tar type ${JSON.stringify(e.typeflag)}; only files, directories and symlinks are allowed`);
        }
      },
      data: async (chunk) => {
        const c = current!;
        let off = 0;
        while (off < chunk.length) {
          const { bytesWritten } = await c.handle.write(chunk, off, chunk.length - off, c.written);
          off += bytesWritten;
          c.written += bytesWritten;
        }
      },
      end: async () => {
        const c = current!;
        current = null;
        await c.handle.sync();
        await c.handle.close();
      },
    },
    { maxEntries: limits.maxEntries, maxArchiveBytes: limits.maxTotalBytes + (limits.maxEntries + 16) * 1024 },
  ).finally(async () => {
    const c = current as { handle: FileHandle } | null;
    if (c) await c.handle.close().catch(() => {});
  });

  // A link target may not pass through another link: lexically inside can still escape when the kernel
  // resolves `link/..` from where the link points.
  for (const [rel, target] of links) {
    const dir = path.posix.dirname(rel);
    const parts = (dir === '.' ? target : `${dir}/${target}`).split('/');
    for (let i = 1; i < parts.length; i++) {
      const prefix = path.posix.normalize(parts.slice(0, i).join('/'));
      if (links.has(prefix)) throw refuse(`symlink ${rel} -> ${target} passes through the symlink ${prefix}`);
    }
    await ensureParents(rel);
    await fs.symlink(target, inside(root, rel));
  }
  for (const required of [AGENT_PACKAGE_ENTRY, AGENT_PACKAGE_JSON]) {
    if (!files.has(required)) throw refuse(`it has no ${required} (a regular file) under its top folder`);
  }
  const pkg = JSON.parse(await fs.readFile(path.join(root, AGENT_PACKAGE_JSON), 'utf8').catch(() => '{}')) as { name?: unknown; version?: unknown };
  if (pkg.name !== 'fleetlm-agent' || pkg.version !== version) {
    throw refuse(`its package.json names ${String(pkg.name)}@${String(pkg.version)}; expected fleetlm-agent@${version}`);
  }
  for (const dir of [...dirs].sort((a, b) => b.length - a.length)) await fsyncDir(inside(root, dir));
}

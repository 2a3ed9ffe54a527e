// Installed models on disk: versions/<modelId>/<version>/ directories, a `current.json` pointer replaced
// atomically (temp + fsync + rename), pruning that keeps the last N installed versions, and rebuilding
// the pointer from the versions on disk when storage lost or mangled it.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { writeJsonAtomic, fsyncDir } from '../common/atomic-file.ts';
import { describeError } from '../common/errors.ts';
import { parseJsonWith } from '../common/validate.ts';
import { ModelIdSchema, ModelVersionSchema } from '../contracts/manifest.ts';

export const ModelRefSchema = z.object({ modelId: ModelIdSchema, version: ModelVersionSchema }).strict();
export type ModelRef = z.output<typeof ModelRefSchema>;

const PointerSchema = z
  .object({
    schema: z.literal('fleetlm/current@1'),
    current: ModelRefSchema.nullable(),
    /** Most recent last; drives which versions pruning keeps. */
    history: z.array(ModelRefSchema.extend({ installedAt: z.string() })),
  })
  .strict();
type Pointer = z.output<typeof PointerSchema>;

/** What `recoverPointer` found wrong with current.json and what it did about it (reported in telemetry). */
export interface PointerRecovery {
  file: string;
  problem: string;
  /** Where the unreadable pointer was kept for inspection. */
  keptAs: string;
  action: string;
  current: ModelRef | null;
}

/** True when both refs name the same model version. */
export function sameRef(a: ModelRef | null | undefined, b: ModelRef | null | undefined): boolean {
  return Boolean(a && b && a.modelId === b.modelId && a.version === b.version);
}

/** Formats `modelId@version`. */
export function refString(ref: ModelRef | null | undefined): string {
  return ref ? `${ref.modelId}@${ref.version}` : 'none';
}

/** The on-disk model library of one device. */
export class ModelStore {
  constructor(
    readonly root: string,
    private readonly keepVersions: number,
  ) {}

  private get pointerPath(): string {
    return path.join(this.root, 'current.json');
  }

  /** Directory holding one installed version. */
  versionDir(ref: ModelRef): string {
    return path.join(this.root, 'versions', ref.modelId, ref.version);
  }

  /** Scratch directory a job downloads into before install. */
  stagingDir(jobId: string): string {
    return path.join(this.root, 'staging', jobId);
  }

  private async readPointer(): Promise<Pointer> {
    let text: string;
    try {
      text = await fs.readFile(this.pointerPath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { schema: 'fleetlm/current@1', current: null, history: [] };
      throw err;
    }
    return parseJsonWith(PointerSchema, text, `model pointer ${this.pointerPath}`);
  }

  /** The version requests are served from, or null before the first install. */
  async current(): Promise<ModelRef | null> {
    return (await this.readPointer()).current;
  }

  /** Installed versions, most recent first (candidates when the current one will not load). */
  async history(): Promise<ModelRef[]> {
    return (await this.readPointer()).history.map(({ modelId, version }) => ({ modelId, version })).reverse();
  }

  /** True when the version's directory exists. */
  async has(ref: ModelRef): Promise<boolean> {
    try {
      return (await fs.stat(this.versionDir(ref))).isDirectory();
    } catch {
      return false;
    }
  }

  /** Atomically points `current` at `ref` (or at nothing) and records it in the history. */
  async setCurrent(ref: ModelRef | null): Promise<void> {
    const p = await this.readPointer();
    const history = ref
      ? [...p.history.filter((h) => !sameRef(h, ref)), { ...ref, installedAt: new Date().toISOString() }]
      : p.history;
    await writeJsonAtomic(this.pointerPath, { schema: 'fleetlm/current@1', current: ref, history });
  }

  /**
   * Checks that current.json reads; when it is empty or damaged (storage that drops writes on power loss),
   * keeps it aside and rebuilds it from the versions on disk: every version that `isComplete` accepts
   * (its files match its signed manifest) goes into the history by install time, and the newest becomes
   * current. `exclude` names versions that must not serve (an install whose health check never passed).
   * Returns null when the pointer was fine.
   */
  async recoverPointer(
    isComplete: (dir: string, ref: ModelRef) => Promise<boolean>,
    exclude: ReadonlyArray<ModelRef | null> = [],
  ): Promise<PointerRecovery | null> {
    let problem: string;
    try {
      await this.readPointer();
      return null;
    } catch (err) {
      const text = await fs.readFile(this.pointerPath, 'utf8').catch(() => null);
      problem = text === '' ? 'the file is empty' : describeError(err);
    }
    const keptAs = `${this.pointerPath}.corrupt-${Date.now()}`;
    await fs.rename(this.pointerPath, keptAs);
    const found: Array<{ ref: ModelRef; mtimeMs: number }> = [];
    const versionsRoot = path.join(this.root, 'versions');
    for (const modelId of await fs.readdir(versionsRoot).catch(() => [] as string[])) {
      for (const version of await fs.readdir(path.join(versionsRoot, modelId)).catch(() => [] as string[])) {
        const parsed = ModelRefSchema.safeParse({ modelId, version });
        if (!parsed.success || exclude.some((e) => sameRef(e, parsed.data))) continue;
        const dir = this.versionDir(parsed.data);
        const st = await fs.stat(dir).catch(() => null);
        if (!st?.isDirectory()) continue;
        found.push({ ref: parsed.data, mtimeMs: st.mtimeMs });
      }
    }
    found.sort((a, b) => a.mtimeMs - b.mtimeMs);
    const complete: Array<{ ref: ModelRef; mtimeMs: number }> = [];
    // Every version is checked (not just the newest good one): the rebuilt history decides what pruning keeps.
    for (const f of found) if (await isComplete(this.versionDir(f.ref), f.ref)) complete.push(f);
    const current = complete.at(-1)?.ref ?? null;
    const history = complete.map((c) => ({ ...c.ref, installedAt: new Date(c.mtimeMs).toISOString() }));
    await writeJsonAtomic(this.pointerPath, { schema: 'fleetlm/current@1', current, history });
    const skipped = found.length - complete.length;
    return {
      file: this.pointerPath,
      problem,
      keptAs,
      action: `rebuilt from ${found.length} version(s) on disk: current ${refString(current)}${skipped > 0 ? `, ${skipped} incomplete version(s) left out` : ''}`,
      current,
    };
  }

  /** Deletes a version's directory and its history entry (a version that failed its health check). */
  async remove(ref: ModelRef): Promise<void> {
    await fs.rm(this.versionDir(ref), { recursive: true, force: true });
    const p = await this.readPointer();
    const history = p.history.filter((h) => !sameRef(h, ref));
    if (history.length !== p.history.length) await writeJsonAtomic(this.pointerPath, { ...p, history });
  }

  /**
   * Moves a verified staging directory into versions/. Idempotent: when the staging directory is
   * gone and the version directory exists, a previous run already moved it.
   */
  async install(staging: string, ref: ModelRef): Promise<string> {
    const target = this.versionDir(ref);
    const stagingExists = await fs.stat(staging).then(() => true, () => false);
    if (!stagingExists) {
      if (await this.has(ref)) return target;
      throw new Error(`cannot install ${refString(ref)}: neither ${staging} nor ${target} exists`);
    }
    await fs.mkdir(path.dirname(target), { recursive: true });
    if (await this.has(ref)) {
      // Re-deploy of a version already on disk: replace it, the new copy was just verified.
      const trash = path.join(this.root, 'staging', `.trash-${randomBytes(4).toString('hex')}`);
      await fs.rename(target, trash);
      await fs.rename(staging, target);
      await fs.rm(trash, { recursive: true, force: true });
    } else {
      await fs.rename(staging, target);
    }
    await fsyncDir(path.dirname(target));
    return target;
  }

  /** Deletes versions beyond the newest `keepVersions` in the history, never one in `protect`. */
  async prune(protect: ReadonlyArray<ModelRef | null>): Promise<ModelRef[]> {
    const p = await this.readPointer();
    const keep = p.history.slice(-this.keepVersions);
    const isKept = (r: ModelRef) => keep.some((k) => sameRef(k, r)) || protect.some((k) => sameRef(k, r)) || sameRef(p.current, r);
    const removed: ModelRef[] = [];
    const versionsRoot = path.join(this.root, 'versions');
    const modelIds = await fs.readdir(versionsRoot).catch(() => [] as string[]);
    for (const modelId of modelIds) {
      const versions = await fs.readdir(path.join(versionsRoot, modelId)).catch(() => [] as string[]);
      for (const version of versions) {
        const ref = { modelId, version };
        if (isKept(ref)) continue;
        await fs.rm(path.join(versionsRoot, modelId, version), { recursive: true, force: true });
        removed.push(ref);
      }
    }
    const history = p.history.filter((h) => isKept(h));
    if (history.length !== p.history.length) await writeJsonAtomic(this.pointerPath, { ...p, history });
    return removed;
  }

  /** Removes staging directories no active job needs (left by crashes or rejected jobs). */
  async cleanStaging(keepJobId: string | null): Promise<void> {
    const dir = path.join(this.root, 'staging');
    for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
      if (name !== keepJobId) await fs.rm(path.join(dir, name), { recursive: true, force: true });
    }
  }
}

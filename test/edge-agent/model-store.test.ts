// Model library on disk: install is idempotent, `current` is switched atomically, pruning keeps N.
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ModelStore } from '../../edge-agent/model-store.ts';

async function staged(store: ModelStore, jobId: string): Promise<string> {
  const dir = store.stagingDir(jobId);
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(path.join(dir, 'model.onnx'), jobId);
  return dir;
}

describe('ModelStore', () => {
  it('installs, points current, and keeps the last N versions', async () => {
    const store = new ModelStore(await fs.mkdtemp(path.join(os.tmpdir(), 'fleetlm-store-')), 2);
    expect(await store.current()).toBeNull();
    for (const v of ['1', '2', '3']) {
      const ref = { modelId: 'm', version: v };
      await store.install(await staged(store, `job-${v}`), ref);
      await store.setCurrent(ref);
    }
    expect(await store.current()).toEqual({ modelId: 'm', version: '3' });
    const removed = await store.prune([]);
    expect(removed).toEqual([{ modelId: 'm', version: '1' }]);
    expect(await store.has({ modelId: 'm', version: '1' })).toBe(false);
    expect(await store.has({ modelId: 'm', version: '2' })).toBe(true);
  });

  it('treats a second install after the move as done', async () => {
    const store = new ModelStore(await fs.mkdtemp(path.join(os.tmpdir(), 'fleetlm-store-')), 2);
    const ref = { modelId: 'm', version: '1' };
    const dir = await staged(store, 'job-1');
    await store.install(dir, ref);
    await expect(store.install(dir, ref)).resolves.toBe(store.versionDir(ref));
    expect(await fs.readFile(path.join(store.versionDir(ref), 'model.onnx'), 'utf8')).toBe('job-1');
  });

  it('never prunes a protected version', async () => {
    const store = new ModelStore(await fs.mkdtemp(path.join(os.tmpdir(), 'fleetlm-store-')), 1);
    const a = { modelId: 'm', version: 'a' };
    const b = { modelId: 'm', version: 'b' };
    await store.install(await staged(store, 'j1'), a);
    await store.setCurrent(a);
    await store.install(await staged(store, 'j2'), b);
    await store.setCurrent(b);
    expect(await store.prune([a])).toEqual([]);
    expect(await store.prune([])).toEqual([a]);
  });

  it('leaves a readable pointer alone', async () => {
    const store = new ModelStore(await fs.mkdtemp(path.join(os.tmpdir(), 'fleetlm-store-')), 2);
    await store.setCurrent({ modelId: 'm', version: '1' });
    expect(await store.recoverPointer(async () => true)).toBeNull();
  });

  it('rebuilds a damaged pointer from the newest complete version, never an excluded one', async () => {
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'fleetlm-store-'));
    const store = new ModelStore(root, 2);
    for (const v of ['1', '2', '3', '4']) {
      const ref = { modelId: 'm', version: v };
      await store.install(await staged(store, `job-${v}`), ref);
      await store.setCurrent(ref);
      // Install times a second apart, oldest first (directory mtimes order the history).
      const t = new Date(Date.now() - (10 - Number(v)) * 1000);
      await fs.utimes(store.versionDir(ref), t, t);
    }
    await fs.writeFile(path.join(root, 'current.json'), '{"schema":"fleetlm/cur');
    const checked: string[] = [];
    // Version 4 is the unchecked install of an active job; version 3's files do not match its manifest.
    const r = await store.recoverPointer(async (_dir, ref) => (checked.push(ref.version), ref.version !== '3'), [{ modelId: 'm', version: '4' }]);
    expect(checked.sort()).toEqual(['1', '2', '3']);
    expect(r?.current).toEqual({ modelId: 'm', version: '2' });
    expect(r?.problem).toMatch(/not valid JSON/);
    expect(r?.action).toMatch(/current m@2, 1 incomplete version/);
    expect(await fs.readFile(r!.keptAs, 'utf8')).toBe('{"schema":"fleetlm/cur');
    expect(await store.current()).toEqual({ modelId: 'm', version: '2' });
    expect(await store.history()).toEqual([{ modelId: 'm', version: '2' }, { modelId: 'm', version: '1' }]);
  });

  it('rebuilds an empty pointer on a device with no complete version as "nothing installed"', async () => {
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'fleetlm-store-'));
    const store = new ModelStore(root, 2);
    await fs.writeFile(path.join(root, 'current.json'), '');
    const r = await store.recoverPointer(async () => false);
    expect(r).toMatchObject({ problem: 'the file is empty', current: null });
    expect(await store.current()).toBeNull();
  });
});

import { describe, it, expect } from 'vitest';
import { mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { writeChunksAtomic, writeFileAtomic, writeJsonAtomic } from '../../common/atomic-file.ts';

describe('atomic file writes', () => {
  it('replaces an existing file and leaves no temp file behind', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'fleetlm-atomic-'));
    const target = path.join(dir, 'state.json');
    await writeFile(target, 'old');
    await writeJsonAtomic(target, { a: 1 });
    expect(JSON.parse(await readFile(target, 'utf8'))).toEqual({ a: 1 });
    expect(await readdir(dir)).toEqual(['state.json']);
  });

  it('creates missing parent directories', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'fleetlm-atomic-'));
    const target = path.join(dir, 'a', 'b', 'file.bin');
    await writeFileAtomic(target, new Uint8Array([1, 2, 3]));
    expect([...(await readFile(target))]).toEqual([1, 2, 3]);
  });

  it('streams chunks in order and reports the byte count', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'fleetlm-atomic-'));
    const target = path.join(dir, 'chunks.bin');
    function* chunks() {
      for (let i = 0; i < 5; i++) yield new Uint8Array(1000).fill(i);
    }
    expect(await writeChunksAtomic(target, chunks())).toBe(5000);
    const bytes = await readFile(target);
    expect(bytes.length).toBe(5000);
    expect(bytes[0]).toBe(0);
    expect(bytes[4999]).toBe(4);
  });

  it('keeps the old file when producing the data fails half-way', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'fleetlm-atomic-'));
    const target = path.join(dir, 'model.bin');
    await writeFile(target, 'previous');
    function* failing() {
      yield new Uint8Array(10);
      throw new Error('source broke');
    }
    await expect(writeChunksAtomic(target, failing())).rejects.toThrow('source broke');
    expect(await readFile(target, 'utf8')).toBe('previous');
    expect(await readdir(dir)).toEqual(['model.bin']);
  });
});

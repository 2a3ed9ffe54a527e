import { describe, it, expect } from 'vitest';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sha256File, sha256Hex } from '../../common/hash.ts';

// Known answer: FIPS 180-2, Appendix B.1 ("abc").
const ABC = 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad';

describe('sha256', () => {
  it('hashes bytes in memory', () => {
    expect(sha256Hex(Buffer.from('abc'))).toBe(ABC);
  });
  it('hashes a file streamed from disk to the same digest', async () => {
    const file = path.join(await mkdtemp(path.join(tmpdir(), 'fleetlm-hash-')), 'abc.txt');
    await writeFile(file, 'abc');
    expect(await sha256File(file)).toBe(ABC);
  });
});

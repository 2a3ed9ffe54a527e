// The agent package unpacker against real GNU tar output (gnu and pax formats, long names, links) and
// against hostile archives built by hand: every refusal must leave nothing behind, inside or outside.
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { sha256File } from '../../../common/hash.ts';
import { AgentHome } from '../../../edge-agent/self-update/agent-home.ts';
import { isUnpacked, unpackAgentPackage } from '../../../edge-agent/self-update/package-unpacker.ts';
import { tempDir } from '../../helpers/temp-dir.ts';
import { tarGz, type TestTarEntry } from './tar-writer.ts';

const V = '2.0.0';
const TOP = `fleetlm-agent-${V}`;
const LONG = `node_modules/${'deep-folder-name/'.repeat(8)}index.js`;

let work: string;
let home: AgentHome;

beforeEach(async () => {
  work = await tempDir('fleetlm-unpack-');
  home = new AgentHome(path.join(work, 'agent'));
  await fs.mkdir(home.versionsDir, { recursive: true });
});

/** A package tree on disk, archived with GNU tar in `format`. */
async function gnuTarPackage(format: 'gnu' | 'pax'): Promise<string> {
  const src = path.join(work, 'src');
  const top = path.join(src, TOP);
  await fs.mkdir(path.join(top, 'bin'), { recursive: true });
  await fs.mkdir(path.join(top, 'lib'), { recursive: true });
  await fs.mkdir(path.join(top, path.dirname(LONG)), { recursive: true });
  await fs.writeFile(path.join(top, 'bin/fleetlm-agent'), '#!/usr/bin/env node\nimport "../lib/agent.mjs";\n', { mode: 0o755 });
  await fs.writeFile(path.join(top, 'lib/agent.mjs'), 'console.log("agent");\n');
  await fs.writeFile(path.join(top, LONG), 'module.exports = 1;\n');
  await fs.writeFile(path.join(top, 'package.json'), JSON.stringify({ name: 'fleetlm-agent', version: V, type: 'module' }));
  await fs.symlink('../lib/agent.mjs', path.join(top, 'bin/agent-link.mjs'));
  const file = path.join(work, `fleetlm-agent-${V}-linux-x64.tar.gz`);
  execFileSync('tar', [`--format=${format}`, '-czf', file, '-C', src, TOP]);
  return file;
}

async function handPackage(entries: TestTarEntry[]): Promise<string> {
  const file = path.join(work, `fleetlm-agent-${V}-linux-x64.tar.gz`);
  await fs.writeFile(file, tarGz(entries));
  return file;
}

const BASE: TestTarEntry[] = [
  { name: `${TOP}/`, type: 'directory' },
  { name: `${TOP}/bin/fleetlm-agent`, body: 'console.log(1)', mode: 0o755 },
  { name: `${TOP}/package.json`, body: JSON.stringify({ name: 'fleetlm-agent', version: V }) },
];

async function expectNothingLeft(): Promise<void> {
  expect(await fs.readdir(home.versionsDir)).toEqual([]);
  expect((await fs.readdir(work)).sort()).toEqual(['agent', `fleetlm-agent-${V}-linux-x64.tar.gz`].sort());
}

describe('unpackAgentPackage', () => {
  for (const format of ['gnu', 'pax'] as const) {
    it(`unpacks a GNU tar (${format}) package with long names, modes and an inside symlink`, async () => {
      const file = await gnuTarPackage(format);
      const sha = await sha256File(file);
      const dir = await unpackAgentPackage(home, V, file, sha);
      expect(dir).toBe(home.versionDir(V));
      expect(await fs.readFile(path.join(dir, LONG), 'utf8')).toBe('module.exports = 1;\n');
      expect((await fs.stat(path.join(dir, 'bin/fleetlm-agent'))).mode & 0o777).toBe(0o755);
      expect((await fs.stat(path.join(dir, 'lib/agent.mjs'))).mode & 0o777).toBe(0o644);
      expect(await fs.readlink(path.join(dir, 'bin/agent-link.mjs'))).toBe('../lib/agent.mjs');
      expect(await isUnpacked(home, V, sha)).toBe(true);
      expect(await isUnpacked(home, V, '0'.repeat(64))).toBe(false);
      expect(await fs.readdir(home.versionsDir)).toEqual([V]);
      // A second unpack of the same package keeps the complete one.
      const before = (await fs.stat(path.join(dir, 'lib/agent.mjs'))).ino;
      await unpackAgentPackage(home, V, file, sha);
      expect((await fs.stat(path.join(dir, 'lib/agent.mjs'))).ino).toBe(before);
    });
  }

  it('replaces a half-finished directory of the same version left without its marker', async () => {
    await fs.mkdir(path.join(home.versionDir(V), 'junk'), { recursive: true });
    await fs.mkdir(path.join(home.versionsDir, '.partial-2.0.0-dead'), { recursive: true });
    const file = await handPackage(BASE);
    await unpackAgentPackage(home, V, file, await sha256File(file));
    expect((await fs.readdir(home.versionDir(V))).sort()).toEqual(['.fleetlm-unpacked.json', 'bin', 'package.json']);
    expect(await fs.readdir(home.versionsDir)).toEqual([V]);
  });

  const hostile: Array<[string, TestTarEntry[], RegExp]> = [
    ['a .. path', [...BASE, { name: `${TOP}/../../evil`, body: 'x' }], /plain relative path/],
    ['an absolute path', [...BASE, { name: '/tmp/evil', body: 'x' }], /outside the top folder/],
    ['an entry outside the top folder', [...BASE, { name: 'other/evil', body: 'x' }], /outside the top folder/],
    ['a symlink pointing out', [...BASE, { name: `${TOP}/lib/out`, type: 'symlink', linkTarget: '../../../etc/passwd' }], /points outside the package/],
    ['an absolute symlink', [...BASE, { name: `${TOP}/out`, type: 'symlink', linkTarget: '/etc/passwd' }], /relative path/],
    [
      'a symlink that escapes through another symlink',
      [...BASE, { name: `${TOP}/x`, type: 'symlink', linkTarget: 'sub/a/..' }, { name: `${TOP}/sub/a`, type: 'symlink', linkTarget: '..' }],
      /passes through the symlink sub\/a/,
    ],
    ['a file written below a symlink', [...BASE, { name: `${TOP}/lib`, type: 'symlink', linkTarget: 'bin' }, { name: `${TOP}/lib/x`, body: 'x' }], /below the symlink lib/],
    ['a hard link', [...BASE, { name: `${TOP}/hl`, type: 'hardlink', linkTarget: `${TOP}/package.json` }], /hard link/],
    ['a fifo', [...BASE, { name: `${TOP}/p`, type: 'fifo' }], /tar type "6"/],
    ['a duplicate file', [...BASE, { name: `${TOP}/package.json`, body: '{}' }], /appears twice/],
    ['the reserved marker name', [...BASE, { name: `${TOP}/.fleetlm-unpacked.json`, body: '{}' }], /reserves/],
    ['no entry script', BASE.filter((e) => !e.name.endsWith('fleetlm-agent')), /no bin\/fleetlm-agent/],
    ['another version in package.json', [...BASE.slice(0, 2), { name: `${TOP}/package.json`, body: JSON.stringify({ name: 'fleetlm-agent', version: '9' }) }], /fleetlm-agent@9/],
  ];
  for (const [what, entries, message] of hostile) {
    it(`refuses ${what} and leaves nothing behind`, async () => {
      const file = await handPackage(entries);
      await expect(unpackAgentPackage(home, V, file, await sha256File(file))).rejects.toThrow(message);
      await expectNothingLeft();
    });
  }

  it('refuses packages over the entry, file and total size limits', async () => {
    const file = await handPackage([...BASE, { name: `${TOP}/big`, body: Buffer.alloc(5000) }]);
    const sha = await sha256File(file);
    await expect(unpackAgentPackage(home, V, file, sha, { maxEntries: 3, maxFileBytes: 1e6, maxTotalBytes: 1e6 })).rejects.toThrow(/more than 3 entries/);
    await expect(unpackAgentPackage(home, V, file, sha, { maxEntries: 100, maxFileBytes: 4096, maxTotalBytes: 1e6 })).rejects.toThrow(/at most 4096 per file/);
    await expect(unpackAgentPackage(home, V, file, sha, { maxEntries: 100, maxFileBytes: 1e6, maxTotalBytes: 4096 })).rejects.toThrow(/more than 4096 bytes/);
    await expectNothingLeft();
  });

  it('refuses a truncated archive and a file that is not gzip', async () => {
    const good = tarGz(BASE);
    const { gunzipSync, gzipSync } = await import('node:zlib');
    const raw = gunzipSync(good);
    const file = path.join(work, `fleetlm-agent-${V}-linux-x64.tar.gz`);
    await fs.writeFile(file, gzipSync(raw.subarray(0, 1200)));
    await expect(unpackAgentPackage(home, V, file, 'x')).rejects.toThrow(/truncated/);
    await fs.writeFile(file, 'not a tarball at all');
    await expect(unpackAgentPackage(home, V, file, 'x')).rejects.toThrow(/invalid tar.gz/);
    await expectNothingLeft();
  });

  it('never replaces the directory of the running version', async () => {
    const file = await handPackage(BASE);
    await unpackAgentPackage(home, V, file, await sha256File(file));
    await home.switchCurrent(V);
    const other = await handPackage([...BASE, { name: `${TOP}/extra`, body: 'x' }]);
    await expect(unpackAgentPackage(home, V, other, await sha256File(other))).rejects.toThrow(/running agent's directory/);
    expect(await home.currentVersion()).toBe(V);
  });
});

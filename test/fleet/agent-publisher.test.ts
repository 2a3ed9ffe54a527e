// Publishing agent packages against the local hub's S3 store: the device's entry rules applied early, one
// signed manifest per build, the same bytes reused, other bytes under a published version refused.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { LocalKeySigner, generateSigningKeyPair, verifyManifestBytes } from '../../contracts/manifest-signing.ts';
import { parseAgentManifestBytes } from '../../contracts/agent-package.ts';
import { parseManifestSignature } from '../../contracts/manifest.ts';
import { inspectAgentPackage, publishAgentPackage } from '../../fleet/agent-publisher.ts';
import { buildUpdateAgentDocument } from '../../fleet/rollout.ts';
import { createS3Client, readLocalProfile } from '../../fleet/profile.ts';
import { startHub, type LocalHub } from '../../local-hub/hub.ts';
import { tarGz, type TestTarEntry } from '../edge-agent/self-update/tar-writer.ts';
import { runCliCaptured } from '../helpers/run-cli.ts';
import { tempDir } from '../helpers/temp-dir.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

let hub: LocalHub;
let dir: string;
const keys = generateSigningKeyPair();

function entries(version: string, extra: TestTarEntry[] = []): TestTarEntry[] {
  const top = `fleetlm-agent-${version}`;
  return [
    { name: `${top}/`, type: 'directory' },
    { name: `${top}/bin/fleetlm-agent`, body: 'console.log(1)', mode: 0o755 },
    { name: `${top}/package.json`, body: JSON.stringify({ name: 'fleetlm-agent', version }) },
    ...extra,
  ];
}

async function write(name: string, list: TestTarEntry[]): Promise<string> {
  const file = path.join(dir, name);
  await fs.writeFile(file, tarGz(list));
  return file;
}

beforeAll(async () => {
  dir = await tempDir('fleetlm-agent-publish-');
  hub = await startHub({ dir: path.join(dir, 'hub') });
});

afterAll(async () => {
  await hub?.stop();
});

describe('agent package publishing', () => {
  it('refuses a package the device would refuse, naming the problem', async () => {
    await expect(inspectAgentPackage(await write('agent.tar.gz', entries('1.0')))).rejects.toThrow(/file name must be fleetlm-agent-<version>-linux-<arm64\|x64>\.tar\.gz/);
    await expect(inspectAgentPackage(await write('fleetlm-agent-1.0-linux-x64.tar.gz', entries('1.1')))).rejects.toThrow(/outside the top folder fleetlm-agent-1\.0\//);
    await expect(
      inspectAgentPackage(await write('fleetlm-agent-1.0-linux-x64.tar.gz', entries('1.0', [{ name: 'fleetlm-agent-1.0/x', type: 'symlink', linkTarget: '../../etc' }]))),
    ).rejects.toThrow(/points outside the package/);
    await expect(inspectAgentPackage(await write('fleetlm-agent-1.0-linux-x64.tar.gz', entries('1.0').slice(0, 2)))).rejects.toThrow(/no package\.json/);
  });

  it('publishes a signed manifest, reuses the same bytes, refuses other bytes under the same version', async () => {
    const profile = readLocalProfile(path.join(dir, 'hub'));
    const s3 = createS3Client(profile);
    const signer = new LocalKeySigner(keys.privateKeyPem);
    const file = await write('fleetlm-agent-1.0-linux-x64.tar.gz', entries('1.0'));
    const first = await publishAgentPackage({ s3, bucket: profile.s3.bucket, signer, file });
    expect(first).toMatchObject({ version: '1.0', platform: 'linux', arch: 'x64', prefix: 'agents/1.0/linux-x64/', uploaded: true });
    const get = async (key: string) => Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: profile.s3.bucket, Key: first.prefix + key }))).Body!.transformToByteArray());
    const manifestBytes = await get('manifest.json');
    expect(verifyManifestBytes(manifestBytes, parseManifestSignature((await get('manifest.sig.json')).toString()), keys.publicKeyPem)).toBe(true);
    expect(parseAgentManifestBytes(manifestBytes).package).toEqual({ name: 'fleetlm-agent-1.0-linux-x64.tar.gz', size: (await fs.stat(file)).size, sha256: first.manifest.package.sha256 });
    expect(await get('fleetlm-agent-1.0-linux-x64.tar.gz')).toEqual(await fs.readFile(file));

    const again = await publishAgentPackage({ s3, bucket: profile.s3.bucket, signer, file });
    expect(again).toMatchObject({ uploaded: false, manifestSha256: first.manifestSha256 });

    const other = await write('fleetlm-agent-1.0-linux-x64.tar.gz', entries('1.0', [{ name: 'fleetlm-agent-1.0/extra', body: 'x' }]));
    await expect(publishAgentPackage({ s3, bucket: profile.s3.bucket, signer, file: other })).rejects.toThrow(/already published .* with different bytes/);

    const doc = buildUpdateAgentDocument(profile, [first]);
    expect(doc.packages[0]!.artifact.url).toMatch(/^\$\{aws:iot:s3-presigned-url-v2:.*\/agents\/1\.0\/linux-x64\/fleetlm-agent-1\.0-linux-x64\.tar\.gz\}$/);
    expect(() => buildUpdateAgentDocument(profile, [first, { ...first, version: '2.0' }])).toThrow(/must share a version/);
  });

  it('the rollout command refuses mixing an agent package with a model, and health-check options', async () => {
    const file = path.join(dir, 'fleetlm-agent-1.0-linux-x64.tar.gz');
    const keyPath = path.join(dir, 'key.pem');
    await fs.writeFile(keyPath, keys.privateKeyPem);
    const base = ['rollout', '--local', path.join(dir, 'hub'), '--agent-package', file, '--key', keyPath, '--thing', 'nobody'];
    const mixed = await runCliCaptured([...base, '--model', 'tiny', '--version', '1']);
    expect(mixed.code).toBe(2);
    expect(mixed.stderr).toMatch(/cannot be combined with --model/);
    const health = await runCliCaptured([...base, '--health-prompt', 'hi']);
    expect(health.code).toBe(2);
    expect(health.stderr).toMatch(/health-check options apply to model rollouts only/);
    const neither = await runCliCaptured(['rollout', '--local', path.join(dir, 'hub'), '--thing', 'nobody']);
    expect(neither.code).toBe(2);
    expect(neither.stderr).toMatch(/--model ID --version V .* or --agent-package FILE/);
  });
});

// A manifest with one altered byte, or one signed by a key other than the fleet's, is refused by
// the agent's own verification path (edge-agent/verifier.ts), fed exactly what `fleetlm publish`
// uploaded and what `fleetlm rollout` puts in the job document.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTinyModel } from '../helpers/tiny-model.ts';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { createS3Client } from '../../fleet/profile.ts';
import { publishBundle } from '../../fleet/publisher.ts';
import { buildDeployDocument } from '../../fleet/rollout.ts';
import { LocalKeySigner, generateSigningKeyPair, signManifestBytes } from '../../contracts/manifest-signing.ts';
import { verifyManifest } from '../../edge-agent/verifier.ts';
import type { DeployModelDocument } from '../../contracts/job-document.ts';
import { startTestS3, type TestS3 } from './s3-server.ts';

let s3srv: TestS3;
let dir: string;
let doc: DeployModelDocument;
let manifestBytes: Buffer;
let signatureText: string;
const fleetKey = generateSigningKeyPair();
const otherKey = generateSigningKeyPair();

async function get(key: string): Promise<Buffer> {
  const out = await createS3Client(s3srv.profile).send(new GetObjectCommand({ Bucket: s3srv.profile.s3.bucket, Key: key }));
  return Buffer.from(await out.Body!.transformToByteArray());
}

beforeAll(async () => {
  s3srv = await startTestS3();
  dir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-refusal-'));
  await writeTinyModel(dir, { seed: 3 });
  const s3 = createS3Client(s3srv.profile);
  await publishBundle({ s3, bucket: s3srv.profile.s3.bucket, signer: new LocalKeySigner(fleetKey.privateKeyPem), modelDir: dir, modelId: 'tiny', version: '1' });
  doc = await buildDeployDocument(s3, s3srv.profile, 'tiny', '1');
  manifestBytes = await get('models/tiny/1/manifest.json');
  signatureText = (await get('models/tiny/1/manifest.sig.json')).toString('utf8');
});

afterAll(async () => {
  await s3srv?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('agent verification of published manifests', () => {
  it('accepts the manifest as published', () => {
    expect(doc.manifest.url).toMatch(/^\$\{aws:iot:s3-presigned-url-v2:http:\/\/127\.0\.0\.1:\d+\/fleetlm-test\/models\/tiny\/1\/manifest\.json\}$/);
    expect(verifyManifest(doc, manifestBytes, signatureText, fleetKey.publicKeyPem).version).toBe('1');
  });

  it('refuses every single-byte alteration tried (signature no longer verifies)', () => {
    // Flip one bit at several places: inside a sha256, inside the version, in whitespace.
    const positions = [manifestBytes.indexOf('"sha256"') + 12, manifestBytes.indexOf('"version"') + 12, 1, manifestBytes.length - 2];
    for (const pos of positions) {
      const altered = Buffer.from(manifestBytes);
      altered[pos] ^= 0x01;
      expect(() => verifyManifest(doc, altered, signatureText, fleetKey.publicKeyPem)).toThrow(/signature .* does not verify/);
    }
  });

  it('refuses an altered manifest even when its sha256 field in the signature is updated to match', async () => {
    const altered = Buffer.from(manifestBytes.toString('utf8').replace('"version": "1"', '"version": "2"'));
    const sig = JSON.parse(signatureText) as Record<string, unknown>;
    const { sha256Hex } = await import('../../contracts/manifest-signing.ts');
    sig.manifestSha256 = sha256Hex(altered);
    expect(() => verifyManifest(doc, altered, JSON.stringify(sig), fleetKey.publicKeyPem)).toThrow(/does not verify/);
  });

  it('refuses a manifest validly signed by another key', async () => {
    const forged = await signManifestBytes(manifestBytes, new LocalKeySigner(otherKey.privateKeyPem));
    expect(() => verifyManifest(doc, manifestBytes, JSON.stringify(forged), fleetKey.publicKeyPem)).toThrow(/does not verify against the fleet public key/);
  });
});

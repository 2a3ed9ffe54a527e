import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { createS3Client } from '../../fleet/profile.ts';
import { publishBundle, readPublishedVersion } from '../../fleet/publisher.ts';
import { LocalKeySigner, generateSigningKeyPair, verifyManifestBytes } from '../../contracts/manifest-signing.ts';
import { ValidationError } from '../../common/errors.ts';
import { startTestS3, type TestS3 } from './s3-server.ts';
import { writeTinyModel } from '../helpers/tiny-model.ts';

let s3srv: TestS3;
let dir: string;
const keys = generateSigningKeyPair();

beforeAll(async () => {
  s3srv = await startTestS3();
  dir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-pub-'));
  // A real model: publish checks that it loads and generates (with its weights in model.onnx.data).
  await writeTinyModel(dir, { externalData: 'always' });
  writeFileSync(path.join(dir, 'arch.json'), JSON.stringify({ spec: { vocabSize: 50257 }, params: 123 }));
  writeFileSync(path.join(dir, 'evaluation.json'), JSON.stringify({ perplexityBefore: 10.5, perplexityAfter: 10.9 }));
  writeFileSync(path.join(dir, 'compression-report.json'), JSON.stringify({ method: 'tt-row', ratio: 2 }));
  writeFileSync(path.join(dir, 'lineage.json'), JSON.stringify({ searchSeed: 7, sourceModel: 'random-init' }));
  writeFileSync(path.join(dir, 'generation.json'), JSON.stringify({ maxTokens: 32, temperature: 0.7 }));
  writeFileSync(path.join(dir, 'notes.txt'), 'not shipped');
});

afterAll(async () => {
  await s3srv?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('publishBundle', () => {
  it('uploads every file under models/{id}/{version}/ with a signed manifest listing size and sha256', async () => {
    const s3 = createS3Client(s3srv.profile);
    const res = await publishBundle({ s3, bucket: s3srv.profile.s3.bucket, signer: new LocalKeySigner(keys.privateKeyPem), modelDir: dir, modelId: 'tiny', version: '1.0.0' });
    expect(res.prefix).toBe('models/tiny/1.0.0/');
    expect(res.ignored).toEqual(['notes.txt']);
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: s3srv.profile.s3.bucket, Prefix: res.prefix }));
    expect((listed.Contents ?? []).map((c) => c.Key).sort()).toEqual(
      // The claim stays: it records who took the version (fleet/publisher.ts PUBLISH_CLAIM_FILE).
      ['.publish-claim.json', 'manifest.json', 'manifest.sig.json', 'model.onnx', 'model.onnx.data'].map((n) => res.prefix + n),
    );
    const pub = await readPublishedVersion(s3, s3srv.profile.s3.bucket, 'tiny', '1.0.0');
    expect(verifyManifestBytes(pub.manifestBytes, pub.signature, keys.publicKeyPem)).toBe(true);
    expect(pub.manifest.entry).toBe('model.onnx');
    expect(pub.manifest.tokenizer).toEqual({ kind: 'gpt2-bpe' });
    expect(pub.manifest.generation.maxTokens).toBe(32);
    expect(pub.manifest.arch).toMatchObject({ params: 123 });
    expect(pub.manifest.compression).toMatchObject({ method: 'tt-row' });
    expect(pub.manifest.evaluation).toMatchObject({ perplexityAfter: 10.9 });
    expect(pub.manifest.lineage).toEqual({ searchSeed: 7, sourceModel: 'random-init' });
    expect(pub.manifest.evaluation).toMatchObject({ bundleCheck: { passed: true, modelVocabSize: 50257, tokenizerVocabSize: 50257 } });
    expect(res.check).toMatchObject({ modelVocabSize: 50257, promptTokens: 1 });
    for (const f of pub.manifest.files) {
      const obj = await s3.send(new GetObjectCommand({ Bucket: s3srv.profile.s3.bucket, Key: res.prefix + f.name }));
      const bytes = Buffer.from(await obj.Body!.transformToByteArray());
      expect(bytes.length).toBe(f.size);
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(f.sha256);
    }
  });

  it('refuses to publish an existing version again', async () => {
    const s3 = createS3Client(s3srv.profile);
    const again = publishBundle({ s3, bucket: s3srv.profile.s3.bucket, signer: new LocalKeySigner(keys.privateKeyPem), modelDir: dir, modelId: 'tiny', version: '1.0.0' });
    await expect(again).rejects.toThrow(ValidationError);
    await expect(again).rejects.toThrow(/already published.*immutable/);
  });

  it('names the rule when the model directory has no entry file or the id is malformed', async () => {
    const s3 = createS3Client(s3srv.profile);
    const signer = new LocalKeySigner(keys.privateKeyPem);
    const empty = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-empty-'));
    await expect(publishBundle({ s3, bucket: s3srv.profile.s3.bucket, signer, modelDir: empty, modelId: 'tiny', version: '2' })).rejects.toThrow(/must hold the entry ONNX file model.onnx/);
    await expect(publishBundle({ s3, bucket: s3srv.profile.s3.bucket, signer, modelDir: dir, modelId: 'Bad_Id', version: '2' })).rejects.toThrow(/model id/);
    rmSync(empty, { recursive: true, force: true });
  });

  it('refuses a bundle whose model.onnx is a text file before anything is uploaded (VALIDATION_BUNDLE_LOAD)', async () => {
    const s3 = createS3Client(s3srv.profile);
    const fake = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-fake-'));
    writeFileSync(path.join(fake, 'model.onnx'), 'a text file, not a model\n');
    const err = await publishBundle({ s3, bucket: s3srv.profile.s3.bucket, signer: new LocalKeySigner(keys.privateKeyPem), modelDir: fake, modelId: 'fake', version: '1' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).code).toBe('VALIDATION_BUNDLE_LOAD');
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: s3srv.profile.s3.bucket, Prefix: 'models/fake/' }));
    expect(listed.Contents ?? []).toEqual([]);
    rmSync(fake, { recursive: true, force: true });
  });

  it('publishes an unchecked bundle only under skipBundleChecks, and the signed manifest says so', async () => {
    const s3 = createS3Client(s3srv.profile);
    const fake = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-fake-'));
    writeFileSync(path.join(fake, 'model.onnx'), 'a text file, not a model\n');
    const res = await publishBundle({ s3, bucket: s3srv.profile.s3.bucket, signer: new LocalKeySigner(keys.privateKeyPem), modelDir: fake, modelId: 'fake', version: 'skipped', skipBundleChecks: true });
    expect(res.check).toBe('skipped');
    const pub = await readPublishedVersion(s3, s3srv.profile.s3.bucket, 'fake', 'skipped');
    expect(pub.manifest.evaluation).toMatchObject({ bundleCheck: { skipped: true } });
    rmSync(fake, { recursive: true, force: true });
  });
});

// publishBundle with a tokenizer in the model directory: tokenizer.json (and tokenizer_config.json) ship
// as verified bundle files (role 'tokenizer') and the manifest points the agent at them; an older
// fleetlm/bpe@1 file keeps { kind: 'bpe' } so agents from before still read it; a broken one is refused.
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { createS3Client } from '../../fleet/profile.ts';
import { publishBundle, readPublishedVersion } from '../../fleet/publisher.ts';
import { LocalKeySigner, generateSigningKeyPair } from '../../contracts/manifest-signing.ts';
import { startTestS3, type TestS3 } from './s3-server.ts';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { ValidationError } from '../../common/errors.ts';
import { parseArchSpec } from '../../models/arch/spec.ts';
import { writeTinyModel } from '../helpers/tiny-model.ts';

const DEMO_TOKENIZER = fileURLToPath(new URL('../../assets/demo-model/tokenizer.json', import.meta.url));
const OLD_DEMO_TOKENIZER = fileURLToPath(new URL('../models/runtime/testdata/demo-bpe-v1.tokenizer.json', import.meta.url));
let s3srv: TestS3;
let dir: string;
const keys = generateSigningKeyPair();

beforeAll(async () => {
  s3srv = await startTestS3();
  dir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-pub-bpe-'));
  // A real model of the demo tokenizer's 4,096 ids: publish runs it with the tokenizer before uploading.
  await writeTinyModel(dir, { spec: parseArchSpec({ vocabSize: 4096, contextLength: 32, blocks: [{ width: 16, ffnRatio: 2, layers: 1, heads: 1, headDim: 16 }] }) });
  copyFileSync(DEMO_TOKENIZER, path.join(dir, 'tokenizer.json'));
});

afterAll(async () => {
  await s3srv?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('publishBundle with a tokenizer', () => {
  it("ships tokenizer.json with role 'tokenizer' and references it as { kind: 'huggingface' }", async () => {
    const s3 = createS3Client(s3srv.profile);
    const res = await publishBundle({ s3, bucket: s3srv.profile.s3.bucket, signer: new LocalKeySigner(keys.privateKeyPem), modelDir: dir, modelId: 'bpe', version: '1.0.0' });
    const pub = await readPublishedVersion(s3, s3srv.profile.s3.bucket, 'bpe', '1.0.0');
    expect(pub.manifest.tokenizer).toEqual({ kind: 'huggingface', file: 'tokenizer.json' });
    const tok = pub.manifest.files.find((f) => f.name === 'tokenizer.json');
    expect(tok?.role).toBe('tokenizer');
    const obj = await s3.send(new GetObjectCommand({ Bucket: s3srv.profile.s3.bucket, Key: `${res.prefix}tokenizer.json` }));
    const bytes = Buffer.from(await obj.Body!.transformToByteArray());
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(tok?.sha256);
  });

  it('ships tokenizer_config.json beside it, keeps { kind: bpe } for an older file, and refuses a broken one', async () => {
    const s3 = createS3Client(s3srv.profile);
    const signer = new LocalKeySigner(keys.privateKeyPem);
    const bucket = s3srv.profile.s3.bucket;
    writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ eos_token: '<|endoftext|>', chat_template: "{% for m in messages %}{{ m['content'] }}{% endfor %}" }));
    await publishBundle({ s3, bucket, signer, modelDir: dir, modelId: 'bpe', version: '2.0.0' });
    const v2 = await readPublishedVersion(s3, bucket, 'bpe', '2.0.0');
    expect(v2.manifest.tokenizer).toEqual({ kind: 'huggingface', file: 'tokenizer.json', config: 'tokenizer_config.json' });
    expect(v2.manifest.files.find((f) => f.name === 'tokenizer_config.json')?.role).toBe('tokenizer');

    rmSync(path.join(dir, 'tokenizer_config.json'));
    copyFileSync(OLD_DEMO_TOKENIZER, path.join(dir, 'tokenizer.json'));
    await publishBundle({ s3, bucket, signer, modelDir: dir, modelId: 'bpe', version: '3.0.0' });
    expect((await readPublishedVersion(s3, bucket, 'bpe', '3.0.0')).manifest.tokenizer).toEqual({ kind: 'bpe', file: 'tokenizer.json' });

    writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify({ model: { type: 'BPE' } }));
    await expect(publishBundle({ s3, bucket, signer, modelDir: dir, modelId: 'bpe', version: '4.0.0' })).rejects.toThrow(/tokenizer.json cannot be loaded/);
    copyFileSync(DEMO_TOKENIZER, path.join(dir, 'tokenizer.json'));
  });

  it('refuses a tokenizer that does not fit the model (VALIDATION_BUNDLE_VOCAB) before anything is uploaded', async () => {
    const s3 = createS3Client(s3srv.profile);
    const bucket = s3srv.profile.s3.bucket;
    const other = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-pub-vocab-'));
    await writeTinyModel(other); // GPT-2's 50,257 ids
    copyFileSync(DEMO_TOKENIZER, path.join(other, 'tokenizer.json'));
    const err = await publishBundle({ s3, bucket, signer: new LocalKeySigner(keys.privateKeyPem), modelDir: other, modelId: 'mismatch', version: '1' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).code).toBe('VALIDATION_BUNDLE_VOCAB');
    expect((err as Error).message).toMatch(/logits cover 50257 ids but the tokenizer has 4096/);
    expect((await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'models/mismatch/' }))).Contents ?? []).toEqual([]);
    rmSync(other, { recursive: true, force: true });
  });
});

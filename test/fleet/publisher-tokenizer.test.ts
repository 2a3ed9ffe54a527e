// publishBundle with a byte-level BPE tokenizer in the model directory: tokenizer.json ships as a
// verified bundle file (role 'tokenizer') and the manifest points the agent at it.
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

const DEMO_TOKENIZER = fileURLToPath(new URL('../../assets/demo-model/tokenizer.json', import.meta.url));
let s3srv: TestS3;
let dir: string;
const keys = generateSigningKeyPair();

beforeAll(async () => {
  s3srv = await startTestS3();
  dir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-pub-bpe-'));
  writeFileSync(path.join(dir, 'model.onnx'), Buffer.from('bytes standing in for a model'));
  copyFileSync(DEMO_TOKENIZER, path.join(dir, 'tokenizer.json'));
});

afterAll(async () => {
  await s3srv?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('publishBundle with a BPE tokenizer', () => {
  it("ships tokenizer.json with role 'tokenizer' and references it as { kind: 'bpe' }", async () => {
    const s3 = createS3Client(s3srv.profile);
    const res = await publishBundle({ s3, bucket: s3srv.profile.s3.bucket, signer: new LocalKeySigner(keys.privateKeyPem), modelDir: dir, modelId: 'bpe', version: '1.0.0' });
    const pub = await readPublishedVersion(s3, s3srv.profile.s3.bucket, 'bpe', '1.0.0');
    expect(pub.manifest.tokenizer).toEqual({ kind: 'bpe', file: 'tokenizer.json' });
    const tok = pub.manifest.files.find((f) => f.name === 'tokenizer.json');
    expect(tok?.role).toBe('tokenizer');
    const obj = await s3.send(new GetObjectCommand({ Bucket: s3srv.profile.s3.bucket, Key: `${res.prefix}tokenizer.json` }));
    const bytes = Buffer.from(await obj.Body!.transformToByteArray());
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(tok?.sha256);
  });
});

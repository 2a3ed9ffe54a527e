// Each hub installation has its own operator credential, kept 0600 and reused on restart; another
// installation's credential is refused by the control plane and S3.
import { mkdtempSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ListThingsCommand, IoTClient } from '@aws-sdk/client-iot';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { startHub } from '../../local-hub/hub.ts';
import { OPERATOR_CREDENTIALS_FILE, loadOrCreateOperatorCredentials } from '../../local-hub/operator-credentials.ts';
import { removeDir } from './helpers.ts';

const modeOf = (file: string): number => statSync(file).mode & 0o777;

describe('local hub: per-installation operator credentials', () => {
  it('generates a credential per installation, stores it 0600 and reuses it after a restart', async () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-creds-'));
    try {
      const a = await startHub({ dir: path.join(root, 'a') });
      const b = await startHub({ dir: path.join(root, 'b') });
      // Copies: the SDK clients below tag credential objects they are given.
      const credsA = { ...a.endpoints.credentials };
      const credsB = { ...b.endpoints.credentials };
      expect(credsA.accessKeyId).not.toBe(credsB.accessKeyId);
      expect(credsA.secretAccessKey).not.toBe(credsB.secretAccessKey);
      expect(credsA.secretAccessKey.length).toBeGreaterThanOrEqual(32);
      for (const dir of ['a', 'b']) {
        expect(modeOf(path.join(root, dir, OPERATOR_CREDENTIALS_FILE))).toBe(0o600);
        expect(modeOf(path.join(root, dir, 'endpoints.json'))).toBe(0o600);
      }

      // b's credential does not open a's control plane or store.
      const iotWithB = new IoTClient({ region: a.endpoints.region, endpoint: a.endpoints.iotEndpoint, credentials: { ...credsB }, maxAttempts: 1 });
      const denied = await iotWithB.send(new ListThingsCommand({})).catch((e: unknown) => e as { $metadata: { httpStatusCode: number } });
      expect((denied as { $metadata: { httpStatusCode: number } }).$metadata.httpStatusCode).toBe(403);
      iotWithB.destroy();
      const s3WithB = new S3Client({ region: a.endpoints.region, endpoint: a.endpoints.s3.endpoint, forcePathStyle: true, credentials: { ...credsB }, maxAttempts: 1 });
      const s3Denied = await s3WithB.send(new ListObjectsV2Command({ Bucket: a.endpoints.s3.bucket })).catch((e: unknown) => e as { $metadata: { httpStatusCode: number } });
      expect((s3Denied as { $metadata: { httpStatusCode: number } }).$metadata.httpStatusCode).toBe(403);
      s3WithB.destroy();
      const iotWithA = new IoTClient({ region: a.endpoints.region, endpoint: a.endpoints.iotEndpoint, credentials: { ...credsA }, maxAttempts: 1 });
      await expect(iotWithA.send(new ListThingsCommand({}))).resolves.toBeDefined();
      iotWithA.destroy();

      await a.stop();
      const again = await startHub({ dir: path.join(root, 'a') });
      expect(again.endpoints.credentials).toEqual(credsA);
      await again.stop();
      await b.stop();
    } finally {
      await removeDir(root);
    }
  });

  it('narrows a credential file that others can read, and refuses a damaged one by name', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-creds-'));
    try {
      const created = await loadOrCreateOperatorCredentials(dir);
      const file = path.join(dir, OPERATOR_CREDENTIALS_FILE);
      chmodSync(file, 0o644);
      const warnings: string[] = [];
      expect(await loadOrCreateOperatorCredentials(dir, (l) => warnings.push(l))).toEqual(created);
      expect(modeOf(file)).toBe(0o600);
      expect(warnings.join('\n')).toMatch(/readable by others/);
      writeFileSync(file, '{"accessKeyId": 1}');
      await expect(loadOrCreateOperatorCredentials(dir)).rejects.toThrow(new RegExp(OPERATOR_CREDENTIALS_FILE));
    } finally {
      await removeDir(dir);
    }
  });
});

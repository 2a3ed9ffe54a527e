// Test helper: a real S3-protocol server (the local hub's S3 store, SigV4 checked) on loopback with one bucket,
// and a FleetProfile pointing at it, for fleet tests that need S3 but not the whole hub.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { FleetProfile } from '../../fleet/profile.ts';
import { startS3Store } from '../../local-hub/s3-store.ts';

export interface TestS3 {
  profile: FleetProfile;
  stop(): Promise<void>;
}

/** Starts the hub's S3 store on a free loopback port with bucket `fleetlm-test`. */
export async function startTestS3(): Promise<TestS3> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-s3-'));
  const credentials = { accessKeyId: 'AKIAFLEETTEST', secretAccessKey: 'fleet-test-secret' };
  const store = await startS3Store({ directory: dir, bucket: 'fleetlm-test', region: 'us-east-1', credentials });
  const profile: FleetProfile = {
    kind: 'local',
    region: 'us-east-1',
    credentials,
    s3: { endpoint: store.endpoint, bucket: 'fleetlm-test', forcePathStyle: true },
    presignRoleArn: 'arn:aws:iam::000000000000:role/test',
    telemetry: { kind: 'none' },
    source: 'test',
  };
  return {
    profile,
    async stop() {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// Test helper: a real S3-protocol server (s3rver) on loopback with one bucket, and a
// FleetProfile pointing at it, for fleet tests that need S3 but not the whole hub.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { FleetProfile } from '../../fleet/profile.ts';

type S3rverCtor = new (opts: Record<string, unknown>) => { run(): Promise<unknown>; close(): Promise<void> };

export interface TestS3 {
  profile: FleetProfile;
  stop(): Promise<void>;
}

/** Starts s3rver on a free loopback port with bucket `fleetlm-test`. */
export async function startTestS3(): Promise<TestS3> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-s3-'));
  // s3rver ships no types; a non-literal specifier keeps tsc from looking for them.
  const mod = 's3rver';
  const { default: S3rver } = (await import(mod)) as { default: S3rverCtor };
  const server = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: dir, configureBuckets: [{ name: 'fleetlm-test', configs: [] }] });
  const addr = (await server.run()) as { address: string; port: number };
  const profile: FleetProfile = {
    kind: 'local',
    region: 'us-east-1',
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    s3: { endpoint: `http://127.0.0.1:${addr.port}`, bucket: 'fleetlm-test', forcePathStyle: true },
    presignRoleArn: 'arn:aws:iam::000000000000:role/test',
    telemetry: { kind: 'none' },
    source: 'test',
  };
  return {
    profile,
    async stop() {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

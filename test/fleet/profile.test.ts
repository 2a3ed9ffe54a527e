// Profile resolution: local hub endpoints vs AWS profile file < environment < flags, and the
// placeholder URLs each produces.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadProfile, presignedPlaceholder, requireBucket, resolveProfile } from '../../fleet/profile.ts';
import { ValidationError } from '../../common/errors.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-profile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('resolveProfile', () => {
  it('reads the local hub endpoints and points placeholders at its S3 store', () => {
    const hub = path.join(dir, 'hub');
    const endpoints = {
      region: 'us-east-1',
      mqtt: { host: '127.0.0.1', port: 1883, url: 'mqtt://127.0.0.1:1883' },
      iotEndpoint: 'http://127.0.0.1:9000',
      s3: { endpoint: 'http://127.0.0.1:9001', bucket: 'b', forcePathStyle: true },
      credentials: { accessKeyId: 'a', secretAccessKey: 's' },
      telemetryDir: '/tmp/t',
    };
    mkdirSync(hub, { recursive: true });
    writeFileSync(path.join(hub, 'endpoints.json'), JSON.stringify(endpoints));
    const p = resolveProfile({ local: hub }, {});
    expect(p.kind).toBe('local');
    expect(p.telemetry).toEqual({ kind: 'dir', dir: '/tmp/t' });
    expect(presignedPlaceholder(p, 'models/m/1/model.onnx')).toBe('${aws:iot:s3-presigned-url-v2:http://127.0.0.1:9001/b/models/m/1/model.onnx}');
  });

  it('layers AWS settings: file < environment < flags, with the documented S3 URL form', () => {
    const file = path.join(dir, 'profile.json');
    writeFileSync(file, JSON.stringify({ region: 'eu-west-1', bucket: 'from-file', presignRoleArn: 'arn:aws:iam::1:role/file', telemetryTable: 'Tbl' }));
    const p = resolveProfile({ profile: file, bucket: 'from-flag' }, { AWS_REGION: 'eu-central-1' });
    expect(p).toMatchObject({ kind: 'aws', region: 'eu-central-1', s3: { bucket: 'from-flag', forcePathStyle: false }, presignRoleArn: 'arn:aws:iam::1:role/file', telemetry: { kind: 'dynamodb', table: 'Tbl' } });
    expect(p.credentials).toBeUndefined();
    expect(presignedPlaceholder(p, 'models/m/1.0/a b')).toBe('${aws:iot:s3-presigned-url-v2:https://s3.eu-central-1.amazonaws.com/from-flag/models/m/1.0/a%20b}');
  });

  it('names what is missing', () => {
    expect(() => resolveProfile({ profile: path.join(dir, 'none.json') }, {})).toThrow(/does not exist/);
    const empty = path.join(dir, 'empty.json');
    writeFileSync(empty, '{}');
    expect(() => resolveProfile({ profile: empty }, {})).toThrow(ValidationError);
    expect(() => resolveProfile({ profile: empty }, {})).toThrow(/needs a region/);
    expect(() => resolveProfile({ profile: empty, region: 'x' }, {})).toThrow(/needs the artifact bucket/);
    writeFileSync(empty, '{"bucket": "b", "colour": "red"}');
    expect(() => resolveProfile({ profile: empty }, {})).toThrow(/colour/);
  });

  it('honours AWS conventions: AWS_ENDPOINT_URL_S3 over AWS_ENDPOINT_URL (path-style, placeholders name it), AWS_PROFILE, --aws-profile over it', () => {
    const file = path.join(dir, 'conv.json');
    writeFileSync(file, JSON.stringify({ bucket: 'bkt' }));
    const p = resolveProfile({ profile: file }, { AWS_REGION: 'eu-west-1', AWS_ENDPOINT_URL: 'http://127.0.0.1:5000', AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:5001', AWS_PROFILE: 'ops' });
    expect(p).toMatchObject({ kind: 'aws', iotEndpoint: 'http://127.0.0.1:5000', s3: { endpoint: 'http://127.0.0.1:5001', bucket: 'bkt', forcePathStyle: true }, awsProfile: 'ops' });
    expect(presignedPlaceholder(p, 'models/m/1/x')).toBe('${aws:iot:s3-presigned-url-v2:http://127.0.0.1:5001/bkt/models/m/1/x}');
    expect(resolveProfile({ profile: file, awsProfile: 'other' }, { AWS_REGION: 'eu-west-1', AWS_PROFILE: 'ops' }).awsProfile).toBe('other');
    expect(resolveProfile({ profile: file }, { AWS_REGION: 'eu-west-1' }).awsProfile).toBeUndefined();
  });

  it('status-like commands resolve without a bucket; requireBucket names where to set it', () => {
    const file = path.join(dir, 'nobucket.json');
    writeFileSync(file, '{}');
    const p = resolveProfile({ profile: file }, { AWS_REGION: 'eu-west-1' }, { bucket: false });
    expect(p.s3.bucket).toBe('');
    expect(() => requireBucket(p)).toThrow(/needs the artifact bucket/);
  });

  it('takes the region from the named profile in the AWS config file when nothing else sets one', async () => {
    const config = path.join(dir, 'aws-config');
    writeFileSync(config, '[default]\nregion = us-west-2\n\n[profile ops]\nregion = ap-southeast-2\n');
    const file = path.join(dir, 'noregion.json');
    writeFileSync(file, JSON.stringify({ bucket: 'bkt' }));
    // The SDK's region chain reads the real environment: only the config file may answer.
    const saved = { ...process.env };
    delete process.env.AWS_REGION;
    delete process.env.AWS_DEFAULT_REGION;
    delete process.env.AWS_PROFILE;
    process.env.AWS_CONFIG_FILE = config;
    try {
      expect((await loadProfile({ profile: file, awsProfile: 'ops' }, {})).region).toBe('ap-southeast-2');
      expect(() => resolveProfile({ profile: file }, {})).toThrow(/needs a region/);
    } finally {
      for (const k of ['AWS_CONFIG_FILE', 'AWS_REGION', 'AWS_DEFAULT_REGION', 'AWS_PROFILE']) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
    }
  });
});

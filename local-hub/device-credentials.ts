// Per-device MQTT secrets for the local hub: `fleetlm device register --local` issues one per thing; the hub
// keeps only a salted scrypt hash (0600, one file per thing under `{hubDir}/device-credentials/`), and the
// broker accepts a device only with username = its thing name and the matching password.
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { writeJsonAtomic } from '../common/atomic-file.ts';
import { ValidationError } from '../common/errors.ts';
import { parseJsonWith } from '../common/validate.ts';
import { isThingName } from '../contracts/jobs-topics.ts';

export const DEVICE_CREDENTIALS_DIR = 'device-credentials';

const SCRYPT = { N: 16384, r: 8, p: 1, keyLen: 32 } as const;

const StoredSchema = z
  .object({
    algorithm: z.literal('scrypt'),
    salt: z.string().min(16),
    hash: z.string().min(16),
    issuedAt: z.string().datetime(),
  })
  .strict();

function fileFor(hubDir: string, thingName: string): string {
  if (!isThingName(thingName)) throw new ValidationError(`thing name ${JSON.stringify(thingName)} must be 1-128 of [a-zA-Z0-9:_-]`);
  return path.join(hubDir, DEVICE_CREDENTIALS_DIR, `${thingName}.json`);
}

function derive(secret: string, salt: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(secret, salt, SCRYPT.keyLen, { N: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p }, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

/** Issues (or rotates) `thingName`'s secret: stores its hash under `hubDir` and returns the secret, shown once. */
export async function issueDeviceSecret(hubDir: string, thingName: string): Promise<string> {
  const file = fileFor(hubDir, thingName);
  const secret = randomBytes(32).toString('base64url');
  const salt = randomBytes(16);
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  await writeJsonAtomic(
    file,
    { algorithm: 'scrypt', salt: salt.toString('base64'), hash: (await derive(secret, salt)).toString('base64'), issuedAt: new Date().toISOString() },
    { mode: 0o600 },
  );
  return secret;
}

/** True when `secret` is `thingName`'s current secret; false when it is wrong or none was issued. */
export async function verifyDeviceSecret(hubDir: string, thingName: string, secret: string): Promise<boolean> {
  let text: string;
  try {
    text = await fs.readFile(fileFor(hubDir, thingName), 'utf8');
  } catch {
    return false;
  }
  const stored = parseJsonWith(StoredSchema, text, `device credential of ${thingName}`);
  const want = Buffer.from(stored.hash, 'base64');
  const got = await derive(secret, Buffer.from(stored.salt, 'base64'));
  return got.length === want.length && timingSafeEqual(got, want);
}

/** Writes a device secret where the agent reads it (`mqtt.passwordFile`): mode 0600 from the first byte. */
export async function writeDeviceSecretFile(file: string, secret: string): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.rm(file, { force: true });
  await fs.writeFile(file, `${secret}\n`, { mode: 0o600, flag: 'wx' });
}

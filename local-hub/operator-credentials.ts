// The operator credential of one hub installation: generated on first start, kept in the hub's
// directory (mode 0600) and reused on restarts, so no two installations share a secret.
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { writeJsonAtomic } from '../common/atomic-file.ts';
import { ValidationError } from '../common/errors.ts';
import { parseJsonWith } from '../common/validate.ts';

/** File in the hub directory that holds the installation's operator credential. */
export const OPERATOR_CREDENTIALS_FILE = 'operator-credentials.json';

const CredentialsSchema = z
  .object({
    accessKeyId: z.string().regex(/^[A-Z0-9]{16,128}$/),
    secretAccessKey: z.string().min(32).max(128),
  })
  .strict();
export type OperatorCredentials = z.output<typeof CredentialsSchema>;

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** A fresh credential shaped like an AWS access key pair (20-character id, 40-character secret). */
export function generateOperatorCredentials(): OperatorCredentials {
  const idBytes = randomBytes(16);
  const id = Array.from(idBytes, (b) => BASE32[b % 32]).join('');
  return { accessKeyId: `FLOC${id}`, secretAccessKey: randomBytes(30).toString('base64url') };
}

/**
 * Reads DIR/operator-credentials.json, or creates it (0600 from the first byte) when absent.
 * A file others can read is narrowed to 0600 and reported through `warn`.
 */
export async function loadOrCreateOperatorCredentials(dir: string, warn: (line: string) => void = () => {}): Promise<OperatorCredentials> {
  const file = path.join(dir, OPERATOR_CREDENTIALS_FILE);
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new ValidationError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code}`, { cause: err });
    const created = generateOperatorCredentials();
    await writeJsonAtomic(file, created, { mode: 0o600 });
    return created;
  }
  const stat = await fs.stat(file);
  if ((stat.mode & 0o077) !== 0) {
    await fs.chmod(file, 0o600);
    warn(`${file} was readable by others (mode ${(stat.mode & 0o777).toString(8)}); narrowed to 600`);
  }
  return parseJsonWith(CredentialsSchema, text, file);
}

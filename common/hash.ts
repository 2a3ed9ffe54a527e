// SHA-256 digests as lowercase hex, of bytes in memory or of a file streamed from disk.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

/** sha256 of bytes, lowercase hex. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** sha256 of a file's contents, streamed so large model files never sit in memory whole. */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

// Fresh temporary directories for tests.
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Creates a new empty directory under the OS temp dir. */
export function tempDir(prefix = 'fleetlm-test-'): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

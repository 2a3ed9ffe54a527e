// Whether this test process may mount a real tmpfs (root in the sandbox): the disk-full tests need a real
// full filesystem and skip themselves where mounting is not allowed.
import { execFileSync } from 'node:child_process';

/** True when `mount -t tmpfs` works here (tried once on a throwaway folder). */
export const canMountTmpfs: boolean = (() => {
  if (process.getuid?.() !== 0) return false;
  try {
    const probe = execFileSync('mktemp', ['-d']).toString().trim();
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe], { stdio: 'ignore' });
    execFileSync('umount', [probe]);
    return true;
  } catch {
    return false;
  }
})();

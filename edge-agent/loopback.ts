// Loopback host names: where plain TCP / HTTP is acceptable because nothing leaves the machine.

/** True for hosts that never leave the machine. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

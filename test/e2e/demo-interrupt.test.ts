// Ctrl-C during `fleetlm demo`: the process must stop every agent and the hub before it exits.
// Checked from outside, through the protocols: once the CLI has exited, nothing answers on the
// agents' HTTP ports or the hub's MQTT, IoT and S3 ports any more.
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '..', '..');

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

describe('fleetlm demo on Ctrl-C', () => {
  it('stops the agents and the hub, and exits 130', { timeout: 120_000 }, async () => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'fleetlm.js'), 'demo', '--no-broken'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const ports: number[] = [];
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const hub = /MQTT mqtt:\/\/127\.0\.0\.1:(\d+), IoT http:\/\/127\.0\.0\.1:(\d+), S3 http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
        const agents = /agents answering on ((?::\d+ ?)+)/.exec(out);
        if (hub && agents && ports.length === 0) {
          ports.push(...hub.slice(1, 4).map(Number), ...agents[1]!.trim().split(' ').map((p) => Number(p.slice(1))));
          resolve();
        }
      });
      child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
      void exited.then(() => reject(new Error(`demo exited early:\n${out}`)));
    });
    expect(ports).toHaveLength(6);
    for (const p of ports) expect(await accepts(p)).toBe(true);
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(out).toMatch(/interrupted; devices and hub stopped/);
    for (const p of ports) expect(await accepts(p)).toBe(false);
  });
});

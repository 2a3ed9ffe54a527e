// `fleetlm console` as users run it (the esbuild bundle, bin/fleetlm.js): it serves the page, the browser
// bundle and the API from the checkout, refuses actions unless started with --actions, and stops on SIGTERM.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { provisionThings } from '../../local-demo/provision.ts';
import { REPO } from '../edge-agent/agent-fixture.ts';
import { iotClient, removeDir, startTestHub } from '../local-hub/helpers.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

let hub: Awaited<ReturnType<typeof startTestHub>>;

beforeAll(async () => {
  hub = await startTestHub();
  await provisionThings(iotClient(hub), 'lab', ['pi-1']);
});

afterAll(async () => {
  await hub?.stop();
  await removeDir(hub.dir);
});

describe('fleetlm console (CLI)', () => {
  it('serves the page, its bundle and the API, read-only by default, until SIGTERM', async () => {
    const proc = spawn(process.execPath, [path.join(REPO, 'bin/fleetlm.js'), 'console', '--local', hub.dir, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
    const first = await new Promise<string>((resolve, reject) => {
      createInterface({ input: proc.stdout! }).once('line', resolve);
      proc.once('exit', () => reject(new Error('fleetlm console exited before printing its URL')));
    });
    const { url, actions } = JSON.parse(first) as { url: string; actions: boolean };
    expect(actions).toBe(false);
    try {
      const page = await fetch(url);
      expect(page.status).toBe(200);
      const html = await page.text();
      expect(html).toContain('<script type="module" src="/app.js"></script>');
      expect(html).toContain('<meta name="fleetlm-token" content="">');
      expect(page.headers.get('content-security-policy')).toMatch(/default-src 'self'/);
      const js = await fetch(new URL('/app.js', url));
      expect(js.status).toBe(200);
      expect((await js.text()).length).toBeGreaterThan(10_000); // uPlot is bundled in
      expect((await fetch(new URL('/app.css', url))).status).toBe(200);
      const devices = (await (await fetch(new URL('/api/devices', url))).json()) as { indexed: boolean; devices: { thingName: string; online: boolean }[] };
      expect(devices).toMatchObject({ indexed: true, devices: [{ thingName: 'pi-1', online: false }] });
      const refused = await fetch(new URL('/api/jobs/some-job/cancel', url), { method: 'POST' });
      expect(refused.status).toBe(403);
      expect(((await refused.json()) as { error: string }).error).toMatch(/--actions/);
      expect((await fetch(new URL('/api/jobs/..%2Fx', url))).status).toBe(400);
    } finally {
      proc.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  });
});

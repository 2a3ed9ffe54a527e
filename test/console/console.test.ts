// The web console end to end in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core):
// a real hub, two real agents, a published model rolled out to their group; the page must show both devices
// online, the job's progress to COMPLETED, telemetry charts and the registry, then a stopped agent as offline.
// Screenshots are kept under test-results/console/ as artifacts.
import { existsSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createConsoleApi } from '../../console/console-api.ts';
import { startConsoleServer, type ConsoleServer } from '../../console/server.ts';
import { localProfile } from '../../fleet/profile.ts';
import { createRollout } from '../../fleet/rollout.ts';
import { provisionThings } from '../../local-demo/provision.ts';
import { AgentProcess, REPO, TestFleet, buildTestModel, tempDir } from '../edge-agent/agent-fixture.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

const CHROMIUM = process.env.FLEETLM_CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = path.join(REPO, 'test-results', 'console');
// Flags for a quiet, reproducible headless run: no GPU, no sandbox (containers), no network side traffic.
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let fleet: TestFleet;
const agents: AgentProcess[] = [];
let server: ConsoleServer;
let context: BrowserContext;
let page: Page;
let jobId: string;
let profile: ReturnType<typeof localProfile>;

describe.skipIf(!existsSync(CHROMIUM))('fleetlm console in headless Chromium', () => {
  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    fleet = await TestFleet.start();
    await provisionThings(fleet.iot, 'lab', ['pi-1', 'pi-2']);
    for (const thing of ['pi-1', 'pi-2']) agents.push(await AgentProcess.start(fleet, thing, await tempDir(`fleetlm-console-${thing}-`)));
    await fleet.publish('tiny', '1.0', await buildTestModel(1));
    profile = localProfile(fleet.hub.endpoints, 'test hub');
    jobId = (await createRollout(fleet.iot, fleet.s3, profile, { modelId: 'tiny', version: '1.0', group: 'lab' })).jobId;
    server = await startConsoleServer({ api: createConsoleApi(profile, { iot: fleet.iot, s3: fleet.s3 }), actions: true });
    // A fresh profile directory per run, so nothing from an earlier browser session leaks in.
    context = await chromium.launchPersistentContext(await tempDir('fleetlm-chromium-'), {
      executablePath: CHROMIUM,
      headless: true,
      args: FLAGS,
      viewport: { width: 1400, height: 1100 },
    });
    page = await context.newPage();
  }, 120_000);

  afterAll(async () => {
    await context?.close();
    await server?.close();
    for (const a of agents) await a.stop();
    await fleet?.stop();
  });

  it('shows both devices online and the rollout job progressing to COMPLETED', async () => {
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(server.url);
    await page.locator('#devices tr[data-thing="pi-1"][data-state="online"]').waitFor({ timeout: 30_000 });
    await page.locator('#devices tr[data-thing="pi-2"][data-state="online"]').waitFor({ timeout: 30_000 });
    await expect.poll(() => page.locator('#device-summary').textContent(), { timeout: 10_000 }).toBe('2 of 2 online');
    await page.locator(`#jobs tr[data-job="${jobId}"]`).waitFor({ timeout: 30_000 });
    await page.screenshot({ path: path.join(SHOTS, 'console-rollout.png'), fullPage: true });

    // The agents download, verify, install and health-check the model; the page follows the job live.
    await page.locator(`#jobs tr[data-job="${jobId}"][data-status="COMPLETED"]`).waitFor({ timeout: 90_000 });
    await expect(page.locator(`#jobs tr[data-job="${jobId}"] td.progress`).textContent()).resolves.toContain('2/2');
    await page.locator('#job-devices tr[data-thing="pi-1"][data-status="SUCCEEDED"]').waitFor({ timeout: 10_000 });
    await page.locator('#job-devices tr[data-thing="pi-2"][data-status="SUCCEEDED"]').waitFor({ timeout: 10_000 });
    await expect(page.locator('#job-devices tr[data-thing="pi-1"] td').nth(2).textContent()).resolves.not.toBe('');

    // Telemetry after the install names the version each device runs; the registry lists who runs it.
    await expect.poll(() => page.locator('#devices tr[data-thing="pi-1"] td').nth(4).textContent(), { timeout: 30_000 }).toBe('tiny@1.0');
    await expect.poll(() => page.locator('#versions tr[data-version="tiny@1.0"] td').nth(8).textContent(), { timeout: 30_000 }).toBe('pi-1, pi-2');
    // One uPlot canvas per metric for the selected device.
    for (const metric of ['tokensPerSecond', 'firstTokenMs', 'rssMb', 'temperatureC', 'powerW']) {
      await page.locator(`#charts .chart[data-metric="${metric}"] canvas`).waitFor({ timeout: 10_000 });
    }
    await page.screenshot({ path: path.join(SHOTS, 'console-completed.png'), fullPage: true });
    expect(errors).toEqual([]);
  }, 150_000);

  it('shows a device whose agent stopped as offline', async () => {
    await agents[1]!.stop();
    await page.locator('#devices tr[data-thing="pi-2"][data-state="offline"]').waitFor({ timeout: 30_000 });
    await expect.poll(() => page.locator('#device-summary').textContent(), { timeout: 10_000 }).toBe('1 of 2 online');
    await page.screenshot({ path: path.join(SHOTS, 'console-offline.png'), fullPage: true });
  }, 60_000);

  it('cancels a job from the page once the operator confirms, and marks its offline target', async () => {
    const stuck = (await createRollout(fleet.iot, fleet.s3, profile, { modelId: 'tiny', version: '1.0', things: ['pi-2'] })).jobId;
    const row = page.locator(`#jobs tr[data-job="${stuck}"]`);
    await row.waitFor({ timeout: 30_000 });
    await row.locator('td').first().click();
    await page.locator('#job-devices tr[data-thing="pi-2"][data-status="QUEUED"]', { hasText: '(offline, last seen' }).waitFor({ timeout: 30_000 });
    // Nothing finished yet: the progress bar is empty (and full for the completed job).
    await expect(row.locator('.bar > span').evaluate((e) => e.getBoundingClientRect().width)).resolves.toBe(0);
    await expect(page.locator(`#jobs tr[data-job="${jobId}"] .bar > span`).evaluate((e) => e.getBoundingClientRect().width)).resolves.toBeGreaterThan(100);
    const asked: string[] = [];
    page.once('dialog', (d) => {
      asked.push(d.message());
      void d.accept();
    });
    await page.locator(`#jobs tr[data-job="${stuck}"] button[data-cancel]`).click();
    await page.locator(`#jobs tr[data-job="${stuck}"][data-status="CANCELED"]`).waitFor({ timeout: 30_000 });
    expect(asked).toEqual([expect.stringContaining(`Cancel job ${stuck}?`)]);
    await page.screenshot({ path: path.join(SHOTS, 'console-canceled.png'), fullPage: true });
  }, 90_000);

  it('refuses actions without the page token and unknown hosts (DNS rebinding)', async () => {
    const cancel = await fetch(`${server.url}api/jobs/${jobId}/cancel`, { method: 'POST' });
    expect(cancel.status).toBe(403);
    // fetch() will not send a foreign Host header; node:http does, as a rebound browser request would.
    const rebound = await new Promise<number>((resolve, reject) =>
      http
        .get({ host: '127.0.0.1', port: server.port, path: '/api/devices', headers: { host: `evil.example:${server.port}` } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        })
        .on('error', reject),
    );
    expect(rebound).toBe(421);
  });
});

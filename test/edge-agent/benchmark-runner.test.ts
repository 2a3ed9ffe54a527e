// The benchmark runner keeps off serving: its niced worker (the real agent entry, --benchmark-worker)
// times nothing while a generation is in flight, and starts once the local API has been quiet; the
// table goes up with a PUT to an allowed host only. Real onnxruntime, a loopback PUT server.
import { benchmarkDocumentFor } from '../helpers/benchmark-document.ts';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseBenchmarkDocument } from '../../contracts/benchmark-job.ts';
import { runBenchmark } from '../../edge-agent/benchmark-runner.ts';
import { createLogger } from '../../edge-agent/log.ts';
import { UrlPolicy } from '../../edge-agent/url-policy.ts';
import { buildGridFiles, planGrid } from '../../models/benchmark/grid.ts';
import { parseLatencyTable } from '../../models/search/latency-table.ts';
import { REPO, tempDir } from './agent-fixture.ts';

let dir: string;
let server: Server;
let uploaded: string[] = [];
let port = 0;
const grid = { widths: [64], ffnRatios: [2], headDim: 64, vocabSize: 128, maxKvLength: 16, storage: 'fp32' as const };
const files = planGrid(grid);

beforeAll(async () => {
  dir = await tempDir('fleetlm-bench-runner-');
  await buildGridFiles(files, grid, dir);
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      uploaded.push(`${req.method} ${req.url} ${body}`);
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
}, 60_000);

afterAll(() => server?.close());

function doc(uploadUrl: string) {
  return parseBenchmarkDocument(benchmarkDocumentFor(files, { samples: 3, warmup: 1, threads: 1, timeLimitSec: 120, idleQuietMs: 200, upload: { url: uploadUrl } }));
}

const worker = { entry: path.join(REPO, 'bin/fleetlm-agent.js'), execArgv: [] };

describe('benchmark runner', () => {
  it('waits while serving is busy, then times the grid in its worker and uploads the table', async () => {
    uploaded = [];
    let busy = true;
    let askedWhileBusy = 0;
    // Busy for the first few idle checks: a generation in flight, then quiet.
    const serving = () => {
      if (busy && ++askedWhileBusy >= 5) busy = false;
      return busy ? { inFlight: 1, lastActivityAt: Date.now() } : { inFlight: 0, lastActivityAt: 0 };
    };
    const r = await runBenchmark({
      doc: doc(`http://127.0.0.1:${port}/benchmarks/r1/devices/dev-1.json?X-Amz-Signature=x`),
      dir,
      thingName: 'dev-1',
      agentVersion: '0.0.0-test',
      sysfsRoot: '/nonexistent-sysfs',
      serving,
      urlPolicy: new UrlPolicy(['127.0.0.1']),
      signal: new AbortController().signal,
      log: createLogger('error', () => {}),
      worker,
    });
    expect(busy).toBe(false);
    expect(askedWhileBusy).toBeGreaterThanOrEqual(5);
    expect(r.waitedForIdleMs).toBeGreaterThan(0);
    expect(r.complete).toBe(true);
    expect(uploaded).toHaveLength(1);
    const [method, url, body] = uploaded[0]!.split(' ');
    expect(method).toBe('PUT');
    expect(url).toContain('/benchmarks/r1/devices/dev-1.json');
    const table = parseLatencyTable(JSON.parse(uploaded[0]!.slice(`${method} ${url} `.length)));
    expect(body).toBeDefined();
    expect(table.measuredOn).toMatchObject({ thingName: 'dev-1', runId: 'r1', threads: 1, thermal: { startC: null, endC: null } });
    expect(table.seqLen).toBe(8);
  }, 120_000);

  it('uploads nowhere outside the allow-list', async () => {
    uploaded = [];
    await expect(
      runBenchmark({
        doc: doc(`http://127.0.0.2:${port}/x.json`),
        dir,
        thingName: 'dev-1',
        agentVersion: '0.0.0-test',
        sysfsRoot: '/nonexistent-sysfs',
        serving: () => ({ inFlight: 0, lastActivityAt: 0 }),
        urlPolicy: new UrlPolicy(['127.0.0.1']),
        signal: new AbortController().signal,
        log: createLogger('error', () => {}),
        worker,
      }),
    ).rejects.toThrow(/not in download.allowedHosts/);
    expect(uploaded).toEqual([]);
  });
});

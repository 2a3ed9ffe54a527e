// Runs a benchmark@1 job's timing on the device without disturbing serving: a child process at the
// lowest CPU priority times the verified grid files, measuring only after the local API has been
// quiet for `idleQuietMs`, and is stopped at the job's time limit. The figures become a
// `fleetlm/layer-latency@1` table (device identity, board, onnxruntime version, thermal state),
// uploaded with the job's presigned PUT, which must pass the same host allow-list as downloads.
import { fork, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ModelError, TransportError, ValidationError } from '../common/errors.ts';
import type { BenchmarkDocument } from '../contracts/benchmark-job.ts';
import { bytesPerWeightOf, type GridFile } from '../models/benchmark/grid-file.ts';
import { entriesFromTimings, type FileTiming } from '../models/benchmark/layer-timings.ts';
import { parseLatencyTable, type LayerLatencyTable } from '../models/search/latency-table.ts';
import type { Logger } from './log.ts';
import { readTemperatureC } from './telemetry.ts';
import type { UrlPolicy } from './url-policy.ts';
import type { IdleReply, WorkerMessage, WorkerRequest } from './benchmark-worker.ts';

/** Niceness of the worker: the lowest priority, so serving always wins the CPU. */
const WORKER_NICE = 19;
/** How long past the time limit a block may run before the worker is killed (one block is a few model runs). */
const KILL_GRACE_MS = 30_000;
/** How often an idle question is re-checked while serving is busy. */
const IDLE_POLL_MS = 100;

export interface BenchmarkRunOptions {
  doc: BenchmarkDocument;
  /** Directory holding the verified grid files. */
  dir: string;
  thingName: string;
  agentVersion: string;
  sysfsRoot: string;
  /** Whether the local API is serving now, and when it last started or ended a generation. */
  serving: () => { inFlight: number; lastActivityAt: number };
  urlPolicy: UrlPolicy;
  signal: AbortSignal;
  log: Logger;
  /** Command that starts the worker: the agent entry script and its node flags (default: this process's). */
  worker?: { entry: string; execArgv: string[] };
  onProgress?: (done: number, total: number) => void;
}

export interface BenchmarkRunResult {
  table: LayerLatencyTable;
  complete: boolean;
  dropped: string[];
  uploadedBytes: number;
  /** Milliseconds the worker waited for serving to go quiet. */
  waitedForIdleMs: number;
}

/** Board model as the device names it: device tree (Pi, Jetson), else DMI product name, else the CPU model. */
export async function readBoardModel(sysfsRoot: string): Promise<string> {
  for (const p of [path.join(sysfsRoot, 'firmware', 'devicetree', 'base', 'model'), path.join(sysfsRoot, 'class', 'dmi', 'id', 'product_name')]) {
    const text = await fs.readFile(p, 'utf8').then((t) => t.replace(/\0/g, '').trim(), () => '');
    if (text) return text.slice(0, 256);
  }
  return (os.cpus()[0]?.model ?? 'unknown').trim().slice(0, 256);
}

/** Times the grid in a low-priority worker, builds the device's table and uploads it. */
export async function runBenchmark(o: BenchmarkRunOptions): Promise<BenchmarkRunResult> {
  const { doc } = o;
  const uploadUrl = o.urlPolicy.check(doc.upload.url, 'benchmark upload URL');
  const files: GridFile[] = doc.models.map((m) => ({ ...m }));
  const startC = await readTemperatureC(o.sysfsRoot);
  const started = Date.now();
  const deadline = started + doc.timeLimitSec * 1000;
  const timings: FileTiming[] = [];
  let waitedForIdleMs = 0;
  const complete = await new Promise<boolean>((resolve, reject) => {
    const worker = o.worker ?? { entry: process.argv[1]!, execArgv: process.execArgv };
    let child: ChildProcess;
    try {
      child = fork(worker.entry, ['--benchmark-worker'], { execArgv: worker.execArgv, stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    } catch (err) {
      reject(new TransportError(`cannot start the benchmark worker: ${(err as Error).message}`, { cause: err }));
      return;
    }
    let stderr = '';
    child.stderr?.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-2000)));
    let finished: boolean | null = null;
    let failure: Error | null = null;
    let idleTimer: NodeJS.Timeout | undefined;
    const killTimer = setTimeout(() => {
      o.log.warn('benchmark worker ran past its time limit; stopping it', { pid: child.pid });
      finished = false;
      child.kill('SIGKILL');
    }, Math.max(0, deadline - Date.now()) + KILL_GRACE_MS);
    const onAbort = (): void => {
      failure = o.signal.reason instanceof Error ? o.signal.reason : new ValidationError('benchmark canceled', { code: 'VALIDATION_CANCELED' });
      child.kill('SIGKILL');
    };
    o.signal.addEventListener('abort', onAbort, { once: true });
    child.once('spawn', () => {
      try {
        // Serving must never wait for the benchmark: the worker gets what CPU the agent and its model leave.
        os.setPriority(child.pid!, WORKER_NICE);
      } catch (err) {
        o.log.warn('could not lower the benchmark worker priority', { error: (err as Error).message });
      }
      const req: WorkerRequest = {
        type: 'start',
        dir: o.dir,
        files,
        kvLengths: doc.kvLengths,
        threads: doc.threads,
        samples: doc.samples,
        warmup: doc.warmup,
        deadline,
      };
      child.send(req);
    });
    child.on('message', (m: WorkerMessage) => {
      switch (m.type) {
        case 'idle?': {
          const asked = Date.now();
          const check = (): void => {
            const s = o.serving();
            if (s.inFlight === 0 && Date.now() - s.lastActivityAt >= doc.idleQuietMs) {
              waitedForIdleMs += Date.now() - asked;
              if (child.connected) child.send({ type: 'idle' } satisfies IdleReply);
              return;
            }
            idleTimer = setTimeout(check, IDLE_POLL_MS);
          };
          check();
          break;
        }
        case 'block':
          timings.push(...m.timings);
          o.onProgress?.(m.done, m.total);
          break;
        case 'done':
          finished = m.complete;
          break;
        case 'error':
          failure = new ModelError(`benchmark worker failed: ${m.message}`, { code: 'MODEL_BENCHMARK' });
          break;
      }
    });
    child.once('error', (err) => (failure ??= new TransportError(`benchmark worker: ${err.message}`, { cause: err })));
    child.once('exit', (code, sig) => {
      clearTimeout(killTimer);
      clearTimeout(idleTimer);
      o.signal.removeEventListener('abort', onAbort);
      if (failure) reject(failure);
      else if (finished !== null) resolve(finished);
      else reject(new ModelError(`benchmark worker exited (${sig ?? `code ${code}`}) before finishing${stderr ? `: ${stderr.trim().split('\n').pop()}` : ''}`, { code: 'MODEL_BENCHMARK' }));
    });
  });
  const { layers, heads, dropped } = entriesFromTimings(files, timings);
  if (layers.length === 0) {
    throw new ModelError(`the benchmark produced no layer figure${complete ? '' : ` within its ${doc.timeLimitSec} s time limit`}${dropped.length ? `: ${dropped.slice(0, 3).join('; ')}` : ''}`, {
      code: 'MODEL_BENCHMARK',
    });
  }
  const { onnxruntimeVersion } = await import('../models/runtime/onnx-backend.ts');
  const table = parseLatencyTable({
    format: 'fleetlm/layer-latency@1',
    device: doc.deviceClass,
    unit: 'cpu',
    seqLen: doc.kvLengths[0],
    bytesPerWeight: bytesPerWeightOf(doc.storage),
    storage: doc.storage,
    measuredAt: new Date().toISOString(),
    complete,
    measuredOn: {
      thingName: o.thingName,
      board: await readBoardModel(o.sysfsRoot),
      cpu: (os.cpus()[0]?.model ?? 'unknown').trim().slice(0, 256),
      cores: Math.max(1, typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length),
      onnxruntime: onnxruntimeVersion(),
      agentVersion: o.agentVersion,
      threads: doc.threads,
      thermal: { startC, endC: await readTemperatureC(o.sysfsRoot) },
      loadAvg1m: os.loadavg()[0] ?? 0,
      runId: doc.runId,
    },
    layers,
    heads,
  });
  const body = JSON.stringify(table);
  let res: Response;
  try {
    // redirect 'manual': a redirect could lead past the allow-list.
    res = await fetch(uploadUrl, { method: 'PUT', body, headers: { 'content-type': 'application/json' }, redirect: 'manual', signal: o.signal });
  } catch (err) {
    throw new TransportError(`benchmark table upload to ${uploadUrl.host} failed: ${(err as Error).message}`, { code: 'TRANSPORT_UPLOAD', cause: err });
  }
  if (!res.ok) {
    const text = await res.text().catch(() => '');
    throw new TransportError(`benchmark table upload to ${uploadUrl.host} answered ${res.status}${text ? `: ${text.slice(0, 200)}` : ''}`, { code: 'TRANSPORT_UPLOAD' });
  }
  return { table, complete, dropped, uploadedBytes: Buffer.byteLength(body), waitedForIdleMs };
}

// The benchmark worker: a child process of the agent (`fleetlm-agent --benchmark-worker`, started at
// low CPU priority) that times the grid files with onnxruntime and sends the figures back over IPC.
// A separate process keeps the timings off the serving process's threads and lets the agent renice
// it, stop it at the time limit, or kill it when the job is canceled.
import type { GridFile } from '../models/benchmark/grid-file.ts';
import type { FileTiming } from '../models/benchmark/layer-timings.ts';

/** What the agent sends the worker. */
export interface WorkerRequest {
  type: 'start';
  dir: string;
  files: GridFile[];
  kvLengths: number[];
  threads: number;
  samples: number;
  warmup: number;
  deadline: number;
}

/** What the worker sends back: idle questions, figures as each block finishes, then done or error. */
export type WorkerMessage =
  | { type: 'idle?' }
  | { type: 'block'; timings: FileTiming[]; done: number; total: number }
  | { type: 'done'; complete: boolean }
  | { type: 'error'; message: string };

/** The agent's answer to `idle?`: sent once the device has been quiet long enough. */
export interface IdleReply {
  type: 'idle';
}

function send(m: WorkerMessage): Promise<void> {
  return new Promise((resolve) => process.send!(m, undefined, undefined, () => resolve()));
}

/** Runs in the child: waits for the request, times the grid, reports, exits. Resolves with the exit code. */
export async function runBenchmarkWorker(): Promise<number> {
  if (!process.send) {
    process.stderr.write('fleetlm-agent: --benchmark-worker runs only as the agent\'s child process\n');
    return 2;
  }
  const req = await new Promise<WorkerRequest>((resolve) => process.once('message', (m) => resolve(m as WorkerRequest)));
  let idleWaiter: (() => void) | null = null;
  process.on('message', (m: IdleReply) => {
    if (m.type === 'idle' && idleWaiter) {
      const w = idleWaiter;
      idleWaiter = null;
      w();
    }
  });
  const waitIdle = (): Promise<void> =>
    new Promise<void>((resolve) => {
      idleWaiter = resolve;
      void send({ type: 'idle?' });
    });
  try {
    const { timeGridFiles } = await import('../models/benchmark/decode-step-timer.ts');
    const r = await timeGridFiles(req.dir, req.files, {
      threads: req.threads,
      samples: req.samples,
      warmup: req.warmup,
      kvLengths: req.kvLengths,
      deadline: req.deadline,
      waitIdle,
      onBlock: (timings, done, total) => void send({ type: 'block', timings, done, total }),
    });
    await send({ type: 'done', complete: r.complete });
    return 0;
  } catch (err) {
    await send({ type: 'error', message: err instanceof Error ? err.message : String(err) });
    return 1;
  }
}

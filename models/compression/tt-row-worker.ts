// Worker side of tt-row.ts: claims chunks of rows from a shared counter and runs per-row TT-SVD on them.
import { parentPort, workerData } from 'node:worker_threads';
import { runRowChunks, type RowJob } from './tt-row.ts';

const job = workerData as RowJob;
const maxRanks = runRowChunks(job, (rows) => parentPort!.postMessage({ type: 'progress', rows }));
parentPort!.postMessage({ type: 'done', maxRanks });

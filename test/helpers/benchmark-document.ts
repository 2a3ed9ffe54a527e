// A benchmark@1 job document for tests that hand one to the device side directly (no hub): the grid
// files given, with placeholder URLs and hashes, on loopback.
import { BENCHMARK_SCHEMA, type BenchmarkDocumentInput } from '../../contracts/benchmark-job.ts';

type Models = BenchmarkDocumentInput['models'];

/** The document for `models` (each also an artifact), two KV lengths, uploading to `uploadUrl`; `extra` overrides. */
export function benchmarkDocumentFor(models: Models, extra: Partial<BenchmarkDocumentInput> = {}): BenchmarkDocumentInput {
  return {
    schema: BENCHMARK_SCHEMA,
    runId: 'r1',
    deviceClass: 'rpi4',
    storage: 'fp32',
    modelId: 'benchmark-grid',
    version: 'fp32-test',
    manifest: { url: 'http://127.0.0.1/m', sha256: 'a'.repeat(64), size: 1 },
    signature: { url: 'http://127.0.0.1/s' },
    artifacts: models.map((m) => ({ name: m.name, url: `http://127.0.0.1/${m.name}`, sha256: 'a'.repeat(64), size: 1 })),
    kvLengths: [8, 16],
    models,
    upload: { url: 'http://127.0.0.1/u' },
    ...extra,
  };
}

// Benchmark: what publish's bundle check (models/runtime/bundle-check.ts) adds to preparing a bundle: prepare
// a model directory's manifest with and without the check and print both times, human-readable then JSON.
// Usage: npx tsx bench/bundle-check.ts DIR [DIR...]   (e.g. a `fleetlm build --arch gpt2-small --out DIR/model.onnx`)
import { prepareBundle } from '../fleet/publisher.ts';

const dirs = process.argv.slice(2);
if (dirs.length === 0) {
  process.stderr.write('usage: npx tsx bench/bundle-check.ts DIR [DIR...]\n');
  process.exit(2);
}
const results = [];
for (const dir of dirs) {
  const t0 = performance.now();
  const checked = await prepareBundle({ modelDir: dir, modelId: 'bench', version: '1' });
  const t1 = performance.now();
  await prepareBundle({ modelDir: dir, modelId: 'bench', version: '1', skipBundleChecks: true });
  const t2 = performance.now();
  const bytes = checked.manifest.files.reduce((n, f) => n + f.size, 0);
  const r = { dir, bytes, preparedWithCheckMs: Math.round(t1 - t0), preparedWithoutMs: Math.round(t2 - t1), checkMs: Math.round(t1 - t0 - (t2 - t1)), check: checked.check };
  results.push(r);
  process.stdout.write(`${dir}: ${(bytes / 2 ** 20).toFixed(1)} MiB, prepare ${r.preparedWithCheckMs} ms with the check, ${r.preparedWithoutMs} ms without (check ~${r.checkMs} ms)\n`);
}
process.stdout.write(`${JSON.stringify({ results }, null, 2)}\n`);

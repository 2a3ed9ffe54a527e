import { loadLanguageModel } from '../../models/runtime/index.ts';
const path = process.argv[2]!;
for (const [threads, spin] of [[1, true], [2, true], [2, false], [1, true]] as const) {
  const m = await loadLanguageModel(path, { intraOpNumThreads: threads, allowSpinning: spin });
  const st = m.createState(200);
  await m.step(st, Array.from({ length: 32 }, (_, i) => i + 100));
  const t = performance.now();
  for (let i = 0; i < 16; i++) await m.step(st, [200 + i]);
  console.log(`threads=${threads} spin=${spin}: ${((performance.now() - t) / 16).toFixed(2)} ms/step`);
  await m.dispose();
}

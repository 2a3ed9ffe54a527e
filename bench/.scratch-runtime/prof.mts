import { loadLanguageModel } from '../../models/runtime/index.ts';
const path = process.argv[2]!;
for (const reuse of [true, false]) {
  const m = await loadLanguageModel(path, { intraOpNumThreads: 2, reuseBuffers: reuse });
  const sess = (m as any).session;
  const orig = sess.run.bind(sess);
  let runMs = 0;
  sess.run = async (f: any, g: any) => { const t = performance.now(); const r = await orig(f, g); runMs += performance.now() - t; return r; };
  const st = m.createState(200);
  await m.step(st, Array.from({ length: 32 }, (_, i) => i + 100));
  runMs = 0;
  const t = performance.now();
  for (let i = 0; i < 24; i++) await m.step(st, [200 + i]);
  const total = performance.now() - t;
  console.log(`reuse=${reuse}: ${(total / 24).toFixed(2)} ms/step, run ${(runMs / 24).toFixed(2)} ms/step`);
  await m.dispose();
}

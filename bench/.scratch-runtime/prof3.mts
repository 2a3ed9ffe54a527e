import { loadLanguageModel } from '../../models/runtime/index.ts';
const path = process.argv[2]!;
const m = await loadLanguageModel(path, { intraOpNumThreads: 2 });
const sess = (m as any).session;
const inner = sess.session; // ort.InferenceSession
let runMs = 0, handlerMs = 0;
const origRun = inner.run.bind(inner);
inner.run = async (f: any, g: any) => { const t = performance.now(); const r = await origRun(f, g); runMs += performance.now() - t; return r; };
const h = inner.handler; const origH = h.run.bind(h);
h.run = async (f: any, g: any, o: any) => { const t = performance.now(); const r = await origH(f, g, o); handlerMs += performance.now() - t; return r; };
const st = m.createState(200);
await m.step(st, Array.from({ length: 32 }, (_, i) => i + 100));
runMs = 0; handlerMs = 0;
const N = 24; const t = performance.now();
for (let i = 0; i < N; i++) await m.step(st, [200 + i]);
const total = performance.now() - t;
console.log(`${(total / N).toFixed(2)} ms/step; session.run ${(runMs / N).toFixed(2)}; handler ${(handlerMs / N).toFixed(2)}`);
await m.dispose();

import { Sampler, createRng } from '../../models/runtime/sampling.ts';
const V = 50257; const rng = createRng(1);
const logits = Float32Array.from({ length: V }, () => (rng() - 0.5) * 10);
for (const o of [{}, { temperature: 0.8 }, { temperature: 0.8, topK: 40 }, { temperature: 0.8, topP: 0.9 }, { temperature: 0.8, topK: 50, topP: 0.9 }]) {
  const s = new Sampler(V, { ...o, seed: 1 });
  for (let i = 0; i < 5; i++) s.sample(logits);
  const t = performance.now(); const n = 50;
  for (let i = 0; i < n; i++) s.sample(logits);
  console.log(JSON.stringify(o), ((performance.now() - t) / n).toFixed(3), 'ms/token');
}
const k = new Float64Array(V).map(() => Math.random());
let t = performance.now(); k.sort(); console.log('f64 sort', performance.now() - t);

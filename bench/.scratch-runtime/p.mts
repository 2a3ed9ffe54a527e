import { parseArchSpec } from '../../models/arch/spec.ts';
import { countParameters } from '../../models/arch/accounting.ts';
for (const [w, r, l] of [[1024, 2.5, 4], [1024, 2, 5], [1024,3,4], [768, 3, 6]]) {
  const s = parseArchSpec({ vocabSize: 50257, contextLength: 1024, embeddingWidth: 512, blocks: [{ width: w, ffnRatio: r, layers: l, heads: w/64 }] });
  console.log(w, r, l, countParameters(s));
}

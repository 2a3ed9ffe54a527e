import { loadLanguageModel, perplexity } from '../../models/runtime/index.ts';
const model = await loadLanguageModel('/tmp/rt/small.onnx', { intraOpNumThreads: 2 });
console.log(model.info.vocabSize, model.info.numLayers, model.info.contextLength, model.info.variant);
for await (const t of model.generate('Call me Ishmael.', { maxTokens: 5, temperature: 0.7, seed: 1 })) {
  console.log(t.index, t.tokenId, JSON.stringify(t.text));
}
const r = await model.generateText('Call me Ishmael.', { maxTokens: 16 });
console.log(r.tokens.length, r.stopReason, r.firstTokenMs.toFixed(1), r.tokensPerSecond.toFixed(1));
console.log((await perplexity(model, 'Call me Ishmael. Some years ago, never mind how long precisely.')).perplexity.toFixed(1));
await model.dispose();

import * as ort from 'onnxruntime-node';
const s = await ort.InferenceSession.create('/tmp/rt/tiny-false.onnx');
console.log(s.inputNames, s.outputNames);
const feeds: Record<string, ort.Tensor> = {
  input_ids: new ort.Tensor('int64', BigInt64Array.from([1n]), [1, 1]),
  attention_mask: new ort.Tensor('int64', BigInt64Array.from([1n]), [1, 1]),
  position_ids: new ort.Tensor('int64', BigInt64Array.from([0n]), [1, 1]),
};
const fetches: Record<string, ort.Tensor | null> = {};
const heads=[2,3,3];
for (let i = 0; i < 3; i++) for (const k of ['key','value']) {
  feeds[`past_key_values.${i}.${k}`] = new ort.Tensor('float32', new Float32Array(0), [1, heads[i], 0, 8]);
  fetches[`present.${i}.${k}`] = new ort.Tensor('float32', new Float32Array(heads[i]*8), [1, heads[i], 1, 8]);
}
const lg = new Float32Array(64);
fetches.logits = new ort.Tensor('float32', lg, [1,1,64]);
const out = await s.run(feeds, fetches);
console.log(out.logits.data === lg, Array.from(lg.slice(0,3)), Array.from((out.logits.data as Float32Array).slice(0,3)));
console.log(Array.from((fetches["present.0.key"]!.data as Float32Array).slice(0,3)), Array.from((out["present.0.key"].data as Float32Array).slice(0,3)));

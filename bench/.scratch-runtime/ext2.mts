import { GPT2_SMALL } from '../../models/arch/presets.ts';
import { buildModelFile } from '../../models/onnx/build-model-file.ts';
await buildModelFile(GPT2_SMALL, { outPath: '/tmp/rt/extg/gpt2.onnx', fused: true, seed: 1, externalData: 'always' });

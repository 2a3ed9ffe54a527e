// Public surface of the CPU trainer: model, optimizer, data, checkpoints and the training loop.
export { TrainableDecoder } from './model.ts';
export { ParamStore, type Param } from './params.ts';
export { AdamW, DEFAULT_ADAMW, clipGradNorm, learningRate, type AdamWOptions } from './optimizer.ts';
export { BUILTIN_CORPORA, BatchSampler, evaluationWindows, loadDocuments, splitDocuments, tokenizeDocuments, type DataCursor, type TextDocument } from './data.ts';
export { loadTrainState, loadWeights, saveCheckpoint, statePathFor, WEIGHTS_FORMAT, STATE_FORMAT, type LoadedWeights, type OptimizerSnapshot, type TrainState } from './checkpoint.ts';
export { evaluate, trainModel, type TrainOptions, type TrainProgress, type TrainResult } from './trainer.ts';
export { gemmNT, transpose, type FloatArray } from './kernels.ts';
export { gemmThreads, setGemmThreads } from './wasm-gemm.ts';
export { trainingInitWeights, isWidthProjection } from './init.ts';
export { bpeTokenizer, loadBpeTokenizer, saveBpe, trainBpe, tokenizerPathFor, BpeFileSchema, type BpeFile } from './bpe-trainer.ts';

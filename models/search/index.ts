// Public entry of the architecture search, for the CLI, the demo and the Lambda handler.
export {
  searchArchitecture,
  SearchOptionsSchema,
  SearchBudgetsSchema,
  DEFAULT_WIDTHS,
  DEFAULT_FFN_RATIOS,
  DEFAULT_MIN_EMBEDDING_WIDTH,
  DEFAULT_MIN_ATTENTION_RATIO,
} from './search.ts';
export type { SearchOptions, SearchResult, SearchSettings, SearchBudgets } from './search.ts';
export { DEVICE_PROFILES, DEVICE_IDS, deviceProfile, parseDeviceProfile, computeUnitOf } from './device-profiles.ts';
export type { DeviceProfile, ComputeUnit, ComputeUnitKind } from './device-profiles.ts';
export { RooflineLatencyModel, predictLatencyMs } from './latency-model.ts';
export type { LatencyModel } from './latency-model.ts';
export { MeasuredLatencyModel, loadLatencyTable, parseLatencyTable, LayerLatencyTableSchema } from './latency-table.ts';
export type { LayerLatencyTable } from './latency-table.ts';
export { uniformGpt2Design, gpt2StyleSpec } from './baselines.ts';
export { toHuggingFaceConfig } from '../arch/hf-config.ts';
export { weightStorageOfBits, parseWeightStorage, describeWeightStorage } from '../arch/weight-storage.ts';
export type { WeightStorage, StorageType } from '../arch/weight-storage.ts';

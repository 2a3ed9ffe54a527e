// Well-known architectures expressed as FleetLM specs, used as anchors in tests and benchmarks.
import { parseArchSpec, type ArchSpec } from './spec.ts';

/** GPT-2 small (124,439,808 parameters, tied head). */
export const GPT2_SMALL: ArchSpec = parseArchSpec({
  name: 'gpt2-small',
  vocabSize: 50257,
  contextLength: 1024,
  blocks: [{ width: 768, ffnRatio: 4, layers: 12, heads: 12 }],
  tiedHead: true,
});

/** OPT-125m (125,239,296 parameters; 2 reserved position rows, tied head). */
export const OPT_125M: ArchSpec = parseArchSpec({
  name: 'opt-125m',
  vocabSize: 50272,
  contextLength: 2048,
  positionOffset: 2,
  blocks: [{ width: 768, ffnRatio: 4, layers: 12, heads: 12 }],
  tiedHead: true,
});

/** OPT-350m's shape: 512-wide embeddings projected in and out of 24 layers of width 1024. */
export const OPT_350M: ArchSpec = parseArchSpec({
  name: 'opt-350m',
  vocabSize: 50272,
  contextLength: 2048,
  positionOffset: 2,
  embeddingWidth: 512,
  blocks: [{ width: 1024, ffnRatio: 4, layers: 24, heads: 16 }],
  tiedHead: true,
});

/** A tiny spec for fast tests. */
export const TINY: ArchSpec = parseArchSpec({
  name: 'tiny',
  vocabSize: 64,
  contextLength: 32,
  blocks: [
    { width: 16, ffnRatio: 2, layers: 1, heads: 2, headDim: 8 },
    { width: 24, ffnRatio: 2, layers: 2, heads: 3, headDim: 8, shareWeights: true },
  ],
  tiedHead: true,
});

export const PRESETS: Readonly<Record<string, ArchSpec>> = {
  'gpt2-small': GPT2_SMALL,
  'opt-125m': OPT_125M,
  'opt-350m': OPT_350M,
  tiny: TINY,
};

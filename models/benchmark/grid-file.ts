// What the device needs to know about a grid file (no builder): its shape and role, and the bytes per
// weight a storage type records. The builder (grid.ts) stays out of the agent bundle.

/** Weight storage of a grid: fp32, or 8- / 4-bit blocks (MatMulNBits), as the shipped models use. */
export type GridStorage = 'fp32' | 'int8' | 'int4';

/**
 * Layer family of a grid file: `gpt2` (LayerNorm, GELU MLP, biases, learned positions, full attention)
 * or `llama` (RMSNorm, SwiGLU, no biases, rotary positions, `kvHeads` K/V heads).
 */
export const GRID_FAMILIES = ['gpt2', 'llama'] as const;
export type GridFamily = (typeof GRID_FAMILIES)[number];

/** One file of the grid (as benchmark@1 lists it). */
export interface GridFile {
  name: string;
  role: 'layer' | 'fixed';
  width: number;
  ffnWidth: number;
  heads: number;
  headDim: number;
  depth: number;
  vocabSize: number;
  /** Absent: gpt2 (benchmark@1 documents older agents read carry no family). */
  family?: GridFamily;
  /** K/V heads of a llama file (grouped-query attention when below `heads`); absent: `heads`. */
  kvHeads?: number;
}

/** The family of a grid file (absent: gpt2). */
export function familyOf(f: Pick<GridFile, 'family'>): GridFamily {
  return f.family ?? 'gpt2';
}

/** K/V heads of a grid file's layers (gpt2: as many as query heads). */
export function kvHeadsOf(f: Pick<GridFile, 'family' | 'heads' | 'kvHeads'>): number {
  return familyOf(f) === 'llama' ? (f.kvHeads ?? f.heads) : f.heads;
}

/**
 * The layer a file measures, as text ("w64 f256 h1x64"; llama: "llama w64 f256 h4/kv2x16"): files with
 * the same key differ only in depth. Also names the grid point in dropped-entry messages.
 */
export function layerKeyOf(f: Pick<GridFile, 'width' | 'ffnWidth' | 'heads' | 'headDim' | 'family' | 'kvHeads'>): string {
  return familyOf(f) === 'llama' ? `llama w${f.width} f${f.ffnWidth} h${f.heads}/kv${kvHeadsOf(f)}x${f.headDim}` : `w${f.width} f${f.ffnWidth} h${f.heads}x${f.headDim}`;
}

/** Bytes per weight a table of this storage records (the search matches it against weightBits). */
export function bytesPerWeightOf(storage: GridStorage): number {
  return storage === 'fp32' ? 4 : storage === 'int8' ? 1 : 0.5;
}

// What the device needs to know about a grid file (no builder): its shape and role, and the bytes per
// weight a storage type records. The builder (grid.ts) stays out of the agent bundle.

/** Weight storage of a grid: fp32, or 8- / 4-bit blocks (MatMulNBits), as the shipped models use. */
export type GridStorage = 'fp32' | 'int8' | 'int4';

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
}

/** Bytes per weight a table of this storage records (the search matches it against weightBits). */
export function bytesPerWeightOf(storage: GridStorage): number {
  return storage === 'fp32' ? 4 : storage === 'int8' ? 1 : 0.5;
}

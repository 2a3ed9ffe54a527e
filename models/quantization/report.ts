// Size and error report of a weight quantization (what `fleetlm quantize` prints and writes as JSON).
import type { BlockQuantConfig } from './block-quantizer.ts';
import { DEFAULT_ACCURACY_LEVEL, type QuantizeResult } from './onnx-quantize.ts';

/** JSON-safe summary of a quantization. */
export interface QuantizationReport {
  format: 'fleetlm/quantize-report@1';
  bits: number;
  blockSize: number;
  symmetric: boolean;
  /** MatMulNBits accuracy_level (4: int8 activations). */
  accuracyLevel: number;
  /** Weight matrices quantized (each may feed several nodes). */
  quantizedWeights: number;
  /** Float bytes of those weights -> bytes of their quantized data, scales and zero points. */
  weightFloatBytes: number;
  weightQuantizedBytes: number;
  /** Float copies kept because another node (e.g. a tied embedding Gather) still reads them. */
  floatCopiesKept: string[];
  initializerBytesBefore: number;
  initializerBytesAfter: number;
  /** Largest and mean per-matrix relative Frobenius error ||W - deq(W)|| / ||W||. */
  worstRelativeError: { name: string; value: number } | null;
  meanRelativeError: number;
  weights: QuantizeResult['weights'];
  skipped: QuantizeResult['skipped'];
}

/** The report of `result` made with `config`. */
export function quantizationReport(result: QuantizeResult, config: BlockQuantConfig & { accuracyLevel?: number }): QuantizationReport {
  const w = result.weights;
  const worst = w.reduce<{ name: string; value: number } | null>((acc, x) => (acc === null || x.relativeError > acc.value ? { name: x.name, value: x.relativeError } : acc), null);
  return {
    format: 'fleetlm/quantize-report@1',
    bits: config.bits,
    blockSize: config.blockSize,
    symmetric: config.symmetric,
    accuracyLevel: config.accuracyLevel ?? DEFAULT_ACCURACY_LEVEL,
    quantizedWeights: w.length,
    weightFloatBytes: w.reduce((s, x) => s + x.floatBytes, 0),
    weightQuantizedBytes: w.reduce((s, x) => s + x.quantizedBytes, 0),
    floatCopiesKept: w.filter((x) => x.floatKept).map((x) => x.name),
    initializerBytesBefore: result.initializerBytesBefore,
    initializerBytesAfter: result.initializerBytesAfter,
    worstRelativeError: worst,
    meanRelativeError: w.length ? w.reduce((s, x) => s + x.relativeError, 0) / w.length : 0,
    weights: w,
    skipped: result.skipped,
  };
}

const mb = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MiB`;

/** A few lines for a terminal. */
export function formatQuantizationReport(r: QuantizationReport): string {
  const lines = [
    `int${r.bits} block ${r.blockSize} ${r.symmetric ? 'symmetric' : 'asymmetric'}, accuracy level ${r.accuracyLevel}: ${r.quantizedWeights} weight matrices, ${mb(r.weightFloatBytes)} -> ${mb(r.weightQuantizedBytes)}`,
    `  initializers ${mb(r.initializerBytesBefore)} -> ${mb(r.initializerBytesAfter)}; relative error mean ${r.meanRelativeError.toFixed(4)}, worst ${r.worstRelativeError ? `${r.worstRelativeError.value.toFixed(4)} (${r.worstRelativeError.name})` : '-'}`,
  ];
  if (r.floatCopiesKept.length) lines.push(`  float copies kept (still read by other nodes, e.g. the embedding Gather): ${r.floatCopiesKept.join(', ')}`);
  if (r.skipped.length) {
    const shown = r.skipped.slice(0, 4).map((s) => `${s.node} (${s.reason})`);
    lines.push(`  left in float: ${shown.join('; ')}${r.skipped.length > 4 ? `; ... ${r.skipped.length - 4} more` : ''}`);
  }
  return lines.join('\n');
}

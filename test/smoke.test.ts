import { describe, it, expect } from 'vitest';
import { GPT2_SMALL, TINY } from '../models/arch/presets.ts';
import { parseArchSpec } from '../models/arch/spec.ts';
import { ValidationError } from '../common/errors.ts';

describe('architecture spec', () => {
  it('fills defaults', () => {
    expect(GPT2_SMALL.blocks[0]!.headDim).toBe(64);
    expect(TINY.blocks[1]!.shareWeights).toBe(true);
  });
  it('names the field that breaks a rule', () => {
    const bad = { vocabSize: 10, contextLength: 8, blocks: [{ width: 32, ffnRatio: 2, layers: 1, heads: 1 }, { width: 16, ffnRatio: 2, layers: 1, heads: 1 }] };
    expect(() => parseArchSpec(bad)).toThrow(ValidationError);
    expect(() => parseArchSpec(bad)).toThrow(/blocks\.1\.width/);
    expect(() => parseArchSpec({ ...bad, vocabSize: -1 })).toThrow(/vocabSize/);
  });
});

// The search's selectable objective: each objective's search finds the best design of a small space
// (checked by enumerating it), reports the value the accounting code gives, and the default is used.
import { describe, expect, it } from 'vitest';
import { DEFAULT_OBJECTIVE, SEARCH_OBJECTIVES, searchArchitecture, type SearchObjective } from '../../../models/search/search.ts';
import { decoderParameters, objectiveValue } from '../../../models/search/objective.ts';
import { countForwardFlops, countParameters } from '../../../models/arch/accounting.ts';
import { parseArchSpec, type ArchSpec } from '../../../models/arch/spec.ts';
import { embeddingHeadEntropy, networkEntropy } from '../../../models/entropy/network-entropy.ts';
import { matrixEntropy } from '../../../models/entropy/matrix-entropy.ts';
import { ValidationError } from '../../../common/errors.ts';

// A space small enough to enumerate: one block, widths 64/96/128, FFN 1/2/4, 1-6 layers, heads of 32.
const SPACE = { widths: [64, 96, 128], ffnRatios: [1, 2, 4], blocks: 1, maxLayersPerBlock: 6, headDim: 32, maxHeads: 4, vocabSize: 512, contextLength: 64, minEmbeddingWidth: 64, minAttentionRatio: 0, rhoMax: 10 };
const BUDGET = 300_000;

function everyDesign(): ArchSpec[] {
  const out: ArchSpec[] = [];
  for (const width of SPACE.widths) {
    for (const ffnRatio of SPACE.ffnRatios) {
      for (let layers = 1; layers <= SPACE.maxLayersPerBlock; layers++) {
        for (let heads = 1; heads <= Math.min(SPACE.maxHeads, width / SPACE.headDim); heads++) {
          const spec = parseArchSpec({ name: 'x', vocabSize: SPACE.vocabSize, contextLength: SPACE.contextLength, blocks: [{ width, ffnRatio, layers, heads, headDim: SPACE.headDim }] });
          if (countParameters(spec) <= BUDGET) out.push(spec);
        }
      }
    }
  }
  return out;
}

describe('search objectives', () => {
  const designs = everyDesign();
  const search = (objective: SearchObjective) => searchArchitecture({ ...SPACE, objective, budgets: { params: BUDGET }, iterations: 20000, population: 64, seed: 3 });

  it.each(SEARCH_OBJECTIVES)('%s: finds the best design of the space and reports its value', (objective) => {
    const r = search(objective);
    const value = (s: ArchSpec): number => objectiveValue(s, objective, { seqLen: SPACE.contextLength });
    const best = Math.max(...designs.map(value));
    expect(r.objective).toBe(objective);
    expect(r.settings.objective).toBe(objective);
    expect(r.score).toBeCloseTo(best, 6);
    expect(r.score).toBeCloseTo(value(r.spec), 6);
    expect(r.params).toBeLessThanOrEqual(BUDGET);
  });

  it('objectives are what they say: the values by hand', () => {
    const spec = parseArchSpec({ name: 'x', vocabSize: 512, contextLength: 64, blocks: [{ width: 128, ffnRatio: 2, layers: 3, heads: 2, headDim: 32 }] });
    const o = { seqLen: 64 };
    expect(objectiveValue(spec, 'entropy', o)).toBe(networkEntropy(spec).entropy);
    // Tied head: the V x E embedding counts twice.
    expect(embeddingHeadEntropy(spec)).toBe(2 * matrixEntropy(512, 128));
    expect(objectiveValue(spec, 'entropy-embedding', o)).toBe(networkEntropy(spec).entropy + 2 * matrixEntropy(512, 128));
    const untied = { ...spec, tiedHead: false };
    expect(embeddingHeadEntropy(untied)).toBe(matrixEntropy(512, 128) + matrixEntropy(128, 512));
    expect(objectiveValue(spec, 'params', o)).toBe(countParameters(spec));
    expect(decoderParameters(spec)).toBe(countParameters(spec) - (512 + 64) * 128);
    expect(objectiveValue(spec, 'flops', o)).toBe(countForwardFlops(spec, 64));
  });

  it('different objectives pick different designs, each best on its own measure', () => {
    const picks = Object.fromEntries(SEARCH_OBJECTIVES.map((o) => [o, search(o).spec])) as Record<SearchObjective, ArchSpec>;
    expect(picks.entropy).not.toEqual(picks.params);
    for (const o of SEARCH_OBJECTIVES) {
      for (const other of SEARCH_OBJECTIVES) {
        const v = (s: ArchSpec): number => objectiveValue(s, o, { seqLen: 64 });
        expect(v(picks[o])).toBeGreaterThanOrEqual(v(picks[other]) - 1e-6 * Math.abs(v(picks[o])));
      }
    }
  });

  it('uses the default objective when none is given, and refuses unknown ones', () => {
    const r = searchArchitecture({ ...SPACE, budgets: { params: BUDGET }, iterations: 2000 });
    expect(r.objective).toBe(DEFAULT_OBJECTIVE);
    expect(() => searchArchitecture({ ...SPACE, budgets: { params: BUDGET }, objective: 'accuracy' as SearchObjective })).toThrow(ValidationError);
  });

  it('works with a fixed embedding width and an untied head (the entropy-embedding tables)', () => {
    const r = searchArchitecture({ ...SPACE, widths: [64, 128], blocks: 2, embeddingWidth: 96, tiedHead: false, objective: 'entropy-embedding', budgets: { params: 400_000 }, iterations: 5000 });
    expect(r.score).toBeCloseTo(networkEntropy(r.spec).entropy + embeddingHeadEntropy(r.spec), 6);
  });
});

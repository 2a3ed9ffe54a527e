import { describe, expect, it } from 'vitest';
import { searchArchitecture, type SearchOptions } from '../../../models/search/search.ts';
import { countForwardFlops, countParameters, decodeMemoryBytes } from '../../../models/arch/accounting.ts';
import { networkEffectiveness } from '../../../models/entropy/effectiveness.ts';
import { networkEntropy } from '../../../models/entropy/network-entropy.ts';
import { parseArchSpec } from '../../../models/arch/spec.ts';
import { computeUnitOf, deviceProfile, DEVICE_IDS } from '../../../models/search/device-profiles.ts';
import { predictLatencyMs, RooflineLatencyModel } from '../../../models/search/latency-model.ts';
import { uniformGpt2Design } from '../../../models/search/baselines.ts';
import { ValidationError } from '../../../common/errors.ts';
import { SeededRandom as Rng } from '../../../models/random.ts';

const logUniform = (rng: Rng, lo: number, hi: number): number => Math.exp(Math.log(lo) + rng.next() * (Math.log(hi) - Math.log(lo)));

describe('searchArchitecture budgets', () => {
  it('never returns a design that breaks a budget over 1,000 random budget draws', () => {
    const rng = new Rng(20240601);
    let feasible = 0;
    let infeasible = 0;
    for (let draw = 0; draw < 1000; draw++) {
      const device = rng.next() < 0.7 ? DEVICE_IDS[rng.int(DEVICE_IDS.length)]! : undefined;
      const budgets: NonNullable<SearchOptions['budgets']> = {};
      if (rng.next() < 0.8) budgets.params = Math.round(logUniform(rng, 1e6, 300e6));
      if (rng.next() < 0.7) budgets.flops = Math.round(logUniform(rng, 1e9, 1e12));
      if (rng.next() < 0.5) budgets.decodeMemoryBytes = Math.round(logUniform(rng, 8e6, 2e9));
      if (device && rng.next() < 0.6) budgets.latencyMs = logUniform(rng, 0.5, 200);
      const contextLength = [128, 256, 512, 1024][rng.int(4)]!;
      const options: SearchOptions = {
        budgets,
        device,
        seed: draw,
        iterations: 60,
        population: 16,
        parentSetSize: 4,
        blocks: 1 + rng.int(4),
        vocabSize: [1000, 8192, 50257][rng.int(3)]!,
        contextLength,
        rhoMax: rng.next() < 0.2 ? logUniform(rng, 0.01, 0.1) : 0.5,
        tiedHead: rng.next() < 0.8,
        weightSharing: (['never', 'always', 'search'] as const)[rng.int(3)]!,
        bytesPerWeight: rng.next() < 0.5 ? 4 : 2,
        embeddingWidth: rng.next() < 0.2 ? 64 * (1 + rng.int(12)) : undefined,
      };
      let result;
      try {
        result = searchArchitecture(options);
      } catch (err) {
        expect(err).toBeInstanceOf(ValidationError);
        expect((err as ValidationError).code).toBe('VALIDATION_INFEASIBLE_BUDGET');
        // The refusal must be justified: the smallest design really breaks a budget.
        const o = options;
        const smallest = parseArchSpec({
          vocabSize: o.vocabSize,
          contextLength,
          embeddingWidth: o.embeddingWidth,
          tiedHead: o.tiedHead,
          blocks: Array.from({ length: o.blocks! }, () => ({ width: 64, ffnRatio: 1, layers: 1, heads: 1 })),
        });
        const lat = device ? predictLatencyMs(smallest, new RooflineLatencyModel(computeUnitOf(deviceProfile(device)).unit, { seqLen: contextLength, bytesPerWeight: o.bytesPerWeight })) : 0;
        const broken =
          (budgets.params !== undefined && countParameters(smallest) > budgets.params) ||
          (budgets.flops !== undefined && countForwardFlops(smallest, contextLength) > budgets.flops) ||
          (budgets.decodeMemoryBytes !== undefined && decodeMemoryBytes(smallest, contextLength, o.bytesPerWeight) > budgets.decodeMemoryBytes) ||
          (budgets.latencyMs !== undefined && lat > budgets.latencyMs) ||
          networkEffectiveness(smallest.blocks) > o.rhoMax!;
        expect(broken).toBe(true);
        infeasible++;
        continue;
      }
      feasible++;
      const spec = result.spec;
      // Independent check with the accounting code, not the search's own tables.
      if (budgets.params !== undefined) expect(countParameters(spec)).toBeLessThanOrEqual(budgets.params);
      if (budgets.flops !== undefined) expect(countForwardFlops(spec, contextLength)).toBeLessThanOrEqual(budgets.flops);
      if (budgets.decodeMemoryBytes !== undefined) expect(decodeMemoryBytes(spec, contextLength, options.bytesPerWeight)).toBeLessThanOrEqual(budgets.decodeMemoryBytes);
      if (budgets.latencyMs !== undefined) {
        const model = new RooflineLatencyModel(computeUnitOf(deviceProfile(device!)).unit, { seqLen: contextLength, bytesPerWeight: options.bytesPerWeight });
        expect(predictLatencyMs(spec, model)).toBeLessThanOrEqual(budgets.latencyMs);
      }
      expect(networkEffectiveness(spec.blocks)).toBeLessThanOrEqual(options.rhoMax!);
      expect(spec.blocks).toHaveLength(options.blocks!);
      expect(result.params).toBe(countParameters(spec));
    }
    // Both outcomes must actually be exercised for the test to mean anything.
    expect(feasible).toBeGreaterThan(300);
    expect(infeasible).toBeGreaterThan(50);
  });

  it('names the smallest feasible value when no design can meet a budget', () => {
    const err = (() => {
      try {
        searchArchitecture({ budgets: { params: 1e6 }, iterations: 10 });
      } catch (e) {
        return e as ValidationError;
      }
      throw new Error('expected a failure');
    })();
    expect(err.code).toBe('VALIDATION_INFEASIBLE_BUDGET');
    // 3 blocks of width 64 with 1 layer, FFN ratio 1 and 1 head, GPT-2 vocab and context.
    const smallest = parseArchSpec({ vocabSize: 50257, contextLength: 1024, blocks: Array.from({ length: 3 }, () => ({ width: 64, ffnRatio: 1, layers: 1, heads: 1 })) });
    expect(err.message).toContain(`smallest feasible value 3.36M (${countParameters(smallest)} parameters)`);
    expect(() => searchArchitecture({ budgets: { flops: 1e9 }, iterations: 10 })).toThrow(/FLOPs budget 1G is below the smallest feasible value/);
    expect(() => searchArchitecture({ rhoMax: 0.01, iterations: 10 })).toThrow(/rhoMax 0.01 is below the smallest feasible value 0.0313/);
    expect(() => searchArchitecture({ budgets: { latencyMs: 0.01 }, device: 'rpi4', iterations: 10 })).toThrow(/latency budget 0.01 ms is below/);
  });

  it('rejects a latency budget without a device, and unknown devices', () => {
    expect(() => searchArchitecture({ budgets: { latencyMs: 10 }, iterations: 1 })).toThrow(/latency budget needs a device/);
    expect(() => searchArchitecture({ device: 'jetson-tx9', iterations: 1 })).toThrow(/unknown device 'jetson-tx9'; known devices: jetson-nano/);
    expect(() => searchArchitecture({ budgets: { params: -5 } })).toThrow(ValidationError);
  });
});

describe('searchArchitecture results', () => {
  const opts: SearchOptions = { budgets: { params: 64e6, flops: 160e9 }, device: 'jetson-nano', seed: 7, iterations: 5000 };

  it('is deterministic: same seed, same design and figures', () => {
    const a = searchArchitecture(opts);
    const b = searchArchitecture(opts);
    const { stats: sa, ...ra } = a;
    const { stats: sb, ...rb } = b;
    expect(rb).toEqual(ra);
    expect(sb.evaluated).toBe(sa.evaluated);
    const c = searchArchitecture({ ...opts, seed: 8 });
    expect(c.spec).not.toEqual(a.spec);
  });

  it('reports figures that agree with the accounting and entropy code', () => {
    const r = searchArchitecture(opts);
    expect(r.params).toBe(countParameters(r.spec));
    expect(r.flops).toBe(countForwardFlops(r.spec, 1024));
    expect(r.decodeMemoryBytes).toBe(decodeMemoryBytes(r.spec, 1024, 4));
    expect(r.entropy).toBeCloseTo(networkEntropy(r.spec).entropy, 6);
    expect(r.rho).toBeLessThanOrEqual(0.5);
    expect(r.latencyMs).toBeGreaterThan(0);
    expect(r.device).toMatchObject({ id: 'jetson-nano', unit: 'gpu', latencyModel: 'roofline' });
    expect(r.settings).toMatchObject({ population: 512, parentSetSize: 64, iterations: 5000, vocabSize: 50257, contextLength: 1024 });
    expect(r.seed).toBe(7);
    for (let i = 1; i < r.spec.blocks.length; i++) expect(r.spec.blocks[i]!.width).toBeGreaterThanOrEqual(r.spec.blocks[i - 1]!.width);
  });

  it('beats the uniform GPT-2-style design of the same parameter budget on entropy', () => {
    const r = searchArchitecture({ budgets: { params: 64e6 }, iterations: 20000 });
    const baseline = uniformGpt2Design(64e6)!;
    expect(countParameters(baseline)).toBeLessThanOrEqual(64e6);
    expect(r.entropy).toBeGreaterThan(networkEntropy(baseline).entropy);
  });

  it('honours a fixed embedding width, weight sharing and custom vocabularies', () => {
    const r = searchArchitecture({ budgets: { params: 20e6 }, embeddingWidth: 256, weightSharing: 'always', vocabSize: 8000, contextLength: 256, iterations: 3000 });
    expect(r.spec.embeddingWidth).toBe(256);
    expect(r.spec.vocabSize).toBe(8000);
    expect(r.params).toBeLessThanOrEqual(20e6);
    expect(r.spec.blocks.some((b) => b.layers > 1)).toBe(true);
    expect(r.spec.blocks.filter((b) => b.layers > 1).every((b) => b.shareWeights)).toBe(true);
  });

  it('reports progress up to the iteration count', () => {
    const seen: number[] = [];
    searchArchitecture({ iterations: 9000, budgets: { params: 30e6 }, onProgress: (done, total) => seen.push(done / total) });
    expect(seen[0]).toBe(0);
    expect(seen[seen.length - 1]).toBe(1);
  });
});

// The serving slot: a swap never disposes a model while a request still uses it.
import { describe, expect, it } from 'vitest';
import { ModelHolder } from '../../edge-agent/model-holder.ts';
import type { ServedModel } from '../../edge-agent/model-runtime.ts';

function model(version: string, disposed: string[]): ServedModel {
  return {
    ref: { modelId: 'm', version },
    generate: async () => ({ tokens: 0, promptTokens: 0, finishReason: 'length' as const, firstTokenMs: 0, tokensPerSecond: 0, totalMs: 0 }),
    dispose: async () => void disposed.push(version),
  };
}

describe('ModelHolder', () => {
  it('disposes the old model only after its last request is released', async () => {
    const disposed: string[] = [];
    const h = new ModelHolder();
    expect(h.acquire()).toBeNull();
    h.swap(model('1', disposed));
    const a = h.acquire()!;
    const b = h.acquire()!;
    h.swap(model('2', disposed));
    expect(h.acquire()!.model.ref.version).toBe('2');
    a.release();
    a.release(); // double release is harmless
    expect(disposed).toEqual([]);
    b.release();
    await Promise.resolve();
    expect(disposed).toEqual(['1']);
  });

  it('disposes an idle model at once', async () => {
    const disposed: string[] = [];
    const h = new ModelHolder();
    h.swap(model('1', disposed));
    h.swap(null);
    await Promise.resolve();
    expect(disposed).toEqual(['1']);
    expect(h.current).toBeNull();
  });
});

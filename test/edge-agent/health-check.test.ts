// The post-install health check against real onnxruntime sessions: a healthy model passes, a model whose
// logits are NaN (one NaN in the final norm gain) or flat (a zero gain) fails with its own code, and a
// runtime whose text has nothing printable in it is called degenerate.
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { HealthCheckSchema } from '../../contracts/job-document.ts';
import type { Manifest } from '../../contracts/manifest.ts';
import { runHealthCheck } from '../../edge-agent/health-check.ts';
import type { ModelRuntime, ServedModel } from '../../edge-agent/model-runtime.ts';
import { OnnxModelRuntime } from '../../edge-agent/onnx-model-runtime.ts';
import { parseArchSpec } from '../../models/arch/spec.ts';
import { initWeights } from '../../models/arch/weights.ts';
import { buildDecoderModel } from '../../models/onnx/build-decoder.ts';
import { saveOnnxModel } from '../../models/onnx/proto.ts';

const SPEC = parseArchSpec({ name: 'hc', vocabSize: 50257, contextLength: 64, blocks: [{ width: 16, ffnRatio: 2, layers: 1, heads: 2, headDim: 8 }], tiedHead: true });
const ref = { modelId: 'hc', version: '1' };
const manifest = { entry: 'model.onnx', tokenizer: { kind: 'gpt2-bpe' }, generation: {} } as unknown as Manifest;
const hc = HealthCheckSchema.parse({ maxTokens: 8 });
const dirs: Record<string, string> = {};

async function build(name: string, change: (gain: Float32Array) => void): Promise<void> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), `fleetlm-hc-${name}-`));
  const w = initWeights(SPEC, 5);
  change(w.get('final_ln.weight')!.data);
  await saveOnnxModel(buildDecoderModel(SPEC, w), path.join(dir, 'model.onnx'));
  dirs[name] = dir;
}

beforeAll(async () => {
  await build('healthy', () => {});
  await build('nan', (g) => (g[3] = Number.NaN));
  await build('flat', (g) => g.fill(0));
}, 60_000);

describe('runHealthCheck', () => {
  const runtime = new OnnxModelRuntime(1);

  it('passes a healthy model and hands it back loaded', async () => {
    const r = await runHealthCheck(runtime, dirs.healthy!, manifest, ref, hc, 60_000);
    expect(r.ok, JSON.stringify(r)).toBe(true);
    if (r.ok) await r.model.dispose();
  });

  it('fails NaN logits with HEALTH_NON_FINITE_LOGITS although generation itself runs', async () => {
    const r = await runHealthCheck(runtime, dirs.nan!, manifest, ref, hc, 60_000);
    expect(r).toMatchObject({ ok: false, code: 'HEALTH_NON_FINITE_LOGITS', stats: { tokens: 8 } });
    expect(!r.ok && r.reason).toMatch(/must be finite; \d+ of \d+ values over \d+ positions are NaN or infinite/);
  });

  it('fails flat logits with HEALTH_DEGENERATE_OUTPUT', async () => {
    const r = await runHealthCheck(runtime, dirs.flat!, manifest, ref, hc, 60_000);
    expect(r).toMatchObject({ ok: false, code: 'HEALTH_DEGENERATE_OUTPUT' });
    expect(!r.ok && r.reason).toMatch(/all equal at \d+ of \d+ positions/);
  });

  it('fails output with nothing printable in it (a runtime that cannot score logits)', async () => {
    let disposed = false;
    const model: ServedModel = {
      ref,
      async generate(_req, onToken) {
        for (let i = 0; i < 4; i++) onToken('\u0000\u0001');
        return { tokens: 4, promptTokens: 2, firstTokenMs: 1, tokensPerSecond: 100, totalMs: 5, finishReason: 'length' };
      },
      async dispose() {
        disposed = true;
      },
    };
    const fake: ModelRuntime = { load: async () => model };
    const r = await runHealthCheck(fake, '/nowhere', manifest, ref, hc, 60_000);
    expect(r).toMatchObject({ ok: false, code: 'HEALTH_DEGENERATE_OUTPUT' });
    expect(!r.ok && r.reason).toMatch(/printable character; got 4 tokens of "\\u0000\\u0001/);
    expect(disposed).toBe(true);
  });
});

// The local API in process with a real model (onnxruntime-node, a tiny built ONNX model with the demo
// BPE as a Hugging Face tokenizer.json + tokenizer_config.json chat template) and a real HTTP client:
// OpenAI-compatible completions and chat (JSON and SSE), stop sequences, max_tokens, seeds, caller
// errors as 4xx (413, 400) counted apart from device failures (5xx) in the prom-client metrics.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseWith } from '../../common/validate.ts';
import { ManifestSchema, type Manifest } from '../../contracts/manifest.ts';
import { InferenceServer, MAX_BODY_BYTES } from '../../edge-agent/inference-server.ts';
import { InferenceStats } from '../../edge-agent/inference-stats.ts';
import { ModelHolder } from '../../edge-agent/model-holder.ts';
import type { ServedModel } from '../../edge-agent/model-runtime.ts';
import { OnnxModelRuntime } from '../../edge-agent/onnx-model-runtime.ts';
import { parseArchSpec } from '../../models/arch/spec.ts';
import { buildModelFile } from '../../models/onnx/build-model-file.ts';
import { loadTokenizerFile } from '../../models/runtime/tokenizer-file.ts';
import { tempDir } from './agent-fixture.ts';

const DEMO_TOKENIZER = fileURLToPath(new URL('../../assets/demo-model/tokenizer.json', import.meta.url));
// The BPE's 4,096 ids and a short context, so a long prompt overflows it.
const SPEC = parseArchSpec({ name: 'api-test', vocabSize: 4096, contextLength: 64, blocks: [{ width: 16, ffnRatio: 2, layers: 1, heads: 2, headDim: 8 }], tiedHead: true });
const CHAT_TEMPLATE = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ 'assistant:' }}{% endif %}";
const ref = { modelId: 'api', version: '1.0.0' };

function manifest(tokenizer: Manifest['tokenizer']): Manifest {
  const files: Manifest['files'] = [{ name: 'model.onnx', size: 1, sha256: '0'.repeat(64), role: 'model' }];
  return parseWith(ManifestSchema, { format: 'fleetlm/manifest@1', modelId: ref.modelId, version: ref.version, createdAt: new Date().toISOString(), entry: 'model.onnx', files, tokenizer, generation: {} }, 'test manifest');
}

let dir: string;
let chatModel: ServedModel;
let plainModel: ServedModel;
const holder = new ModelHolder();
const stats = new InferenceStats();
let server: InferenceServer;
let base = '';

beforeAll(async () => {
  dir = await tempDir('fleetlm-api-');
  await buildModelFile(SPEC, { outPath: path.join(dir, 'model.onnx'), seed: 11, fused: false, externalData: 'never' });
  await fs.copyFile(DEMO_TOKENIZER, path.join(dir, 'tokenizer.json'));
  await fs.writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ eos_token: '<|endoftext|>', chat_template: CHAT_TEMPLATE }));
  const rt = new OnnxModelRuntime(1);
  chatModel = await rt.load(dir, manifest({ kind: 'huggingface', file: 'tokenizer.json', config: 'tokenizer_config.json' }), ref);
  plainModel = await rt.load(dir, manifest({ kind: 'huggingface', file: 'tokenizer.json' }), ref);
  holder.swap(chatModel);
  server = new InferenceServer({ host: '127.0.0.1', port: 0, maxConcurrent: 4, holder, stats, agentGauges: { modelRef: () => holder.current?.ref ?? null, mqttConnected: () => true, telemetryDropped: () => 0 } });
  base = `http://127.0.0.1:${await server.start()}`;
}, 60_000);

afterAll(async () => {
  await server?.stop();
  holder.swap(null);
  await plainModel?.dispose();
  await fs.rm(dir, { recursive: true, force: true });
});

async function post(route: string, body: unknown): Promise<{ status: number; json: Record<string, any> }> {
  const res = await fetch(`${base}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as Record<string, any> };
}

/** A plain fetch-based SSE reader: the `data:` payloads in order (the last is "[DONE]"). */
async function sse(route: string, body: unknown): Promise<{ status: number; contentType: string | null; events: string[] }> {
  const res = await fetch(`${base}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const events: string[] = [];
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let end: number;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      for (const line of block.split('\n')) if (line.startsWith('data: ')) events.push(line.slice(6));
    }
  }
  expect(buf).toBe('');
  return { status: res.status, contentType: res.headers.get('content-type'), events };
}

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? 0 : Number(line.slice(name.length + 1));
}

const PROMPT = 'Call me Ishmael. Some years ago';

describe('POST /v1/completions', () => {
  it('answers with an OpenAI text_completion: text, finish_reason length at max_tokens, usage', async () => {
    const r = await post('/v1/completions', { model: 'anything', prompt: PROMPT, max_tokens: 12, temperature: 0 });
    expect(r.status).toBe(200);
    const promptTokens = (await loadTokenizerFile(DEMO_TOKENIZER, null)).encode(PROMPT).length;
    expect(r.json).toMatchObject({ object: 'text_completion', model: 'api@1.0.0', usage: { prompt_tokens: promptTokens, completion_tokens: 12, total_tokens: promptTokens + 12 } });
    expect(r.json.id).toMatch(/^cmpl-[0-9a-f]{32}$/);
    expect(Number.isInteger(r.json.created)).toBe(true);
    expect(r.json.choices).toHaveLength(1);
    expect(r.json.choices[0]).toMatchObject({ index: 0, finish_reason: 'length' });
    // The same request to the model directly: the HTTP layer adds and loses nothing.
    let direct = '';
    await chatModel.generate({ prompt: PROMPT, maxTokens: 12, temperature: 0, topP: 1 }, (t) => (direct += t));
    expect(r.json.choices[0].text).toBe(direct);
    expect(direct.length).toBeGreaterThan(4);
  });

  it('cuts at a stop sequence (not included), finish_reason stop, streamed or not', async () => {
    const full = (await post('/v1/completions', { prompt: PROMPT, max_tokens: 12, temperature: 0 })).json.choices[0].text as string;
    const k = Math.floor(full.length / 2);
    const stop = full.slice(k, k + 2);
    const expected = full.slice(0, full.indexOf(stop));
    const r = await post('/v1/completions', { prompt: PROMPT, max_tokens: 12, temperature: 0, stop: [stop, 'never-seen'] });
    expect(r.json.choices[0]).toMatchObject({ text: expected, finish_reason: 'stop' });
    const s = await sse('/v1/completions', { prompt: PROMPT, max_tokens: 12, temperature: 0, stop, stream: true });
    expect(s.status).toBe(200);
    expect(s.contentType).toBe('text/event-stream');
    expect(s.events.at(-1)).toBe('[DONE]');
    const chunks = s.events.slice(0, -1).map((e) => JSON.parse(e) as { object: string; choices: Array<{ text: string; finish_reason: string | null }> });
    expect(chunks.every((c) => c.object === 'text_completion')).toBe(true);
    expect(chunks.map((c) => c.choices[0]!.text).join('')).toBe(expected);
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe('stop');
    expect(chunks.slice(0, -1).every((c) => c.choices[0]!.finish_reason === null)).toBe(true);
  });

  it('samples reproducibly with a seed', async () => {
    const a = await post('/v1/completions', { prompt: PROMPT, max_tokens: 10, temperature: 1.2, top_p: 0.95, seed: 42 });
    const b = await post('/v1/completions', { prompt: PROMPT, max_tokens: 10, temperature: 1.2, top_p: 0.95, seed: 42 });
    expect(a.json.choices[0].text).toBe(b.json.choices[0].text);
  });
});

describe('POST /v1/chat/completions', () => {
  const messages = [
    { role: 'system', content: 'You answer in one line.' },
    { role: 'user', content: [{ type: 'text', text: 'Who is ' }, { type: 'text', text: 'Ahab?' }] },
  ];

  it('applies the chat template and answers with a chat.completion', async () => {
    const r = await post('/v1/chat/completions', { model: 'api', messages, max_tokens: 6, temperature: 0 });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ object: 'chat.completion', model: 'api@1.0.0', choices: [{ index: 0, message: { role: 'assistant' }, finish_reason: 'length' }], usage: { completion_tokens: 6 } });
    expect(r.json.id).toMatch(/^chatcmpl-/);
    // The prompt is the template's rendering, tokenized: "system: ...\nuser: Who is Ahab?\nassistant:".
    const tok = await loadTokenizerFile(path.join(dir, 'tokenizer.json'), path.join(dir, 'tokenizer_config.json'));
    const rendered = 'system: You answer in one line.\nuser: Who is Ahab?\nassistant:';
    expect(tok.chatTemplate!.render([{ role: 'system', content: 'You answer in one line.' }, { role: 'user', content: 'Who is Ahab?' }])).toBe(rendered);
    expect(r.json.usage.prompt_tokens).toBe(tok.encode(rendered, { addSpecialTokens: false }).length);
    let direct = '';
    await chatModel.generate({ prompt: rendered, maxTokens: 6, temperature: 0, topP: 1 }, (t) => (direct += t));
    expect(r.json.choices[0].message.content).toBe(direct);
  });

  it('streams chat.completion.chunk deltas (role first), a finish chunk, usage when asked, then [DONE]', async () => {
    const whole = (await post('/v1/chat/completions', { messages, max_tokens: 6, temperature: 0 })).json.choices[0].message.content as string;
    const s = await sse('/v1/chat/completions', { messages, max_tokens: 6, temperature: 0, stream: true, stream_options: { include_usage: true } });
    expect(s.status).toBe(200);
    expect(s.events.at(-1)).toBe('[DONE]');
    const chunks = s.events.slice(0, -1).map((e) => JSON.parse(e) as { id: string; object: string; choices: Array<{ delta: { role?: string; content?: string }; finish_reason: string | null }>; usage?: { completion_tokens: number } });
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    expect(chunks.every((c) => c.object === 'chat.completion.chunk')).toBe(true);
    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
    const usage = chunks.at(-1)!;
    expect(usage.choices).toEqual([]);
    expect(usage.usage!.completion_tokens).toBe(6);
    const finish = chunks.at(-2)!;
    expect(finish.choices[0]).toMatchObject({ delta: {}, finish_reason: 'length' });
    expect(chunks.slice(0, -2).map((c) => c.choices[0]!.delta.content ?? '').join('')).toBe(whole);
  });

  it('refuses messages for a model without a chat template with 400, and n > 1', async () => {
    holder.swap(plainModel);
    try {
      const r = await post('/v1/chat/completions', { messages, max_tokens: 2 });
      expect(r.status).toBe(400);
      expect(r.json.error).toMatchObject({ type: 'invalid_request_error', code: 400 });
      expect(r.json.error.message).toMatch(/no chat template/);
    } finally {
      holder.swap(chatModel);
    }
    const n = await post('/v1/chat/completions', { messages, n: 2 });
    expect(n.status).toBe(400);
    expect(n.json.error.message).toMatch(/n/);
  });
});

describe('caller errors and device failures', () => {
  it('413 for a body over the limit (declared or streamed), 400 for a prompt longer than the context, counted as client errors', async () => {
    const before = { server: await metric('fleetlm_request_errors_total'), c413: await metric('fleetlm_request_client_errors_total{status="413"}'), c400: await metric('fleetlm_request_client_errors_total{status="400"}') };
    const big = await post('/v1/completions', JSON.stringify({ prompt: 'x'.repeat(MAX_BODY_BYTES + 10) }));
    expect(big.status).toBe(413);
    expect(big.json.error.message).toMatch(/request body exceeds 65536 bytes/);
    // Chunked, no content-length: refused once the limit passes.
    const chunk = new TextEncoder().encode('x'.repeat(16 * 1024));
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent++ < 8) c.enqueue(chunk);
        else c.close();
      },
    });
    const chunked = await fetch(`${base}/v1/generate`, { method: 'POST', body: stream, duplex: 'half' } as RequestInit);
    expect(chunked.status).toBe(413);
    const long = 'whale '.repeat(200);
    for (const stream of [false, true]) {
      const r = await post('/v1/completions', { prompt: long, max_tokens: 4, stream });
      expect(r.status).toBe(400);
      expect(r.json.error.message).toMatch(/context length is 64/);
    }
    const native = await post('/v1/generate', { prompt: long, maxTokens: 4 });
    expect(native.status).toBe(400);
    expect(native.json.error).toMatch(/context length is 64/);
    expect(await metric('fleetlm_request_client_errors_total{status="413"}')).toBe(before.c413 + 2);
    expect(await metric('fleetlm_request_client_errors_total{status="400"}')).toBe(before.c400 + 3);
    expect(await metric('fleetlm_request_errors_total')).toBe(before.server);
  });

  it('404 in OpenAI form for an unknown /v1 route; 500 counted as a device failure when the model breaks', async () => {
    const nf = await post('/v1/embeddings', { input: 'x' });
    expect(nf.status).toBe(404);
    expect(nf.json.error.type).toBe('not_found_error');
    const wrongMethod = await fetch(`${base}/v1/chat/completions`);
    expect(wrongMethod.status).toBe(405);
    expect(((await wrongMethod.json()) as { error: { type: string } }).error.type).toBe('invalid_request_error');
    const server = await metric('fleetlm_request_errors_total');
    // A model disposed under the holder fails every generation: the device's fault, not the caller's.
    const rt = new OnnxModelRuntime(1);
    const broken = await rt.load(dir, manifest({ kind: 'huggingface', file: 'tokenizer.json' }), ref);
    await broken.dispose();
    holder.swap(broken);
    try {
      const r = await post('/v1/completions', { prompt: PROMPT, max_tokens: 2 });
      expect(r.status).toBe(500);
      expect(r.json.error.type).toBe('server_error');
    } finally {
      holder.swap(chatModel);
    }
    expect(await metric('fleetlm_request_errors_total')).toBe(server + 1);
  });

  it('exposes prom-client summaries with _sum and _count, and the agent gauges', async () => {
    const text = await (await fetch(`${base}/metrics`)).text();
    expect(text).toMatch(/^# TYPE fleetlm_first_token_ms summary$/m);
    expect(text).toMatch(/^fleetlm_first_token_ms\{quantile="0.95"\} \d/m);
    expect(await metric('fleetlm_first_token_ms_count')).toBeGreaterThanOrEqual(8);
    expect(await metric('fleetlm_first_token_ms_sum')).toBeGreaterThan(0);
    expect(await metric('fleetlm_tokens_per_second_count')).toBeGreaterThanOrEqual(8);
    expect(await metric('fleetlm_generated_tokens_total')).toBeGreaterThan(50);
    expect(text).toMatch(/^fleetlm_model_info\{model_id="api",version="1.0.0"\} 1$/m);
    expect(text).toMatch(/^fleetlm_mqtt_connected 1$/m);
    expect(await metric('fleetlm_requests_in_flight')).toBe(0);
    expect(await metric('fleetlm_requests_total')).toBe(stats.requests);
  });
});

// End to end: a real agent process installs a bundle that ships a Hugging Face tokenizer.json and a
// tokenizer_config.json with a chat template ({ kind: 'huggingface' }), then an OpenAI-style client
// (plain fetch + an SSE reader) talks to its local API: chat and completions, streaming, stop
// sequences, max_tokens, and caller errors as 4xx in the metrics.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseArchSpec } from '../../models/arch/spec.ts';
import { AgentProcess, TestFleet, buildTestModel, tempDir } from './agent-fixture.ts';

const DEMO_TOKENIZER = fileURLToPath(new URL('../../assets/demo-model/tokenizer.json', import.meta.url));
// Context 256: ChatML markers are plain text to this BPE (~8 tokens each), so a chat prompt is ~60 tokens.
const SPEC = parseArchSpec({ name: 'chat-test', vocabSize: 4096, contextLength: 256, blocks: [{ width: 16, ffnRatio: 2, layers: 1, heads: 2, headDim: 8 }], tiedHead: true });
// ChatML, as Qwen2.5 and SmolLM2-Instruct write it (their tokenizer_config.json chat_template, trimmed).
const CHATML = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

let fleet: TestFleet;
let agent: AgentProcess;
let base = '';

beforeAll(async () => {
  fleet = await TestFleet.start();
  const model = await buildTestModel(5, SPEC);
  await fs.copyFile(DEMO_TOKENIZER, path.join(model.dir, 'tokenizer.json'));
  await fs.writeFile(path.join(model.dir, 'tokenizer_config.json'), JSON.stringify({ eos_token: '<|endoftext|>', chat_template: CHATML }));
  model.files.push({ name: 'tokenizer.json', path: path.join(model.dir, 'tokenizer.json') }, { name: 'tokenizer_config.json', path: path.join(model.dir, 'tokenizer_config.json') });
  const thing = 'chat-1';
  const arn = await fleet.createThing(thing);
  agent = await AgentProcess.start(fleet, thing, await tempDir('fleetlm-agent-chat-'));
  const doc = await fleet.publish('chat', '1.0.0', model, { tokenizer: { kind: 'huggingface', file: 'tokenizer.json', config: 'tokenizer_config.json' } });
  await fleet.createJob('chat-job-1', arn, doc);
  const exec = await fleet.waitTerminal('chat-job-1', thing);
  expect(exec.status).toBe('SUCCEEDED');
  base = `http://127.0.0.1:${agent.httpPort}`;
}, 120_000);

afterAll(async () => {
  await agent?.stop();
  await fleet?.stop();
});

async function post(route: string, body: unknown): Promise<{ status: number; json: Record<string, any> }> {
  const res = await fetch(`${base}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as Record<string, any> };
}

/** Reads an SSE response as the `data:` payloads in order. */
async function sse(route: string, body: unknown): Promise<string[]> {
  const res = await fetch(`${base}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('text/event-stream');
  const text = await res.text();
  expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
  return text
    .split('\n\n')
    .filter(Boolean)
    .map((block) => {
      expect(block.startsWith('data: ')).toBe(true);
      return block.slice(6);
    });
}

const messages = [
  { role: 'system', content: 'You are a ship’s log.' },
  { role: 'user', content: 'Where is the whale?' },
];

describe('OpenAI-compatible API on a real agent', () => {
  it('lists the served model and answers chat with the bundle’s template, JSON and SSE alike', async () => {
    const models = (await (await fetch(`${base}/v1/models`)).json()) as { data: Array<{ id: string }> };
    expect(models.data.map((m) => m.id)).toEqual(['chat@1.0.0']);
    const r = await post('/v1/chat/completions', { model: 'chat@1.0.0', messages, max_tokens: 5, temperature: 0 });
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(r.json).toMatchObject({ object: 'chat.completion', model: 'chat@1.0.0', choices: [{ index: 0, message: { role: 'assistant' }, finish_reason: 'length' }], usage: { completion_tokens: 5 } });
    // "<|im_start|>" is not in this BPE's vocabulary: it is encoded as text, so the prompt is long.
    expect(r.json.usage.prompt_tokens).toBeGreaterThan(10);
    const events = await sse('/v1/chat/completions', { messages, max_tokens: 5, temperature: 0, stream: true });
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as { object: string; choices: Array<{ delta: { role?: string; content?: string }; finish_reason: string | null }> });
    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe('length');
    expect(chunks.map((c) => c.choices[0]!.delta.content ?? '').join('')).toBe(r.json.choices[0].message.content);
  });

  it('honours stop sequences and max_tokens on /v1/completions', async () => {
    const full = await post('/v1/completions', { prompt: 'Call me Ishmael.', max_tokens: 10, temperature: 0 });
    expect(full.json.choices[0].finish_reason).toBe('length');
    expect(full.json.usage.completion_tokens).toBe(10);
    const text = full.json.choices[0].text as string;
    const stop = text.slice(Math.floor(text.length / 2), Math.floor(text.length / 2) + 2);
    const cut = await post('/v1/completions', { prompt: 'Call me Ishmael.', max_tokens: 10, temperature: 0, stop });
    expect(cut.json.choices[0]).toMatchObject({ text: text.slice(0, text.indexOf(stop)), finish_reason: 'stop' });
    const events = await sse('/v1/completions', { prompt: 'Call me Ishmael.', max_tokens: 10, temperature: 0, stop, stream: true });
    const streamed = events.slice(0, -1).map((e) => (JSON.parse(e) as { choices: Array<{ text: string }> }).choices[0]!.text).join('');
    expect(streamed).toBe(text.slice(0, text.indexOf(stop)));
  });

  it('answers 413 and 400 to caller errors and counts them apart from device failures', async () => {
    const big = await post('/v1/chat/completions', JSON.stringify({ messages: [{ role: 'user', content: 'x'.repeat(100_000) }] }));
    expect(big.status).toBe(413);
    const long = await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'whale '.repeat(400) }], max_tokens: 2 });
    expect(long.status).toBe(400);
    expect(long.json.error.message).toMatch(/context length is 256/);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/^fleetlm_request_client_errors_total\{status="413"\} 1$/m);
    expect(metrics).toMatch(/^fleetlm_request_client_errors_total\{status="400"\} 1$/m);
    expect(metrics).toMatch(/^fleetlm_request_errors_total 0$/m);
    expect(metrics).toMatch(/^fleetlm_model_info\{model_id="chat",version="1.0.0"\} 1$/m);
  });
});

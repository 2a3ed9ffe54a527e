// Local inference API on 127.0.0.1: POST /v1/generate (FleetLM's JSON or server-sent events), the
// OpenAI-compatible POST /v1/completions, POST /v1/chat/completions and GET /v1/models, GET /healthz,
// GET /metrics (Prometheus, via metrics.ts). Served by whatever model the holder has now. Caller errors
// are 4xx and counted apart from the device's own failures (5xx).
// https://html.spec.whatwg.org/multipage/server-sent-events.html
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { ValidationError, describeError } from '../common/errors.ts';
import { parseJsonWith } from '../common/validate.ts';
import type { InferenceStats } from './inference-stats.ts';
import type { AgentGauges } from './metrics.ts';
import type { ModelHolder } from './model-holder.ts';
import type { GenerateRequest, GenerationStats, ServedModel } from './model-runtime.ts';
import { OpenAiResponder, openAiError, parseChatRequest, parseCompletionRequest, type OpenAiRequest } from './openai-api.ts';

export const GenerateBodySchema = z
  .object({
    prompt: z.string().min(1).max(16_000),
    maxTokens: z.number().int().min(1).max(2048).default(64),
    temperature: z.number().min(0).max(10).default(0.8),
    topP: z.number().gt(0).max(1).default(0.95),
    stream: z.boolean().default(false),
  })
  .strict();

/** Largest request body accepted; a larger one gets 413. */
export const MAX_BODY_BYTES = 64 * 1024;
/** How much of an oversized body is read and thrown away so the client sees the 413 rather than a reset. */
const MAX_DRAIN_BYTES = 16 * MAX_BODY_BYTES;

export interface InferenceServerOptions {
  host: string;
  port: number;
  maxConcurrent: number;
  holder: ModelHolder;
  stats: InferenceStats;
  /** The agent's gauges for /metrics (model version, memory, MQTT link, telemetry drops). */
  agentGauges?: AgentGauges;
}

/** An HTTP status with its message: what the caller gets instead of a generic 500. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

type ErrorStyle = 'fleetlm' | 'openai';

/** The body as text; HttpError 413 once it passes MAX_BODY_BYTES (the rest is drained, not read). */
function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const tooLarge = (): HttpError => new HttpError(413, `request body exceeds ${MAX_BODY_BYTES} bytes`);
    const declared = Number(req.headers['content-length']);
    const chunks: Buffer[] = [];
    let size = 0;
    let over = Number.isFinite(declared) && declared > MAX_BODY_BYTES;
    // Answer at once when the declared length is already too big; keep draining so the client, still
    // sending, reads the answer instead of a reset connection.
    if (over) reject(tooLarge());
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (over) {
        if (size > MAX_DRAIN_BYTES) req.destroy();
        return;
      }
      if (size > MAX_BODY_BYTES) {
        over = true;
        chunks.length = 0;
        reject(tooLarge());
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => (over ? reject(tooLarge()) : resolve(Buffer.concat(chunks).toString('utf8'))));
    req.on('error', reject);
  });
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function errorBody(style: ErrorStyle, status: number, message: string): unknown {
  return style === 'openai' ? openAiError(status, message) : { error: message };
}

/** The status an error maps to: the caller's fault (4xx) or the device's (500). */
function statusOf(err: unknown): number {
  if (err instanceof HttpError) return err.status;
  if (err instanceof ValidationError) return 400;
  return 500;
}

const ROUTES = 'POST /v1/generate, POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /healthz, GET /metrics';

/** The name a served model answers to in OpenAI responses and GET /v1/models. */
export function servedModelName(model: Pick<ServedModel, 'ref'>): string {
  return `${model.ref.modelId}@${model.ref.version}`;
}

/** The local HTTP API; `start` resolves with the bound port. */
export class InferenceServer {
  private readonly server: http.Server;

  constructor(private readonly opts: InferenceServerOptions) {
    if (opts.agentGauges) opts.stats.metrics.watchAgent(opts.agentGauges);
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err) => {
        if (!res.headersSent) sendJson(res, 500, { error: describeError(err) });
        else res.end();
      });
    });
  }

  async start(): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port, this.opts.host, () => resolve());
    });
    return (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Answers an error and counts it: 4xx as the caller's, 5xx as the device's. */
  private fail(res: http.ServerResponse, style: ErrorStyle, status: number, message: string): void {
    if (status >= 500) this.opts.stats.serverError();
    else this.opts.stats.clientError(status);
    // After a 413 the rest of the body is not wanted: close rather than read another request from it.
    sendJson(res, status, errorBody(style, status, message), status === 413 ? { connection: 'close' } : {});
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const { holder, stats } = this.opts;
    const route = `${req.method} ${url.pathname}`;
    switch (route) {
      case 'GET /healthz': {
        const m = holder.current;
        sendJson(res, m ? 200 : 503, m ? { status: 'ok', model: m.ref } : { status: 'no-model', model: null });
        return;
      }
      case 'GET /metrics': {
        const text = await stats.metrics.render();
        res.writeHead(200, { 'content-type': stats.metrics.contentType });
        res.end(text);
        return;
      }
      case 'GET /v1/models': {
        const m = holder.current;
        sendJson(res, 200, { object: 'list', data: m ? [{ id: servedModelName(m), object: 'model', created: 0, owned_by: 'fleetlm' }] : [] });
        return;
      }
      case 'POST /v1/generate':
      case 'POST /v1/completions':
      case 'POST /v1/chat/completions':
        break;
      default: {
        const known = ['/v1/generate', '/v1/completions', '/v1/chat/completions'].includes(url.pathname);
        if (known) this.fail(res, url.pathname === '/v1/generate' ? 'fleetlm' : 'openai', 405, `use POST for ${url.pathname}`);
        else this.fail(res, url.pathname.startsWith('/v1/') ? 'openai' : 'fleetlm', 404, `no route ${route}; routes: ${ROUTES}`);
        return;
      }
    }
    const style: ErrorStyle = url.pathname === '/v1/generate' ? 'fleetlm' : 'openai';
    stats.received();
    let parsed: { native: z.output<typeof GenerateBodySchema> } | { openai: OpenAiRequest };
    try {
      const text = await readBody(req);
      if (url.pathname === '/v1/generate') parsed = { native: parseJsonWith(GenerateBodySchema, text, 'generate request') };
      else parsed = { openai: url.pathname === '/v1/completions' ? parseCompletionRequest(text) : parseChatRequest(text) };
    } catch (err) {
      this.fail(res, style, statusOf(err), describeError(err));
      return;
    }
    if (stats.inFlight >= this.opts.maxConcurrent) {
      stats.reject();
      sendJson(res, 429, errorBody(style, 429, `too many requests in flight (limit ${this.opts.maxConcurrent})`));
      return;
    }
    const lease = holder.acquire();
    if (!lease) {
      stats.reject();
      sendJson(res, 503, errorBody(style, 503, 'no model installed yet'));
      return;
    }
    stats.running(1);
    const abort = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) abort.abort(new Error('client went away'));
    });
    try {
      if ('native' in parsed) await this.serveNative(res, lease.model, parsed.native, abort.signal);
      else await this.serveOpenAi(res, lease.model, parsed.openai, abort.signal);
    } catch (err) {
      const status = statusOf(err);
      if (!res.headersSent) {
        this.fail(res, style, status, describeError(err));
      } else {
        // Mid-stream: the status line is gone; say so in the stream's own error form.
        if (status >= 500) stats.serverError();
        else stats.clientError(status);
        const body = errorBody(style, status, describeError(err));
        // OpenAI-style streams still end with [DONE] (as vLLM's do), so clients stop reading.
        res.end(style === 'openai' ? `data: ${JSON.stringify(body)}\n\ndata: [DONE]\n\n` : `event: error\ndata: ${JSON.stringify(body)}\n\n`);
      }
    } finally {
      stats.running(-1);
      lease.release();
    }
  }

  private record(s: GenerationStats): void {
    this.opts.stats.record(s.firstTokenMs, s.tokensPerSecond, s.tokens, s.promptTokens);
  }

  /** POST /v1/generate: FleetLM's own format. */
  private async serveNative(res: http.ServerResponse, model: ServedModel, body: z.output<typeof GenerateBodySchema>, signal: AbortSignal): Promise<void> {
    const req: GenerateRequest = { prompt: body.prompt, maxTokens: body.maxTokens, temperature: body.temperature, topP: body.topP };
    if (!body.stream) {
      let text = '';
      const s = await model.generate(req, (t) => (text += t), signal);
      this.record(s);
      sendJson(res, 200, { text, model: model.ref, usage: { promptTokens: s.promptTokens, completionTokens: s.tokens }, finishReason: s.finishReason, timing: s });
      return;
    }
    // Headers go out with the first token: a prompt the model refuses still gets its 400.
    const start = (): void => {
      if (!res.headersSent) res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    };
    const s = await model.generate(req, (text) => {
      start();
      res.write(`event: token\ndata: ${JSON.stringify({ text })}\n\n`);
    }, signal);
    this.record(s);
    start();
    res.end(`event: done\ndata: ${JSON.stringify({ model: model.ref, usage: { promptTokens: s.promptTokens, completionTokens: s.tokens }, finishReason: s.finishReason, timing: s })}\n\n`);
  }

  /** POST /v1/completions and /v1/chat/completions. */
  private async serveOpenAi(res: http.ServerResponse, model: ServedModel, r: OpenAiRequest, signal: AbortSignal): Promise<void> {
    const responder = new OpenAiResponder(r.kind, servedModelName(model));
    if (!r.stream) {
      let text = '';
      const s = await model.generate(r.generate, (t) => (text += t), signal);
      this.record(s);
      sendJson(res, 200, responder.complete(text, s));
      return;
    }
    let first = true;
    const send = (obj: unknown): void => {
      if (!res.headersSent) res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
      res.write(`data: ${JSON.stringify(obj)}\n\n`);
    };
    const s = await model.generate(r.generate, (text) => {
      send(responder.chunk(text, first));
      first = false;
    }, signal);
    this.record(s);
    if (first) send(responder.chunk('', true));
    for (const c of responder.finalChunks(s, r.includeUsage)) send(c);
    res.end('data: [DONE]\n\n');
  }
}

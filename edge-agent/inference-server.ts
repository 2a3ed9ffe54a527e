// Local inference API on 127.0.0.1: POST /v1/generate (JSON or server-sent events), GET /healthz,
// GET /metrics (Prometheus text exposition format 0.0.4). Served by whatever model the holder has now.
// https://html.spec.whatwg.org/multipage/server-sent-events.html
// https://prometheus.io/docs/instrumenting/exposition_formats/
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { ValidationError, describeError } from '../common/errors.ts';
import { parseJsonWith } from '../common/validate.ts';
import type { InferenceStats } from './inference-stats.ts';
import type { ModelHolder } from './model-holder.ts';

export const GenerateBodySchema = z
  .object({
    prompt: z.string().min(1).max(16_000),
    maxTokens: z.number().int().min(1).max(2048).default(64),
    temperature: z.number().min(0).max(10).default(0.8),
    topP: z.number().gt(0).max(1).default(0.95),
    stream: z.boolean().default(false),
  })
  .strict();

const MAX_BODY = 64 * 1024;

export interface InferenceServerOptions {
  host: string;
  port: number;
  maxConcurrent: number;
  holder: ModelHolder;
  stats: InferenceStats;
  /** Extra gauges for /metrics (RSS, model info, telemetry drops). */
  extraMetrics?: () => string;
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new ValidationError(`request body exceeds ${MAX_BODY} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Prometheus text for the counters and percentiles in `stats`. */
export function renderMetrics(stats: InferenceStats, extra = ''): string {
  const lines: string[] = [
    '# HELP fleetlm_requests_total Generate requests received.',
    '# TYPE fleetlm_requests_total counter',
    `fleetlm_requests_total ${stats.requests}`,
    '# HELP fleetlm_request_errors_total Generate requests that failed.',
    '# TYPE fleetlm_request_errors_total counter',
    `fleetlm_request_errors_total ${stats.errors}`,
    '# HELP fleetlm_requests_rejected_total Requests refused (no model or too many in flight).',
    '# TYPE fleetlm_requests_rejected_total counter',
    `fleetlm_requests_rejected_total ${stats.rejected}`,
    '# HELP fleetlm_generated_tokens_total Tokens generated.',
    '# TYPE fleetlm_generated_tokens_total counter',
    `fleetlm_generated_tokens_total ${stats.tokens}`,
    '# HELP fleetlm_requests_in_flight Generations running now.',
    '# TYPE fleetlm_requests_in_flight gauge',
    `fleetlm_requests_in_flight ${stats.inFlight}`,
  ];
  const ft = stats.firstTokenMs();
  const tps = stats.tokensPerSecond();
  lines.push('# HELP fleetlm_first_token_ms First-token latency over recent requests.', '# TYPE fleetlm_first_token_ms summary');
  if (ft) lines.push(`fleetlm_first_token_ms{quantile="0.5"} ${ft.p50}`, `fleetlm_first_token_ms{quantile="0.95"} ${ft.p95}`);
  lines.push('# HELP fleetlm_tokens_per_second Decode speed over recent requests.', '# TYPE fleetlm_tokens_per_second summary');
  if (tps) lines.push(`fleetlm_tokens_per_second{quantile="0.5"} ${tps.p50}`, `fleetlm_tokens_per_second{quantile="0.95"} ${tps.p95}`);
  return `${lines.join('\n')}\n${extra}`;
}

/** Escapes a Prometheus label value. */
export function labelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** The local HTTP API; `start` resolves with the bound port. */
export class InferenceServer {
  private readonly server: http.Server;

  constructor(private readonly opts: InferenceServerOptions) {
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

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const { holder, stats } = this.opts;
    if (url.pathname === '/healthz' && req.method === 'GET') {
      const m = holder.current;
      sendJson(res, m ? 200 : 503, m ? { status: 'ok', model: m.ref } : { status: 'no-model', model: null });
      return;
    }
    if (url.pathname === '/metrics' && req.method === 'GET') {
      const text = renderMetrics(stats, this.opts.extraMetrics?.() ?? '');
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
      res.end(text);
      return;
    }
    if (url.pathname !== '/v1/generate') {
      sendJson(res, 404, { error: `no route ${req.method} ${url.pathname}; routes: POST /v1/generate, GET /healthz, GET /metrics` });
      return;
    }
    if (req.method !== 'POST') {
      sendJson(res, 405, { error: 'use POST' });
      return;
    }
    stats.requests++;
    let body: z.output<typeof GenerateBodySchema>;
    try {
      body = parseJsonWith(GenerateBodySchema, await readBody(req), 'generate request');
    } catch (err) {
      stats.errors++;
      sendJson(res, 400, { error: describeError(err) });
      return;
    }
    if (stats.inFlight >= this.opts.maxConcurrent) {
      stats.rejected++;
      sendJson(res, 429, { error: `too many requests in flight (limit ${this.opts.maxConcurrent})` });
      return;
    }
    const lease = holder.acquire();
    if (!lease) {
      stats.rejected++;
      sendJson(res, 503, { error: 'no model installed yet' });
      return;
    }
    stats.inFlight++;
    const abort = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) abort.abort(new Error('client went away'));
    });
    const model = lease.model;
    try {
      if (body.stream) {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
        const s = await model.generate(body, (text) => res.write(`event: token\ndata: ${JSON.stringify({ text })}\n\n`), abort.signal);
        stats.record(s.firstTokenMs, s.tokensPerSecond, s.tokens);
        res.write(`event: done\ndata: ${JSON.stringify({ model: model.ref, usage: { completionTokens: s.tokens }, timing: s })}\n\n`);
        res.end();
      } else {
        let text = '';
        const s = await model.generate(body, (t) => {
          text += t;
        }, abort.signal);
        stats.record(s.firstTokenMs, s.tokensPerSecond, s.tokens);
        sendJson(res, 200, { text, model: model.ref, usage: { completionTokens: s.tokens }, timing: s });
      }
    } catch (err) {
      stats.errors++;
      if (!res.headersSent) sendJson(res, 500, { error: describeError(err) });
      else {
        res.write(`event: error\ndata: ${JSON.stringify({ error: describeError(err) })}\n\n`);
        res.end();
      }
    } finally {
      stats.inFlight--;
      lease.release();
    }
  }
}

// `fleetlm console`'s HTTP server on loopback: the page (console/web), its esbuild bundle (dist/console) and a
// JSON API over ConsoleApi. Actions (cancel, rollback) are off unless enabled, and then need the per-start
// token the page carries in a header, so another site open in the browser cannot trigger them (no CORS).
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FleetError, TransportError, ValidationError, describeError } from '../common/errors.ts';
import type { ConsoleApi } from './console-api.ts';

export interface ConsoleServerOptions {
  api: ConsoleApi;
  /** TCP port on 127.0.0.1 (default: a free one). */
  port?: number;
  /** Enables cancel and rollback (each still asks for confirmation in the page). */
  actions?: boolean;
  /** Folder of index.html and style.css (default: console/web beside this checkout). */
  webDir?: string;
  /** Folder of the browser bundle app.js/app.css (default: dist/console, written by `npm run build`). */
  bundleDir?: string;
  onError?(err: unknown): void;
}

export interface ConsoleServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

// Both this file (console/server.ts) and the CLI bundle (dist/*.mjs) sit one folder below the repository root.
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const DEFAULT_WEB_DIR = path.join(ROOT, 'console', 'web');
export const DEFAULT_BUNDLE_DIR = path.join(ROOT, 'dist', 'console');

const STATIC: Record<string, { dir: 'web' | 'bundle'; file: string; type: string }> = {
  '/': { dir: 'web', file: 'index.html', type: 'text/html; charset=utf-8' },
  '/style.css': { dir: 'web', file: 'style.css', type: 'text/css; charset=utf-8' },
  '/app.js': { dir: 'bundle', file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/app.css': { dir: 'bundle', file: 'app.css', type: 'text/css; charset=utf-8' },
};

const NAME = /^[a-zA-Z0-9:_-]{1,128}$/;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Starts the console server on 127.0.0.1. */
export async function startConsoleServer(options: ConsoleServerOptions): Promise<ConsoleServer> {
  const { api } = options;
  const webDir = options.webDir ?? DEFAULT_WEB_DIR;
  const bundleDir = options.bundleDir ?? DEFAULT_BUNDLE_DIR;
  const token = randomBytes(24).toString('base64url');
  let port = 0;

  const name = (raw: string, what: string): string => {
    if (!NAME.test(raw)) throw new HttpError(400, `${what} must be 1-128 characters of [a-zA-Z0-9:_-]; got ${JSON.stringify(raw)}`);
    return raw;
  };

  function send(res: ServerResponse, status: number, type: string, body: string | Buffer): void {
    res.writeHead(status, {
      'content-type': type,
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      // Only this origin's own script and styles; no inline script, no framing.
      'content-security-policy': "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    });
    res.end(body);
  }
  const json = (res: ServerResponse, status: number, value: unknown) => send(res, status, 'application/json', JSON.stringify(value));

  async function serveStatic(res: ServerResponse, entry: (typeof STATIC)[string]): Promise<void> {
    const file = path.join(entry.dir === 'web' ? webDir : bundleDir, entry.file);
    let body: Buffer;
    try {
      body = await readFile(file);
    } catch (err) {
      const hint = entry.dir === 'bundle' ? ': run `npm run build` to write the console bundle' : '';
      throw new HttpError(500, `cannot read ${file}${hint} (${(err as Error).message})`);
    }
    if (entry.file === 'index.html') {
      // The page reads its settings from meta tags (the CSP allows no inline script).
      body = Buffer.from(
        body
          .toString('utf8')
          .replace('{{TOKEN}}', options.actions ? token : '')
          .replace('{{PROFILE}}', `${api.profile.kind} (${api.profile.source.replace(/[<>"&]/g, '')})`),
      );
    }
    send(res, 200, entry.type, body);
  }

  function checkToken(req: IncomingMessage): void {
    if (!options.actions) throw new HttpError(403, 'actions are disabled: start the console with --actions to cancel or roll back from it');
    const given = Buffer.from(String(req.headers['x-fleetlm-token'] ?? ''));
    const want = Buffer.from(token);
    if (given.length !== want.length || !timingSafeEqual(given, want)) throw new HttpError(403, 'missing or wrong x-fleetlm-token header');
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // DNS rebinding: a page from another name that resolves to 127.0.0.1 must not read the API.
    const host = String(req.headers.host ?? '');
    if (host !== `127.0.0.1:${port}` && host !== `localhost:${port}`) throw new HttpError(421, `unexpected Host ${JSON.stringify(host)}`);
    const url = new URL(req.url ?? '/', `http://${host}`);
    const p = url.pathname;
    if (req.method === 'GET') {
      const entry = STATIC[p];
      if (entry) return serveStatic(res, entry);
      if (p === '/api/profile') return json(res, 200, { ...api.profile, actions: options.actions === true });
      if (p === '/api/devices') return json(res, 200, await api.devices());
      if (p === '/api/jobs') return json(res, 200, { jobs: await api.jobs() });
      if (p === '/api/versions') return json(res, 200, { versions: await api.versions() });
      let m = /^\/api\/jobs\/([^/]+)$/.exec(p);
      if (m) return json(res, 200, await api.job(name(decodeURIComponent(m[1]!), 'job id')));
      m = /^\/api\/telemetry\/([^/]+)$/.exec(p);
      if (m) return json(res, 200, { thingName: m[1], points: await api.telemetry(name(decodeURIComponent(m[1]!), 'thing name')) });
    } else if (req.method === 'POST') {
      let m = /^\/api\/jobs\/([^/]+)\/cancel$/.exec(p);
      if (m) {
        checkToken(req);
        return json(res, 200, await api.cancel(name(decodeURIComponent(m[1]!), 'job id')));
      }
      m = /^\/api\/groups\/([^/]+)\/rollback$/.exec(p);
      if (m) {
        checkToken(req);
        return json(res, 200, await api.rollback(name(decodeURIComponent(m[1]!), 'group')));
      }
    }
    throw new HttpError(404, `no ${req.method} ${p}`);
  }

  const server = createServer((req, res) => {
    route(req, res).catch((err: unknown) => {
      // Operator-facing errors keep their text; anything else is logged and answered generically.
      if (err instanceof HttpError) return json(res, err.status, { error: err.message });
      if (err instanceof ValidationError) return json(res, 400, { error: err.message, code: err.code });
      if (err instanceof FleetError) return json(res, 502, { error: err.message, code: err.code });
      options.onError?.(err);
      json(res, 500, { error: describeError(err) });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new TransportError(`console could not listen on 127.0.0.1:${options.port ?? 0}: ${err.message}`, { cause: err })));
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

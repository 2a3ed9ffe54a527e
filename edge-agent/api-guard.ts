// Who may call the local API: a Host header naming this machine (DNS rebinding), no cross-site browser
// Origin, a JSON content type on POSTs (no "simple" cross-site form posts), and a Bearer token when set.
import { timingSafeEqual, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type http from 'node:http';
import { ValidationError } from '../common/errors.ts';
import { isLoopback } from './loopback.ts';

/** Why a request was refused: HTTP status and message. */
export interface Refusal {
  status: number;
  message: string;
}

/** Reads the API token from `http.apiToken` or `http.apiTokenFile` (first line, trimmed); undefined when neither is set. */
export function resolveApiToken(http: { apiToken?: string; apiTokenFile?: string }): string | undefined {
  if (http.apiToken !== undefined) return http.apiToken;
  if (http.apiTokenFile === undefined) return undefined;
  let text: string;
  try {
    text = readFileSync(http.apiTokenFile, 'utf8');
  } catch (err) {
    throw new ValidationError(`cannot read http.apiTokenFile ${http.apiTokenFile}: ${(err as Error).message}`, { code: 'VALIDATION_API_TOKEN' });
  }
  const token = text.split('\n')[0]!.trim();
  if (token.length < 16) throw new ValidationError(`http.apiTokenFile ${http.apiTokenFile} must hold a token of at least 16 characters`, { code: 'VALIDATION_API_TOKEN' });
  return token;
}

/** Throws unless binding `host` is safe: loopback, or any address with an API token. */
export function checkBindAddress(host: string, token: string | undefined): void {
  if (!isLoopback(host) && token === undefined) {
    throw new ValidationError(
      `http.host ${host} is not a loopback address; set http.apiToken or http.apiTokenFile so the local API is not open to the network`,
      { code: 'VALIDATION_API_TOKEN' },
    );
  }
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Checks one request; returns the refusal, or undefined when it may proceed. */
export function checkRequest(req: http.IncomingMessage, opts: { token?: string; path: string }): Refusal | undefined {
  if (opts.token === undefined) {
    // Without a token only this machine may call, and only by a loopback name: a rebound DNS name in a
    // browser (evil.example -> 127.0.0.1) arrives with Host: evil.example.
    const host = hostName(req.headers.host);
    if (host === undefined || !isLoopback(host)) {
      return { status: 421, message: `Host ${JSON.stringify(req.headers.host ?? '')} is not a loopback name; call the API as 127.0.0.1, localhost or [::1]` };
    }
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== 'null') {
      let originHost: string | undefined;
      try {
        originHost = new URL(origin).hostname;
      } catch {
        originHost = undefined;
      }
      if (originHost === undefined || !isLoopback(originHost)) return { status: 403, message: `cross-site requests (Origin ${origin}) are refused` };
    } else if (origin === 'null') {
      return { status: 403, message: 'requests from an opaque origin are refused' };
    }
  } else if (opts.path !== '/healthz') {
    const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
    // Compared as hashes so lengths never leak and timingSafeEqual gets equal-length inputs.
    if (!m || !timingSafeEqual(digest(m[1]!), digest(opts.token))) {
      return { status: 401, message: 'missing or wrong Authorization: Bearer token (http.apiToken)' };
    }
  }
  if (req.method === 'POST') {
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/json') return { status: 415, message: `POST bodies must be Content-Type: application/json, got ${JSON.stringify(type || 'none')}` };
  }
  return undefined;
}

/** The host name of a Host header (`name`, `name:port`, `[v6]:port`), or undefined when malformed. */
function hostName(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::\d{1,5})?$/.exec(header.trim());
  return m ? m[1]!.replace(/^\[(.*)\]$/, '$1').toLowerCase() : undefined;
}

// Which URLs a job document may make the agent fetch: only the configured artifact hosts, over https (plain
// http only to loopback, for the local hub). A job creator must not be able to aim the device at its LAN.
import { ValidationError } from '../common/errors.ts';
import { isLoopback } from './loopback.ts';

/** Refusal codes; the job status carries the code and the refused host, never anything fetched. */
export const URL_POLICY_CODES = {
  notAllowed: 'VALIDATION_URL_NOT_ALLOWED',
  redirect: 'VALIDATION_URL_REDIRECT',
} as const;

/**
 * The artifact hosts a device may download from. Entries are `host`, `host:port` or `*.suffix` (any
 * subdomain of suffix, any port); hosts compare case-insensitively.
 */
export class UrlPolicy {
  private readonly entries: ReadonlyArray<{ host: string; port?: string; suffix: boolean }>;

  constructor(readonly patterns: readonly string[]) {
    this.entries = patterns.map(parsePattern);
  }

  /** The parsed URL when `raw` may be fetched; throws VALIDATION_URL_NOT_ALLOWED naming only the host otherwise. */
  check(raw: string, what: string): URL {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw new ValidationError(`${what}: the URL is not a valid absolute URL`, { code: URL_POLICY_CODES.notAllowed });
    }
    const host = hostOf(url);
    if (url.username || url.password) {
      throw new ValidationError(`${what}: URLs with user information are refused`, { code: URL_POLICY_CODES.notAllowed });
    }
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopback(host))) {
      throw new ValidationError(`${what}: scheme ${url.protocol.replace(/:$/, '')} is refused (https, or http to loopback only)`, {
        code: URL_POLICY_CODES.notAllowed,
      });
    }
    if (!this.allows(url)) {
      throw new ValidationError(`${what}: host ${url.host} is not in download.allowedHosts; nothing was fetched`, { code: URL_POLICY_CODES.notAllowed });
    }
    return url;
  }

  private allows(url: URL): boolean {
    const host = hostOf(url);
    const port = url.port || (url.protocol === 'https:' ? '443' : '80');
    return this.entries.some((e) => {
      if (e.port !== undefined && e.port !== port) return false;
      return e.suffix ? host.endsWith(`.${e.host}`) : host === e.host;
    });
  }
}

/** `url`'s host name without IPv6 brackets, lower case. */
function hostOf(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase();
}

function parsePattern(p: string): { host: string; port?: string; suffix: boolean } {
  const suffix = p.startsWith('*.');
  const rest = suffix ? p.slice(2) : p;
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(rest);
  if (!m || m[1]!.length === 0) throw new ValidationError(`download.allowedHosts entry ${JSON.stringify(p)} must be host, host:port or *.domain`);
  return { host: m[1]!.replace(/^\[(.*)\]$/, '$1').toLowerCase(), ...(m[2] !== undefined ? { port: String(Number(m[2])) } : {}), suffix };
}

/** True when `pattern` is a valid download.allowedHosts entry. */
export function isHostPattern(pattern: string): boolean {
  try {
    parsePattern(pattern);
    return true;
  } catch {
    return false;
  }
}

/**
 * The artifact hosts allowed when download.allowedHosts is not set: loopback (any port) for a loopback
 * broker (the local hub), the region's S3 endpoints for an AWS IoT endpoint (`*.iot.<region>.amazonaws.com`),
 * and nothing otherwise (the agent then refuses every download until hosts are configured).
 */
export function defaultAllowedHosts(mqttHost: string): string[] {
  if (isLoopback(mqttHost)) return ['127.0.0.1', 'localhost', '[::1]'];
  const m = /\.iot\.([a-z]{2}(?:-[a-z]+)+-\d+)\.amazonaws\.com(\.cn)?$/.exec(mqttHost.toLowerCase());
  if (!m) return [];
  const [, region, cn = ''] = m;
  return [`s3.${region}.amazonaws.com${cn}`, `*.s3.${region}.amazonaws.com${cn}`, `s3.dualstack.${region}.amazonaws.com${cn}`, `*.s3.dualstack.${region}.amazonaws.com${cn}`];
}

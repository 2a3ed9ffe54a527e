// Verifies AWS Signature Version 4 (Authorization header or presigned query) for the S3 store and control plane.
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
// https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html
import { sha256Hex } from '../common/hash.ts';

export { sha256Hex };
import { createHmac, timingSafeEqual } from 'node:crypto';

export interface SignedRequest {
  method: string;
  /** Path and query exactly as received (still percent-encoded). */
  rawUrl: string;
  headers: Record<string, string | string[] | undefined>;
}

export interface VerifyOptions {
  service: string;
  /** Secret for an access key id, or undefined when the key is unknown. */
  secretFor(accessKeyId: string): string | undefined;
  /** S3 canonical URIs are encoded once; every other service encodes the path twice. */
  singleEncodePath: boolean;
  /**
   * Hex SHA-256 of the body as the server computed it, when the service signs the payload (the control
   * plane): the signature must cover this hash, whatever the x-amz-content-sha256 header says.
   */
  payloadHash?: string;
  now?: number;
}

export type VerifyResult =
  | { ok: true; accessKeyId: string }
  | { ok: false; reason: 'missing' | 'unknown-key' | 'expired' | 'mismatch' | 'malformed'; message: string };

const MAX_SKEW_MS = 15 * 60 * 1000;

/** RFC 3986 encoding as SigV4 wants it (unreserved characters stay, everything else %XX). */
function encode(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function decode(value: string): string {
  try {
    return decodeURIComponent(value.replace(/\+/g, '%20'));
  } catch {
    return value;
  }
}

function header(headers: SignedRequest['headers'], name: string): string | undefined {
  const v = headers[name.toLowerCase()];
  return Array.isArray(v) ? v.join(',') : v;
}

function parseAmzDate(value: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  if (!m) return Number.NaN;
  return Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!);
}

function hmac(key: Buffer | string, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

/** Verifies the request; never throws. */
export function verifySigV4(req: SignedRequest, options: VerifyOptions): VerifyResult {
  const q = req.rawUrl.indexOf('?');
  const rawPath = q < 0 ? req.rawUrl : req.rawUrl.slice(0, q);
  const rawQuery = q < 0 ? '' : req.rawUrl.slice(q + 1);
  const params: Array<[string, string]> = rawQuery
    .split('&')
    .filter((p) => p.length > 0)
    .map((p) => {
      const eq = p.indexOf('=');
      return eq < 0 ? [decode(p), ''] : [decode(p.slice(0, eq)), decode(p.slice(eq + 1))];
    });
  const param = (name: string) => params.find(([k]) => k === name)?.[1];

  let accessKeyId: string;
  let scope: string;
  let signedHeaders: string[];
  let signature: string;
  let amzDate: string;
  let payloadHash: string;
  let expiresSec: number | undefined;
  const now = options.now ?? Date.now();

  const auth = header(req.headers, 'authorization');
  if (param('X-Amz-Algorithm') !== undefined) {
    if (param('X-Amz-Algorithm') !== 'AWS4-HMAC-SHA256') return { ok: false, reason: 'malformed', message: 'X-Amz-Algorithm must be AWS4-HMAC-SHA256' };
    const credential = param('X-Amz-Credential') ?? '';
    const slash = credential.indexOf('/');
    accessKeyId = credential.slice(0, slash);
    scope = credential.slice(slash + 1);
    signedHeaders = (param('X-Amz-SignedHeaders') ?? '').split(';');
    signature = param('X-Amz-Signature') ?? '';
    amzDate = param('X-Amz-Date') ?? '';
    expiresSec = Number(param('X-Amz-Expires'));
    payloadHash = param('X-Amz-Content-Sha256') ?? 'UNSIGNED-PAYLOAD';
    if (slash <= 0 || !Number.isInteger(expiresSec) || expiresSec < 1 || expiresSec > 604800) {
      return { ok: false, reason: 'malformed', message: 'X-Amz-Credential and X-Amz-Expires (1-604800) are required' };
    }
  } else if (auth !== undefined) {
    const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/([^,]+), ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(auth.trim());
    if (!m) return { ok: false, reason: 'malformed', message: 'Authorization header is not an AWS4-HMAC-SHA256 signature' };
    accessKeyId = m[1]!;
    scope = m[2]!;
    signedHeaders = m[3]!.split(';');
    signature = m[4]!;
    amzDate = header(req.headers, 'x-amz-date') ?? '';
    const claimed = header(req.headers, 'x-amz-content-sha256');
    if (options.payloadHash !== undefined) {
      // The server hashed the body itself: sign over that hash, never over what the client claims,
      // so a captured request cannot carry another body under its signature.
      if (claimed !== undefined && claimed !== options.payloadHash) {
        return { ok: false, reason: 'mismatch', message: 'The x-amz-content-sha256 header does not match the SHA-256 of the request body' };
      }
      payloadHash = options.payloadHash;
    } else {
      payloadHash = claimed ?? '';
    }
  } else {
    return { ok: false, reason: 'missing', message: 'Request is not signed (no Authorization header or X-Amz-Signature)' };
  }

  const secret = options.secretFor(accessKeyId);
  if (secret === undefined) return { ok: false, reason: 'unknown-key', message: `Access key ${accessKeyId} is not known to this hub` };
  const signedAt = parseAmzDate(amzDate);
  if (Number.isNaN(signedAt)) return { ok: false, reason: 'malformed', message: `X-Amz-Date "${amzDate}" is not yyyyMMddTHHmmssZ` };
  if (expiresSec !== undefined) {
    if (now > signedAt + expiresSec * 1000) return { ok: false, reason: 'expired', message: 'Request has expired' };
    if (signedAt - now > MAX_SKEW_MS) return { ok: false, reason: 'expired', message: 'Request is signed in the future' };
  } else if (Math.abs(now - signedAt) > MAX_SKEW_MS) {
    return { ok: false, reason: 'expired', message: 'Signature is more than 15 minutes away from the server time' };
  }
  const [date, region, service, terminator] = scope.split('/');
  if (date !== amzDate.slice(0, 8) || !region || service !== options.service || terminator !== 'aws4_request') {
    return { ok: false, reason: 'malformed', message: `Credential scope ${scope} does not fit ${amzDate.slice(0, 8)}/<region>/${options.service}/aws4_request` };
  }

  const canonicalPath = options.singleEncodePath
    ? rawPath.split('/').map((seg) => encode(decode(seg))).join('/')
    : rawPath.split('/').map((seg) => encode(encode(decode(seg)))).join('/');
  const canonicalQuery = params
    .filter(([k]) => k !== 'X-Amz-Signature')
    .map(([k, v]) => [encode(k), encode(v)] as const)
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const canonicalHeaders = signedHeaders
    .map((name) => `${name}:${(header(req.headers, name) ?? '').trim().replace(/\s+/g, ' ')}\n`)
    .join('');
  const canonicalRequest = [req.method, canonicalPath || '/', canonicalQuery, canonicalHeaders, signedHeaders.join(';'), payloadHash].join('\n');
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256Hex(Buffer.from(canonicalRequest))].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), service), 'aws4_request');
  const expected = createHmac('sha256', key).update(stringToSign).digest();
  const given = Buffer.from(signature, 'hex');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return { ok: false, reason: 'mismatch', message: 'The request signature we calculated does not match the signature you provided' };
  }
  return { ok: true, accessKeyId };
}


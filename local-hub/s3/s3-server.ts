// The S3 protocol over HTTP for the hub's object store: SigV4 on every request, path-style routing to the
// operations FleetLM uses, and S3's headers, status codes and XML. Operations outside that subset answer 501.
// https://docs.aws.amazon.com/AmazonS3/latest/API/API_Operations_Amazon_Simple_Storage_Service.html
import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { describeError } from '../../common/errors.ts';
import { verifySigV4 } from '../sigv4.ts';
import { assertBucketName, assertObjectKey, unsafeObjectKey } from './object-keys.ts';
import { compareKeys, etagMatches, MAX_PART_NUMBER, type ObjectHeaders, type ObjectRecord, type ObjectStore, type WriteConditions } from './object-store.ts';
import { consumeBodyToFile, payloadModeOf, readSmallBody, type PayloadMode } from './request-body.ts';
import { S3Error, S3Errors } from './s3-error.ts';
import {
  completeMultipartUploadXml,
  deleteResultXml,
  errorXml,
  initiateMultipartUploadXml,
  listBucketsXml,
  listObjectsV2Xml,
  locationXml,
  parseCompleteMultipartUpload,
  parseDeleteObjects,
  type ListObjectsV2Result,
} from './s3-xml.ts';

/** S3's largest single PutObject and largest part. */
const MAX_PUT_BYTES = 5 * 2 ** 30;
/** Largest XML request body taken (10,000 parts of CompleteMultipartUpload fit). */
const MAX_XML_BYTES = 4 * 2 ** 20;
/** S3's limit on user metadata (names and values, in bytes). */
const MAX_METADATA_BYTES = 2048;

export interface S3ServerOptions {
  store: ObjectStore;
  region: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** Base URL of the server (for Location in CompleteMultipartUpload). */
  endpoint: () => string;
  /** Where unexpected failures are reported (the answer is a 500 InternalError). */
  onInternalError?: (err: unknown) => void;
}

/** A parsed, authenticated request. */
interface S3Request {
  req: IncomingMessage;
  method: string;
  headers: IncomingHttpHeaders;
  bucket: string | undefined;
  key: string | undefined;
  query: Map<string, string>;
  presigned: boolean;
}

/** Query parameters that select another S3 operation than the plain verb; those not handled here answer 501. */
const SUBRESOURCES = new Set([
  'accelerate', 'acl', 'analytics', 'attributes', 'cors', 'encryption', 'intelligent-tiering', 'inventory', 'legal-hold',
  'lifecycle', 'location', 'logging', 'metrics', 'notification', 'object-lock', 'ownershipControls', 'policy',
  'policyStatus', 'publicAccessBlock', 'replication', 'requestPayment', 'restore', 'retention', 'select', 'tagging',
  'torrent', 'versioning', 'versions', 'website', 'uploads', 'uploadId', 'partNumber', 'delete', 'versionId', 'list-type',
  'renameObject', 'session',
]);

function decodeQuery(value: string): string {
  try {
    return decodeURIComponent(value.replace(/\+/g, '%20'));
  } catch {
    throw new S3Error(400, 'InvalidURI', "Couldn't parse the specified URI.");
  }
}

function parseRequest(req: IncomingMessage): S3Request {
  const raw = req.url ?? '/';
  const q = raw.indexOf('?');
  const rawPath = q < 0 ? raw : raw.slice(0, q);
  const query = new Map<string, string>();
  for (const part of (q < 0 ? '' : raw.slice(q + 1)).split('&')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    const name = decodeQuery(eq < 0 ? part : part.slice(0, eq));
    if (!query.has(name)) query.set(name, eq < 0 ? '' : decodeQuery(part.slice(eq + 1)));
  }
  if (!rawPath.startsWith('/')) throw new S3Error(400, 'InvalidURI', "Couldn't parse the specified URI.");
  const rest = rawPath.slice(1);
  const slash = rest.indexOf('/');
  let bucket: string | undefined;
  let key: string | undefined;
  try {
    // Path-style only: the whole remainder after "/bucket/" is the key, percent-decoded once ("%2F" is "/").
    bucket = rest === '' ? undefined : decodeURIComponent(slash < 0 ? rest : rest.slice(0, slash));
    key = slash < 0 || slash === rest.length - 1 ? undefined : decodeURIComponent(rest.slice(slash + 1));
  } catch {
    throw new S3Error(400, 'InvalidURI', "Couldn't parse the specified URI.");
  }
  return { req, method: req.method ?? 'GET', headers: req.headers, bucket, key, query, presigned: query.has('X-Amz-Algorithm'), };
}

const AUTH_CODES = {
  missing: [403, 'AccessDenied'],
  'unknown-key': [403, 'InvalidAccessKeyId'],
  expired: [403, 'AccessDenied'],
  mismatch: [403, 'SignatureDoesNotMatch'],
  malformed: [400, 'AuthorizationQueryParametersError'],
} as const;

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}

/** Content headers and x-amz-meta-* of a PutObject or CreateMultipartUpload. */
function objectHeadersOf(headers: IncomingHttpHeaders): ObjectHeaders {
  const metadata: Record<string, string> = {};
  let metaBytes = 0;
  for (const [name, value] of Object.entries(headers)) {
    if (!name.startsWith('x-amz-meta-') || value === undefined) continue;
    const v = Array.isArray(value) ? value.join(',') : value;
    metadata[name.slice('x-amz-meta-'.length)] = v;
    metaBytes += Buffer.byteLength(name.slice('x-amz-meta-'.length)) + Buffer.byteLength(v);
  }
  if (metaBytes > MAX_METADATA_BYTES) throw new S3Error(400, 'MetadataTooLarge', `Your metadata headers exceed the maximum allowed metadata size (${MAX_METADATA_BYTES} bytes)`);
  // aws-chunked describes the request's transfer, not the object: S3 does not store it.
  const encoding = header(headers, 'content-encoding')
    ?.split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '' && e !== 'aws-chunked')
    .join(',');
  const out: ObjectHeaders = { metadata };
  const set = (field: Exclude<keyof ObjectHeaders, 'metadata'>, value: string | undefined) => {
    if (value !== undefined && value !== '') out[field] = value;
  };
  set('contentType', header(headers, 'content-type'));
  set('contentEncoding', encoding);
  set('contentDisposition', header(headers, 'content-disposition'));
  set('contentLanguage', header(headers, 'content-language'));
  set('cacheControl', header(headers, 'cache-control'));
  set('expires', header(headers, 'expires'));
  return out;
}

/** If-None-Match / If-Match of a write. https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html */
function writeConditionsOf(headers: IncomingHttpHeaders): WriteConditions {
  const cond: WriteConditions = {};
  const noneMatch = header(headers, 'if-none-match');
  if (noneMatch !== undefined) {
    if (noneMatch.trim() !== '*') throw S3Errors.notImplemented('If-None-Match with an ETag on a write (only "*" is)');
    cond.ifNoneMatchAny = true;
  }
  const match = header(headers, 'if-match');
  if (match !== undefined) cond.ifMatch = match;
  return cond;
}

/** The byte range a GET asks for: a range, 'unsatisfiable', or undefined for the whole object. https://www.rfc-editor.org/rfc/rfc9110#section-14.1.2 */
export function parseRange(value: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  if (value === undefined) return undefined;
  // One range only; S3 answers other forms (several ranges, other units, bad syntax) with the whole object.
  const m = /^bytes=(\d*)-(\d*)$/.exec(value.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  if (start >= size) return 'unsatisfiable';
  const end = m[2] === '' ? size - 1 : Number(m[2]);
  if (end < start) return undefined;
  return { start, end: Math.min(end, size - 1) };
}

/** Evaluates GET/HEAD preconditions in S3's order: 412, 304 or undefined (go on). */
function readPrecondition(headers: IncomingHttpHeaders, record: ObjectRecord): 412 | 304 | undefined {
  const modified = new Date(record.lastModified).getTime();
  const date = (name: string) => {
    const v = header(headers, name);
    const t = v === undefined ? Number.NaN : Date.parse(v);
    return Number.isNaN(t) ? undefined : t;
  };
  const ifMatch = header(headers, 'if-match');
  if (ifMatch !== undefined) {
    if (!etagMatches(ifMatch, record.etag)) return 412;
  } else {
    const unmodifiedSince = date('if-unmodified-since');
    if (unmodifiedSince !== undefined && modified > unmodifiedSince) return 412;
  }
  const ifNoneMatch = header(headers, 'if-none-match');
  if (ifNoneMatch !== undefined) {
    if (etagMatches(ifNoneMatch, record.etag)) return 304;
  } else {
    const modifiedSince = date('if-modified-since');
    if (modifiedSince !== undefined && modified <= modifiedSince) return 304;
  }
  return undefined;
}

function continuationToken(after: { key: string; prefix: boolean }): string {
  return Buffer.from(JSON.stringify(after)).toString('base64url');
}

function parseContinuationToken(token: string): { key: string; prefix: boolean } {
  try {
    const v = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as unknown;
    if (typeof v === 'object' && v !== null && typeof (v as { key?: unknown }).key === 'string' && typeof (v as { prefix?: unknown }).prefix === 'boolean') {
      return v as { key: string; prefix: boolean };
    }
  } catch {
    // falls through to the error below
  }
  throw S3Errors.invalidArgument('The continuation token provided is incorrect');
}

/** Builds the request handler of the S3 store. */
export function createS3Handler(options: S3ServerOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const { store } = options;
  const requireBucket = (bucket: string | undefined): string => {
    if (bucket === undefined) throw S3Errors.notImplemented('this request');
    assertBucketName(bucket);
    if (!store.hasBucket(bucket)) throw S3Errors.noSuchBucket(bucket);
    return bucket;
  };
  const mode = (r: S3Request): PayloadMode => payloadModeOf(r.headers, r.presigned);
  /** Reads and checks a request body the operation does not use (so a bad one is still refused). */
  const drainBody = async (r: S3Request) => {
    await readSmallBody(r.req, mode(r), MAX_XML_BYTES);
  };

  const send = (res: ServerResponse, status: number, headers: Record<string, string | number>, body?: string) => {
    res.writeHead(status, { ...headers, ...(body !== undefined ? { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) } : { 'content-length': 0 }) });
    res.end(body);
  };

  function objectResponseHeaders(record: ObjectRecord, r: S3Request): Record<string, string | number> {
    const h: Record<string, string | number> = {
      etag: record.etag,
      'last-modified': new Date(record.lastModified).toUTCString(),
      'accept-ranges': 'bytes',
      'content-type': record.contentType ?? 'binary/octet-stream',
    };
    if (record.contentEncoding) h['content-encoding'] = record.contentEncoding;
    if (record.contentDisposition) h['content-disposition'] = record.contentDisposition;
    if (record.contentLanguage) h['content-language'] = record.contentLanguage;
    if (record.cacheControl) h['cache-control'] = record.cacheControl;
    if (record.expires) h.expires = record.expires;
    if (record.partsCount !== undefined && r.query.has('partNumber')) h['x-amz-mp-parts-count'] = record.partsCount;
    for (const [k, v] of Object.entries(record.metadata)) h[`x-amz-meta-${k}`] = v;
    // Response header overrides of a signed GET. https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html
    for (const name of ['content-type', 'content-language', 'expires', 'cache-control', 'content-disposition', 'content-encoding']) {
      const v = r.query.get(`response-${name}`);
      if (v !== undefined) h[name] = v;
    }
    return h;
  }

  async function getOrHeadObject(r: S3Request, res: ServerResponse, bucket: string, key: string): Promise<void> {
    if (r.query.has('partNumber')) throw S3Errors.notImplemented('GetObject with partNumber');
    const head = r.method === 'HEAD';
    const opened = head ? { record: store.head(bucket, key), handle: undefined } : await store.open(bucket, key);
    const record = opened.record;
    if (!record) throw S3Errors.noSuchKey(key);
    try {
      const headers = objectResponseHeaders(record, r);
      const pre = readPrecondition(r.headers, record);
      if (pre === 412) throw S3Errors.preconditionFailed(header(r.headers, 'if-match') !== undefined ? 'If-Match' : 'If-Unmodified-Since');
      if (pre === 304) {
        res.writeHead(304, { etag: record.etag, 'last-modified': String(headers['last-modified']) });
        res.end();
        return;
      }
      const range = parseRange(header(r.headers, 'range'), record.size);
      if (range === 'unsatisfiable') {
        throw new S3Error(416, 'InvalidRange', 'The requested range is not satisfiable', { RangeRequested: header(r.headers, 'range') ?? '', ActualObjectSize: String(record.size) });
      }
      if (!range && record.checksum && header(r.headers, 'x-amz-checksum-mode') === 'ENABLED') {
        headers[`x-amz-checksum-${record.checksum.name}`] = record.checksum.value;
        headers['x-amz-checksum-type'] = 'FULL_OBJECT';
      }
      const start = range?.start ?? 0;
      const end = range?.end ?? record.size - 1;
      if (range) headers['content-range'] = `bytes ${start}-${end}/${record.size}`;
      headers['content-length'] = record.size === 0 ? 0 : end - start + 1;
      res.writeHead(range ? 206 : 200, headers);
      if (head || !opened.handle || record.size === 0) {
        res.end();
        return;
      }
      const stream = opened.handle.createReadStream({ start, end, autoClose: false });
      await pipeline(stream, res);
    } finally {
      await opened.handle?.close();
    }
  }

  async function putObject(r: S3Request, res: ServerResponse, bucket: string, key: string): Promise<void> {
    if (r.headers['x-amz-copy-source'] !== undefined) throw S3Errors.notImplemented('CopyObject');
    assertObjectKey(key);
    const cond = writeConditionsOf(r.headers);
    store.precheck(bucket, key, cond);
    const fields = objectHeadersOf(r.headers);
    const { staged, body } = await receiveStaged(r);
    const record = await store.commitObject(bucket, key, staged, { ...fields, size: body.size, etag: `"${body.md5Hex}"`, ...(body.checksum ? { checksum: body.checksum } : {}) }, cond);
    send(res, 200, { etag: record.etag, ...(body.checksum ? { [`x-amz-checksum-${body.checksum.name}`]: body.checksum.value } : {}) });
  }

  /** Receives a request body into a staged file (discarded if the body fails its checks). */
  async function receiveStaged(r: S3Request) {
    const payload = mode(r);
    const staged = await store.stage();
    try {
      return { staged, body: await consumeBodyToFile(r.req, payload, MAX_PUT_BYTES, staged.handle) };
    } catch (err) {
      await store.discard(staged);
      throw err;
    }
  }

  async function uploadPart(r: S3Request, res: ServerResponse, bucket: string, key: string): Promise<void> {
    if (r.headers['x-amz-copy-source'] !== undefined) throw S3Errors.notImplemented('UploadPartCopy');
    const uploadId = r.query.get('uploadId')!;
    const n = r.query.get('partNumber')!;
    if (!/^\d{1,5}$/.test(n) || Number(n) < 1 || Number(n) > MAX_PART_NUMBER) throw S3Errors.invalidArgument(`Part number must be an integer between 1 and ${MAX_PART_NUMBER}, inclusive`);
    await store.assertUpload(bucket, key, uploadId);
    const { staged, body } = await receiveStaged(r);
    const etag = `"${body.md5Hex}"`;
    await store.commitPart(bucket, key, uploadId, Number(n), staged, { size: body.size, etag });
    send(res, 200, { etag, ...(body.checksum ? { [`x-amz-checksum-${body.checksum.name}`]: body.checksum.value } : {}) });
  }

  async function listObjectsV2(r: S3Request, res: ServerResponse, bucket: string): Promise<void> {
    const q = r.query;
    const prefix = q.get('prefix') ?? '';
    const delimiter = q.get('delimiter') || undefined;
    const maxKeysText = q.get('max-keys') ?? '1000';
    if (!/^\d+$/.test(maxKeysText)) throw S3Errors.invalidArgument('Provided max-keys not an integer or within integer range');
    const maxKeys = Math.min(1000, Number(maxKeysText));
    const encodingType = q.get('encoding-type');
    if (encodingType !== undefined && encodingType !== 'url') throw S3Errors.invalidArgument(`Invalid Encoding Method specified in Request: ${encodingType}`);
    const token = q.get('continuation-token');
    const startAfter = q.get('start-after');
    if (token === '') throw S3Errors.invalidArgument('The continuation token provided is incorrect');
    const after = token !== undefined ? parseContinuationToken(token) : startAfter ? { key: startAfter, prefix: false } : undefined;
    const contents: ObjectRecord[] = [];
    const commonPrefixes: string[] = [];
    let last: { key: string; prefix: boolean } | undefined;
    let truncated = false;
    for (const o of maxKeys === 0 ? [] : store.sortedKeys(bucket)) {
      if (!o.key.startsWith(prefix)) continue;
      if (after && (compareKeys(o.key, after.key) <= 0 || (after.prefix && o.key.startsWith(after.key)))) continue;
      let common: string | undefined;
      if (delimiter) {
        const i = o.key.indexOf(delimiter, prefix.length);
        if (i >= 0) common = o.key.slice(0, i + delimiter.length);
      }
      if (common !== undefined && commonPrefixes.at(-1) === common) continue;
      if (contents.length + commonPrefixes.length >= maxKeys) {
        truncated = true;
        break;
      }
      if (common !== undefined) {
        commonPrefixes.push(common);
        last = { key: common, prefix: true };
      } else {
        contents.push(o);
        last = { key: o.key, prefix: false };
      }
    }
    const result: ListObjectsV2Result = {
      bucket,
      prefix,
      maxKeys,
      contents: contents.map((o) => ({ key: o.key, lastModified: new Date(o.lastModified), etag: o.etag, size: o.size })),
      commonPrefixes,
      ...(delimiter !== undefined ? { delimiter } : {}),
      ...(encodingType === 'url' ? { encodingType: 'url' as const } : {}),
      ...(startAfter !== undefined ? { startAfter } : {}),
      ...(token !== undefined ? { continuationToken: token } : {}),
      ...(truncated && last ? { nextContinuationToken: continuationToken(last) } : {}),
    };
    send(res, 200, {}, listObjectsV2Xml(result));
  }

  async function deleteObjects(r: S3Request, res: ServerResponse, bucket: string): Promise<void> {
    const body = await readSmallBody(r.req, mode(r), MAX_XML_BYTES);
    const { keys, quiet } = parseDeleteObjects(body.toString('utf8'));
    if (keys.length > 1000) throw S3Errors.malformedXml();
    const deleted: string[] = [];
    const failed: Array<{ key: string; code: string; message: string }> = [];
    for (const { key, versionId } of keys) {
      const problem = unsafeObjectKey(key);
      if (problem || versionId !== undefined) {
        failed.push({ key, code: problem ? 'InvalidArgument' : 'NotImplemented', message: problem ? `object key ${problem}` : 'versions are not implemented' });
        continue;
      }
      await store.deleteObject(bucket, key);
      if (!quiet) deleted.push(key);
    }
    send(res, 200, {}, deleteResultXml(deleted, failed));
  }

  async function completeUpload(r: S3Request, res: ServerResponse, bucket: string, key: string): Promise<void> {
    const cond = writeConditionsOf(r.headers);
    const body = await readSmallBody(r.req, mode(r), MAX_XML_BYTES);
    const parts = parseCompleteMultipartUpload(body.toString('utf8'));
    const record = await store.completeUpload(bucket, key, r.query.get('uploadId')!, parts, cond);
    const location = `${options.endpoint()}/${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
    send(res, 200, {}, completeMultipartUploadXml(location, bucket, key, record.etag));
  }

  /** Routes an authenticated request to its operation. */
  async function route(r: S3Request, res: ServerResponse): Promise<void> {
    const { method, bucket, key, query } = r;
    const handled = (...names: string[]) => {
      for (const name of query.keys()) if (SUBRESOURCES.has(name) && !names.includes(name)) throw S3Errors.notImplemented(`the ?${name} sub-resource with ${method}`);
    };
    if (bucket === undefined) {
      handled();
      if (method !== 'GET') throw new S3Error(405, 'MethodNotAllowed', 'The specified method is not allowed against this resource.');
      await drainBody(r);
      send(res, 200, {}, listBucketsXml(store.listBuckets()));
      return;
    }
    if (key === undefined) {
      assertBucketName(bucket);
      if (method === 'PUT') {
        handled();
        await drainBody(r); // CreateBucketConfiguration: the hub has one region
        // S3 answers a re-created bucket of one's own with 409, except in us-east-1, where it answers 200 for legacy reasons.
        // https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html#ErrorCodeList (BucketAlreadyOwnedByYou)
        const created = await store.createBucket(bucket);
        if (!created && options.region !== 'us-east-1') throw new S3Error(409, 'BucketAlreadyOwnedByYou', 'Your previous request to create the named bucket succeeded and you already own it.', { BucketName: bucket });
        send(res, 200, { location: `/${bucket}` });
        return;
      }
      requireBucket(bucket);
      if (method === 'HEAD') {
        handled();
        send(res, 200, { 'x-amz-bucket-region': options.region });
      } else if (method === 'GET' && query.has('location')) {
        handled('location');
        send(res, 200, {}, locationXml(options.region));
      } else if (method === 'GET' && query.get('list-type') === '2') {
        handled('list-type');
        await listObjectsV2(r, res, bucket);
      } else if (method === 'GET') {
        handled();
        throw S3Errors.notImplemented('ListObjects (version 1; use ListObjectsV2)');
      } else if (method === 'POST' && query.has('delete')) {
        handled('delete');
        await deleteObjects(r, res, bucket);
      } else if (method === 'DELETE') {
        handled();
        await store.deleteBucket(bucket);
        send(res, 204, {});
      } else {
        throw new S3Error(405, 'MethodNotAllowed', 'The specified method is not allowed against this resource.');
      }
      return;
    }
    requireBucket(bucket);
    assertObjectKey(key);
    if ((method === 'GET' || method === 'HEAD') && !query.has('uploadId')) {
      handled('partNumber');
      await getOrHeadObject(r, res, bucket, key);
    } else if (method === 'PUT' && query.has('uploadId')) {
      handled('uploadId', 'partNumber');
      await uploadPart(r, res, bucket, key);
    } else if (method === 'PUT') {
      handled();
      await putObject(r, res, bucket, key);
    } else if (method === 'POST' && query.has('uploads')) {
      handled('uploads');
      const fields = objectHeadersOf(r.headers);
      await drainBody(r);
      const uploadId = await store.createUpload(bucket, key, fields);
      send(res, 200, {}, initiateMultipartUploadXml(bucket, key, uploadId));
    } else if (method === 'POST' && query.has('uploadId')) {
      handled('uploadId');
      await completeUpload(r, res, bucket, key);
    } else if (method === 'DELETE' && query.has('uploadId')) {
      handled('uploadId');
      await store.abortUpload(bucket, key, query.get('uploadId')!);
      send(res, 204, {});
    } else if (method === 'DELETE') {
      handled();
      await store.deleteObject(bucket, key);
      send(res, 204, {});
    } else if (method === 'GET' && query.has('uploadId')) {
      throw S3Errors.notImplemented('ListParts');
    } else {
      throw new S3Error(405, 'MethodNotAllowed', 'The specified method is not allowed against this resource.');
    }
  }

  return (req, res) => {
    const requestId = randomBytes(8).toString('hex').toUpperCase();
    res.setHeader('x-amz-request-id', requestId);
    const fail = (err: unknown) => {
      let e: S3Error;
      if (err instanceof S3Error) e = err;
      else {
        options.onInternalError?.(err);
        e = new S3Error(500, 'InternalError', `We encountered an internal error: ${describeError(err)}`);
      }
      if (res.headersSent) {
        res.destroy();
        return;
      }
      // An error answered before the body was read closes the connection, so the unread body is not parsed as a request.
      if (!req.complete) res.setHeader('connection', 'close');
      const body = req.method === 'HEAD' ? undefined : errorXml(e.code, e.message, e.details, requestId);
      send(res, e.status, {}, body);
    };
    void (async () => {
      const r = parseRequest(req);
      const auth = verifySigV4(
        { method: r.method, rawUrl: req.url ?? '/', headers: req.headers },
        { service: 's3', singleEncodePath: true, secretFor: (id) => (id === options.credentials.accessKeyId ? options.credentials.secretAccessKey : undefined) },
      );
      if (!auth.ok) {
        const [status, code] = AUTH_CODES[auth.reason];
        throw new S3Error(status, code, auth.message);
      }
      await route(r, res);
    })().catch(fail);
  };
}

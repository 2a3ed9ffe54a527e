// KmsSigner through the real @aws-sdk/client-kms wire protocol (JSON 1.1 over HTTP) against a
// loopback KMS stand-in that implements Sign (MessageType DIGEST) and GetPublicKey. The stand-in
// signs the raw digest with textbook ECDSA over P-256 (SEC 1 v2, section 4.1.3), since node:crypto
// always hashes its input; the signature is then checked with node:crypto against the message.
import http from 'node:http';
import { createHash, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KMSClient } from '@aws-sdk/client-kms';
import { KmsSigner, exportKmsPublicKeyPem } from '../../fleet/kms-signer.ts';
import { signManifestBytes, verifyManifestBytes } from '../../contracts/manifest-signing.ts';

// P-256 domain parameters (SEC 2 v2, section 2.4.2).
const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const G: [bigint, bigint] = [
  0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296n,
  0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5n,
];
const mod = (a: bigint, m: bigint) => ((a % m) + m) % m;
function inv(a: bigint, m: bigint): bigint {
  let [r0, r1, s0, s1] = [mod(a, m), m, 1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1, s0, s1] = [r1, r0 - q * r1, s1, s0 - q * s1];
  }
  return mod(s0, m);
}
type Pt = [bigint, bigint] | null;
function add(a: Pt, b: Pt): Pt {
  if (!a) return b;
  if (!b) return a;
  if (a[0] === b[0] && mod(a[1] + b[1], P) === 0n) return null;
  const l = a[0] === b[0] ? mod(3n * a[0] * a[0] - 3n, P) * inv(2n * a[1], P) : mod(b[1] - a[1], P) * inv(mod(b[0] - a[0], P), P);
  const x = mod(l * l - a[0] - b[0], P);
  return [x, mod(l * (a[0] - x) - a[1], P)];
}
function mul(k: bigint, pt: Pt): Pt {
  let acc: Pt = null;
  for (let q = pt; k > 0n; k >>= 1n, q = add(q, q)) if (k & 1n) acc = add(acc, q);
  return acc;
}
const big = (b: Buffer) => BigInt(`0x${b.toString('hex') || '0'}`);
function derInt(x: bigint): Buffer {
  let hex = x.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  let b = Buffer.from(hex, 'hex');
  if (b[0]! & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return Buffer.concat([Buffer.from([0x02, b.length]), b]);
}
function signDigest(digest: Buffer, d: bigint): Buffer {
  const z = big(digest);
  for (;;) {
    const k = mod(big(randomBytes(40)), N - 1n) + 1n;
    const r = mod(mul(k, G)![0], N);
    const s = mod(inv(k, N) * (z + r * d), N);
    if (r === 0n || s === 0n) continue;
    const body = Buffer.concat([derInt(r), derInt(s)]);
    return Buffer.concat([Buffer.from([0x30, body.length]), body]);
  }
}

let server: http.Server;
let endpoint: string;
const requests: { target: string; body: Record<string, unknown> }[] = [];
const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const KEY_ARN = 'arn:aws:kms:us-east-1:000000000000:key/11111111-2222-3333-4444-555555555555';

function handle(target: string, body: Record<string, unknown>, priv: KeyObject, pub: KeyObject): [number, unknown] {
  if (body.KeyId !== KEY_ARN) return [400, { __type: 'NotFoundException', message: `key ${String(body.KeyId)} not found` }];
  if (target === 'TrentService.Sign') {
    if (body.MessageType !== 'DIGEST' || body.SigningAlgorithm !== 'ECDSA_SHA_256') return [400, { __type: 'ValidationException', message: 'bad request' }];
    const digest = Buffer.from(String(body.Message), 'base64');
    if (digest.length !== 32) return [400, { __type: 'ValidationException', message: 'digest must be 32 bytes' }];
    const d = big(Buffer.from(priv.export({ format: 'jwk' }).d!, 'base64url'));
    return [200, { KeyId: KEY_ARN, Signature: signDigest(digest, d).toString('base64'), SigningAlgorithm: 'ECDSA_SHA_256' }];
  }
  if (target === 'TrentService.GetPublicKey') {
    return [200, { KeyId: KEY_ARN, KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY', PublicKey: pub.export({ type: 'spki', format: 'der' }).toString('base64'), SigningAlgorithms: ['ECDSA_SHA_256'] }];
  }
  return [400, { __type: 'UnknownOperationException' }];
}

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let text = '';
    req.on('data', (c) => (text += c));
    req.on('end', () => {
      const target = String(req.headers['x-amz-target']);
      const body = JSON.parse(text) as Record<string, unknown>;
      requests.push({ target, body });
      const [status, payload] = handle(target, body, privateKey, publicKey);
      res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1' }).end(JSON.stringify(payload));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  endpoint = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe('KmsSigner', () => {
  it('sends only the SHA-256 digest with MessageType DIGEST, and the signature verifies over the manifest bytes', async () => {
    const kms = new KMSClient({ endpoint, region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' } });
    const manifest = Buffer.from(JSON.stringify({ format: 'fleetlm/manifest@1', pad: 'x'.repeat(10_000) }));
    const sig = await signManifestBytes(manifest, new KmsSigner(kms, KEY_ARN));
    const signReq = requests.find((r) => r.target === 'TrentService.Sign')!;
    expect(Buffer.from(String(signReq.body.Message), 'base64')).toEqual(createHash('sha256').update(manifest).digest());
    expect(sig.keyId).toBe(KEY_ARN);
    const pem = await exportKmsPublicKeyPem(kms, KEY_ARN);
    expect(pem).toBe(publicKey.export({ type: 'spki', format: 'pem' }).toString());
    expect(verifyManifestBytes(manifest, sig, pem)).toBe(true);
    const altered = Buffer.from(manifest);
    altered[20] ^= 1;
    expect(verifyManifestBytes(altered, { ...sig }, pem)).toBe(false);
  });

  it('wraps a KMS failure in a TransportError naming the key', async () => {
    const kms = new KMSClient({ endpoint, region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' }, maxAttempts: 1 });
    await expect(new KmsSigner(kms, 'arn:aws:kms:us-east-1:000000000000:key/missing').sign(Buffer.from('m'))).rejects.toThrow(/KMS Sign with key .*missing failed/);
  });
});

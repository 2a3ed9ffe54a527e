// A loopback server speaking the AWS KMS JSON 1.1 protocol for the two calls FleetLM makes
// (GetPublicKey, Sign with MessageType DIGEST), so the real @aws-sdk/client-kms is exercised.
// KMS signs a caller-supplied SHA-256 digest, which Node's crypto cannot do directly, so ECDSA
// (FIPS 186-4, 6.4) is done here with BigInt arithmetic and ECDH for the point multiplication.
// https://docs.aws.amazon.com/kms/latest/APIReference/API_Sign.html
import { createECDH, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

// P-256 group order and base point (SEC 2, 2.4.2).
const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const G = Buffer.from(
  '04' +
    '6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296' +
    '4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5',
  'hex',
);

const big = (b: Uint8Array) => BigInt(`0x${Buffer.from(b).toString('hex') || '0'}`);
const mod = (a: bigint, m: bigint) => ((a % m) + m) % m;
function inverse(a: bigint, m: bigint): bigint {
  let [r0, r1, s0, s1] = [mod(a, m), m, 1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1, s0, s1] = [r1, r0 - q * r1, s1, s0 - q * s1];
  }
  return mod(s0, m);
}
function derInt(v: bigint): Buffer {
  let hex = v.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  let b = Buffer.from(hex, 'hex');
  if (b[0]! & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return Buffer.concat([Buffer.from([0x02, b.length]), b]);
}

/** ECDSA signature (DER) of a 32-byte digest with private scalar d. */
export function signDigest(digest: Uint8Array, d: bigint): Buffer {
  const z = big(digest);
  for (;;) {
    const k = mod(big(randomBytes(32)), N);
    if (k === 0n) continue;
    const ecdh = createECDH('prime256v1');
    ecdh.setPrivateKey(Buffer.from(k.toString(16).padStart(64, '0'), 'hex'));
    const r = mod(big(ecdh.computeSecret(G)), N);
    if (r === 0n) continue;
    const s = mod(inverse(k, N) * (z + r * d), N);
    if (s === 0n) continue;
    const body = Buffer.concat([derInt(r), derInt(s)]);
    return Buffer.concat([Buffer.from([0x30, body.length]), body]);
  }
}

export interface LocalKms {
  endpoint: string;
  keyId: string;
  publicKey: KeyObject;
  calls: string[];
  close(): Promise<void>;
}

/** Starts the server with one fresh ECC_NIST_P256 SIGN_VERIFY key. */
export async function startLocalKms(): Promise<LocalKms> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const d = big(Buffer.from(privateKey.export({ format: 'jwk' }).d!, 'base64url'));
  const keyId = 'arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555';
  const calls: string[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const target = String(req.headers['x-amz-target'] ?? '');
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, string>;
      calls.push(target);
      const reply = (status: number, value: unknown) => {
        res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1' });
        res.end(JSON.stringify(value));
      };
      if (body.KeyId !== keyId) return reply(400, { __type: 'NotFoundException', message: `key ${body.KeyId} not found` });
      if (target === 'TrentService.GetPublicKey') {
        return reply(200, {
          KeyId: keyId,
          KeySpec: 'ECC_NIST_P256',
          KeyUsage: 'SIGN_VERIFY',
          SigningAlgorithms: ['ECDSA_SHA_256'],
          PublicKey: publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
        });
      }
      if (target === 'TrentService.Sign') {
        const digest = Buffer.from(body.Message!, 'base64');
        if (body.MessageType !== 'DIGEST' || digest.length !== 32 || body.SigningAlgorithm !== 'ECDSA_SHA_256') {
          return reply(400, { __type: 'ValidationException', message: 'expected a 32-byte DIGEST with ECDSA_SHA_256' });
        }
        return reply(200, { KeyId: keyId, Signature: signDigest(digest, d).toString('base64'), SigningAlgorithm: 'ECDSA_SHA_256' });
      }
      return reply(400, { __type: 'UnsupportedOperationException', message: target });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    keyId,
    publicKey,
    calls,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

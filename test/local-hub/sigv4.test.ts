// SigV4 verification against the known answer of AWS's signature test suite ("get-vanilla",
// https://docs.aws.amazon.com/general/latest/gr/signature-v4-test-suite.html), plus tampering.
import { describe, expect, it } from 'vitest';
import { sha256Hex, verifySigV4 } from '../../local-hub/sigv4.ts';

const SECRET = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY';
const NOW = Date.UTC(2015, 7, 30, 12, 36, 0);
const AUTH =
  'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31';

function verify(headers: Record<string, string>, rawUrl = '/', now = NOW) {
  return verifySigV4(
    { method: 'GET', rawUrl, headers },
    { service: 'service', singleEncodePath: false, payloadHash: sha256Hex(Buffer.alloc(0)), secretFor: (id) => (id === 'AKIDEXAMPLE' ? SECRET : undefined), now },
  );
}

describe('verifySigV4', () => {
  const headers = { host: 'example.amazonaws.com', 'x-amz-date': '20150830T123600Z', authorization: AUTH };

  it('accepts the get-vanilla request of the AWS test suite', () => {
    expect(verify(headers)).toEqual({ ok: true, accessKeyId: 'AKIDEXAMPLE' });
  });

  it('rejects a changed path, header, key or a stale date', () => {
    expect(verify(headers, '/other')).toMatchObject({ ok: false, reason: 'mismatch' });
    expect(verify({ ...headers, host: 'evil.example.com' })).toMatchObject({ ok: false, reason: 'mismatch' });
    expect(verify({ ...headers, authorization: AUTH.replace('AKIDEXAMPLE', 'AKIDOTHER') })).toMatchObject({ ok: false, reason: 'unknown-key' });
    expect(verify(headers, '/', NOW + 16 * 60_000)).toMatchObject({ ok: false, reason: 'expired' });
    expect(verify({ host: 'example.amazonaws.com' })).toMatchObject({ ok: false, reason: 'missing' });
    expect(verify({ ...headers, authorization: 'Bearer x' })).toMatchObject({ ok: false, reason: 'malformed' });
  });
});

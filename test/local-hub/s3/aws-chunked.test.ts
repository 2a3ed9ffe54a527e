// The aws-chunked decoder against the format in AWS's documentation, fed whole and one byte at a time.
// https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming-trailers.html
import { describe, expect, it } from 'vitest';
import { AwsChunkedDecoder } from '../../../local-hub/s3/aws-chunked.ts';

function decode(body: Buffer, step = body.length): { data: Buffer; trailers: Map<string, string> } {
  const d = new AwsChunkedDecoder();
  const out: Buffer[] = [];
  for (let i = 0; i < body.length; i += step) out.push(...d.feed(body.subarray(i, i + step)).map((b) => Buffer.from(b)));
  d.finish();
  return { data: Buffer.concat(out), trailers: d.trailers };
}

const sample = Buffer.from('5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n');

describe('AwsChunkedDecoder', () => {
  it('decodes data and trailers, whole or split at every byte', () => {
    for (const step of [sample.length, 7, 1]) {
      const { data, trailers } = decode(sample, step);
      expect(data.toString()).toBe('hello world');
      expect(trailers.get('x-amz-checksum-crc32')).toBe('DUoRhQ==');
    }
  });

  it('refuses truncated bodies, bad sizes, signed chunks, bytes after the end and endless lines', () => {
    expect(() => decode(sample.subarray(0, sample.length - 2))).toThrow(/ended before/);
    expect(() => decode(Buffer.from('zz\r\nhello\r\n0\r\n\r\n'))).toThrow(/bad chunk header/);
    expect(() => decode(Buffer.from('5;chunk-signature=abc\r\nhello\r\n0\r\n\r\n'))).toThrow(/bad chunk header/);
    expect(() => decode(Buffer.from('5\r\nhelloXX0\r\n\r\n'))).toThrow(/not followed by CRLF/);
    expect(() => decode(Buffer.concat([sample, Buffer.from('extra')]))).toThrow(/after the final CRLF/);
    expect(() => decode(Buffer.alloc(10_000, 0x31))).toThrow(/longer than/);
  });
});

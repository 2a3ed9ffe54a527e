// Decoder of `aws-chunked` request bodies without chunk signatures (STREAMING-UNSIGNED-PAYLOAD-TRAILER), which the
// AWS SDK sends by default for streamed uploads: hex-size CRLF data CRLF ... 0 CRLF trailer lines CRLF.
// https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming-trailers.html
import { S3Error } from './s3-error.ts';

/** Longest chunk-size line or trailer line accepted; real ones are under 100 bytes. */
const MAX_LINE_BYTES = 4096;
/** Most trailer lines accepted (the SDK sends one checksum). */
const MAX_TRAILERS = 8;

function incomplete(message: string): S3Error {
  return new S3Error(400, 'IncompleteBody', `aws-chunked body: ${message}`);
}

/** Push parser: feed() the raw body as it arrives and get the object bytes back; finish() at the end of the body. */
export class AwsChunkedDecoder {
  private buf: Buffer = Buffer.alloc(0);
  private state: 'size' | 'data' | 'data-crlf' | 'trailer' | 'end' = 'size';
  private remaining = 0;
  /** Trailer headers (lowercase names), complete once finish() has returned. */
  readonly trailers = new Map<string, string>();

  /** Consumes `chunk`; returns the decoded data it completes (slices of `chunk`, not copies, where possible). */
  feed(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    for (;;) {
      if (this.state === 'data') {
        if (this.buf.length === 0) break;
        const take = Math.min(this.remaining, this.buf.length);
        out.push(this.buf.subarray(0, take));
        this.buf = this.buf.subarray(take);
        this.remaining -= take;
        if (this.remaining === 0) this.state = 'data-crlf';
        continue;
      }
      if (this.state === 'data-crlf') {
        if (this.buf.length < 2) break;
        if (this.buf[0] !== 0x0d || this.buf[1] !== 0x0a) throw incomplete('chunk data is not followed by CRLF');
        this.buf = this.buf.subarray(2);
        this.state = 'size';
        continue;
      }
      if (this.state === 'end') {
        if (this.buf.length > 0) throw incomplete('bytes after the final CRLF');
        break;
      }
      const line = this.takeLine();
      if (line === undefined) break;
      if (this.state === 'size') this.onSizeLine(line);
      else this.onTrailerLine(line);
    }
    return out;
  }

  /** Throws unless the body ended exactly after its trailers. */
  finish(): void {
    if (this.state !== 'end') throw incomplete('the body ended before its last chunk and trailers');
  }

  private takeLine(): string | undefined {
    const eol = this.buf.indexOf('\r\n');
    if (eol < 0) {
      if (this.buf.length > MAX_LINE_BYTES) throw incomplete(`a line longer than ${MAX_LINE_BYTES} bytes`);
      return undefined;
    }
    if (eol > MAX_LINE_BYTES) throw incomplete(`a line longer than ${MAX_LINE_BYTES} bytes`);
    const line = this.buf.subarray(0, eol).toString('latin1');
    this.buf = this.buf.subarray(eol + 2);
    return line;
  }

  private onSizeLine(line: string): void {
    const [size = '', ...extensions] = line.split(';');
    // Signed chunks carry `;chunk-signature=`: they belong to STREAMING-AWS4-HMAC-SHA256-PAYLOAD, refused earlier.
    if (!/^[0-9a-fA-F]{1,16}$/.test(size) || extensions.some((e) => e.startsWith('chunk-signature='))) throw incomplete(`bad chunk header ${JSON.stringify(line.slice(0, 80))}`);
    this.remaining = Number.parseInt(size, 16);
    if (!Number.isSafeInteger(this.remaining)) throw incomplete(`chunk size ${size} is too large`);
    this.state = this.remaining === 0 ? 'trailer' : 'data';
  }

  private onTrailerLine(line: string): void {
    if (line === '') {
      this.state = 'end';
      return;
    }
    const colon = line.indexOf(':');
    if (colon <= 0 || this.trailers.size >= MAX_TRAILERS) throw incomplete(`bad trailer line ${JSON.stringify(line.slice(0, 80))}`);
    this.trailers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
}

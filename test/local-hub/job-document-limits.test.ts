// AWS IoT's job document limits as the local hub applies them at CreateJob (local-hub/job-document-limits.ts).
import { describe, expect, it } from 'vitest';
import { MAX_JOB_DOCUMENT_BYTES, MAX_JOB_DOCUMENT_DEPTH, jobDocumentProblem } from '../../local-hub/job-document-limits.ts';

const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;

describe('job document limits', () => {
  it('accepts a document at the depth limit and refuses one level more, and a 5,000-deep one', () => {
    expect(jobDocumentProblem(nested(MAX_JOB_DOCUMENT_DEPTH))).toBeUndefined();
    expect(jobDocumentProblem(nested(MAX_JOB_DOCUMENT_DEPTH + 1))).toMatch(/deeper than 64 levels/);
    expect(jobDocumentProblem(nested(5000))).toMatch(/deeper than 64 levels/);
    expect(jobDocumentProblem(`{"a":${'{"a":'.repeat(70)}1${'}'.repeat(70)}}`)).toMatch(/deeper than 64/);
  });

  it('counts bytes of UTF-8, not characters', () => {
    const fits = JSON.stringify({ s: 'a'.repeat(MAX_JOB_DOCUMENT_BYTES - 8) });
    expect(Buffer.byteLength(fits)).toBe(MAX_JOB_DOCUMENT_BYTES);
    expect(jobDocumentProblem(fits)).toBeUndefined();
    const multiByte = JSON.stringify({ s: 'é'.repeat(17_000) });
    expect(multiByte.length).toBeLessThan(MAX_JOB_DOCUMENT_BYTES);
    expect(jobDocumentProblem(multiByte)).toMatch(/is 34008 bytes; a job document may be at most 32768 bytes/);
  });

  it('does not count brackets inside strings, escaped quotes included', () => {
    expect(jobDocumentProblem(JSON.stringify({ s: '['.repeat(500), t: 'say \\"[[[[\\"' }))).toBeUndefined();
    expect(jobDocumentProblem(JSON.stringify({ s: '"'.repeat(10) + '{'.repeat(100) }))).toBeUndefined();
  });
});

// AWS IoT's limits on a job document, applied by the local hub at CreateJob so it never stores a document
// it could not later serve (a 5,000-deep document used to be stored, then overflow the stack on every read).
// https://docs.aws.amazon.com/general/latest/gr/iot_device_management.html (job document: 32 KB)

/** Largest job document AWS IoT accepts, in bytes of UTF-8. */
export const MAX_JOB_DOCUMENT_BYTES = 32 * 1024;
/** Deepest nesting of objects and arrays the hub accepts; AWS documents none, device parsers are recursive. */
export const MAX_JOB_DOCUMENT_DEPTH = 64;

/** Why a job document is refused, or undefined when it is within the limits. Counts depth without recursing. */
export function jobDocumentProblem(text: string): string | undefined {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MAX_JOB_DOCUMENT_BYTES) return `document is ${bytes} bytes; a job document may be at most ${MAX_JOB_DOCUMENT_BYTES} bytes`;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > MAX_JOB_DOCUMENT_DEPTH) return `document nests deeper than ${MAX_JOB_DOCUMENT_DEPTH} levels of objects and arrays`;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return undefined;
}

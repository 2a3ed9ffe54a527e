// XML documents of the S3 store: responses built, and the two request bodies it takes (CompleteMultipartUpload,
// Delete) parsed, with @aws-sdk/xml-builder, the XML codec the AWS SDK itself uses to talk to S3.
// https://docs.aws.amazon.com/AmazonS3/latest/API/API_Operations_Amazon_Simple_Storage_Service.html
import { XmlNode, parseXML } from '@aws-sdk/xml-builder';
import { z } from 'zod';
import { S3Errors } from './s3-error.ts';

const S3_NS = 'http://s3.amazonaws.com/doc/2006-03-01/';

/** `<name>text</name>` (an empty element for ''). */
function el(name: string, text: string | number | boolean): XmlNode {
  return XmlNode.of(name, String(text));
}

function parent(name: string, children: XmlNode[]): XmlNode {
  return new XmlNode(name, children);
}

function document(root: XmlNode): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n${root.toString()}`;
}

/** The error document of every failed request. */
export function errorXml(code: string, message: string, details: Readonly<Record<string, string>>, requestId: string): string {
  return document(
    parent('Error', [el('Code', code), el('Message', message), ...Object.entries(details).map(([k, v]) => el(k, v)), el('RequestId', requestId)]),
  );
}

export interface ListedObject {
  key: string;
  lastModified: Date;
  etag: string;
  size: number;
}

export interface ListObjectsV2Result {
  bucket: string;
  prefix: string;
  delimiter?: string;
  maxKeys: number;
  encodingType?: 'url';
  startAfter?: string;
  continuationToken?: string;
  nextContinuationToken?: string;
  contents: ListedObject[];
  commonPrefixes: string[];
}

/** S3's `encoding-type=url` encoding: percent-encoding that keeps "/". */
function urlEncodeKey(value: string): string {
  return encodeURIComponent(value).replace(/%2F/g, '/');
}

/** ListBucketResult of ListObjectsV2. https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html */
export function listObjectsV2Xml(r: ListObjectsV2Result): string {
  const enc = (v: string) => (r.encodingType === 'url' ? urlEncodeKey(v) : v);
  const root = parent('ListBucketResult', [el('Name', r.bucket), el('Prefix', enc(r.prefix))]).a('xmlns', S3_NS);
  if (r.startAfter !== undefined) root.c(el('StartAfter', enc(r.startAfter)));
  if (r.continuationToken !== undefined) root.c(el('ContinuationToken', r.continuationToken));
  if (r.nextContinuationToken !== undefined) root.c(el('NextContinuationToken', r.nextContinuationToken));
  root.c(el('KeyCount', r.contents.length + r.commonPrefixes.length));
  root.c(el('MaxKeys', r.maxKeys));
  if (r.delimiter !== undefined) root.c(el('Delimiter', enc(r.delimiter)));
  if (r.encodingType) root.c(el('EncodingType', r.encodingType));
  root.c(el('IsTruncated', r.nextContinuationToken !== undefined));
  for (const o of r.contents) {
    root.c(
      parent('Contents', [el('Key', enc(o.key)), el('LastModified', o.lastModified.toISOString()), el('ETag', o.etag), el('Size', o.size), el('StorageClass', 'STANDARD')]),
    );
  }
  for (const p of r.commonPrefixes) root.c(parent('CommonPrefixes', [el('Prefix', enc(p))]));
  return document(root);
}

/** ListAllMyBucketsResult of ListBuckets. */
export function listBucketsXml(buckets: ReadonlyArray<{ name: string; created: Date }>): string {
  return document(
    parent('ListAllMyBucketsResult', [
      parent('Owner', [el('ID', 'fleetlm-local-hub'), el('DisplayName', 'fleetlm-local-hub')]),
      parent('Buckets', buckets.map((b) => parent('Bucket', [el('Name', b.name), el('CreationDate', b.created.toISOString())]))),
    ]).a('xmlns', S3_NS),
  );
}

/** LocationConstraint of GetBucketLocation (empty for us-east-1, as S3 answers). */
export function locationXml(region: string): string {
  const root = region === 'us-east-1' ? new XmlNode('LocationConstraint') : XmlNode.of('LocationConstraint', region);
  return document(root.a('xmlns', S3_NS));
}

/** InitiateMultipartUploadResult of CreateMultipartUpload. */
export function initiateMultipartUploadXml(bucket: string, key: string, uploadId: string): string {
  return document(parent('InitiateMultipartUploadResult', [el('Bucket', bucket), el('Key', key), el('UploadId', uploadId)]).a('xmlns', S3_NS));
}

/** CompleteMultipartUploadResult of CompleteMultipartUpload. */
export function completeMultipartUploadXml(location: string, bucket: string, key: string, etag: string): string {
  return document(
    parent('CompleteMultipartUploadResult', [el('Location', location), el('Bucket', bucket), el('Key', key), el('ETag', etag)]).a('xmlns', S3_NS),
  );
}

/** DeleteResult of DeleteObjects. */
export function deleteResultXml(deleted: readonly string[], failed: ReadonlyArray<{ key: string; code: string; message: string }>): string {
  return document(
    parent('DeleteResult', [
      ...deleted.map((key) => parent('Deleted', [el('Key', key)])),
      ...failed.map((f) => parent('Error', [el('Key', f.key), el('Code', f.code), el('Message', f.message)])),
    ]).a('xmlns', S3_NS),
  );
}

/** One element or a list of them: how parseXML renders a repeated element. */
const oneOrMany = <T extends z.ZodType>(item: T) => z.union([item, z.array(item)]).transform((v) => (Array.isArray(v) ? v : [v]) as Array<z.output<T>>);

const CompleteMultipartUploadBody = z.object({
  CompleteMultipartUpload: z.object({
    Part: oneOrMany(z.object({ PartNumber: z.string().regex(/^\d{1,5}$/), ETag: z.string().min(1) }).loose()),
  }),
});

const DeleteBody = z.object({
  Delete: z.object({
    Object: oneOrMany(z.object({ Key: z.string().min(1), VersionId: z.string().optional() }).loose()),
    Quiet: z.enum(['true', 'false']).optional(),
  }),
});

function parseBody<T extends z.ZodType>(schema: T, xml: string): z.output<T> {
  let parsed: unknown;
  try {
    parsed = parseXML(xml);
  } catch {
    throw S3Errors.malformedXml();
  }
  const result = schema.safeParse(parsed);
  if (!result.success) throw S3Errors.malformedXml();
  return result.data;
}

/** The parts listed in a CompleteMultipartUpload body (ETags as sent, quotes included). */
export function parseCompleteMultipartUpload(xml: string): Array<{ partNumber: number; etag: string }> {
  return parseBody(CompleteMultipartUploadBody, xml).CompleteMultipartUpload.Part.map((p) => ({ partNumber: Number(p.PartNumber), etag: p.ETag }));
}

/** The keys and the Quiet flag of a DeleteObjects body. */
export function parseDeleteObjects(xml: string): { keys: Array<{ key: string; versionId?: string }>; quiet: boolean } {
  const body = parseBody(DeleteBody, xml).Delete;
  return { keys: body.Object.map((o) => ({ key: o.Key, ...(o.VersionId !== undefined ? { versionId: o.VersionId } : {}) })), quiet: body.Quiet === 'true' };
}

// Reads what a Distributed Map's ResultWriter exported to S3: manifest.json, then the SUCCEEDED_n.json and
// FAILED_n.json files it lists (child executions as JSON arrays, each Input and Output a JSON string).
// https://docs.aws.amazon.com/step-functions/latest/dg/input-output-resultwriter.html
import type { S3Client } from '@aws-sdk/client-s3';
import { z } from 'zod';
import { ValidationError } from '../../common/errors.ts';
import { parseJsonWith } from '../../common/validate.ts';
import { getJson } from './s3.ts';

const ResultFileSchema = z.object({ Key: z.string().min(1), Size: z.number().optional() }).passthrough();

/** manifest.json: the Map Run and its result files by status. */
export const MapResultManifestSchema = z
  .object({
    DestinationBucket: z.string().optional(),
    MapRunArn: z.string().optional(),
    ResultFiles: z
      .object({
        SUCCEEDED: z.array(ResultFileSchema).default([]),
        FAILED: z.array(ResultFileSchema).default([]),
        PENDING: z.array(ResultFileSchema).default([]),
      })
      .passthrough(),
  })
  .passthrough();

/** One child execution in a result file (Transformation NONE: DescribeExecution-like metadata). */
const ChildExecutionSchema = z
  .object({
    Status: z.string(),
    Name: z.string().optional(),
    Input: z.string().optional(),
    Output: z.string().optional(),
    Error: z.string().optional(),
    Cause: z.string().optional(),
  })
  .passthrough();
type ChildExecution = z.output<typeof ChildExecutionSchema>;

/** A child execution that did not succeed: its status, error and the item it was given. */
export interface FailedChild {
  status: string;
  error?: string;
  cause?: string;
  /** The child's input (the Map item), parsed; undefined when the file does not include it. */
  input?: unknown;
}

export interface MapResults<T> {
  mapRunArn?: string;
  succeeded: T[];
  failed: FailedChild[];
  /** Items never started because the Map Run failed or was aborted. */
  pending: number;
}

async function readFiles(s3: S3Client, bucket: string, files: ReadonlyArray<{ Key: string }>): Promise<ChildExecution[]> {
  const out: ChildExecution[] = [];
  for (const f of files) out.push(...(await getJson(s3, bucket, f.Key, z.array(ChildExecutionSchema))));
  return out;
}

function parseInput(child: ChildExecution): unknown {
  if (child.Input === undefined) return undefined;
  try {
    return JSON.parse(child.Input) as unknown;
  } catch {
    return undefined;
  }
}

/** Reads the results a ResultWriter exported (manifest at s3://bucket/manifestKey); each output is parsed with `outputSchema`. */
export async function readMapResults<S extends z.ZodType>(s3: S3Client, bucket: string, manifestKey: string, outputSchema: S): Promise<MapResults<z.output<S>>> {
  const manifest = await getJson(s3, bucket, manifestKey, MapResultManifestSchema);
  const files = manifest.ResultFiles;
  const succeeded = (await readFiles(s3, bucket, files.SUCCEEDED)).map((child, i) => {
    if (child.Output === undefined) {
      throw new ValidationError(`result ${i} of s3://${bucket}/${manifestKey} has no Output (OutputDetails.Included false?); merge needs every shard's output`);
    }
    return parseJsonWith(outputSchema, child.Output, `output of child execution ${child.Name ?? i} in s3://${bucket}/${manifestKey}`);
  });
  const failed = (await readFiles(s3, bucket, files.FAILED)).map((child) => ({ status: child.Status, error: child.Error, cause: child.Cause, input: parseInput(child) }));
  const pending = (await readFiles(s3, bucket, files.PENDING)).length;
  return { mapRunArn: manifest.MapRunArn, succeeded, failed, pending };
}

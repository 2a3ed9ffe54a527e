// A small interpreter for the Amazon States Language subset the pipeline uses (Task, Map in
// DISTRIBUTED mode run inline, Choice, Wait, Succeed, Fail, Retry, Catch, ResultPath), so the real
// synthesized definition can be run against the real handlers on a small input. The Distributed Map's
// ItemReader (a JSON array in S3), ResultWriter (manifest.json plus SUCCEEDED_n/FAILED_n/PENDING_n files,
// Transformation NONE) and ToleratedFailurePercentage/Count follow the Step Functions developer guide
// (input-output-itemreader.html, input-output-resultwriter.html, state-map-distributed.html).
// https://states-language.net/spec.html
import { randomUUID } from 'node:crypto';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';

export interface AslState {
  Type: 'Task' | 'Map' | 'Choice' | 'Wait' | 'Succeed' | 'Fail' | 'Pass';
  Seconds?: number;
  Next?: string;
  End?: boolean;
  Resource?: string;
  Parameters?: Record<string, unknown>;
  ResultPath?: string | null;
  Retry?: Array<{ ErrorEquals: string[]; MaxAttempts?: number }>;
  Catch?: Array<{ ErrorEquals: string[]; Next: string; ResultPath?: string }>;
  Choices?: Array<Record<string, unknown> & { Variable: string; Next: string }>;
  Default?: string;
  ItemsPath?: string;
  ItemProcessor?: AslMachine;
  ItemReader?: { Resource: string; ReaderConfig?: { InputType?: string }; Parameters?: Record<string, unknown> };
  ResultWriter?: { Resource?: string; Parameters?: Record<string, unknown> };
  ToleratedFailurePercentage?: number;
  ToleratedFailureCount?: number;
  Error?: string;
  Cause?: string;
  CausePath?: string;
}
export interface AslMachine {
  StartAt: string;
  States: Record<string, AslState>;
}

export type TaskResolver = (resource: string, stateName: string) => ((input: unknown) => Promise<unknown>) | undefined;

export interface RunOptions {
  startAt?: string;
  /** S3 for ItemReader and ResultWriter (the local hub's S3 store or moto). */
  s3?: S3Client;
  /** Maps a Bucket parameter as rendered in the definition (an import token) to the bucket to use. */
  resolveBucket?: (rendered: string) => string;
  /** Called as each state is left with its input and output (inner Map states prefixed with `Map/`). */
  onState?: (state: string, input: unknown, output: unknown) => void;
  /** Runs in place of a Wait state's sleep (a test moves the world on there); without it a Wait passes at once. */
  onWait?: (state: string, input: unknown) => Promise<void>;
  /** $$.Execution.Id for Parameters (default: the `<context $$.Execution.Id>` placeholder). */
  executionArn?: string;
  /** Called once a `.waitForTaskToken` task's function has run, with the token it was given. */
  onTaskToken?: (task: { state: string; token: string }) => Promise<TaskTokenAnswer>;
}

/** One child execution of a Distributed Map, as the runner keeps it for ResultWriter. */
export interface ChildRun {
  input: unknown;
  status: 'SUCCEEDED' | 'FAILED' | 'PENDING';
  output?: unknown;
  error?: string;
  cause?: string;
}

export interface RunResult {
  status: 'SUCCEEDED' | 'FAILED';
  output?: unknown;
  error?: string;
  cause?: string;
  /** State names in the order they were entered (inner Map states prefixed with `Map/`). */
  trace: string[];
  /** SNS publishes the machine made: state name and resolved message. */
  notifications: Array<{ state: string; message: unknown }>;
}

class StatesError extends Error {
  constructor(
    readonly errorName: string,
    readonly causeText: string,
  ) {
    super(`${errorName}: ${causeText}`);
  }
}

function getPath(value: unknown, p: string): unknown {
  if (p === '$') return value;
  if (!p.startsWith('$.')) throw new Error(`unsupported path ${p}`);
  return p
    .slice(2)
    .split('.')
    .reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined), value);
}

function setPath(input: unknown, p: string | null | undefined, result: unknown): unknown {
  if (p === null) return input;
  if (p === undefined || p === '$') return result;
  const keys = p.slice(2).split('.');
  const root = structuredClone(input) as Record<string, unknown>;
  let at = root;
  for (const k of keys.slice(0, -1)) at = (at[k] ??= {}) as Record<string, unknown>;
  at[keys.at(-1)!] = result;
  return root;
}

/** Context-object paths ($$.Task.Token, $$.Execution.Id) the run knows; others read as `<context ...>`. */
type ContextValues = Readonly<Record<string, string | undefined>>;

function resolveParameters(params: Record<string, unknown>, input: unknown, context: ContextValues = {}): unknown {
  return Object.fromEntries(
    Object.entries(params).map(([k, v]) => {
      if (k.endsWith('.$') && typeof v === 'string') return [k.slice(0, -2), v.startsWith('$$') ? (context[v] ?? `<context ${v}>`) : getPath(input, v)];
      if (v && typeof v === 'object' && !Array.isArray(v)) return [k, resolveParameters(v as Record<string, unknown>, input, context)];
      return [k, v];
    }),
  );
}

/** How a test answers a `.waitForTaskToken` task: output (SendTaskSuccess) or error and cause (SendTaskFailure). */
export type TaskTokenAnswer = { output: unknown } | { error: string; cause: string };

function matches(errorEquals: string[], name: string): boolean {
  return errorEquals.includes('States.ALL') || errorEquals.includes(name);
}

function choose(state: AslState, input: unknown): string {
  for (const c of state.Choices ?? []) {
    const v = getPath(input, c.Variable);
    if ('NumericLessThanEquals' in c && typeof v === 'number' && v <= (c.NumericLessThanEquals as number)) return c.Next;
    if ('BooleanEquals' in c && v === c.BooleanEquals) return c.Next;
    if ('StringEquals' in c && v === c.StringEquals) return c.Next;
    if ('IsPresent' in c && (v !== undefined) === c.IsPresent) return c.Next;
  }
  if (!state.Default) throw new StatesError('States.NoChoiceMatched', 'no choice matched');
  return state.Default;
}

/**
 * Writes children as a Distributed Map's ResultWriter does (Transformation NONE, OutputType JSON): one file
 * per status under `{prefix}/{mapRunId}/`, then manifest.json; returns the Map's output.
 */
export async function exportMapResults(s3: S3Client, bucket: string, prefix: string, children: readonly ChildRun[]): Promise<{ MapRunArn: string; ResultWriterDetails: { Bucket: string; Key: string } }> {
  const mapRunId = randomUUID();
  const base = `${prefix === '' ? '' : `${prefix.replace(/\/$/, '')}/`}${mapRunId}/`;
  const mapRunArn = `arn:aws:states:us-east-1:123456789012:mapRun:local-runner/Map:${mapRunId}`;
  const files: Record<string, Array<{ Key: string; Size: number }>> = { FAILED: [], PENDING: [], SUCCEEDED: [] };
  for (const status of ['SUCCEEDED', 'FAILED', 'PENDING'] as const) {
    const runs = children.filter((c) => c.status === status);
    if (runs.length === 0) continue;
    const entries = runs.map((c) => {
      const name = randomUUID();
      return {
        ExecutionArn: `arn:aws:states:us-east-1:123456789012:execution:local-runner/Map:${name}`,
        Input: JSON.stringify(c.input),
        InputDetails: { Included: true },
        Name: name,
        ...(c.output !== undefined ? { Output: JSON.stringify(c.output), OutputDetails: { Included: true } } : {}),
        ...(c.error !== undefined ? { Error: c.error, Cause: c.cause } : {}),
        Status: status,
      };
    });
    const body = JSON.stringify(entries);
    const key = `${base}${status}_0.json`;
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    files[status]!.push({ Key: key, Size: Buffer.byteLength(body) });
  }
  const manifestKey = `${base}manifest.json`;
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: manifestKey, Body: JSON.stringify({ DestinationBucket: bucket, MapRunArn: mapRunArn, ResultFiles: files }) }));
  return { MapRunArn: mapRunArn, ResultWriterDetails: { Bucket: bucket, Key: manifestKey } };
}

/** Runs `machine` on `input`; Task resources are mapped to functions by `resolve`. */
export async function runStateMachine(machine: AslMachine, input: unknown, resolve: TaskResolver, options: RunOptions = {}): Promise<RunResult> {
  const trace: string[] = [];
  const notifications: RunResult['notifications'] = [];
  const bucketOf = (params: Record<string, unknown>) => (options.resolveBucket ?? ((b: string) => b))(String(params.Bucket));

  function s3(): S3Client {
    if (!options.s3) throw new Error('this definition reads or writes S3 (ItemReader/ResultWriter): pass options.s3');
    return options.s3;
  }

  async function readItems(state: AslState, value: unknown): Promise<unknown[]> {
    if (!state.ItemReader) {
      const items = getPath(value, state.ItemsPath ?? '$');
      if (!Array.isArray(items)) throw new StatesError('States.Runtime', `ItemsPath ${state.ItemsPath} is not an array`);
      return items;
    }
    const { Resource, ReaderConfig, Parameters } = state.ItemReader;
    if (!Resource.endsWith(':states:::s3:getObject') || ReaderConfig?.InputType !== 'JSON') throw new Error(`unsupported ItemReader ${JSON.stringify(state.ItemReader)}`);
    const params = resolveParameters(Parameters ?? {}, value) as Record<string, unknown>;
    let text: string;
    try {
      const out = await s3().send(new GetObjectCommand({ Bucket: bucketOf(params), Key: String(params.Key) }));
      text = await out.Body!.transformToString();
    } catch (err) {
      throw new StatesError('States.ItemReaderFailed', `GetObject ${String(params.Key)}: ${(err as Error).message}`);
    }
    const items = JSON.parse(text) as unknown;
    if (!Array.isArray(items)) throw new StatesError('States.ItemReaderFailed', 'the JSON file is not an array');
    return items;
  }

  async function writeResults(state: AslState, value: unknown, children: ChildRun[]): Promise<unknown> {
    const params = resolveParameters(state.ResultWriter!.Parameters ?? {}, value) as Record<string, unknown>;
    return exportMapResults(s3(), bucketOf(params), typeof params.Prefix === 'string' ? params.Prefix : '', children);
  }

  /** Runs every item as a child execution; stops starting new ones once the tolerated failures are exceeded. */
  async function runMap(name: string, state: AslState, value: unknown): Promise<unknown> {
    const items = await readItems(state, value);
    const children: ChildRun[] = items.map((item) => ({ input: item, status: 'PENDING' }));
    const exceeded = (failed: number) =>
      failed > (state.ToleratedFailureCount ?? Infinity) || (failed * 100) / Math.max(1, items.length) > (state.ToleratedFailurePercentage ?? (state.ToleratedFailureCount === undefined ? 0 : 100));
    let failed = 0;
    let firstFailure: StatesError | undefined;
    for (const child of children) {
      const r = await run(state.ItemProcessor!, child.input, `${name}/`);
      if (r.failed) {
        Object.assign(child, { status: 'FAILED', error: r.failed.errorName, cause: r.failed.causeText });
        failed += 1;
        firstFailure ??= r.failed;
        if (exceeded(failed)) break;
      } else Object.assign(child, { status: 'SUCCEEDED', output: r.value });
    }
    const result = state.ResultWriter ? await writeResults(state, value, children) : children.map((c) => c.output);
    if (firstFailure && exceeded(failed)) {
      throw new StatesError('States.ExceedToleratedFailureThreshold', `${firstFailure.errorName}: ${firstFailure.causeText}`);
    }
    return result;
  }

  let tokens = 0;

  async function execTask(name: string, state: AslState, value: unknown): Promise<unknown> {
    if (state.Resource?.includes(':states:::lambda:invoke.waitForTaskToken')) {
      // https://docs.aws.amazon.com/step-functions/latest/dg/connect-to-resource.html#connect-wait-token
      const token = `test-task-token-${++tokens}`;
      const params = resolveParameters(state.Parameters ?? {}, value, { '$$.Task.Token': token, '$$.Execution.Id': options.executionArn }) as { FunctionName?: string; Payload?: unknown };
      const fn = resolve(params.FunctionName ?? '', name);
      if (!fn) throw new Error(`no handler for state ${name} (${params.FunctionName})`);
      await fn(params.Payload);
      if (!options.onTaskToken) throw new Error(`state ${name} waits for a task token and the test gave no onTaskToken`);
      const answer = await options.onTaskToken({ state: name, token });
      if ('error' in answer) throw new StatesError(answer.error, answer.cause);
      return answer.output;
    }
    if (state.Resource?.includes(':states:::sns:publish')) {
      const params = resolveParameters(state.Parameters ?? {}, value, { '$$.Execution.Id': options.executionArn }) as { Message?: unknown };
      notifications.push({ state: name, message: params.Message });
      return { MessageId: `local-${notifications.length}` };
    }
    const fn = resolve(state.Resource ?? '', name);
    if (!fn) throw new Error(`no handler for state ${name} (${state.Resource})`);
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn(value);
      } catch (err) {
        const errName = (err as Error).name ?? 'Error';
        const retry = state.Retry?.find((r) => matches(r.ErrorEquals, errName));
        if (retry && attempt <= (retry.MaxAttempts ?? 3)) continue;
        throw new StatesError(errName, (err as Error).message);
      }
    }
  }

  async function run(m: AslMachine, value: unknown, prefix: string, startAt = m.StartAt): Promise<{ value: unknown; failed?: StatesError }> {
    let name = startAt;
    let current = value;
    for (let steps = 0; steps < 1000; steps++) {
      const state = m.States[name];
      if (!state) throw new Error(`state ${name} does not exist`);
      trace.push(prefix + name);
      if (state.Type === 'Succeed') return { value: current };
      if (state.Type === 'Fail') {
        const cause = state.CausePath ? String(getPath(current, state.CausePath)) : (state.Cause ?? '');
        return { value: current, failed: new StatesError(state.Error ?? 'States.Fail', cause) };
      }
      if (state.Type === 'Choice') {
        name = choose(state, current);
        continue;
      }
      if (state.Type === 'Wait') {
        await options.onWait?.(name, current);
        name = state.Next!;
        continue;
      }
      try {
        let result: unknown;
        if (state.Type === 'Task') result = await execTask(name, state, current);
        else if (state.Type === 'Map') result = await runMap(name, state, current);
        else result = current;
        const stateInput = current;
        current = setPath(current, state.ResultPath, result);
        options.onState?.(prefix + name, stateInput, current);
      } catch (err) {
        const e = err instanceof StatesError ? err : new StatesError((err as Error).name, (err as Error).message);
        const c = state.Catch?.find((x) => matches(x.ErrorEquals, e.errorName));
        if (!c) return { value: current, failed: e };
        current = setPath(current, c.ResultPath ?? '$', { Error: e.errorName, Cause: e.causeText });
        name = c.Next;
        continue;
      }
      if (state.End) return { value: current };
      name = state.Next!;
    }
    throw new Error('state machine did not finish in 1000 transitions');
  }

  const r = await run(machine, input, '', options.startAt);
  return r.failed
    ? { status: 'FAILED', error: r.failed.errorName, cause: r.failed.causeText, trace, notifications, output: r.value }
    : { status: 'SUCCEEDED', output: r.value, trace, notifications };
}

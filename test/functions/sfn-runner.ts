// A small interpreter for the Amazon States Language subset the pipeline uses (Task, Map in
// DISTRIBUTED mode run inline, Choice, Succeed, Fail, Retry, Catch, ResultPath), so the real
// synthesized definition can be run against the real handlers on a small input.
// https://states-language.net/spec.html

export interface AslState {
  Type: 'Task' | 'Map' | 'Choice' | 'Succeed' | 'Fail' | 'Pass';
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
  Error?: string;
  Cause?: string;
  CausePath?: string;
}
export interface AslMachine {
  StartAt: string;
  States: Record<string, AslState>;
}

export type TaskResolver = (resource: string, stateName: string) => ((input: unknown) => Promise<unknown>) | undefined;

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
export interface RunOptions {
  startAt?: string;
  /** $$.Execution.Id for Parameters (default: the `<context $$.Execution.Id>` placeholder). */
  executionArn?: string;
  /** Called once a `.waitForTaskToken` task's function has run, with the token it was given. */
  onTaskToken?: (task: { state: string; token: string }) => Promise<TaskTokenAnswer>;
}

function matches(errorEquals: string[], name: string): boolean {
  return errorEquals.includes('States.ALL') || errorEquals.includes(name);
}

function choose(state: AslState, input: unknown): string {
  for (const c of state.Choices ?? []) {
    const v = getPath(input, c.Variable);
    if ('NumericLessThanEquals' in c && typeof v === 'number' && v <= (c.NumericLessThanEquals as number)) return c.Next;
    if ('BooleanEquals' in c && v === c.BooleanEquals) return c.Next;
    if ('StringEquals' in c && v === c.StringEquals) return c.Next;
  }
  if (!state.Default) throw new StatesError('States.NoChoiceMatched', 'no choice matched');
  return state.Default;
}

/** Runs `machine` on `input`; Task resources are mapped to functions by `resolve`. */
export async function runStateMachine(machine: AslMachine, input: unknown, resolve: TaskResolver, options: RunOptions = {}): Promise<RunResult> {
  const trace: string[] = [];
  const notifications: RunResult['notifications'] = [];
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
      try {
        let result: unknown;
        if (state.Type === 'Task') result = await execTask(name, state, current);
        else if (state.Type === 'Map') {
          const items = getPath(current, state.ItemsPath ?? '$');
          if (!Array.isArray(items)) throw new StatesError('States.Runtime', `ItemsPath ${state.ItemsPath} is not an array`);
          result = [];
          for (const item of items) {
            const r = await run(state.ItemProcessor!, item, `${name}/`);
            if (r.failed) throw new StatesError('States.ExceedToleratedFailureThreshold', `${r.failed.errorName}: ${r.failed.causeText}`);
            (result as unknown[]).push(r.value);
          }
        } else result = current;
        current = setPath(current, state.ResultPath, result);
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

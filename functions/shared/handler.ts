// Wraps a step's logic as a Lambda handler: validate the event, read the environment, log one
// JSON line per outcome. Thrown FleetErrors keep their class name, which Step Functions matches
// in Retry/Catch (ValidationError is never retried; TransportError is).
import type { z } from 'zod';
import { describeError, FleetError } from '../../common/errors.ts';
import { parseWith } from '../../common/validate.ts';
import { handlerEnv, type HandlerEnv } from './env.ts';

export type StepHandler<R> = (event: unknown) => Promise<R>;

/** Builds a handler named `step` that parses its event with `schema` before calling `run`. */
export function defineHandler<S extends z.ZodType, R>(
  step: string,
  schema: S,
  run: (event: z.output<S>, env: HandlerEnv) => Promise<R>,
): StepHandler<R> {
  return async (raw: unknown) => {
    const started = Date.now();
    try {
      const env = handlerEnv();
      const event = parseWith(schema, raw, `${step} event`);
      const result = await run(event, env);
      log({ step, outcome: 'ok', ms: Date.now() - started });
      return result;
    } catch (err) {
      log({ step, outcome: 'error', ms: Date.now() - started, code: err instanceof FleetError ? err.code : 'INTERNAL', error: describeError(err) });
      throw err;
    }
  };
}

function log(fields: Record<string, unknown>): void {
  if (process.env.FLEETLM_QUIET_HANDLERS) return;
  process.stdout.write(`${JSON.stringify({ level: fields.outcome === 'ok' ? 'info' : 'error', ...fields })}\n`);
}

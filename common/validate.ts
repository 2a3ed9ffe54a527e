// Boundary validation: parse outside input with a zod schema and turn failures into a
// ValidationError whose message names each offending field.
import { z } from 'zod';
import { ValidationError } from './errors.ts';

/** Formats zod issues as "field.path: message" lines. */
export function formatIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues
    .map((issue) => {
      const path = issue.path.length > 0 ? issue.path.map(String).join('.') : '(root)';
      return `${path}: ${issue.message}`;
    })
    .join('; ');
}

/** Parses `value` with `schema`; throws ValidationError naming `what` and every bad field. */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const result = schema.safeParse(value);
  if (!result.success) {
    throw new ValidationError(`invalid ${what}: ${formatIssues(result.error.issues)}`, { cause: result.error });
  }
  return result.data;
}

/** Parses JSON text, then validates it; JSON syntax errors become ValidationErrors too. */
export function parseJsonWith<S extends z.ZodType>(schema: S, text: string, what: string): z.output<S> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ValidationError(`invalid ${what}: not valid JSON (${(err as Error).message})`, { cause: err });
  }
  return parseWith(schema, value, what);
}

/**
 * What a versioned message's schema does with fields it does not know. `reject`: the producer's own check (a
 * typo must fail); `strip`: a reader that uses the known fields; `keep`: a reader that stores or forwards the
 * message, so that a newer reader downstream still sees the fields this one does not know.
 */
export type UnknownFields = 'reject' | 'strip' | 'keep';

/**
 * `z.object` with the given policy for unknown keys. The output type is that of the known fields in every mode
 * (a kept field is carried, not read), so one shape gives the producer's and the readers' schemas.
 */
export function objectWith(unknown: UnknownFields) {
  return <S extends z.core.$ZodLooseShape>(shape: S): z.ZodObject<S, z.core.$strip> => {
    const o = z.object(shape);
    return (unknown === 'reject' ? o.strict() : unknown === 'keep' ? o.loose() : o) as unknown as z.ZodObject<S, z.core.$strip>;
  };
}

/**
 * For a reader of `family@major` messages: why `value` cannot be read when its `field` names the same family at
 * a higher major version (a message from newer software this reader would misread), else null. Anything else
 * (the right version, a wrong or missing id) is left to the schema.
 */
export function newerMajorReason(value: unknown, field: string, family: string, major: number, what: string): string | null {
  const id = value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[field] : undefined;
  const got = typeof id === 'string' ? newerMajorOf(id, family, major) : null;
  return got === null ? null : `${what}: ${field} '${id}' is major version ${got} of ${family}, newer than the ${family}@${major} this program reads; upgrade fleetlm to read it`;
}

/** Throws a ValidationError (VALIDATION_SCHEMA_VERSION) where newerMajorReason gives a reason. */
export function checkNotNewerMajor(value: unknown, field: string, family: string, major: number, what: string): void {
  const reason = newerMajorReason(value, field, family, major, what);
  if (reason !== null) throw new ValidationError(reason, { code: 'VALIDATION_SCHEMA_VERSION' });
}

/** The major version `id` gives `family` when it is above `major` (`fleetlm/telemetry@2`, `@2.1`), else null. */
export function newerMajorOf(id: string, family: string, major: number): number | null {
  if (!id.startsWith(`${family}@`)) return null;
  const m = /^(\d+)(?:\.\d+)*$/.exec(id.slice(family.length + 1));
  const got = m ? Number(m[1]) : NaN;
  return got > major ? got : null;
}

// Boundary validation: parse outside input with a zod schema and turn failures into a
// ValidationError whose message names each offending field.
import type { z } from 'zod';
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

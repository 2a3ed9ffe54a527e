// Typed errors shared by every FleetLM program. Each has a stable `code` callers can switch on,
// and a message that states the rule, the value that broke it, and what is allowed.

/** Base class: a stable machine-readable code plus an optional underlying cause. */
export class FleetError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Bad input or config: a person must change what they passed in. */
export class ValidationError extends FleetError {
  constructor(message: string, options?: { cause?: unknown; code?: string }) {
    super(options?.code ?? 'VALIDATION', message, options);
  }
}

/** MQTT, HTTP or S3 failure; `cause` keeps the transport's own error. */
export class TransportError extends FleetError {
  constructor(message: string, options?: { cause?: unknown; code?: string }) {
    super(options?.code ?? 'TRANSPORT', message, options);
  }
}

/** A model could not be loaded, built or run. */
export class ModelError extends FleetError {
  constructor(message: string, options?: { cause?: unknown; code?: string }) {
    super(options?.code ?? 'MODEL', message, options);
  }
}

/** Turns anything thrown into a one-line message fit for a terminal. */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    // Validation messages already name every bad field; their cause (a zod error) only repeats it.
    const showCause = err.cause instanceof Error && !(err instanceof ValidationError);
    const cause = showCause ? ` (cause: ${(err.cause as Error).message})` : '';
    return `${err.message}${cause}`;
  }
  return String(err);
}

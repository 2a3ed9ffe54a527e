// The local hub's expected API failures (rejections, not bugs), shared by the control plane and the Jobs
// device API; each API maps the kind to its own wire name.
import type { ExecutionRecord } from './job-store.ts';

/** Error kinds shared by both APIs; each API maps them to its own wire names. */
export type HubErrorKind =
  | 'ResourceNotFound'
  | 'ResourceAlreadyExists'
  | 'InvalidRequest'
  | 'InvalidStateTransition'
  | 'VersionMismatch'
  | 'LimitExceeded'
  | 'Conflict';

/** An expected API failure (a rejection), not a bug. */
export class HubApiError extends Error {
  readonly kind: HubErrorKind;
  readonly execution?: ExecutionRecord;
  constructor(kind: HubErrorKind, message: string, execution?: ExecutionRecord) {
    super(message);
    this.kind = kind;
    this.execution = execution;
  }
}

// cdk-nag wiring. cdk-nag 3 runs as a CDK policy-validation plugin and its suppressions are CDK's
// own `Validations.of(scope).acknowledge()`; its CommonJS exports are not statically detectable,
// so named imports fail under Node's ESM loader and the default import is used instead.
import { Validations } from 'aws-cdk-lib';
import cdkNag from 'cdk-nag';
import type { IConstruct } from 'constructs';

export const { AwsSolutionsChecks } = cdkNag;

/** One justified suppression; `finding` narrows it to e.g. `Resource::*`. */
export interface Suppression {
  id: string;
  reason: string;
  finding?: string;
}

/** Acknowledges nag rules on `scope` and everything under it; every entry must give a reason. */
export function suppress(scope: IConstruct, suppressions: readonly Suppression[]): void {
  for (const s of suppressions) {
    if (s.reason.trim().length < 10) throw new Error(`suppression ${s.id} needs a one-line justification`);
    // cdk-nag 3 reports rule ids as `<pack>::<rule>[<finding>]`.
    const rule = s.id.includes('::') ? s.id : `AwsSolutions::${s.id}`;
    Validations.of(scope).acknowledge({ id: s.finding ? `${rule}[${s.finding}]` : rule, reason: s.reason });
  }
}

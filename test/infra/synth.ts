// Test helper: synthesizes the whole CDK app once per test file (bundling skipped unless asked)
// and turns CloudFormation intrinsics into readable strings for exact comparisons.
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { buildApp, type FleetApp } from '../../infra/app.ts';

const CDK_JSON = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')) as { context: Record<string, unknown> };

export interface Synthesized {
  fleetApp: FleetApp;
  outdir: string;
  templates: { artifacts: Template; fleet: Template; pipeline: Template; observability: Template; operators: Template };
}

/** Synthesizes the app with cdk.json's context plus `context`; `bundle: false` skips esbuild. */
export function synthApp(context: Record<string, unknown> = {}, options: { bundle?: boolean } = {}): Synthesized {
  const outdir = mkdtempSync(path.join(os.tmpdir(), 'fleetlm-cdk-'));
  const app = new App({
    outdir,
    context: { ...CDK_JSON.context, ...(options.bundle ? {} : { 'aws:cdk:bundling-stacks': [] }), ...context },
  });
  const fleetApp = buildApp(app, {});
  app.synth();
  return {
    fleetApp,
    outdir,
    templates: {
      artifacts: Template.fromStack(fleetApp.artifacts),
      fleet: Template.fromStack(fleetApp.fleet),
      pipeline: Template.fromStack(fleetApp.pipeline),
      observability: Template.fromStack(fleetApp.observability),
      operators: Template.fromStack(fleetApp.operators),
    },
  };
}

/** Renders Fn::Join / Ref / GetAtt / ImportValue into one string: `<Ref>`, `<Id.Attr>`, `<import:Name>`. */
export function render(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (value && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    if ('Ref' in o) return `<${String(o.Ref)}>`;
    if ('Fn::GetAtt' in o) return `<${(o['Fn::GetAtt'] as string[]).join('.')}>`;
    if ('Fn::ImportValue' in o) return `<import:${render(o['Fn::ImportValue'])}>`;
    if ('Fn::Join' in o) {
      const [sep, parts] = o['Fn::Join'] as [string, unknown[]];
      return parts.map(render).join(sep);
    }
  }
  return JSON.stringify(value);
}

/** Replaces every intrinsic inside a JSON value with its rendered string. */
export function renderDeep(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(renderDeep);
  if (value && typeof value === 'object') {
    const keys = Object.keys(value);
    if (keys.length === 1 && /^(Ref|Fn::)/.test(keys[0]!)) return render(value);
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, renderDeep(v)]));
  }
  return value;
}

/** The one resource of `type` in a template (fails when there are more or none). */
export function onlyResource(t: Template, type: string): { logicalId: string; props: Record<string, unknown> } {
  const all = t.findResources(type);
  const ids = Object.keys(all);
  if (ids.length !== 1) throw new Error(`expected exactly one ${type}, found ${ids.length}`);
  return { logicalId: ids[0]!, props: (all[ids[0]!] as { Properties: Record<string, unknown> }).Properties };
}

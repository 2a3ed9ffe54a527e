// The manifest-signing key's policy and the operator roles, on the synthesized templates: only the publish roles
// may sign, admins (configured through env or context) administer without signing, the account root is never a
// signer, and the operator role ARNs are exported.
import { beforeAll, describe, expect, it } from 'vitest';
import { onlyResource, renderDeep, synthApp, type Synthesized } from './synth.ts';
import { KEY_ADMIN_ACTIONS } from '../../infra/constructs/signing-key-policy.ts';
import { loadInfraConfig } from '../../infra/config.ts';
import { ValidationError } from '../../common/errors.ts';

interface KeyStatement {
  Sid: string;
  Effect: string;
  Principal: { AWS: string };
  Action: string | string[];
  Resource: string;
  Condition: Record<string, Record<string, string | string[]>>;
}

const list = (v: string | string[]) => (Array.isArray(v) ? v : [v]);
const ADMIN = 'arn:aws:iam::111122223333:role/security-admins';

function keyPolicy(s: Synthesized): KeyStatement[] {
  const { props } = onlyResource(s.templates.artifacts, 'AWS::KMS::Key');
  return (renderDeep(props.KeyPolicy) as { Statement: KeyStatement[] }).Statement;
}
const principalsOf = (st: KeyStatement) => list(st.Condition.ArnLike!['aws:PrincipalArn']!);

let s: Synthesized;
beforeAll(() => {
  s = synthApp({ 'fleetlm:signingKeyAdmins': ADMIN });
});

describe('manifest-signing key policy', () => {
  it('given the defaults, when synthesized, then kms:Sign is allowed only to the publisher role and the pipeline publish function role', () => {
    const statements = keyPolicy(s);
    expect(statements.map((st) => st.Sid)).toEqual(['KeyAdministration', 'SignManifests', 'ReadPublicKey']);
    const signers = statements.filter((st) => list(st.Action).some((a) => a === 'kms:Sign' || a === 'kms:*' || a === 'kms:Sign*'));
    expect(signers.map((st) => st.Sid)).toEqual(['SignManifests']);
    expect(principalsOf(signers[0]!)).toEqual([
      'arn:<AWS::Partition>:iam::<AWS::AccountId>:role/fleetlm-publisher-us-east-1',
      'arn:<AWS::Partition>:iam::<AWS::AccountId>:role/fleetlm-pipeline-publish-us-east-1',
    ]);
    expect(signers[0]!.Condition.StringEquals).toEqual({ 'kms:SigningAlgorithm': 'ECDSA_SHA_256' });
    // Every statement is narrowed by aws:PrincipalArn; none is the open "account root: kms:*" default.
    for (const st of statements) {
      expect(list(st.Action)).not.toContain('kms:*');
      expect(st.Condition.ArnLike?.['aws:PrincipalArn'], st.Sid).toBeDefined();
    }
  });

  it('given the signer role names, when the pipeline and operators stacks are synthesized, then those exact roles exist there', () => {
    const publishRole = Object.values(s.templates.pipeline.findResources('AWS::IAM::Role')).map((r) => (r as { Properties: { RoleName?: string } }).Properties.RoleName);
    expect(publishRole).toContain('fleetlm-pipeline-publish-us-east-1');
    const operatorRoles = Object.values(s.templates.operators.findResources('AWS::IAM::Role')).map((r) => (r as { Properties: { RoleName: string } }).Properties.RoleName);
    expect(operatorRoles.sort()).toEqual(['fleetlm-device-registrar-us-east-1', 'fleetlm-publisher-us-east-1', 'fleetlm-rollout-operator-us-east-1', 'fleetlm-viewer-us-east-1']);
  });

  it('given an admin in context, when synthesized, then admins, the deployment role and the root user administer the key but cannot use it', () => {
    const admin = keyPolicy(s).find((st) => st.Sid === 'KeyAdministration')!;
    expect(list(admin.Action).sort()).toEqual([...KEY_ADMIN_ACTIONS].sort());
    for (const use of ['kms:Sign', 'kms:Verify', 'kms:GetPublicKey', 'kms:CreateGrant', 'kms:Encrypt', 'kms:Decrypt']) expect(list(admin.Action)).not.toContain(use);
    const who = principalsOf(admin);
    expect(who).toContain(ADMIN);
    expect(who).toContain('arn:<AWS::Partition>:iam::<AWS::AccountId>:root');
    expect(who.some((p) => p.includes('cfn-exec-role'))).toBe(true);
    expect(who).toHaveLength(3);
  });

  it('given the public key, when synthesized, then only the signers and the deploy-time export may read it', () => {
    const read = keyPolicy(s).find((st) => st.Sid === 'ReadPublicKey')!;
    expect(list(read.Action)).toEqual(['kms:GetPublicKey']);
    const who = principalsOf(read);
    expect(who).toHaveLength(3);
    expect(who.filter((p) => p.startsWith('<PublicKeyFnServiceRole'))).toHaveLength(1);
  });
});

describe('key admins and operator principals: defaults < env < context', () => {
  const get = (ctx: Record<string, unknown>) => (k: string) => ctx[k];
  it('given nothing, then no extra admins and the roles trust the account', () => {
    const c = loadInfraConfig(get({}), {});
    expect(c.signingKeyAdmins).toEqual([]);
    expect(c.operatorPrincipals).toEqual([]);
  });

  it('given env, then env applies; given context too, then context wins', () => {
    const env = { FLEETLM_SIGNING_KEY_ADMINS: `${ADMIN}, arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_*`, FLEETLM_OPERATOR_PRINCIPALS: 'arn:aws:iam::111122223333:user/ci' };
    expect(loadInfraConfig(get({}), env).signingKeyAdmins).toHaveLength(2);
    expect(loadInfraConfig(get({}), env).operatorPrincipals).toEqual(['arn:aws:iam::111122223333:user/ci']);
    const ctx = { 'fleetlm:signingKeyAdmins': JSON.stringify(['arn:aws:iam::111122223333:role/other']) };
    expect(loadInfraConfig(get(ctx), env).signingKeyAdmins).toEqual(['arn:aws:iam::111122223333:role/other']);
  });

  it('given something that is not an IAM principal ARN, then a ValidationError names the field', () => {
    expect(() => loadInfraConfig(get({ 'fleetlm:signingKeyAdmins': 'alice' }), {})).toThrow(ValidationError);
    expect(() => loadInfraConfig(get({}), { FLEETLM_OPERATOR_PRINCIPALS: 'arn:aws:iam::111122223333:role/*' })).toThrow(/operatorPrincipals/);
  });
});

describe('operator roles', () => {
  it('given the operators stack, when synthesized, then each role ARN is exported and trusts only the account by default', () => {
    const t = s.templates.operators;
    for (const out of ['PublisherRoleArn', 'RolloutOperatorRoleArn', 'ViewerRoleArn', 'DeviceRegistrarRoleArn']) t.hasOutput(out, {});
    t.hasOutput('PublisherRoleArn', { Export: { Name: 'fleetlm-publisher-role-arn' } });
    const trust = Object.values(t.findResources('AWS::IAM::Role')).map((r) => renderDeep((r as { Properties: { AssumeRolePolicyDocument: unknown } }).Properties.AssumeRolePolicyDocument));
    for (const doc of trust) expect(doc).toEqual({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 'sts:AssumeRole', Principal: { AWS: 'arn:<AWS::Partition>:iam::<AWS::AccountId>:root' } }] });
  });

  it('given operator principals in context, when synthesized, then the roles trust exactly those', () => {
    const custom = synthApp({ 'fleetlm:operatorPrincipals': 'arn:aws:iam::111122223333:role/ops,arn:aws:iam::111122223333:user/ci' });
    const trust = Object.values(custom.templates.operators.findResources('AWS::IAM::Role')).map(
      (r) => renderDeep((r as { Properties: { AssumeRolePolicyDocument: { Statement: Array<{ Principal: unknown }> } } }).Properties.AssumeRolePolicyDocument.Statement[0]!.Principal),
    );
    for (const p of trust) expect(p).toEqual({ AWS: ['arn:aws:iam::111122223333:role/ops', 'arn:aws:iam::111122223333:user/ci'] });
  });
});

// Anti-rollback against real agent processes and a real hub: a validly signed but older security version
// is refused, a forged, mismatched, unscoped (@1) or other-device rollback authorization is refused, a fleet-signed
// one naming the device's group is accepted, expired manifests are refused, and the floor survives an agent restart.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalKeySigner, generateSigningKeyPair } from '../../contracts/manifest-signing.ts';
import { LEGACY_ROLLBACK_AUTHORIZATION_FORMAT, signRollbackAuthorization } from '../../contracts/rollback-authorization.ts';
import { signManifestBytes } from '../../contracts/manifest-signing.ts';
import type { DeployModelDocumentInput } from '../../contracts/job-document.ts';
import { AgentProcess, TestFleet, buildTestModel, tempDir, type BuiltModel } from './agent-fixture.ts';

let fleet: TestFleet;
let m1: BuiltModel;
let m2: BuiltModel;
const agents: AgentProcess[] = [];

beforeAll(async () => {
  fleet = await TestFleet.start();
  m1 = await buildTestModel(41);
  m2 = await buildTestModel(42);
}, 120_000);

afterAll(async () => {
  for (const a of agents) await a.kill();
  await fleet?.stop();
});

async function healthz(agent: AgentProcess): Promise<unknown> {
  return ((await (await fetch(`http://127.0.0.1:${agent.httpPort}/healthz`)).json()) as { model: unknown }).model;
}

describe('security versions', () => {
  it('refuses an older security version unless the job carries a fleet-signed rollback authorization', async () => {
    const thing = 'anti-rollback-1';
    const arn = await fleet.createThing(thing);
    const dir = await tempDir('fleetlm-agent-ar-');
    // The device's configuration says which thing group it is in (as `fleetlm device register --group` writes it).
    const inGroup = { FLEETLM_AGENT_THING_GROUPS: 'ar-canary' };
    let agent = await AgentProcess.start(fleet, thing, dir, inGroup);
    agents.push(agent);
    const run = async (jobId: string, doc: DeployModelDocumentInput) => {
      await fleet.createJob(jobId, arn, doc);
      return fleet.waitTerminal(jobId, thing, 60_000);
    };
    const v1 = await fleet.publish('ar', '1', m1, { securityVersion: 1 });
    const v2 = await fleet.publish('ar', '2', m2, { securityVersion: 2 });
    const v1b = await fleet.publish('ar', '1b', m1, { securityVersion: 1 });
    expect((await run('ar-v1', v1)).status).toBe('SUCCEEDED');
    expect((await run('ar-v2', v2)).status).toBe('SUCCEEDED');

    // Whoever can create a job redeploys the older, validly signed version: refused.
    const plain = await run('ar-back-plain', v1);
    expect(plain.status).toBe('FAILED');
    expect(plain.statusDetails?.detailsMap).toMatchObject({ code: 'VALIDATION_ROLLBACK_REFUSED', step: 'verifying' });
    expect(await healthz(agent)).toEqual({ modelId: 'ar', version: '2' });

    // An authorization signed by another key, for another version, expired, for other devices, or unscoped does not help.
    const fleetKey = new LocalKeySigner(fleet.keys.privateKeyPem);
    const here = { things: [thing] };
    const forged = await signRollbackAuthorization({ modelId: 'ar', version: '1', scope: here }, new LocalKeySigner(generateSigningKeyPair().privateKeyPem));
    const wrongVersion = await signRollbackAuthorization({ modelId: 'ar', version: '1b', scope: here }, fleetKey);
    const expired = await signRollbackAuthorization({ modelId: 'ar', version: '1', scope: here }, fleetKey, { now: new Date(Date.now() - 3 * 3600_000), validForMs: 3600_000 });
    // Captured from a rollback of other devices and replayed here: refused.
    const otherThing = await signRollbackAuthorization({ modelId: 'ar', version: '1', scope: { things: ['someone-else'] } }, fleetKey);
    const otherGroup = await signRollbackAuthorization({ modelId: 'ar', version: '1', scope: { thingGroups: ['ar-production'] } }, fleetKey);
    // The format of earlier releases named no devices: signed by the fleet key, still refused.
    const now = new Date();
    const legacyText = JSON.stringify({ format: LEGACY_ROLLBACK_AUTHORIZATION_FORMAT, modelId: 'ar', version: '1', issuedAt: now.toISOString(), expiresAt: new Date(now.getTime() + 3600_000).toISOString() });
    const legacy = { authorization: legacyText, signature: await signManifestBytes(Buffer.from(legacyText), fleetKey) };
    for (const [jobId, auth] of [['ar-forged', forged], ['ar-wrong-version', wrongVersion], ['ar-expired-auth', expired], ['ar-other-thing', otherThing], ['ar-other-group', otherGroup], ['ar-unscoped', legacy]] as const) {
      const e = await run(jobId, { ...v1, rollbackAuthorization: auth });
      expect(e.status, jobId).toBe('FAILED');
      expect(e.statusDetails?.detailsMap?.code, jobId).toBe('VALIDATION_ROLLBACK_AUTHORIZATION');
    }
    expect(await healthz(agent)).toEqual({ modelId: 'ar', version: '2' });

    // The fleet key's explicit rollback for exactly this version, naming the device's group, is accepted.
    const signed = await signRollbackAuthorization({ modelId: 'ar', version: '1', scope: { thingGroups: ['ar-production', 'ar-canary'] } }, fleetKey);
    expect((await run('ar-back-signed', { ...v1, rollbackAuthorization: signed })).status).toBe('SUCCEEDED');
    expect(await healthz(agent)).toEqual({ modelId: 'ar', version: '1' });

    // The floor stays at 2 (an authorised rollback lowers nothing) and survives a restart.
    await agent.stop();
    agent = await AgentProcess.start(fleet, thing, dir, inGroup);
    agents.push(agent);
    const after = await run('ar-v1b-after-restart', v1b);
    expect(after.status).toBe('FAILED');
    expect(after.statusDetails?.detailsMap?.code).toBe('VALIDATION_ROLLBACK_REFUSED');

    // An expired manifest is refused whatever its security version.
    const stale = await fleet.publish('ar', '3', m2, { securityVersion: 3, expiresAt: new Date(Date.now() - 60_000).toISOString() });
    const e = await run('ar-expired', stale);
    expect(e.status).toBe('FAILED');
    expect(e.statusDetails?.detailsMap?.code).toBe('VALIDATION_MANIFEST_EXPIRED');
    expect(await healthz(agent)).toEqual({ modelId: 'ar', version: '1' });
  }, 300_000);
});

// The update-agent@1 job document beside deploy-model@1, and the agent package contract's names and entry rules.
import { describe, expect, it } from 'vitest';
import {
  agentPackageFileName,
  packageEntryPath,
  packageLinkTarget,
  parseAgentManifestBytes,
  parseAgentPackageFileName,
} from '../../contracts/agent-package.ts';
import { parseDeployModelDocument, parseJobDocument, parseUpdateAgentDocument, type UpdateAgentDocumentInput } from '../../contracts/job-document.ts';

const SHA = 'a'.repeat(64);

function pkg(arch: 'arm64' | 'x64', version = '1.2.0') {
  return {
    platform: 'linux' as const,
    arch,
    manifest: { url: `https://b/agents/${version}/linux-${arch}/manifest.json`, sha256: SHA, size: 300 },
    signature: { url: `https://b/agents/${version}/linux-${arch}/manifest.sig.json` },
    artifact: { name: agentPackageFileName(version, 'linux', arch), url: 'https://b/x', sha256: SHA, size: 1000 },
  };
}

const UPDATE: UpdateAgentDocumentInput = { schema: 'fleetlm/update-agent@1', version: '1.2.0', packages: [pkg('arm64'), pkg('x64')] };
const DEPLOY = {
  schema: 'fleetlm/deploy-model@1',
  modelId: 'tiny',
  version: '1',
  manifest: { url: 'https://b/m', sha256: SHA, size: 10 },
  signature: { url: 'https://b/s' },
  artifacts: [{ name: 'model.onnx', url: 'https://b/a', sha256: SHA, size: 10 }],
};

describe('job documents', () => {
  it('tells the two kinds apart by schema, and existing deploy documents stay valid', () => {
    expect(parseJobDocument(DEPLOY).schema).toBe('fleetlm/deploy-model@1');
    expect(parseDeployModelDocument(DEPLOY).healthCheck.prompt).toBe('Hello');
    const u = parseJobDocument(UPDATE);
    expect(u.schema).toBe('fleetlm/update-agent@1');
    expect(parseUpdateAgentDocument(UPDATE).confirmTimeoutSec).toBe(120);
  });

  it('names the bad field and the schema in errors', () => {
    expect(() => parseJobDocument({ schema: 'fleetlm/other@1' })).toThrow(/job document \(schema fleetlm\/deploy-model@1 or fleetlm\/update-agent@1\)/);
    expect(() => parseJobDocument({ ...UPDATE, confirmTimeoutSec: 0 })).toThrow(/fleetlm\/update-agent@1 job document: confirmTimeoutSec/);
  });

  it('refuses two packages for one arch and an artifact named for another version or arch', () => {
    expect(() => parseUpdateAgentDocument({ ...UPDATE, packages: [pkg('x64'), pkg('x64')] })).toThrow(/duplicate package for linux-x64/);
    expect(() => parseUpdateAgentDocument({ ...UPDATE, packages: [pkg('x64', '9.9.9')] })).toThrow(/must be fleetlm-agent-1\.2\.0-linux-x64\.tar\.gz/);
    const wrongArch = { ...pkg('x64'), artifact: { ...pkg('x64').artifact, name: agentPackageFileName('1.2.0', 'linux', 'arm64') } };
    expect(() => parseUpdateAgentDocument({ ...UPDATE, packages: [wrongArch] })).toThrow(/packages\.0\.artifact\.name/);
  });
});

describe('agent package contract', () => {
  it('round-trips the file name and refuses others', () => {
    expect(parseAgentPackageFileName('fleetlm-agent-1.2.0-rc.1-linux-arm64.tar.gz')).toEqual({ version: '1.2.0-rc.1', platform: 'linux', arch: 'arm64' });
    for (const bad of ['fleetlm-agent-1.2.0-linux-riscv64.tar.gz', 'fleetlm-agent-1.2.0-darwin-arm64.tar.gz', 'agent-1.2.0-linux-x64.tar.gz', 'fleetlm-agent--linux-x64.tar.gz']) {
      expect(parseAgentPackageFileName(bad), bad).toBeUndefined();
    }
  });

  it('confines entries to the top folder', () => {
    expect(packageEntryPath('1.0', 'fleetlm-agent-1.0/')).toEqual({ path: '' });
    expect(packageEntryPath('1.0', 'fleetlm-agent-1.0/bin/fleetlm-agent')).toEqual({ path: 'bin/fleetlm-agent' });
    for (const bad of ['fleetlm-agent-1.0/../x', 'fleetlm-agent-1.0//x', 'fleetlm-agent-1.0/./x', '/fleetlm-agent-1.0/x', 'fleetlm-agent-1.1/x', 'x', 'fleetlm-agent-1.0/a\\b']) {
      expect(packageEntryPath('1.0', bad), bad).toHaveProperty('error');
    }
    expect(packageLinkTarget('lib/a', '../bin/x')).toEqual({ resolved: 'bin/x' });
    expect(packageLinkTarget('lib/a', '..')).toEqual({ resolved: '' });
    expect(packageLinkTarget('lib/a', '../..')).toHaveProperty('error');
    expect(packageLinkTarget('a', '/etc')).toHaveProperty('error');
  });

  it('ties the manifest package name to version and arch', () => {
    const m = { format: 'fleetlm/agent-manifest@1', version: '1.0', platform: 'linux', arch: 'x64', createdAt: new Date().toISOString(), package: { name: 'fleetlm-agent-1.0-linux-x64.tar.gz', size: 5, sha256: SHA } };
    expect(parseAgentManifestBytes(Buffer.from(JSON.stringify(m))).arch).toBe('x64');
    expect(() => parseAgentManifestBytes(Buffer.from(JSON.stringify({ ...m, arch: 'arm64' })))).toThrow(/must be fleetlm-agent-1\.0-linux-arm64\.tar\.gz/);
  });
});

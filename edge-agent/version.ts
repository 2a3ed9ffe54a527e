// The agent's version string: baked into the bundle by the build (esbuild define), read from
// edge-agent/package.json when running from the TypeScript sources.
import { readFileSync } from 'node:fs';

declare const FLEETLM_AGENT_VERSION: string | undefined;

function sourceVersion(): string {
  return (JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

/** What `fleetlm-agent --version` prints and telemetry reports as the agent version. */
export const AGENT_VERSION: string = typeof FLEETLM_AGENT_VERSION === 'string' ? FLEETLM_AGENT_VERSION : sourceVersion();

// What the launcher tells the agent it starts, through the environment: the agent home and the version
// directory it runs from. An agent started without the launcher has no context and refuses self-updates.

export const ENV_AGENT_HOME = 'FLEETLM_AGENT_HOME';
export const ENV_AGENT_VERSION = 'FLEETLM_AGENT_VERSION';

export interface LaunchContext {
  agentHome: string;
  /** The versions/<version> directory name this process runs from: the agent's identity for self-update. */
  version: string;
}

/** Reads the launch context from the environment; null when the agent was not started by the launcher. */
export function readLaunchContext(env: NodeJS.ProcessEnv): LaunchContext | null {
  const agentHome = env[ENV_AGENT_HOME];
  const version = env[ENV_AGENT_VERSION];
  return agentHome && version ? { agentHome, version } : null;
}

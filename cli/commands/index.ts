// The list of CLI commands: each module exports `register(program)`; add new ones here with the names it
// registers and their one-line descriptions. Modules load only when one of their commands runs, so
// `fleetlm --help` does not pay for the AWS SDK, onnxruntime or the local hub.
import type { Command } from 'commander';

export interface CommandModule {
  register(program: Command): void;
}

export interface CommandEntry {
  /** Top-level command name -> the description its module gives it (checked by test/cli/catalog.test.ts). */
  commands: Readonly<Record<string, string>>;
  load(): Promise<CommandModule>;
}

export const COMMANDS: ReadonlyArray<CommandEntry> = [
  { commands: { search: 'Search a decoder architecture within budgets (MeRino evolutionary search; objective selectable)' }, load: () => import('./search.ts') },
  { commands: { build: 'Build an ONNX decoder (KV cache, Optimum I/O names) from an architecture spec' }, load: () => import('./build.ts') },
  {
    commands: { import: 'Import a Hugging Face checkpoint folder (GPT-2, OPT, Llama, Qwen2, Mistral) as an ONNX model bundle' },
    load: () => import('./import.ts'),
  },
  { commands: { generate: 'Generate text with an ONNX causal LM (KV cache, Optimum I/O names), streaming tokens to stdout' }, load: () => import('./generate.ts') },
  { commands: { perplexity: 'Sliding-window perplexity of an ONNX causal LM on a UTF-8 text file' }, load: () => import('./perplexity.ts') },
  { commands: { compress: 'Compress the token embedding of an ONNX model (tensor-train, TT-matrix or SVD)' }, load: () => import('./compress.ts') },
  {
    commands: { quantize: 'Quantize the weight matrices of an ONNX decoder to int4/int8 blocks (onnxruntime MatMulNBits)' },
    load: () => import('./quantize.ts'),
  },
  { commands: { train: 'Train an architecture from scratch on CPU; writes a FleetLM-native safetensors checkpoint' }, load: () => import('./train.ts') },
  { commands: { local: 'Run the local fleet hub (AWS IoT + Jobs + S3 on loopback).' }, load: () => import('./local.ts') },
  {
    commands: {
      publish: 'Sign and upload a model bundle to S3 under models/{id}/{version}/ (versions are immutable)',
      rollout: 'Deploy a published model version, or publish and deploy an agent package (self-update), to a thing group as an IoT Job',
      status: 'Per-device progress of a rollout job (and of its canary job <job>-canary, when it had one)',
      cancel: 'Cancel a rollout job, and its canary job <job>-canary when it has one',
      rollback: 'Roll the group back to the last version that succeeded on it before the current one',
      'authorize-rollback': 'Sign a rollback authorization for one model version, scoped to thing groups and/or things (for rollback --authorization)',
      telemetry: 'Latency, tokens/s, memory and energy per device and per model version',
      keygen: 'Create an ECDSA P-256 key pair for signing manifests in local mode',
      'kms-public-key': "Export the KMS manifest-signing key's public key as PEM for agents",
    },
    load: () => import('./fleet.ts'),
  },
  {
    commands: { devices: 'Devices at a glance: online state, last seen, group, model version, job, temperature, power, speed' },
    load: () => import('./devices.ts'),
  },
  { commands: { jobs: 'Rollout history per group, newest first, with outcome counts' }, load: () => import('./jobs.ts') },
  {
    commands: {
      benchmark: 'Time a grid of layer microbenchmarks on every device of a group (one benchmark job per device)',
      latency: 'Merge the fleet-measured layer latencies of a group per device class (--check: predicted vs reported decode latency)',
    },
    load: () => import('./latency.ts'),
  },
  {
    commands: {
      versions: 'Published model versions: size, compression, quality, deprecation and the devices running each',
      deprecate: 'Mark a published version deprecated so rollouts refuse it (--undo lifts the mark)',
    },
    load: () => import('./versions.ts'),
  },
  {
    commands: { console: 'Serve the operator web console (devices, jobs, telemetry charts, model registry) on 127.0.0.1' },
    load: () => import('./console.ts'),
  },
  {
    commands: { approve: "Approve (or --reject) a pipeline run's rollout after reading its quality figures; --list shows approvals" },
    load: () => import('./approve.ts'),
  },
  { commands: { device: 'register devices with the fleet' }, load: () => import('./device.ts') },
  { commands: { agent: 'Bundle and package the device agent (tar.gz and .deb per architecture)' }, load: () => import('./agent.ts') },
  {
    commands: { demo: 'Run the local demo: hub, 3 devices, search, build, compress, evaluate, publish, rollout, report, broken rollout, rollback' },
    load: () => import('./demo.ts'),
  },
];

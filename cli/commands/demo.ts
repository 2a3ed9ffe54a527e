// `fleetlm demo`: the whole system on one machine in one command (README's first command).
// Ctrl-C or SIGTERM stops the pipeline and every process it started before exiting.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { ValidationError } from '../../common/errors.ts';
import { DEFAULT_DEMO, DEMO_SIGNING_KEY_FILE, runDemo } from '../../local-demo/demo.ts';
import { killAllAgentsSync } from '../../local-demo/agents.ts';
import { tokenizerPathFor } from '../../models/training/bpe-trainer.ts';

function int(value: string, flag: string, min: number, max: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || n < min || n > max) throw new ValidationError(`${flag} must be an integer in ${min}..${max}; got ${JSON.stringify(value)}`);
  return n;
}

function fraction(value: string, flag: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n > 10) throw new ValidationError(`${flag} must be a fraction in 0..10, e.g. 0.05 for 5%; got ${JSON.stringify(value)}`);
  return n;
}

/** Registers `fleetlm demo`. */
export function register(program: Command): void {
  program
    .command('demo')
    .description('Run the local demo: hub, 3 devices, search, build, compress, evaluate, publish, rollout, report, broken rollout, rollback')
    .option('--dir <dir>', 'keep everything in this directory (default: a temp directory, removed at the end)')
    .option('--keep', 'keep the temp directory (hub state, device logs, bundles) for inspection')
    .option('--devices <n>', `number of devices (default ${DEFAULT_DEMO.devices})`)
    .option('--device-class <id>', `device class for the search: jetson-nano, jetson-orin-nano, rpi4, rpi5 (default ${DEFAULT_DEMO.deviceClass})`)
    .option('--seed <n>', `search and weight seed (default ${DEFAULT_DEMO.seed})`)
    .option('--searched', 'ship the searched design with seeded random weights (GPT-2 tokenizer) instead of the trained demo model in assets/demo-model')
    .option('--arch <file>', 'ship another trained model: its architecture (spec or search result JSON); needs --weights; skips the search')
    .option('--weights <ckpt>', 'ship another trained model: its FleetLM-layout safetensors checkpoint (its X.tokenizer.json ships too when present); needs --arch')
    .option('--no-broken', 'skip the broken rollout and rollback')
    .option('--no-quantize', 'ship float weights: skip the int4/int8 quantization after the embedding compression')
    .option('--max-perplexity-increase <f>', `quality gate: largest allowed perplexity increase over the dense model, a fraction (default ${DEFAULT_DEMO.maxPerplexityIncrease})`)
    .option('--stay', 'keep the hub and devices running after the demo, for trying fleetlm commands with --local, until Ctrl-C')
    .option('--json', 'print the result as JSON on stdout (progress goes to stderr)')
    .action(async (o: { dir?: string; keep?: boolean; devices?: string; deviceClass?: string; seed?: string; broken: boolean; json?: boolean; stay?: boolean; arch?: string; weights?: string; searched?: boolean; quantize: boolean; maxPerplexityIncrease?: string }) => {
      // Node 20 is supported here; the SDK's notice about its 2027 releases is noise in a demo.
      process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
      const controller = new AbortController();
      let signals = 0;
      const onSignal = (sig: NodeJS.Signals) => {
        signals += 1;
        process.stderr.write(`\nfleetlm demo: ${sig}, stopping devices and hub...\n`);
        controller.abort();
        // A second Ctrl-C does not wait for a graceful stop.
        if (signals > 1) {
          killAllAgentsSync();
          process.exit(130);
        }
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      process.on('exit', killAllAgentsSync);
      if ((o.arch === undefined) !== (o.weights === undefined)) throw new ValidationError('--arch and --weights go together: pass both to ship a trained model, or neither');
      if (o.searched && o.arch) throw new ValidationError('--searched ships the searched design with random weights; it cannot be combined with --arch/--weights');
      const trainedTokenizer = o.weights && existsSync(tokenizerPathFor(o.weights)) ? tokenizerPathFor(o.weights) : undefined;
      let completed = false;
      const log = (line: string) => (o.json ? process.stderr : process.stdout).write(`${line}\n`);
      try {
        const result = await runDemo({
          ...DEFAULT_DEMO,
          dir: o.dir,
          keep: o.keep === true || o.dir !== undefined,
          devices: o.devices ? int(o.devices, '--devices', 1, 20) : DEFAULT_DEMO.devices,
          deviceClass: o.deviceClass ?? DEFAULT_DEMO.deviceClass,
          seed: o.seed ? int(o.seed, '--seed', 0, 2 ** 31) : DEFAULT_DEMO.seed,
          broken: o.broken,
          quantize: o.quantize,
          maxPerplexityIncrease: o.maxPerplexityIncrease === undefined ? DEFAULT_DEMO.maxPerplexityIncrease : fraction(o.maxPerplexityIncrease, '--max-perplexity-increase'),
          ship: o.searched ? 'searched' : 'trained',
          trained: o.arch && o.weights ? { archPath: o.arch, weightsPath: o.weights, ...(trainedTokenizer ? { tokenizerPath: trainedTokenizer } : {}) } : undefined,
          log,
          signal: controller.signal,
          inspect: o.stay
            ? async (live) => {
                const hubDir = path.join(live.result.dir, 'hub');
                log(`\nHub and devices keep running. In another terminal try:\n  node bin/fleetlm.js devices --local ${hubDir}\n  node bin/fleetlm.js telemetry --local ${hubDir}\n  node bin/fleetlm.js rollback --group ${live.group} --local ${hubDir} --watch\n  node bin/fleetlm.js publish --local ${hubDir} --key ${path.join(live.result.dir, DEMO_SIGNING_KEY_FILE)} --model-dir BUNDLE --model-id ID --version V\n  curl -s ${live.agents[0]!.httpUrl}/v1/generate -H 'content-type: application/json' -d '{"prompt":"Call me Ishmael","maxTokens":16}'\nPress Ctrl-C to stop.`);
                await new Promise<void>((resolve) => controller.signal.addEventListener('abort', () => resolve(), { once: true }));
              }
            : undefined,
        });
        completed = true;
        if (o.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        else if (o.keep || o.dir) log(`\nKept ${result.dir}; its hub is stopped. Inspect with e.g. ls ${result.dir}/devices/*/agent.log`);
      } catch (err) {
        // After Ctrl-C the pipeline's own error is only a consequence; everything is already stopped.
        if (!controller.signal.aborted) throw err;
        process.stderr.write('fleetlm demo: interrupted; devices and hub stopped\n');
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        process.off('exit', killAllAgentsSync);
      }
      // 128 + SIGINT, as shells report it; everything this command started is already stopped.
      if (controller.signal.aborted && !completed) process.exit(130);
    });
}

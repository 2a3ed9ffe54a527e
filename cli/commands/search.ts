// `fleetlm search`: evolutionary architecture search (MeRino's entropy or another objective) under parameter,
// FLOP, memory and latency budgets. Settings: defaults in code < --config file < FLEETLM_SEARCH_* environment < flags.
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import cliProgress from 'cli-progress';
import { z } from 'zod';
import { ValidationError } from '../../common/errors.ts';
import { parseJsonWith, parseWith } from '../../common/validate.ts';
import { writeJsonAtomic } from '../../common/atomic-file.ts';
import { formatBytes, formatCount, parseBytes, parseCount, parseDurationMs } from '../../common/units.ts';
import { ffnWidthOf } from '../../models/arch/spec.ts';
import { describeWeightStorage } from '../../models/arch/weight-storage.ts';
import { toHuggingFaceConfig } from '../../models/arch/hf-config.ts';
import { DEFAULT_FFN_RATIOS, DEFAULT_MIN_EMBEDDING_WIDTH, DEFAULT_OBJECTIVE, DEFAULT_WIDTHS, SEARCH_OBJECTIVES, SearchOptionsSchema, searchArchitecture, type SearchObjective, type SearchOptions, type SearchResult } from '../../models/search/search.ts';
import { DEVICE_IDS, parseDeviceProfile } from '../../models/search/device-profiles.ts';
import { loadLatencyTable } from '../../models/search/latency-table.ts';
import { FAMILY_FLAG_CHOICES, parseFamilyFlag, type FamilyFlag } from '../family-flag.ts';

interface Flags {
  config?: string;
  objective?: string;
  maxLayers?: string;
  headDim?: string;
  params?: string;
  flops?: string;
  memory?: string;
  latency?: string;
  device?: string;
  deviceFile?: string;
  unit?: 'gpu' | 'cpu';
  latencyTable?: string;
  seed?: string;
  iterations?: string;
  population?: string;
  parents?: string;
  blocks?: string;
  embeddingWidth?: string;
  minEmbeddingWidth?: string;
  minAttentionRatio?: string;
  vocab?: string;
  context?: string;
  seqLen?: string;
  bytesPerWeight?: string;
  family?: string;
  weightBits?: string;
  blockSize?: string;
  ropeTheta?: string;
  rhoMax?: string;
  alphaAttention?: string;
  alphaFfn?: string;
  weightSharing?: 'never' | 'always' | 'search';
  untiedHead?: boolean;
  symmetric?: boolean;
  out?: string;
  hfConfig?: string;
  json?: boolean;
  verbose?: boolean;
  /** Fleet group whose merged layer-latency table replaces the roofline (needs --device). */
  group?: string;
  local?: string | boolean;
  profile?: string;
  awsProfile?: string;
  region?: string;
  bucket?: string;
}

// Keys a config file or the environment may set; values as on the command line.
const SETTING_KEYS = [
  'objective', 'params', 'flops', 'memory', 'latency', 'device', 'deviceFile', 'unit', 'latencyTable', 'seed', 'iterations', 'population', 'parents',
  'blocks', 'maxLayers', 'headDim', 'embeddingWidth', 'minEmbeddingWidth', 'minAttentionRatio', 'vocab', 'context', 'seqLen', 'bytesPerWeight', 'family', 'weightBits', 'blockSize', 'ropeTheta', 'rhoMax', 'alphaAttention', 'alphaFfn', 'weightSharing',
] as const;
type SettingKey = (typeof SETTING_KEYS)[number];

const ConfigFileSchema = z
  .object(Object.fromEntries(SETTING_KEYS.map((k) => [k, z.union([z.string(), z.number()]).optional()])) as Record<SettingKey, z.ZodOptional<z.ZodUnion<[z.ZodString, z.ZodNumber]>>>)
  .strict();

function envName(key: string): string {
  return `FLEETLM_SEARCH_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new ValidationError(`cannot read ${what} '${path}': ${(err as Error).message}`, { cause: err });
  }
}

/** Merges file < environment < flags into one string map. */
function layered(flags: Flags, env: NodeJS.ProcessEnv): Partial<Record<SettingKey, string>> {
  const merged: Partial<Record<SettingKey, string>> = {};
  if (flags.config) {
    const file = parseJsonWith(ConfigFileSchema, readText(flags.config, '--config'), `search config ${flags.config}`);
    for (const k of SETTING_KEYS) if (file[k] !== undefined) merged[k] = String(file[k]);
  }
  for (const k of SETTING_KEYS) {
    const v = env[envName(k)];
    if (v !== undefined && v !== '') merged[k] = v;
  }
  for (const k of SETTING_KEYS) {
    const v = flags[k];
    if (v !== undefined) merged[k] = String(v);
  }
  return merged;
}

function integer(text: string | undefined, what: string): number | undefined {
  if (text === undefined) return undefined;
  const v = parseCount(text, what);
  if (!Number.isInteger(v)) throw new ValidationError(`${what} must be a whole number; got '${text}'`);
  return v;
}

function real(text: string | undefined, what: string): number | undefined {
  if (text === undefined) return undefined;
  const v = Number(text);
  if (text.trim() === '' || !Number.isFinite(v) || v < 0) throw new ValidationError(`${what} must be a non-negative number; got '${text}'`);
  return v;
}

function positive(v: number | undefined, what: string, text: string | undefined): number | undefined {
  if (v !== undefined && v <= 0) throw new ValidationError(`${what} must be greater than zero; got '${text}'`);
  return v;
}

function atMostOne(v: number | undefined, what: string, text: string | undefined): number | undefined {
  if (v !== undefined && v > 1) throw new ValidationError(`${what} must be between 0 and 1; got '${text}'`);
  return v;
}

function oneOf<T extends string>(text: string | undefined, allowed: readonly T[], what: string): T | undefined {
  if (text === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(text)) throw new ValidationError(`${what} must be one of ${allowed.join(', ')}; got '${text}'`);
  return text as T;
}

function bitsOf(text: string | undefined): 32 | 16 | 8 | 4 | undefined {
  const v = oneOf(text, ['32', '16', '8', '4'] as const, '--weight-bits');
  return v === undefined ? undefined : (Number(v) as 32 | 16 | 8 | 4);
}

function blockSizeOf(text: string | undefined): 32 | 64 | 128 | undefined {
  const v = oneOf(text, ['32', '64', '128'] as const, '--block-size');
  return v === undefined ? undefined : (Number(v) as 32 | 64 | 128);
}

/** The search's name for a family: `gpt` for gpt2 (the name its options and results have always used). */
function searchFamilyOf(f: FamilyFlag | undefined): 'gpt' | 'llama' | undefined {
  return f === undefined ? undefined : f === 'gpt2' ? 'gpt' : f;
}

/** Turns the layered settings into search options (every value validated). */
export function searchOptionsFrom(s: Partial<Record<SettingKey, string>>, flags: Pick<Flags, 'untiedHead' | 'symmetric'> = {}): SearchOptions {
  const device = s.deviceFile ? parseDeviceProfile(parseJsonWith(z.unknown(), readText(s.deviceFile, '--device-file'), `device file ${s.deviceFile}`)) : s.device;
  if (typeof device === 'string' && !DEVICE_IDS.includes(device)) {
    throw new ValidationError(`--device must be one of ${DEVICE_IDS.join(', ')}; got '${device}' (use --device-file for others)`);
  }
  // Said here in flags: the library's own message names its fields.
  if (s.latency !== undefined && device === undefined && !s.latencyTable) {
    throw new ValidationError(`--latency needs a device to model latency on: pass --device (${DEVICE_IDS.join(', ')}), --device-file or --latency-table`);
  }
  const opts: SearchOptions = {
    objective: oneOf(s.objective, SEARCH_OBJECTIVES, '--objective'),
    budgets: {
      params: positive(s.params === undefined ? undefined : parseCount(s.params, '--params'), '--params', s.params),
      flops: positive(s.flops === undefined ? undefined : parseCount(s.flops, '--flops'), '--flops', s.flops),
      decodeMemoryBytes: positive(s.memory === undefined ? undefined : parseBytes(s.memory, '--memory'), '--memory', s.memory),
      latencyMs: positive(s.latency === undefined ? undefined : parseDurationMs(s.latency, '--latency'), '--latency', s.latency),
    },
    device,
    computeUnit: oneOf(s.unit, ['gpu', 'cpu'] as const, '--unit'),
    latencyTable: s.latencyTable ? loadLatencyTable(s.latencyTable) : undefined,
    seed: integer(s.seed, '--seed'),
    iterations: integer(s.iterations, '--iterations'),
    population: positive(integer(s.population, '--population'), '--population', s.population),
    parentSetSize: positive(integer(s.parents, '--parents'), '--parents', s.parents),
    blocks: positive(integer(s.blocks, '--blocks'), '--blocks', s.blocks),
    maxLayersPerBlock: positive(integer(s.maxLayers, '--max-layers'), '--max-layers', s.maxLayers),
    headDim: positive(integer(s.headDim, '--head-dim'), '--head-dim', s.headDim),
    embeddingWidth: positive(integer(s.embeddingWidth, '--embedding-width'), '--embedding-width', s.embeddingWidth),
    minEmbeddingWidth: positive(integer(s.minEmbeddingWidth, '--min-embedding-width'), '--min-embedding-width', s.minEmbeddingWidth),
    minAttentionRatio: atMostOne(real(s.minAttentionRatio, '--min-attention-ratio'), '--min-attention-ratio', s.minAttentionRatio),
    vocabSize: positive(integer(s.vocab, '--vocab'), '--vocab', s.vocab),
    contextLength: positive(integer(s.context, '--context'), '--context', s.context),
    seqLen: positive(integer(s.seqLen, '--seq-len'), '--seq-len', s.seqLen),
    bytesPerWeight: positive(real(s.bytesPerWeight, '--bytes-per-weight'), '--bytes-per-weight', s.bytesPerWeight),
    family: searchFamilyOf(parseFamilyFlag(s.family)),
    weightBits: bitsOf(s.weightBits),
    blockSize: blockSizeOf(s.blockSize),
    ropeTheta: positive(real(s.ropeTheta, '--rope-theta'), '--rope-theta', s.ropeTheta),
    rhoMax: positive(real(s.rhoMax, '--rho-max'), '--rho-max', s.rhoMax),
    alphaAttention: real(s.alphaAttention, '--alpha-attention'),
    alphaFfn: real(s.alphaFfn, '--alpha-ffn'),
    weightSharing: oneOf(s.weightSharing, ['never', 'always', 'search'] as const, '--weight-sharing'),
    tiedHead: flags.untiedHead ? false : undefined,
    symmetric: flags.symmetric ? true : undefined,
  };
  // Leave unset keys out so the search's own defaults apply.
  const budgets = Object.fromEntries(Object.entries(opts.budgets ?? {}).filter(([, v]) => v !== undefined));
  return { ...(Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) as SearchOptions), budgets };
}

const fmtInt = (n: number): string => n.toLocaleString('en-US');
const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

/** How the summary names each objective. */
const OBJECTIVE_TEXT: Record<SearchObjective, string> = {
  entropy: 'entropy (MeRino)',
  'entropy-embedding': 'entropy with embedding and head',
  params: 'parameters',
  'decoder-params': 'decoder parameters (embeddings excluded)',
  flops: 'FLOPs',
};

/** Human summary of a result. */
export function describeResult(r: SearchResult): string {
  const lines: string[] = [];
  const st = r.settings;
  lines.push(
    `searched ${fmtInt(st.iterations)} iterations (population ${st.population}, parents ${st.parentSetSize}, seed ${r.seed}) in ${r.stats.elapsedMs.toFixed(0)} ms, maximising ${OBJECTIVE_TEXT[r.objective]}`,
  );
  const emb = r.spec.embeddingWidth ?? r.spec.blocks[0]!.width;
  const floor =
    st.minEmbeddingWidth === null
      ? ' (fixed)'
      : ` (floor ${st.minEmbeddingWidth}${st.minEmbeddingWidthSource === 'lowered-to-fit' ? ', default lowered to fit the budgets' : ''})`;
  const llama = st.family === 'llama';
  const family = llama ? `, Llama family: RMSNorm, rotary (theta ${r.spec.ropeTheta}), SwiGLU, no biases` : '';
  lines.push(`design (${r.spec.blocks.length} blocks, embedding width ${emb}${floor}, vocab ${st.vocabSize}, context ${st.contextLength}, ${r.spec.tiedHead ? 'tied' : 'untied'} head${family}):`);
  r.spec.blocks.forEach((b, i) => {
    const kv = llama ? ` (${plural(b.kvHeads, 'K/V head')})` : '';
    lines.push(
      `  block ${i}: width ${b.width}, ${plural(b.layers, 'layer')}${b.shareWeights ? ' (shared weights)' : ''}, ${plural(b.heads, 'head')} x ${b.headDim}${kv}, FFN ${ffnWidthOf(b)} (ratio ${b.ffnRatio})`,
    );
  });
  const of = (v: number | undefined, f: (x: number) => string): string => (v === undefined ? '' : ` of ${f(v)}`);
  lines.push(`params        ${formatCount(r.params)} (${fmtInt(r.params)})${of(r.budgets.params, formatCount)}`);
  lines.push(`FLOPs @${st.seqLen}   ${formatCount(r.flops)}${of(r.budgets.flops, formatCount)}`);
  const storage = st.weightStorage ? describeWeightStorage(st.weightStorage) : `${st.bytesPerWeight} bytes each`;
  lines.push(`weights       ${formatBytes(r.weightBytes)} (${storage}; K/V cache ${st.kvBytesPerValue} bytes per value)`);
  lines.push(`decode memory ${formatBytes(r.decodeMemoryBytes)}${of(r.budgets.decodeMemoryBytes, formatBytes)}`);
  if (r.latencyMs !== null && r.device) {
    lines.push(`latency       ${r.latencyMs.toFixed(2)} ms/token${of(r.budgets.latencyMs, (x) => `${x} ms`)} on ${r.device.id} (${r.device.unit}, ${r.device.latencyModel})`);
  }
  lines.push(`entropy       ${r.entropy.toFixed(1)} nats (attention ${r.entropyAttention.toFixed(1)}, FFN ${r.entropyFfn.toFixed(1)})`);
  if (r.objective === 'entropy-embedding') lines.push(`objective     ${r.score.toFixed(1)} nats (entropy with embedding and head)`);
  if (r.objective === 'decoder-params') lines.push(`objective     ${formatCount(r.score)} decoder parameters (${fmtInt(r.score)})`);
  lines.push(`rho           ${r.rho.toFixed(3)} (max ${r.budgets.rhoMax})`);
  return lines.join('\n');
}

function groupTableHint(group: string, device: string): string {
  return ` for ${device} in ${group} (run fleetlm benchmark --group ${group} --device ${device}, then fleetlm latency --group ${group})`;
}

/** Registers this command on the program. */
export function register(program: Command): void {
  program
    .command('search')
    .description('Search a decoder architecture within budgets (MeRino evolutionary search; objective selectable)')
    .option('--objective <name>', `what to maximise: ${SEARCH_OBJECTIVES.join(', ')} (default ${DEFAULT_OBJECTIVE}; docs/search.md says what the study measured)`)
    .option('--params <count>', 'parameter budget, e.g. 64M')
    .option('--flops <count>', 'forward FLOPs budget at --seq-len, e.g. 160G')
    .option('--memory <bytes>', 'decode memory budget (weights + KV cache), e.g. 512MiB')
    .option('--latency <ms>', 'per-token decode latency budget on --device, e.g. 40ms')
    .option('--device <id>', `device class: ${DEVICE_IDS.join(', ')}`)
    .option('--device-file <path>', 'a device profile JSON (fleetlm device profile schema)')
    .addOption(new Option('--unit <unit>', 'compute unit of the device').choices(['gpu', 'cpu']))
    .option('--latency-table <path>', 'measured per-layer latencies (fleetlm/layer-latency@1)')
    .option('--seed <n>', 'PRNG seed (default 1)')
    .option('--iterations <n>', 'evolution steps (default 100000)')
    .option('--population <n>', 'population size (default 512)')
    .option('--parents <n>', 'parent set size (default 64)')
    .option('--blocks <n>', 'transformer blocks (default 3)')
    .option('--max-layers <n>', 'most layers per block (default 32)')
    .option('--head-dim <n>', 'attention head dimension (default 64)')
    .option('--embedding-width <n>', 'fixed embedding (and tied head) width (default: first block width)')
    .option('--min-embedding-width <n>', 'floor on the searched embedding (first block) width (default 128, lowered to fit)')
    .option('--min-attention-ratio <x>', 'every block needs heads x head dim >= x times its width (default 0.25; 0 = off)')
    .option('--vocab <n>', 'vocabulary size (default 50257)')
    .option('--context <n>', 'context length (default 1024)')
    .option('--seq-len <n>', 'sequence length for FLOPs, KV cache and latency (default: context)')
    .option('--bytes-per-weight <n>', 'bytes per weight and cache value, every tensor alike (default 4; not with --weight-bits)')
    .option('--family <family>', `decoder family: ${FAMILY_FLAG_CHOICES}`)
    .option('--weight-bits <bits>', 'bits per shipped weight: 32, 16, or 8 and 4 block-quantised (MatMulNBits layout); memory and latency count these bytes')
    .option('--block-size <n>', 'block size of 8- and 4-bit weights: 32, 64 or 128 (default 32)')
    .option('--symmetric', '8- and 4-bit blocks without zero points; default asymmetric, as fleetlm quantize ships')
    .option('--rope-theta <x>', 'rotary base of llama designs (default 10000)')
    .option('--rho-max <x>', 'upper bound on effectiveness rho (default 0.5)')
    .option('--alpha-attention <x>', 'weight of attention entropy (default 1)')
    .option('--alpha-ffn <x>', 'weight of FFN entropy (default 1)')
    .addOption(new Option('--weight-sharing <mode>', 'share layer weights within blocks').choices(['never', 'always', 'search']))
    .option('--untied-head', 'give the LM head its own weights')
    .option('--config <file>', 'JSON file with any of the settings above (camelCase keys)')
    .option('--out <file>', 'write the result JSON here')
    .option('--hf-config <file>', 'write a Hugging Face style config.json here')
    .option('--json', 'print the result JSON on stdout')
    .option('--verbose', 'print the resolved settings on stderr')
    .option('--group <group>', 'design against the latency table the fleet measured for this group and --device (fleetlm latency); roofline when there is none')
    .addOption(new Option('--local [dir]', 'with --group: the local hub whose endpoints.json is in dir (default .fleetlm/local)'))
    .option('--profile <file>', 'with --group: AWS profile file (default ~/.fleetlm/profile.json)')
    .option('--aws-profile <name>', 'with --group: named AWS profile')
    .option('--region <region>', 'with --group: AWS region')
    .option('--bucket <bucket>', 'with --group: artifact bucket')
    .action(async (flags: Flags) => {
      const options = searchOptionsFrom(layered(flags, process.env), flags);
      let latencySource: string | undefined;
      if (flags.group) {
        if (options.latencyTable) throw new ValidationError('give --group or --latency-table, not both');
        if (typeof options.device !== 'string') throw new ValidationError('--group needs --device <class>: the device class whose fleet table to use');
        // Loaded only here: a plain search needs no AWS SDK.
        const { groupLatencyTable } = await import('../../fleet/latency-tables.ts');
        const { profileFrom } = await import('./fleet.ts');
        const profile = await profileFrom({ local: flags.local, profile: flags.profile, awsProfile: flags.awsProfile, region: flags.region, bucket: flags.bucket });
        const found = await groupLatencyTable(profile, flags.group, options.device, options.weightBits);
        if (found) {
          options.latencyTable = found.table;
          latencySource = `measured table ${found.url} (${found.table.mergedFrom?.devices.length ?? 1} device(s))`;
        } else {
          latencySource = `roofline (no measured table${groupTableHint(flags.group, options.device)})`;
        }
      }
      if (flags.verbose) {
        const resolved = parseWith(SearchOptionsSchema, options, 'search options');
        const shown = {
          ...resolved,
          seqLen: resolved.seqLen ?? resolved.contextLength,
          widths: resolved.widths ?? `${DEFAULT_WIDTHS[0]}..${DEFAULT_WIDTHS[DEFAULT_WIDTHS.length - 1]} by 64`,
          ffnRatios: resolved.ffnRatios ?? DEFAULT_FFN_RATIOS,
          minEmbeddingWidth:
            resolved.embeddingWidth !== undefined ? 'none (embedding width fixed)' : (resolved.minEmbeddingWidth ?? `${DEFAULT_MIN_EMBEDDING_WIDTH} (default, lowered if the budgets need it)`),
          device: typeof resolved.device === 'object' ? resolved.device.id : resolved.device,
          // In the flag's spelling (the search calls gpt2 `gpt`).
          family: resolved.family === 'gpt' ? 'gpt2' : resolved.family,
          latencyTable: resolved.latencyTable ? `${resolved.latencyTable.layers.length} layer entries for ${resolved.latencyTable.device}` : undefined,
        };
        process.stderr.write(`search settings: ${JSON.stringify(shown, null, 2)}\n`);
      }
      const showBar = !flags.json && process.stderr.isTTY === true;
      const bar = showBar ? new cliProgress.SingleBar({ stream: process.stderr, format: 'search [{bar}] {percentage}% {value}/{total}' }, cliProgress.Presets.shades_classic) : null;
      let result: SearchResult;
      try {
        result = searchArchitecture({
          ...options,
          onProgress: bar
            ? (done, total) => {
                if (done === 0) bar.start(total, 0);
                else bar.update(done);
              }
            : undefined,
        });
      } finally {
        bar?.stop();
      }
      if (Object.keys(options.budgets ?? {}).length === 0) {
        // Unbounded, maximum entropy means the widest, deepest design the search space holds.
        process.stderr.write(
          `fleetlm search: warning: no budget given (--params, --flops, --memory or --latency), so nothing bounds the design: it has ${formatCount(result.params)} parameters. Give a budget, e.g. --params 20M, or --device rpi4 --latency 40ms\n`,
        );
      }
      if (flags.out) await writeJsonAtomic(flags.out, result);
      if (flags.hfConfig) await writeJsonAtomic(flags.hfConfig, toHuggingFaceConfig(result.spec));
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(latencySource ? { ...result, latencySource } : result, null, 2)}\n`);
      } else {
        const written = [flags.out, flags.hfConfig].filter(Boolean).map((p) => `wrote ${p}`);
        const source = latencySource ? [`latency model ${latencySource}`] : [];
        process.stdout.write(`${[describeResult(result), ...source, ...written].join('\n')}\n`);
      }
    });
}

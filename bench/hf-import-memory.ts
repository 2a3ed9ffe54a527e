// Peak memory of `fleetlm import` against the checkpoint's size: a SmolLM2-135M-shaped random bf16
// checkpoint with fewer layers, in two shards, imported by the real CLI under /usr/bin/time -v.
// Peak RSS should stay flat as layers are added (streaming), near the CLI's baseline plus one tensor.
// Run: npx tsx bench/hf-import-memory.ts [layers,...=12,30] [keep-dir]  -> prints figures and writes
// bench/results/hf-import-memory.json; with keep-dir the (last) checkpoint folder is kept there (docs/import.md uses it).
import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SMOLLM2_135M_CONFIG } from '../test/helpers/published-configs.ts';

const layerCounts = (process.argv[2] ?? '12,30').split(',').map(Number);
const keepDir = process.argv[3];

/** HuggingFaceTB/SmolLM2-135M config.json, with `layers` layers instead of 30. */
const configFor = (layers: number) => ({ ...SMOLLM2_135M_CONFIG, num_hidden_layers: layers });
type Config = ReturnType<typeof configFor>;

/** HF tensor names and shapes ([out, in] for nn.Linear) of the config above, in save order. */
function tensorList(config: Config): Array<[string, number[]]> {
  const layers = config.num_hidden_layers;
  const E = config.hidden_size;
  const F = config.intermediate_size;
  const kv = (E / config.num_attention_heads) * config.num_key_value_heads;
  const list: Array<[string, number[]]> = [['model.embed_tokens.weight', [config.vocab_size, E]]];
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}`;
    list.push(
      [`${p}.input_layernorm.weight`, [E]],
      [`${p}.self_attn.q_proj.weight`, [E, E]],
      [`${p}.self_attn.k_proj.weight`, [kv, E]],
      [`${p}.self_attn.v_proj.weight`, [kv, E]],
      [`${p}.self_attn.o_proj.weight`, [E, E]],
      [`${p}.post_attention_layernorm.weight`, [E]],
      [`${p}.mlp.gate_proj.weight`, [F, E]],
      [`${p}.mlp.up_proj.weight`, [F, E]],
      [`${p}.mlp.down_proj.weight`, [E, F]],
    );
  }
  list.push(['model.norm.weight', [E]]);
  return list;
}

/** Random bf16 values in about [-0.05, 0.05] (norm gains near 1), one tensor at a time. */
function randomBf16(count: number, gain: boolean, seed: number): Uint8Array {
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  const out = new Uint16Array(count);
  let s = seed >>> 0;
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    f[0] = (gain ? 1 : 0) + (s / 4294967296 - 0.5) * 0.1;
    out[i] = u[0]! >>> 16;
  }
  return new Uint8Array(out.buffer);
}

function writeShard(file: string, tensors: Array<[string, number[]]>): number {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const [name, shape] of tensors) {
    const bytes = shape.reduce((a, b) => a * b, 1) * 2;
    header[name] = { dtype: 'BF16', shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const fd = openSync(file, 'w');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeSync(fd, len);
  writeSync(fd, json);
  tensors.forEach(([name, shape], i) => writeSync(fd, randomBf16(shape.reduce((a, b) => a * b, 1), name.endsWith('norm.weight'), i + 1)));
  closeSync(fd);
  return statSync(file).size;
}

/** Writes the checkpoint, imports it with the real CLI and returns the figures. */
function measure(layers: number): Record<string, number> {
  const config = configFor(layers);
  const root = mkdtempSync(path.join(tmpdir(), 'fleetlm-import-bench-'));
  const hf = path.join(root, 'smollm2-like');
  const out = path.join(root, 'bundle');
  mkdirSync(hf);
  try {
    writeFileSync(path.join(hf, 'config.json'), JSON.stringify(config, null, 2));
    writeFileSync(path.join(hf, 'tokenizer.json'), JSON.stringify({ version: '1.0', model: { type: 'BPE', vocab: {}, merges: [] } }));
    const list = tensorList(config);
    const half = Math.ceil(list.length / 2);
    const shards = [list.slice(0, half), list.slice(half)];
    const weightMap: Record<string, string> = {};
    let checkpointBytes = 0;
    shards.forEach((part, i) => {
      const name = `model-0000${i + 1}-of-00002.safetensors`;
      checkpointBytes += writeShard(path.join(hf, name), part);
      for (const [t] of part) weightMap[t] = name;
    });
    writeFileSync(path.join(hf, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: checkpointBytes }, weight_map: weightMap }));
    const largestTensorBytes = Math.max(...list.map(([, s]) => s.reduce((a, b) => a * b, 1))) * 4;

    const bin = path.resolve('bin/fleetlm.js');
    /** Runs the CLI under /usr/bin/time -v; returns its peak RSS in bytes and its stdout. */
    const measured = (args: string[]): { peak: number; stdout: string; seconds: number } => {
      const t0 = performance.now();
      const r = spawnSync('/usr/bin/time', ['-v', process.execPath, bin, ...args], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`fleetlm ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
      const kb = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr)?.[1]);
      return { peak: kb * 1024, stdout: r.stdout, seconds: (performance.now() - t0) / 1000 };
    };
    const baseline = measured(['import', '--help']);
    const run = measured(['import', '--hf', hf, '--out', out, '--json']);
    const result = JSON.parse(run.stdout) as { parameters: number; files: Array<{ name: string; bytes: number }> };
    const onnxBytes = result.files.filter((f) => f.name.startsWith('model.onnx')).reduce((n, f) => n + f.bytes, 0);
    const mib = (b: number) => Math.round((b / 2 ** 20) * 10) / 10;
    const figures = {
      layers,
      parameters: result.parameters,
      checkpointMiB: mib(checkpointBytes),
      onnxMiB: mib(onnxBytes),
      largestTensorF32MiB: mib(largestTensorBytes),
      cliBaselinePeakRssMiB: mib(baseline.peak),
      importPeakRssMiB: mib(run.peak),
      importAboveBaselineMiB: mib(run.peak - baseline.peak),
      importSeconds: Math.round(run.seconds * 10) / 10,
    };
    console.log(`SmolLM2-135M shape with ${layers} layers, bf16, 2 shards: ${result.parameters.toLocaleString('en-US')} parameters`);
    console.log(`  checkpoint        ${figures.checkpointMiB} MiB   model.onnx (float32) ${figures.onnxMiB} MiB   largest tensor as float32 ${figures.largestTensorF32MiB} MiB`);
    console.log(`  peak RSS          fleetlm import --help ${figures.cliBaselinePeakRssMiB} MiB; fleetlm import ${figures.importPeakRssMiB} MiB (+${figures.importAboveBaselineMiB} MiB) in ${figures.importSeconds} s`);
    return figures;
  } finally {
    if (keepDir) {
      rmSync(keepDir, { recursive: true, force: true });
      renameSync(hf, keepDir);
    }
    rmSync(root, { recursive: true, force: true });
  }
}

const runs = layerCounts.map(measure);
console.log(JSON.stringify(runs));
mkdirSync('bench/results', { recursive: true });
writeFileSync('bench/results/hf-import-memory.json', `${JSON.stringify(runs, null, 2)}\n`);

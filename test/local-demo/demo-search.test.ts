// The demo's design chain: the `fleetlm search` command the demo prints gives exactly the design the
// demo's search shows, and the committed demo model is the design its recorded search produces.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCliCaptured } from '../helpers/run-cli.ts';
import { demoModel, demoSearchCommand, designArchitecture } from '../../local-demo/model-pipeline.ts';
import { loadArchSpec } from '../../models/onnx/build-model-file.ts';

describe('demo search chain', () => {
  it('the printed search command reproduces the demo search, for the shipped vocabulary', async () => {
    const opts = { deviceClass: 'rpi4', seed: 3, iterations: 4000, population: 64, maxParams: 4_000_000, contextLength: 128, vocabSize: 4096 };
    const design = await designArchitecture(opts);
    const command = demoSearchCommand(opts);
    expect(command).toMatch(/^fleetlm search --device rpi4 --params 4000000 .*--vocab 4096 --context 128 --objective params --seed 3/);
    const r = await runCliCaptured([...command.split(' ').slice(1), '--json']);
    expect(r.code).toBe(0);
    const result = JSON.parse(r.stdout);
    expect(result.spec.blocks).toEqual(design.spec.blocks);
    expect(result.spec.vocabSize).toBe(4096);
    expect(design.summary.objective).toBe('params');
  });

  it('the committed demo model is the design its recorded search command produces, with the demo defaults', async () => {
    const m = await demoModel();
    expect(m.provenance?.design).toBe('search');
    expect(m.provenance?.train).toMatch(/^fleetlm train --arch demo-search\.json /);
    const committed = await loadArchSpec(m.archPath);
    // The demo's own defaults (local-demo/demo.ts) give the same search command the provenance records ...
    const defaults = { deviceClass: 'rpi4', seed: 1, iterations: 100_000, population: 512, maxParams: 6_000_000, contextLength: committed.contextLength, vocabSize: committed.vocabSize };
    expect(`${demoSearchCommand(defaults)} --out demo-search.json`).toBe(m.provenance!.detail);
    // ... and that search, run here, finds exactly the committed design.
    const design = await designArchitecture(defaults);
    expect(design.spec.blocks).toEqual(committed.blocks);
    // The CLI command itself gives it too.
    const r = await runCliCaptured([...m.provenance!.detail.split(' ').slice(1).filter((a, i, all) => a !== '--out' && all[i - 1] !== '--out'), '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).spec.blocks).toEqual(committed.blocks);
  });

  it('keeps which search produced an architecture given as a search result', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'demo-search-'));
    const file = path.join(dir, 'search.json');
    const r = await runCliCaptured(['search', '--params', '3M', '--vocab', '4096', '--context', '128', '--blocks', '1', '--iterations', '500', '--objective', 'entropy', '--out', file]);
    expect(r.code).toBe(0);
    writeFileSync(path.join(dir, 'plain.json'), JSON.stringify(JSON.parse(readFileSync(file, 'utf8')).spec));
    const fromSearch = await designArchitecture({ deviceClass: 'rpi4', seed: 1, iterations: 1, population: 1, maxParams: 1, contextLength: 128, archPath: file });
    expect(fromSearch.summary.search).toMatchObject({ objective: 'entropy', seed: 1 });
    const plain = await designArchitecture({ deviceClass: 'rpi4', seed: 1, iterations: 1, population: 1, maxParams: 1, contextLength: 128, archPath: path.join(dir, 'plain.json') });
    expect(plain.summary.search).toBeUndefined();
    expect(plain.spec).toEqual(fromSearch.spec);
  });
});

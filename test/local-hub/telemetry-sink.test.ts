// The hub's telemetry sink with a newer agent: it stores the message as sent (unknown fields kept for newer
// readers of the store), queryTelemetry reads the known fields; a message of a newer major schema is stored
// whole and counted (for a CLI to read or report), a malformed or misattributed one goes to the rejected file.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openTelemetrySink, queryTelemetry, TELEMETRY_FILE, type TelemetrySink } from '../../local-hub/telemetry-sink.ts';
import { currentMessage, NEWER_FIELDS, newerAgentMessage, nextMajorMessage } from '../helpers/newer-agent-telemetry.ts';
import { tempDir } from '../helpers/temp-dir.ts';

const lines = async (file: string) => (await fs.readFile(file, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);

describe('telemetry sink and a newer agent', () => {
  let dir = '';
  let sink: TelemetrySink | undefined;
  afterEach(async () => {
    await sink?.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('stores a newer agent\'s message whole, reads back its known fields, keeps a newer major schema unread, rejects malformed input', async () => {
    dir = await tempDir('fleetlm-sink-');
    const rejectedFile = path.join(dir, 'rejected.jsonl');
    sink = await openTelemetrySink(path.join(dir, 'telemetry'), rejectedFile);
    const send = (thing: string, m: unknown) => sink!.accept(thing, Buffer.from(JSON.stringify(m)));
    send('new-1', newerAgentMessage('new-1', 1));
    send('old-1', currentMessage('old-1', 1));
    send('next-1', nextMajorMessage('next-1', 1));
    send('bad-1', { ...currentMessage('bad-1', 1), system: { ...(currentMessage('bad-1', 1).system as object), energyJ: 'lots' } });
    send('next-2', nextMajorMessage('someone-else', 1));
    await sink.flush();
    expect(sink.stats()).toEqual({ stored: 3, rejected: 2, newerSchema: 1 });

    const stored = await lines(path.join(dir, 'telemetry', TELEMETRY_FILE));
    const newer = stored.find((r) => r.thingName === 'new-1')!.telemetry as Record<string, Record<string, unknown>>;
    expect(newer.gpu).toEqual(NEWER_FIELDS.top.gpu);
    expect(newer.inference).toMatchObject({ ...NEWER_FIELDS.inference, firstTokenMs: { p50: 12.5, p95: 30, p99: 80 } });
    expect(newer.system).toMatchObject(NEWER_FIELDS.system);
    expect(stored.find((r) => r.thingName === 'next-1')!.telemetry).toEqual(nextMajorMessage('next-1', 1));

    const read = await queryTelemetry(path.join(dir, 'telemetry'));
    expect(read.map((r) => r.thingName)).toEqual(['new-1', 'old-1']);
    expect(read[0]!.telemetry).toMatchObject({ seq: 1, inference: { requests: 7, decodeKvLength: { p50: 20, p95: 40 } }, system: { energyJ: 3.5 } });
    expect(read[0]!.telemetry).not.toHaveProperty('gpu');
    expect(read[0]!.telemetry.system).not.toHaveProperty('diskFreeBytes');

    const rejected = await lines(rejectedFile);
    expect(rejected.map((r) => [r.thingName, r.reason])).toEqual([
      ['bad-1', expect.stringMatching(/^system\.energyJ: /)],
      ['next-2', 'thingName "someone-else" does not match the topic\'s thing "next-2"'],
    ]);
  });
});

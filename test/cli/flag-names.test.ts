// Error texts name the flags the user typed: a command's own option schema (parseFlags) and the library fields
// a command sets (withFlagNames over LIBRARY_FIELDS).
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ValidationError } from '../../common/errors.ts';
import { parseWith } from '../../common/validate.ts';
import { flagOf, parseFlags, withFlagNames } from '../../cli/flag-names.ts';
import { SearchOptionsSchema } from '../../models/search/search.ts';

describe('flag names in error texts', () => {
  it('derives the flag commander reads an option field from', () => {
    expect(flagOf('maxTokens')).toBe('--max-tokens');
    expect(flagOf('seed')).toBe('--seed');
    expect(flagOf('maxPerplexityIncrease')).toBe('--max-perplexity-increase');
  });

  it('parseFlags names each bad flag and what was given, and keeps a label for values the environment sets', () => {
    const schema = z.object({ maxTokens: z.coerce.number().int().min(1), topP: z.coerce.number().max(1), mqttPort: z.coerce.number().max(65535).optional() });
    expect(() => parseFlags(schema, { maxTokens: '0', topP: '2' }, 'generate options')).toThrow(
      /^invalid generate options: --max-tokens \(got "0"\): Too small: .*; --top-p \(got "2"\): Too big: /,
    );
    expect(() => parseFlags(schema, { maxTokens: '1', topP: '1', mqttPort: '70000' }, 'settings', { mqttPort: '--mqtt-port (or FLEETLM_LOCAL_MQTT_PORT)' })).toThrow(
      /--mqtt-port \(or FLEETLM_LOCAL_MQTT_PORT\) \(got "70000"\)/,
    );
    const thrown = (() => {
      try {
        parseFlags(schema, { maxTokens: 'x', topP: '1' }, 'generate options');
      } catch (err) {
        return err;
      }
    })();
    expect(thrown).toBeInstanceOf(ValidationError);
    expect((thrown as Error).message).not.toMatch(/maxTokens/);
  });

  it('rewords a library validation error for the command that called it, and leaves others alone', () => {
    let zodFailure: unknown;
    try {
      parseWith(SearchOptionsSchema, { budgets: { decodeMemoryBytes: -1 }, parentSetSize: 0 }, 'search options');
    } catch (err) {
      zodFailure = err;
    }
    const reworded = withFlagNames(zodFailure, 'search') as ValidationError;
    expect(reworded).toBeInstanceOf(ValidationError);
    expect(reworded.message).toMatch(/^invalid search options: --memory: Too small: .*; --parents: Too small: /);
    const text = new ValidationError('embeddingWidth 64 is below minEmbeddingWidth 128; fix one or the other');
    expect((withFlagNames(text, 'search') as Error).message).toBe('--embedding-width 64 is below --min-embedding-width 128; fix one or the other');
    // Plain words stay; other commands, and errors that are not validation errors, are not touched.
    const plain = new ValidationError('unknown device rpi9 for 3 blocks');
    expect(withFlagNames(plain, 'search')).toBe(plain);
    expect(withFlagNames(text, 'build')).toBe(text);
    const other = new Error('maxTokens');
    expect(withFlagNames(other, 'generate')).toBe(other);
  });
});

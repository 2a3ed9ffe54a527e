import { describe, expect, it } from 'vitest';
import { formatBytes, formatCount, parseBytes, parseCount, parseDurationMs } from '../../common/units.ts';
import { ValidationError } from '../../common/errors.ts';

describe('parseCount', () => {
  it('reads SI suffixes as powers of 1000', () => {
    expect(parseCount('64M')).toBe(64e6);
    expect(parseCount('160G')).toBe(160e9);
    expect(parseCount('1.5G')).toBe(1.5e9);
    expect(parseCount('2k')).toBe(2000);
    expect(parseCount('512')).toBe(512);
    expect(parseCount(' 3T ')).toBe(3e12);
    expect(parseCount('1e5')).toBe(1e5);
  });

  it.each([
    ['64X', /unknown suffix 'X'.*K, M, G, T, P/],
    ['-1M', /must not be negative/],
    ['NaN', /must be a number/],
    ['', /must be a number/],
    ['M', /must be a number/],
    ['1e400', /finite/],
    ['12 M B', /must be a number/],
  ])('rejects %j', (text, message) => {
    expect(() => parseCount(text, '--params')).toThrow(ValidationError);
    expect(() => parseCount(text, '--params')).toThrow(message);
  });

  it('names the flag in the message', () => {
    expect(() => parseCount('64X', '--params')).toThrow(/^--params/);
  });

  it('checks numbers passed directly', () => {
    expect(parseCount(5)).toBe(5);
    expect(() => parseCount(Number.NaN)).toThrow(ValidationError);
    expect(() => parseCount(-2)).toThrow(/negative/);
  });
});

describe('parseBytes', () => {
  it('reads decimal and binary units', () => {
    expect(parseBytes('512MB')).toBe(512e6);
    expect(parseBytes('512M')).toBe(512e6);
    expect(parseBytes('1.5GiB')).toBe(1.5 * 2 ** 30);
    expect(parseBytes('4096')).toBe(4096);
    expect(parseBytes('4096B')).toBe(4096);
    expect(parseBytes('2kib')).toBe(2048);
  });
  it('rejects unknown units', () => {
    expect(() => parseBytes('3PB')).toThrow(/unknown unit/);
    expect(() => parseBytes('3XB')).toThrow(/unknown unit/);
  });
});

describe('parseDurationMs', () => {
  it('reads ms, s and us', () => {
    expect(parseDurationMs('25ms')).toBe(25);
    expect(parseDurationMs('0.2s')).toBe(200);
    expect(parseDurationMs('150us')).toBeCloseTo(0.15, 12);
    expect(parseDurationMs('40')).toBe(40);
  });
  it('rejects other units', () => {
    expect(() => parseDurationMs('3min')).toThrow(/unknown unit 'MIN'/);
  });
});

describe('formatting', () => {
  it('formats counts and bytes', () => {
    expect(formatCount(64_123_456)).toBe('64.1M');
    expect(formatCount(160e9)).toBe('160G');
    expect(formatCount(999)).toBe('999');
    expect(formatBytes(3 * 2 ** 30)).toBe('3.00 GiB');
    expect(formatBytes(12)).toBe('12 B');
  });
});

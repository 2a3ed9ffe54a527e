// Parses human quantities from flags and config ('64M' parameters, '160G' FLOPs, '512MiB', '25ms')
// into plain numbers, rejecting anything malformed with a message that names the allowed forms.
import { ValidationError } from './errors.ts';

// Decimal (SI) multipliers: model sizes and FLOPs are quoted this way (GPT-2 "124M", MeRino "160G").
const SI: Readonly<Record<string, number>> = { '': 1, K: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15 };
// Binary multipliers, only reachable with an explicit "i" (KiB, MiB, GiB, TiB).
const BINARY: Readonly<Record<string, number>> = { KI: 2 ** 10, MI: 2 ** 20, GI: 2 ** 30, TI: 2 ** 40 };

const NUMBER = /^([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?)\s*([a-z]*)$/i;

function split(text: string, what: string, allowed: string): { value: number; suffix: string } {
  const trimmed = text.trim();
  const m = NUMBER.exec(trimmed);
  if (!m) {
    throw new ValidationError(`${what} must be a number with an optional suffix (${allowed}); got '${text}'`);
  }
  const value = Number(m[1]);
  if (!Number.isFinite(value)) throw new ValidationError(`${what} must be a finite number; got '${text}'`);
  if (value < 0) throw new ValidationError(`${what} must not be negative; got '${text}'`);
  return { value, suffix: (m[2] ?? '').toUpperCase() };
}

function finish(value: number, text: string, what: string): number {
  if (!Number.isFinite(value)) throw new ValidationError(`${what} must be a finite number; got '${text}'`);
  return value;
}

/**
 * Parses a count with an optional SI suffix: '64M' = 64e6, '1.5G' = 1.5e9, '160g', '2e9', '512'.
 * Suffixes K, M, G, T, P (case-insensitive). Throws ValidationError for '64X', negatives, NaN.
 */
export function parseCount(text: string | number, what = 'value'): number {
  if (typeof text === 'number') return checkNumber(text, what);
  const allowed = 'K, M, G, T, P';
  const { value, suffix } = split(text, what, allowed);
  const mult = SI[suffix];
  if (mult === undefined) {
    throw new ValidationError(`${what} has unknown suffix '${suffix}' in '${text}'; allowed suffixes: ${allowed} (powers of 1000)`);
  }
  return finish(value * mult, text, what);
}

/**
 * Parses a byte size: '512MB' and '512M' are 512e6 bytes, '1.5GiB' is 1.5 * 2^30, '4096' is bytes.
 * The trailing 'B' is optional; 'i' selects powers of 1024.
 */
export function parseBytes(text: string | number, what = 'size'): number {
  if (typeof text === 'number') return checkNumber(text, what);
  const allowed = 'B, K/KB, M/MB, G/GB, T/TB (powers of 1000), KiB, MiB, GiB, TiB (powers of 1024)';
  const { value, suffix } = split(text, what, allowed);
  const unit = suffix.endsWith('B') ? suffix.slice(0, -1) : suffix;
  const mult = BINARY[unit] ?? (unit === 'P' ? undefined : SI[unit]);
  if (mult === undefined) {
    throw new ValidationError(`${what} has unknown unit '${suffix}' in '${text}'; allowed units: ${allowed}`);
  }
  return finish(value * mult, text, what);
}

/** Parses a duration into milliseconds: '25ms', '0.2s', '150us', '40' (milliseconds). */
export function parseDurationMs(text: string | number, what = 'duration'): number {
  if (typeof text === 'number') return checkNumber(text, what);
  const allowed = 'us, ms, s (no suffix means ms)';
  const { value, suffix } = split(text, what, allowed);
  const mult: Record<string, number> = { '': 1, MS: 1, S: 1000, US: 1e-3 };
  const m = mult[suffix];
  if (m === undefined) {
    throw new ValidationError(`${what} has unknown unit '${suffix}' in '${text}'; allowed units: ${allowed}`);
  }
  return finish(value * m, text, what);
}

function checkNumber(value: number, what: string): number {
  if (!Number.isFinite(value)) throw new ValidationError(`${what} must be a finite number; got ${value}`);
  if (value < 0) throw new ValidationError(`${what} must not be negative; got ${value}`);
  return value;
}

/** Formats a count with an SI suffix and 3 significant digits: 64_123_456 -> '64.1M'. */
export function formatCount(value: number): string {
  const abs = Math.abs(value);
  const units: Array<[number, string]> = [
    [1e15, 'P'],
    [1e12, 'T'],
    [1e9, 'G'],
    [1e6, 'M'],
    [1e3, 'K'],
  ];
  for (const [m, s] of units) if (abs >= m) return `${trim3(value / m)}${s}`;
  return trim3(value);
}

/** Formats bytes with binary units: 3_221_225_472 -> '3.00 GiB'. */
export function formatBytes(value: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = value;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(2)} ${units[i]}`;
}

function trim3(v: number): string {
  return Number(v.toPrecision(3)).toString();
}

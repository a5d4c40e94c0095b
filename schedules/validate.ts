/**
 * Argument checking shared by the builders. Every error names the builder and the option so a
 * bad config fails at construction time, not thousands of steps into a run.
 */

function show(value: unknown): string {
  if (typeof value === 'number') return Object.is(value, -0) ? '-0' : String(value);
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === null || value === undefined) return String(value);
  return typeof value;
}

function fail(builder: string, option: string, must: string, value: unknown): never {
  throw new RangeError(`${builder}: option '${option}' must be ${must}, got ${show(value)}`);
}

/** Steps are 0-based integers; anything else is a caller bug, so throw instead of flooring. */
export function checkStep(builder: string, step: number): void {
  if (typeof step !== 'number' || !Number.isInteger(step) || step < 0) {
    throw new RangeError(`${builder}: step must be a non-negative integer, got ${show(step)}`);
  }
}

export function requireObject(builder: string, options: unknown): void {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TypeError(`${builder}: options must be an object, got ${show(options)}`);
  }
}

/** Catches typos and options of another preset (e.g. annihilationFraction with preset 'pytorch'). */
export function requireKnownKeys(builder: string, options: object, allowed: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (!allowed.includes(key)) {
      throw new RangeError(`${builder}: unknown option '${key}' (allowed: ${allowed.join(', ')})`);
    }
  }
}

export function requireFinite(builder: string, option: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) fail(builder, option, 'a finite number', value);
  return value;
}

export function requirePositive(builder: string, option: string, value: unknown): number {
  const v = requireFinite(builder, option, value);
  if (!(v > 0)) fail(builder, option, 'a finite number > 0', value);
  return v;
}

export function requireAtLeast(builder: string, option: string, value: unknown, min: number): number {
  const v = requireFinite(builder, option, value);
  if (!(v >= min)) fail(builder, option, `a finite number >= ${min}`, value);
  return v;
}

export function requireInRange(builder: string, option: string, value: unknown, lo: number, hi: number): number {
  const v = requireFinite(builder, option, value);
  if (!(v >= lo && v <= hi)) fail(builder, option, `a finite number in [${lo}, ${hi}]`, value);
  return v;
}

/** Fractions of a run: the open interval (0, 1). */
export function requireFraction(builder: string, option: string, value: unknown): number {
  const v = requireFinite(builder, option, value);
  if (!(v > 0 && v < 1)) fail(builder, option, 'a fraction in the open interval (0, 1)', value);
  return v;
}

export function requireInteger(builder: string, option: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    fail(builder, option, `an integer >= ${min}`, value);
  }
  return value;
}

export function requireOrdered(builder: string, loName: string, lo: number, hiName: string, hi: number): void {
  if (!(lo <= hi)) {
    throw new RangeError(`${builder}: option '${loName}' (${show(lo)}) must be <= '${hiName}' (${show(hi)})`);
  }
}

export function requireBoolean(builder: string, option: string, value: unknown): boolean {
  if (typeof value !== 'boolean') fail(builder, option, 'a boolean', value);
  return value;
}

export function requireOneOf<T extends string>(builder: string, option: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    fail(builder, option, `one of ${allowed.map((a) => `'${a}'`).join(' | ')}`, value);
  }
  return value as T;
}

export function requireSchedule(builder: string, option: string, value: unknown): (step: number) => number {
  if (typeof value !== 'function') {
    throw new TypeError(`${builder}: option '${option}' must be a schedule function, got ${show(value)}`);
  }
  return value as (step: number) => number;
}

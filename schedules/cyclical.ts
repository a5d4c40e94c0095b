/**
 * Cyclical learning rates, Smith 2015, "Cyclical Learning Rates for Training Neural Networks"
 * (arXiv:1506.01186), section 3.1. The paper's Torch pseudo-code, with it = iteration:
 *
 *   cycle = floor(1 + it / (2 * stepsize))
 *   x     = |it / stepsize - 2 * cycle + 1|
 *   lr    = base_lr + (max_lr - base_lr) * max(0, 1 - x)
 *
 * times a per-policy scale: triangular 1, triangular2 1 / 2^(cycle - 1) (amplitude halves every
 * cycle), exp_range gamma^it. The formula is evaluated literally, so the peak of a triangular
 * cycle is base + (max - base), which can differ from maxLr by an ulp. Cycles never end: these
 * schedules have period 2 * stepSize (up to the scale) at every step.
 */
import type { Schedule } from './types.ts';
import {
  checkStep,
  requireFinite,
  requireInRange,
  requireInteger,
  requireKnownKeys,
  requireObject,
  requireOrdered,
  requirePositive,
} from './validate.ts';

export interface CyclicalOptions {
  /** Lower bound, >= 0. */
  readonly baseLr: number;
  /** Upper bound, > 0 and >= baseLr. */
  readonly maxLr: number;
  /** Half a cycle, in steps (Smith: 2-10 times the iterations per epoch). Positive integer. */
  readonly stepSize: number;
}

export interface ExpRangeOptions extends CyclicalOptions {
  /** Per-iteration decay of the amplitude, in (0, 1]. */
  readonly gamma: number;
}

function clr(builder: string, options: CyclicalOptions, keys: readonly string[], scale: (cycle: number, it: number) => number): Schedule {
  requireObject(builder, options);
  requireKnownKeys(builder, options, keys);
  const baseLr = requireFinite(builder, 'baseLr', options.baseLr);
  if (baseLr < 0) throw new RangeError(`${builder}: option 'baseLr' must be >= 0, got ${baseLr}`);
  const maxLr = requirePositive(builder, 'maxLr', options.maxLr);
  requireOrdered(builder, 'baseLr', baseLr, 'maxLr', maxLr);
  const stepSize = requireInteger(builder, 'stepSize', options.stepSize, 1);
  return (it: number): number => {
    checkStep(builder, it);
    const cycle = Math.floor(1 + it / (2 * stepSize));
    const x = Math.abs(it / stepSize - 2 * cycle + 1);
    return baseLr + (maxLr - baseLr) * Math.max(0, 1 - x) * scale(cycle, it);
  };
}

const CLR_KEYS = ['baseLr', 'maxLr', 'stepSize'] as const;

/** Smith's 'triangular' policy: constant amplitude. */
export function triangular(options: CyclicalOptions): Schedule {
  return clr('triangular', options, CLR_KEYS, () => 1);
}

/** Smith's 'triangular2' policy: the amplitude halves at the start of every cycle. */
export function triangular2(options: CyclicalOptions): Schedule {
  return clr('triangular2', options, CLR_KEYS, (cycle) => 1 / 2 ** (cycle - 1));
}

/** Smith's 'exp_range' policy: amplitude scaled by gamma^iteration. */
export function expRange(options: ExpRangeOptions): Schedule {
  const b = 'expRange';
  requireObject(b, options);
  const gamma = requireInRange(b, 'gamma', options.gamma, Number.MIN_VALUE, 1);
  return clr(b, options, [...CLR_KEYS, 'gamma'], (_cycle, it) => gamma ** it);
}

/**
 * The LR range test's schedule (Smith 2015 sec. 3.3; fastai's LRFinder uses the exponential form
 * SchedExp: start * (end / start) ** pos). Sample i of `steps` is
 *   exp:    start * (end / start)^(i / (steps - 1))
 *   linear: start + (end - start) * i / (steps - 1)
 * so step 0 is exactly `start`, step steps-1 exactly `end`, and `end` is held afterwards.
 */
import type { Schedule } from './types.ts';
import { interpolate } from './interpolate.ts';
import {
  checkStep,
  requireInteger,
  requireKnownKeys,
  requireObject,
  requireOneOf,
  requirePositive,
} from './validate.ts';

export interface RangeSweepOptions {
  /** First lr, > 0. */
  readonly start: number;
  /** Last lr, > start. */
  readonly end: number;
  /** Number of sampled steps, integer >= 2. */
  readonly steps: number;
  /** Default 'exp'. */
  readonly mode?: 'exp' | 'linear';
}

export function rangeSweep(options: RangeSweepOptions): Schedule {
  const b = 'rangeSweep';
  requireObject(b, options);
  requireKnownKeys(b, options, ['start', 'end', 'steps', 'mode']);
  const start = requirePositive(b, 'start', options.start);
  const end = requirePositive(b, 'end', options.end);
  if (!(start < end)) throw new RangeError(`${b}: option 'start' (${start}) must be < 'end' (${end})`);
  const steps = requireInteger(b, 'steps', options.steps, 2);
  const mode = requireOneOf(b, 'mode', options.mode ?? 'exp', ['exp', 'linear'] as const);
  const last = steps - 1;
  return (step: number): number => {
    checkStep(b, step);
    return interpolate(mode, start, end, step / last);
  };
}

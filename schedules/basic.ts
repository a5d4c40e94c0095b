/**
 * Basic schedules and combinators.
 *
 * Ramp convention (linear, cosine, exponential, warmup): `steps` is the ramp's duration, so the
 * value is `from` at step 0 and exactly `to` at step `steps` (and after). Joined with sequence(),
 * a ramp of `steps` steps is followed by a segment whose step 0 is the ramp's end value, which
 * is what warm-up wants. (PyTorch's LinearLR/CosineAnnealingLR use the same convention:
 * CosineAnnealingLR reaches eta_min at epoch T_max.)
 */
import type { Schedule } from './types.ts';
import { interpolate, type InterpolationKind } from './interpolate.ts';
import {
  checkStep,
  requireFinite,
  requireInteger,
  requireKnownKeys,
  requireObject,
  requirePositive,
  requireSchedule,
} from './validate.ts';

/** The same value at every step. */
export function constant(value: number): Schedule {
  const v = requireFinite('constant', 'value', value);
  return (step: number): number => {
    checkStep('constant', step);
    return v;
  };
}

export interface RampOptions {
  readonly from: number;
  readonly to: number;
  /** Duration: `to` is reached at step `steps` and held after. Positive integer. */
  readonly steps: number;
}

function ramp(builder: string, kind: InterpolationKind, options: RampOptions): Schedule {
  requireObject(builder, options);
  requireKnownKeys(builder, options, ['from', 'to', 'steps']);
  const positive = kind === 'exp';
  const from = positive ? requirePositive(builder, 'from', options.from) : requireFinite(builder, 'from', options.from);
  const to = positive ? requirePositive(builder, 'to', options.to) : requireFinite(builder, 'to', options.to);
  const steps = requireInteger(builder, 'steps', options.steps, 1);
  return (step: number): number => {
    checkStep(builder, step);
    return interpolate(kind, from, to, step / steps);
  };
}

/** from + (to - from) * step / steps. */
export function linear(options: RampOptions): Schedule {
  return ramp('linear', 'linear', options);
}

/** Cosine annealing from -> to: to + (from - to) * (1 + cos(pi * step / steps)) / 2. */
export function cosine(options: RampOptions): Schedule {
  return ramp('cosine', 'cos', options);
}

/** Geometric interpolation from * (to / from)^(step / steps); from and to must be > 0. */
export function exponential(options: RampOptions): Schedule {
  return ramp('exponential', 'exp', options);
}

/**
 * Piecewise constant decay, like torch.optim.lr_scheduler.MultiStepLR:
 * value * gamma^(number of milestones <= step) (PyTorch: base_lr * gamma ** bisect_right(milestones, epoch)).
 * Smith's super-convergence baseline is stepDecay(0.35, [50000, 70000], 0.1).
 * Milestones may be given in any order; repeated milestones decay repeatedly, as in PyTorch.
 */
export function stepDecay(value: number, milestones: readonly number[], gamma: number): Schedule {
  const b = 'stepDecay';
  const v = requireFinite(b, 'value', value);
  if (!Array.isArray(milestones)) throw new TypeError(`${b}: option 'milestones' must be an array of step indices`);
  milestones.forEach((m, i) => requireInteger(b, `milestones[${i}]`, m, 0));
  const g = requirePositive(b, 'gamma', gamma);
  const sorted = Float64Array.from(milestones).sort();
  return (step: number): number => {
    checkStep(b, step);
    // bisect_right: count of milestones <= step.
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (sorted[mid]! <= step) lo = mid + 1;
      else hi = mid;
    }
    return v * g ** lo;
  };
}

export interface Segment {
  readonly schedule: Schedule;
  /**
   * Number of steps this segment lasts; required for every segment but the last. If the last
   * segment has `steps`, the sequence ends there and holds its value at its final step;
   * without it, the last segment runs on (with its own end behaviour).
   */
  readonly steps?: number;
}

/**
 * Joins schedules end to end. Each segment sees its local step (global step minus the steps of
 * the segments before it).
 */
export function sequence(segments: readonly Segment[]): Schedule {
  const b = 'sequence';
  if (!Array.isArray(segments) || segments.length === 0) {
    throw new RangeError(`${b}: expected a non-empty array of { schedule, steps } segments`);
  }
  const schedules: Schedule[] = [];
  const starts: number[] = [];
  let total = 0;
  segments.forEach((seg, i) => {
    requireObject(b, seg);
    requireKnownKeys(b, seg, ['schedule', 'steps']);
    schedules.push(requireSchedule(b, `segments[${i}].schedule`, seg.schedule));
    starts.push(total);
    const last = i === segments.length - 1;
    if (!last || seg.steps !== undefined) total += requireInteger(b, `segments[${i}].steps`, seg.steps, 1);
  });
  const bounded = segments[segments.length - 1]!.steps !== undefined;
  return (step: number): number => {
    checkStep(b, step);
    const s = bounded && step >= total ? total - 1 : step;
    let i = schedules.length - 1;
    while (i > 0 && s < starts[i]!) i--;
    return schedules[i]!(s - starts[i]!);
  };
}

/** Alias of sequence(). */
export const piecewise: typeof sequence = sequence;

export interface WarmupOptions {
  /** Warm-up duration: at step `steps` the value is schedule(0). Positive integer. */
  readonly steps: number;
  /** Value at step 0 (default 0). */
  readonly from?: number;
}

/** Linear warm-up from `from` to schedule(0) over `steps` steps, then schedule(step - steps). */
export function warmup(options: WarmupOptions, schedule: Schedule): Schedule {
  const b = 'warmup';
  requireObject(b, options);
  requireKnownKeys(b, options, ['steps', 'from']);
  const steps = requireInteger(b, 'steps', options.steps, 1);
  const from = options.from === undefined ? 0 : requireFinite(b, 'from', options.from);
  const inner = requireSchedule(b, 'schedule', schedule);
  const target = requireFinite(b, 'schedule(0)', inner(0));
  return (step: number): number => {
    checkStep(b, step);
    return step < steps ? interpolate('linear', from, target, step / steps) : inner(step - steps);
  };
}

/** Options and plumbing shared by the three one-cycle flavours (see oneCycle.ts). */
import type { Anneal, OneCycle, OneCyclePhase, OneCyclePreset } from './types.ts';
import {
  checkStep,
  requireAtLeast,
  requireBoolean,
  requireInRange,
  requireInteger,
  requireOrdered,
  requirePositive,
} from './validate.ts';

interface OneCycleCommonOptions {
  /** Peak learning rate. */
  readonly maxLr: number;
  /** Number of optimisation steps; the schedules hold their step totalSteps-1 value after. */
  readonly totalSteps: number;
  /** lr at step 0 = maxLr / divFactor (>= 1). Default: smith 10, pytorch 25, fastai 25. */
  readonly divFactor?: number;
  /**
   * Final lr divisor (>= 1). What it divides differs per preset, as in each source:
   * smith: final = (maxLr / divFactor) / finalDivFactor, default 100;
   * pytorch: min_lr = initial_lr / final_div_factor, default 1e4;
   * fastai: final = lr_max / div_final (relative to maxLr!), default 1e5.
   */
  readonly finalDivFactor?: number;
  /** Momentum at low lr (start/end), default 0.95. PyTorch: max_momentum. */
  readonly maxMomentum?: number;
  /** Momentum at the lr peak, default 0.85. PyTorch: base_momentum. */
  readonly minMomentum?: number;
  /** Cycle momentum inversely to lr (default true); false: momentum is constantly maxMomentum. */
  readonly cycleMomentum?: boolean;
}

/** Smith's policy (2018, arXiv:1803.09820, "1cycle"): the default. */
export interface SmithOneCycleOptions extends OneCycleCommonOptions {
  readonly preset?: 'smith';
  /** Share of the run spent annihilating lr below the cycle minimum, in (0, 1). Default 0.1. */
  readonly annihilationFraction?: number;
  /** Shape of every phase, default 'linear' (as in the paper). */
  readonly anneal?: Anneal;
}

/** torch.optim.lr_scheduler.OneCycleLR, reproduced including its float arithmetic. */
export interface PyTorchOneCycleOptions extends OneCycleCommonOptions {
  readonly preset: 'pytorch';
  /** pct_start, default 0.3. */
  readonly pctStart?: number;
  /** anneal_strategy, default 'cos'. */
  readonly anneal?: Anneal;
  /** three_phase, default false. */
  readonly threePhase?: boolean;
}

/** fastai's Learner.fit_one_cycle (callback/schedule.py), cosine only. */
export interface FastaiOneCycleOptions extends OneCycleCommonOptions {
  readonly preset: 'fastai';
  /** pct_start, default 0.25. */
  readonly pctStart?: number;
  readonly anneal?: 'cos';
}

export type OneCycleOptions = SmithOneCycleOptions | PyTorchOneCycleOptions | FastaiOneCycleOptions;

export const COMMON_KEYS = [
  'preset',
  'maxLr',
  'totalSteps',
  'divFactor',
  'finalDivFactor',
  'maxMomentum',
  'minMomentum',
  'cycleMomentum',
] as const;

export interface CommonSettings {
  readonly maxLr: number;
  readonly totalSteps: number;
  readonly divFactor: number;
  readonly finalDivFactor: number;
  readonly maxMomentum: number;
  readonly minMomentum: number;
  readonly cycleMomentum: boolean;
}

export function parseCommon(
  builder: string,
  o: OneCycleCommonOptions,
  defaults: { readonly divFactor: number; readonly finalDivFactor: number },
): CommonSettings {
  const maxLr = requirePositive(builder, 'maxLr', o.maxLr);
  const totalSteps = requireInteger(builder, 'totalSteps', o.totalSteps, 1);
  const divFactor = requireAtLeast(builder, 'divFactor', o.divFactor ?? defaults.divFactor, 1);
  const finalDivFactor = requireAtLeast(builder, 'finalDivFactor', o.finalDivFactor ?? defaults.finalDivFactor, 1);
  const maxMomentum = requireInRange(builder, 'maxMomentum', o.maxMomentum ?? 0.95, 0, 1);
  const minMomentum = requireInRange(builder, 'minMomentum', o.minMomentum ?? 0.85, 0, 1);
  requireOrdered(builder, 'minMomentum', minMomentum, 'maxMomentum', maxMomentum);
  const cycleMomentum = requireBoolean(builder, 'cycleMomentum', o.cycleMomentum ?? true);
  return { maxLr, totalSteps, divFactor, finalDivFactor, maxMomentum, minMomentum, cycleMomentum };
}

/**
 * Wraps closed-form evaluators (valid on 0..totalSteps-1) into checked schedules that hold the
 * step totalSteps-1 value afterwards.
 */
export function assemble(
  builder: string,
  preset: OneCyclePreset,
  anneal: Anneal,
  c: CommonSettings,
  phases: readonly OneCyclePhase[],
  lrAt: (step: number) => number,
  momentumAt: (step: number) => number,
): OneCycle {
  const last = c.totalSteps - 1;
  const lr = (step: number): number => {
    checkStep(builder, step);
    return lrAt(step < last ? step : last);
  };
  const momentum = c.cycleMomentum
    ? (step: number): number => {
        checkStep(builder, step);
        return momentumAt(step < last ? step : last);
      }
    : (step: number): number => {
        checkStep(builder, step);
        return c.maxMomentum;
      };
  return Object.freeze({
    lr,
    momentum,
    totalSteps: c.totalSteps,
    preset,
    anneal,
    maxLr: c.maxLr,
    initialLr: lrAt(0),
    finalLr: lrAt(last),
    cycleMomentum: c.cycleMomentum,
    maxMomentum: c.maxMomentum,
    minMomentum: c.minMomentum,
    phases: Object.freeze(phases.map((p) => Object.freeze(p))),
  });
}

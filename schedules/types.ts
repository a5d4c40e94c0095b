/**
 * Shared types of the schedules module.
 *
 * A schedule is a pure function of the 0-based integer optimisation step. Every schedule is
 * defined for all integer steps >= 0; finite schedules hold their final value past their end
 * (unlike PyTorch's OneCycleLR, which raises after total_steps). Negative, fractional, NaN or
 * infinite steps throw a RangeError naming the builder.
 */
export type Schedule = (step: number) => number;

/** Interpolation shape inside one phase. */
export type Anneal = 'linear' | 'cos';

/**
 * One phase of a one-cycle policy. Inside the phase the value is
 * anneal(from, to, (step - startStep) / (endStep - startStep)).
 * startStep/endStep are the interpolation anchors (pct = 0 and pct = 1); for the 'pytorch' and
 * 'fastai' presets they are the libraries' own float positions and may be fractional (fastai
 * also picks the phase and pct in float32; see oneCycleFastai.ts).
 */
export interface OneCyclePhase {
  readonly name: 'rise' | 'fall' | 'annihilation';
  readonly startStep: number;
  readonly endStep: number;
  readonly lr: readonly [from: number, to: number];
  readonly momentum: readonly [from: number, to: number];
}

export type OneCyclePreset = 'smith' | 'pytorch' | 'fastai';

/** Result of oneCycle(): the two schedules plus a description of the policy that produced them. */
export interface OneCycle {
  readonly lr: Schedule;
  readonly momentum: Schedule;
  readonly totalSteps: number;
  readonly preset: OneCyclePreset;
  readonly anneal: Anneal;
  readonly maxLr: number;
  /** lr at step 0. */
  readonly initialLr: number;
  /** lr at step totalSteps - 1, held for every later step. */
  readonly finalLr: number;
  /** false: momentum is the constant maxMomentum. */
  readonly cycleMomentum: boolean;
  readonly maxMomentum: number;
  readonly minMomentum: number;
  readonly phases: readonly OneCyclePhase[];
}

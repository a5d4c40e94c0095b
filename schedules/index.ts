/**
 * Learning-rate and momentum schedules: pure functions of the integer step (no GPU code).
 * See types.ts for the Schedule contract and each file's header for the formulas it follows.
 */
export type { Anneal, OneCycle, OneCyclePhase, OneCyclePreset, Schedule } from './types.ts';
export {
  constant,
  cosine,
  exponential,
  linear,
  piecewise,
  sequence,
  stepDecay,
  warmup,
  type RampOptions,
  type Segment,
  type WarmupOptions,
} from './basic.ts';
export { expRange, triangular, triangular2, type CyclicalOptions, type ExpRangeOptions } from './cyclical.ts';
export {
  oneCycle,
  type FastaiOneCycleOptions,
  type OneCycleOptions,
  type PyTorchOneCycleOptions,
  type SmithOneCycleOptions,
} from './oneCycle.ts';
export { rangeSweep, type RangeSweepOptions } from './rangeSweep.ts';
export { sampleOneCycle, sampleSchedule, sampleSchedules } from './sample.ts';

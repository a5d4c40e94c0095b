// What every LR range test does with the losses it records, whoever computes
// them (the engine's GPU loop in rangeTest.ts, or a user's own step function in
// loop.ts): the debiased EMA of the loss, the stop on a non-finite loss or on
// the smoothed loss exceeding `divergeFactor` × its minimum, and the result with
// the LR suggestion. No GPU code, so it loads without the `webgpu` package.
import { DivergenceMonitor } from '../train/divergence.ts';
import { emaSmooth } from './smooth.ts';
import { type LrSuggestion, type SuggestMethod, suggestLr } from './suggest.ts';

export interface RangeTestResult {
  lrs: number[];
  /** raw loss per step */
  losses: number[];
  /** debiased exponentially smoothed loss */
  smoothed: number[];
  stoppedEarly: boolean;
  stopReason: string;
  steps: number;
  /** null when the curve could not be read (too short, all NaN): then `suggestionError` says why */
  suggestion: LrSuggestion | null;
  suggestionError: string | null;
  seconds: number;
  mode: 'exp' | 'linear';
  startLr: number;
  endLr: number;
}

/** What a sweep was asked to do: stored with its result, and how its suggestion is read. */
export interface SweepSettings {
  steps: number;
  mode: 'exp' | 'linear';
  startLr: number;
  endLr: number;
  /** EMA factor of the smoothed loss */
  beta: number;
  /** stop when the smoothed loss exceeds this factor times its minimum */
  divergeFactor: number;
  method?: SuggestMethod | undefined;
  minLrDivisor?: number | undefined;
  /** auto's noise cap (suggestLr's noiseLrScale); 0 or absent: off */
  noiseLrScale?: number | undefined;
}

/**
 * Records (lr, loss) pairs in sweep order, says when the sweep must stop
 * (train/divergence.ts, judged from the second loss on) and, at the end, gives
 * the result: the one place both range tests (GPU loop, user's callback) share.
 * Its clock starts when it is made.
 */
export class SweepRecorder {
  readonly lrs: number[] = [];
  readonly losses: number[] = [];
  private readonly monitor: DivergenceMonitor;
  private readonly t0 = performance.now();
  private stopReason: string | null = null;

  constructor(readonly settings: SweepSettings) {
    this.monitor = new DivergenceMonitor({ factor: settings.divergeFactor, beta: settings.beta, warmup: 1 });
  }

  /** Adds one step; returns the smoothed loss and, when the sweep must stop, why (then `stopped` is true). */
  record(lr: number, loss: number): { smoothed: number; stop: string | null } {
    const step = this.losses.length;
    this.lrs.push(lr);
    this.losses.push(loss);
    const stop = this.monitor.push(loss, `step ${step} (lr ${lr.toPrecision(3)})`);
    if (stop && this.stopReason === null) this.stopReason = stop;
    return { smoothed: this.monitor.smoothed, stop };
  }

  get stopped(): boolean {
    return this.stopReason !== null;
  }

  /** The curve with its suggestion; a curve the suggestion cannot read gives `suggestionError` instead of throwing. */
  result(): RangeTestResult {
    const o = this.settings;
    const lrs = [...this.lrs];
    const losses = [...this.losses];
    let suggestion: LrSuggestion | null = null;
    let suggestionError: string | null = null;
    try {
      suggestion = suggestLr({ lrs, losses }, { method: o.method ?? 'auto', ...(o.minLrDivisor ? { minLrDivisor: o.minLrDivisor } : {}), ...(o.noiseLrScale ? { noiseLrScale: o.noiseLrScale } : {}) });
    } catch (e) {
      suggestionError = (e as Error).message;
    }
    return {
      lrs,
      losses,
      smoothed: emaSmooth(losses, o.beta),
      stoppedEarly: this.stopped,
      stopReason: this.stopReason ?? `completed the sweep of ${o.steps} steps`,
      steps: losses.length,
      suggestion,
      suggestionError,
      seconds: (performance.now() - this.t0) / 1000,
      mode: o.mode,
      startLr: o.startLr,
      endLr: o.endLr,
    };
  }
}

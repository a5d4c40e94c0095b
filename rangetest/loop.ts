// The LR range test over a step function you own: your loop trains one batch
// at the LR it is given and returns the loss; this sweeps the LR (the schedule
// `rangeSweep` gives), records the loss, stops on divergence exactly as the
// engine's own range test does (sweep.ts), and returns the curve and the
// suggestion. No GPU code: it loads without the `webgpu` package, so any
// framework's loop (or a plain function, as in the tests) can drive it.
import { rangeSweep } from '../schedules/rangeSweep.ts';
import type { SuggestMethod } from './suggest.ts';
import { type RangeTestResult, SweepRecorder } from './sweep.ts';

export interface RangeTestLoopOptions {
  /**
   * Trains one batch with learning rate `lr` (step `index` of the sweep) and
   * returns that batch's loss, or a promise of it. A NaN or infinite loss ends
   * the sweep.
   */
  step: (lr: number, index: number) => number | Promise<number>;
  /** LR at the first and last step of the sweep (1e-5 and 10, as the engine's) */
  startLr?: number;
  endLr?: number;
  /** sweep length in steps (default 100, fastai's); Smith uses about an epoch */
  steps?: number;
  mode?: 'exp' | 'linear';
  /** smoothing of the recorded loss (debiased EMA, default 0.98) */
  beta?: number;
  /** stop when the smoothed loss exceeds this factor × its minimum (default 4) */
  divergeFactor?: number;
  /** how the suggestion is computed (default 'auto'; docs/lr-suggestion.md) */
  method?: SuggestMethod;
  /** minLr = maxLr / minLrDivisor (default 10) */
  minLrDivisor?: number;
  /** auto's noise cap, in the loss's units (suggestLr's noiseLrScale); default off */
  noiseLrScale?: number;
  /**
   * Called once when the sweep ends, also when `step` throws: put your weights
   * and optimizer back here (the sweep trains them, at LRs up to divergence).
   */
  restore?: () => void | Promise<void>;
  onProgress?: (step: number, steps: number, lr: number, smoothedLoss: number) => void;
}

const NAME = 'rangeTest';

function positive(key: string, v: unknown, dflt: number): number {
  const x = v === undefined ? dflt : v;
  if (typeof x !== 'number' || !Number.isFinite(x) || x <= 0) throw new RangeError(`${NAME}: ${key} must be a finite number > 0, got ${String(v)}`);
  return x;
}

/** Sweeps the LR through `o.step` and returns the curve with the suggested max and min LR. */
export async function rangeTest(o: RangeTestLoopOptions): Promise<RangeTestResult> {
  if (typeof o !== 'object' || o === null) throw new TypeError(`${NAME}: expected an options object with a step function`);
  if (typeof o.step !== 'function') throw new TypeError(`${NAME}: 'step' must be a function (lr, index) => loss, got ${typeof o.step}`);
  const startLr = positive('startLr', o.startLr, 1e-5);
  const endLr = positive('endLr', o.endLr, 10);
  if (!(endLr > startLr)) throw new RangeError(`${NAME}: need startLr < endLr, got ${startLr} and ${endLr}`);
  const steps = o.steps ?? 100;
  if (!Number.isInteger(steps) || steps < 10) throw new RangeError(`${NAME}: steps must be an integer ≥ 10, got ${String(o.steps)}`);
  const mode = o.mode ?? 'exp';
  const beta = o.beta ?? 0.98;
  if (typeof beta !== 'number' || !(beta >= 0 && beta < 1)) throw new RangeError(`${NAME}: beta must be in [0, 1), got ${String(o.beta)}`);
  const divergeFactor = positive('divergeFactor', o.divergeFactor, 4);
  const schedule = rangeSweep({ start: startLr, end: endLr, steps, mode });
  const recorder = new SweepRecorder({ steps, mode, startLr, endLr, beta, divergeFactor, method: o.method, minLrDivisor: o.minLrDivisor, noiseLrScale: o.noiseLrScale });
  try {
    for (let i = 0; i < steps; i++) {
      const lr = schedule(i);
      const loss = await o.step(lr, i);
      // a string or undefined here is a bug in the step function, not a divergence
      if (typeof loss !== 'number') throw new TypeError(`${NAME}: step(${lr}, ${i}) returned ${typeof loss}, not a number (the batch's loss)`);
      const { smoothed, stop } = recorder.record(lr, loss);
      if (Number.isFinite(loss)) o.onProgress?.(i + 1, steps, lr, smoothed);
      if (stop) break;
    }
  } finally {
    await o.restore?.();
  }
  return recorder.result();
}

// The LR range test (Smith 2015, §3.3; Smith 2018, §4.1): train for a number of
// steps while the LR sweeps up (exponentially by default), record the loss,
// stop once it diverges, then put the model back exactly as it was — weights,
// batchnorm running statistics, and the optimizer's state if one is given (bit
// for bit: GPU copies, no host round trip). pytorch-lr-finder leaves that to a
// manual reset(); here it cannot be forgotten.
import type { Device } from '../gpu/device.ts';
import type { Module } from '../engine/nn/index.ts';
import { SGD, type SgdState } from '../engine/optim.ts';
import { type Tensor, empty, keep, noGrad, tidy } from '../engine/tensor.ts';
import { softmaxCrossEntropy } from '../engine/ops/loss.ts';
import { add, scale } from '../engine/ops/elementwise.ts';
import { rangeSweep } from '../schedules/index.ts';
import type { BatchSource, EvalSource } from '../train/fit.ts';
import { emaSmooth } from './smooth.ts';
import { type LrSuggestion, type SuggestMethod, suggestLr } from './suggest.ts';

export interface RangeTestOptions {
  device: Device;
  model: Module;
  train: BatchSource;
  /** LR at the first and last step of the sweep */
  startLr?: number;
  endLr?: number;
  /** sweep length; default one epoch of `train` (Smith), at least 100 steps (fastai's default), at most `maxSteps` (500) */
  steps?: number;
  maxSteps?: number;
  mode?: 'exp' | 'linear';
  momentum?: number;
  weightDecay?: number;
  nesterov?: boolean;
  /** smoothing of the recorded loss (debiased EMA) */
  beta?: number;
  /** stop when the smoothed loss exceeds this factor × its minimum */
  divergeFactor?: number;
  /** record the loss on these held-out batches after every step instead of the training loss */
  evalLoss?: EvalSource;
  /** an optimizer whose state must also come back unchanged */
  optimizer?: SGD;
  /** how the suggestion is computed */
  method?: SuggestMethod;
  minLrDivisor?: number;
  /** read the losses back every N steps (early stop is checked then) */
  readEvery?: number;
  onProgress?: (step: number, steps: number, lr: number, smoothedLoss: number) => void;
}

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

/** GPU copies of a module's state dict (parameters and buffers). */
function snapshot(device: Device, model: Module): Map<Tensor, Tensor> {
  const copies = new Map<Tensor, Tensor>();
  for (const t of Object.values(model.stateDict())) {
    const c = keep(empty(device, t.shape, t.dtype, 'range-test snapshot'));
    device.copy(t.buffer, 0, c.buffer, 0, t.size * 4);
    copies.set(t, c);
  }
  return copies;
}

function restore(device: Device, copies: Map<Tensor, Tensor>): void {
  for (const [t, c] of copies) {
    device.copy(c.buffer, 0, t.buffer, 0, t.size * 4);
    c.dispose();
  }
}

export async function rangeTest(o: RangeTestOptions): Promise<RangeTestResult> {
  const { device, model } = o;
  const startLr = o.startLr ?? 1e-5;
  const endLr = o.endLr ?? 10;
  const mode = o.mode ?? 'exp';
  const steps = o.steps ?? Math.min(o.maxSteps ?? 500, Math.max(100, o.train.batchesPerEpoch));
  const beta = o.beta ?? 0.98;
  const divergeFactor = o.divergeFactor ?? 4;
  const readEvery = o.readEvery ?? 10;
  if (!(startLr > 0) || !(endLr > startLr)) throw new Error(`rangeTest: need 0 < startLr < endLr, got ${startLr} and ${endLr}`);
  if (!Number.isInteger(steps) || steps < 10) throw new Error(`rangeTest: steps must be an integer ≥ 10, got ${steps}`);
  const t0 = performance.now();

  const savedOptimizer: SgdState | null = o.optimizer ? await o.optimizer.state() : null;
  const savedGrads = model.parameters().map((p) => p.grad);
  for (const p of model.parameters()) p.grad = null; // the sweep's gradients must not add to the caller's
  const saved = snapshot(device, model);
  const wasTraining = model.training;
  const schedule = rangeSweep({ start: startLr, end: endLr, steps, mode });
  const sgd = new SGD({
    params: model.namedParameters(),
    lr: schedule,
    momentum: o.momentum ?? 0.9,
    weightDecay: o.weightDecay ?? 0,
    nesterov: o.nesterov ?? false,
  });
  const ring = keep(empty(device, [readEvery]));
  const lrs: number[] = [];
  const losses: number[] = [];
  let pending = 0;
  let avg = 0;
  let best = Infinity;
  let stopReason = `completed the sweep of ${steps} steps`;
  let stoppedEarly = false;

  // mean loss over the held-out batches, in eval mode, summed on the GPU
  const evalLoss = (): Tensor =>
    noGrad(() => {
      model.eval();
      const mean = tidy(() => {
        let total: Tensor | null = null;
        let n = 0;
        for (const { x, y } of o.evalLoss!.batches()) {
          const l = softmaxCrossEntropy(model.forward(x), y);
          total = total ? add(total, l) : l;
          n++;
          x.dispose();
          y.dispose();
        }
        return scale(total!, 1 / n);
      });
      model.train();
      return mean;
    });

  const drain = async (): Promise<boolean> => {
    if (pending === 0) return false;
    const values = new Float32Array(await device.read(ring.buffer, 0, pending * 4));
    pending = 0;
    for (const v of values) {
      const step = losses.length;
      losses.push(v);
      if (!Number.isFinite(v)) {
        stopReason = `loss became ${v} at step ${step} (lr ${lrs[step]!.toPrecision(3)})`;
        return true;
      }
      avg = beta * avg + (1 - beta) * v;
      const smoothed = avg / (1 - beta ** losses.length);
      o.onProgress?.(step + 1, steps, lrs[step]!, smoothed);
      if (losses.length > 1 && smoothed > divergeFactor * best) {
        stopReason = `smoothed loss ${smoothed.toPrecision(4)} exceeded ${divergeFactor}× its minimum ${best.toPrecision(4)} at step ${step} (lr ${lrs[step]!.toPrecision(3)})`;
        return true;
      }
      best = Math.min(best, smoothed);
    }
    return false;
  };

  try {
    model.train();
    for (let step = 0; step < steps; step++) {
      const { x, y } = o.train.next();
      lrs.push(sgd.lrAt());
      tidy(() => {
        const loss = softmaxCrossEntropy(model.forward(x), y);
        loss.backward();
        if (!o.evalLoss) device.copy(loss.buffer, 0, ring.buffer, pending * 4, 4);
      });
      x.dispose();
      y.dispose();
      sgd.step();
      sgd.zeroGrad();
      if (o.evalLoss) {
        const l = evalLoss();
        device.copy(l.buffer, 0, ring.buffer, pending * 4, 4);
        l.dispose();
      }
      device.flush();
      pending++;
      if (pending === readEvery || step === steps - 1) {
        if (await drain()) {
          stoppedEarly = true;
          break;
        }
      }
    }
  } finally {
    restore(device, saved);
    ring.dispose();
    sgd.dispose();
    model.parameters().forEach((p, i) => {
      p.grad?.dispose();
      p.grad = savedGrads[i] ?? null;
    });
    if (o.optimizer && savedOptimizer) o.optimizer.loadState(savedOptimizer);
    model.train(wasTraining);
    await device.sync();
  }
  lrs.length = losses.length;
  let suggestion: LrSuggestion | null = null;
  let suggestionError: string | null = null;
  try {
    suggestion = suggestLr({ lrs, losses }, { method: o.method ?? 'auto', ...(o.minLrDivisor ? { minLrDivisor: o.minLrDivisor } : {}) });
  } catch (e) {
    suggestionError = (e as Error).message;
  }
  return {
    lrs,
    losses,
    smoothed: emaSmooth(losses, beta),
    stoppedEarly,
    stopReason,
    steps: losses.length,
    suggestion,
    suggestionError,
    seconds: (performance.now() - t0) / 1000,
    mode,
    startLr,
    endLr,
  };
}


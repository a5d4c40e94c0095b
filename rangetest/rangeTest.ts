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
import { CROSS_ENTROPY_NOISE_LR_SCALE, type SuggestMethod } from './suggest.ts';
import { type RangeTestResult, SweepRecorder } from './sweep.ts';
import { ReadbackRing } from '../train/readback.ts';
import { trainStep } from '../train/step.ts';

export type { RangeTestResult } from './sweep.ts';

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
  /** auto's noise cap (suggestLr's noiseLrScale); default CROSS_ENTROPY_NOISE_LR_SCALE: the loss here is the classifier's cross-entropy */
  noiseLrScale?: number;
  /** read the losses back every N steps (early stop is checked then) */
  readEvery?: number;
  onProgress?: (step: number, steps: number, lr: number, smoothedLoss: number) => void;
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
  // (made first: its clock times the whole test, snapshot and restore included)
  const recorder = new SweepRecorder({ steps, mode, startLr, endLr, beta, divergeFactor, method: o.method, minLrDivisor: o.minLrDivisor, noiseLrScale: o.noiseLrScale ?? CROSS_ENTROPY_NOISE_LR_SCALE });

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
  // each step's loss with its LR, read back together every readEvery steps
  const ring = new ReadbackRing<number>(device, readEvery, 1);

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
    for (const { meta: lr, values } of await ring.drain()) {
      const loss = values[0]!;
      const { smoothed, stop } = recorder.record(lr, loss);
      if (Number.isFinite(loss)) o.onProgress?.(recorder.losses.length, steps, lr, smoothed);
      if (stop) return true;
    }
    return false;
  };

  try {
    model.train();
    for (let step = 0; step < steps; step++) {
      const slot = ring.slot(sgd.lrAt());
      trainStep(device, model, sgd, o.train.next(), {
        // the training loss, or (--eval-loss) the held-out loss after the update
        ...(o.evalLoss
          ? {
              afterUpdate: () => {
                const l = evalLoss();
                device.copy(l.buffer, 0, slot.buffer, slot.offset, 4);
                l.dispose();
              },
            }
          : { record: (loss: Tensor) => device.copy(loss.buffer, 0, slot.buffer, slot.offset, 4) }),
      });
      if (ring.full || step === steps - 1) {
        if (await drain()) break;
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
  return recorder.result();
}

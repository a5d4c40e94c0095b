// The training loop. One step = upload a batch, forward, loss, backward, fused
// SGD update, one submit; no readback inside a step. Per-step loss and accuracy
// are copied on the GPU into a ring buffer that is read once every `logEvery`
// steps, which is also when divergence is checked, metrics are written and the
// progress bar moves.
import type { Device } from '../gpu/device.ts';
import type { SGD } from '../engine/optim.ts';
import type { GradScaler } from '../engine/gradScaler.ts';
import { type Tensor, empty, keep, noGrad, tidy } from '../engine/tensor.ts';
import { accuracy, softmaxCrossEntropy } from '../engine/ops/loss.ts';
import { DivergenceMonitor } from './divergence.ts';
import { ReadbackRing } from './readback.ts';
import { trainStep } from './step.ts';

export { DivergenceMonitor };

/** What fit needs of a model (engine/nn's Module satisfies it). */
export interface Classifier {
  forward(x: Tensor): Tensor;
  train(mode?: boolean): unknown;
  eval(): unknown;
}

/** A stream of GPU batches: images [B, C, H, W] f32 and labels [B] i32. */
export interface BatchSource {
  readonly batchSize: number;
  /** batches in one pass over the data */
  readonly batchesPerEpoch: number;
  /** the next batch (the caller disposes both tensors) */
  next(): { x: Tensor; y: Tensor };
}

/** Fixed batches for evaluation, in order. */
export interface EvalSource {
  readonly size: number;
  batches(): Iterable<{ x: Tensor; y: Tensor }>;
}

export interface StepRecord {
  step: number;
  loss: number;
  acc: number;
  lr: number;
  momentum: number;
  /** half-precision training: the loss scale this step used */
  lossScale?: number;
  /** half-precision training: the update was skipped (non-finite gradients at this scale) */
  skipped?: boolean;
}

export interface EvalRecord {
  step: number;
  loss: number;
  acc: number;
  images: number;
}

export interface FitCallbacks {
  /** after each logged block of steps, with their records (read back together) */
  onSteps?(records: StepRecord[], imagesPerSec: number): void;
  onEval?(record: EvalRecord): void;
  /**
   * A checkpoint is due after `step` steps; return a promise to wait for it. A
   * string returned means the state was not saved because it is not good (e.g.
   * non-finite weights): the run then stops as diverged with that reason.
   */
  onCheckpoint?(step: number): Promise<string | void> | string | void;
  /**
   * The checkpoint of `step` steps is known good: the loss its weights gave
   * (step `step`'s) has been read and was below the divergence bound.
   */
  onCheckpointVerified?(step: number): void;
  /** polled after each step: true stops the run cleanly (Ctrl-C) */
  shouldStop?(): boolean;
}

export interface FitOptions {
  device: Device;
  model: Classifier;
  optimizer: SGD;
  train: BatchSource;
  eval?: EvalSource | undefined;
  /** total steps of the run (the optimizer may already be past some, when resuming) */
  totalSteps: number;
  labelSmoothing?: number;
  logEvery?: number;
  /** evaluate every N steps (0: only at the end) */
  evalEvery?: number;
  checkpointEvery?: number;
  /** stop when the smoothed loss exceeds this factor × its running minimum (or is not finite) */
  divergenceFactor?: number;
  /**
   * The loss of an uninformed guess (ln of the class count): during the first
   * steps, before the smoothed loss means anything, a raw loss above
   * divergenceFactor × this is divergence too.
   */
  lossFloor?: number;
  /** half-precision training (engine/gradScaler.ts): f16 activations and gradients, dynamic loss scaling */
  scaler?: GradScaler;
  /**
   * Time to accuracy: the run stops at the first evaluation (every evalEvery steps, and
   * the final one) whose accuracy is at least this fraction, and FitResult.target says when.
   */
  targetAccuracy?: number;
  callbacks?: FitCallbacks;
}

/** When a run first reached its target accuracy (FitOptions.targetAccuracy). */
export interface TargetReached {
  /** the target (a fraction) and the accuracy the evaluation read */
  target: number;
  accuracy: number;
  step: number;
  /** wall time from the first training step to the end of that evaluation, evaluations included */
  seconds: number;
  /** the same without the time spent evaluating */
  trainSeconds: number;
}

export type FitEnd = 'completed' | 'diverged' | 'interrupted';

export interface FitResult {
  end: FitEnd;
  /** steps completed (the optimizer's counter) */
  steps: number;
  /** the step count at the last state known to be good (before divergence was seen) */
  lastGoodStep: number;
  /**
   * A diverged run: the first step of the final run-up of raw losses above the
   * monitor's bound (or not finite). The weights after k steps gave step k's
   * loss, so a checkpoint of k steps is good only when k is below this.
   */
  divergedFrom?: number;
  message: string;
  finalEval: EvalRecord | null;
  history: StepRecord[];
  evals: EvalRecord[];
  seconds: number;
  /** set when the run reached FitOptions.targetAccuracy (it stopped there) */
  target?: TargetReached;
}

/** Mean loss and accuracy over an evaluation set, in eval mode, without the tape. */
export async function evaluate(device: Device, model: Classifier, data: EvalSource, step: number, labelSmoothing = 0): Promise<EvalRecord> {
  model.eval();
  const parts: Tensor[] = [];
  const sizes: number[] = [];
  noGrad(() => {
    for (const { x, y } of data.batches()) {
      const pair = tidy(() => {
        const logits = model.forward(x);
        const out = empty(device, [2]);
        const l = softmaxCrossEntropy(logits, y, { labelSmoothing });
        const a = accuracy(logits, y);
        device.copy(l.buffer, 0, out.buffer, 0, 4);
        device.copy(a.buffer, 0, out.buffer, 4, 4);
        return out;
      });
      sizes.push(y.shape[0]!);
      parts.push(keep(pair));
      x.dispose();
      y.dispose();
    }
  });
  let loss = 0;
  let correct = 0;
  let n = 0;
  for (let i = 0; i < parts.length; i++) {
    const [l, a] = await parts[i]!.toArray();
    loss += l! * sizes[i]!;
    correct += a! * sizes[i]!;
    n += sizes[i]!;
    parts[i]!.dispose();
  }
  model.train();
  return { step, loss: loss / Math.max(1, n), acc: correct / Math.max(1, n), images: n };
}

export async function fit(o: FitOptions): Promise<FitResult> {
  const { device, model, optimizer, train } = o;
  const logEvery = o.logEvery ?? 10;
  const smoothing = o.labelSmoothing ?? 0;
  const monitor = new DivergenceMonitor({ factor: o.divergenceFactor ?? 4, beta: 0.98, floor: o.lossFloor ?? 0 });
  const cb = o.callbacks ?? {};
  const history: StepRecord[] = [];
  const evals: EvalRecord[] = [];
  const t0 = performance.now();
  // [loss, acc] per step of the current logging block, read back together; with a loss
  // scaler also its [scale, found] words of the step
  const scaler = o.scaler;
  const ring = new ReadbackRing<{ step: number; lr: number; momentum: number }>(device, logEvery, scaler ? 4 : 2);
  let blockStart = performance.now();
  let end: FitEnd = 'completed';
  let message = '';
  let lastGoodStep = optimizer.stepCount;
  let finalEval: EvalRecord | null = null;

  let divergedFrom: number | undefined;
  let evalSeconds = 0;
  let target: TargetReached | undefined;
  /** Evaluates, and notes the first evaluation at or above the target accuracy. */
  const evaluateNow = async (step: number): Promise<EvalRecord> => {
    const start = performance.now();
    const r = await evaluate(device, model, o.eval!, step, smoothing);
    const now = performance.now();
    evalSeconds += (now - start) / 1000;
    evals.push(r);
    cb.onEval?.(r);
    if (o.targetAccuracy !== undefined && !target && r.acc >= o.targetAccuracy) {
      const seconds = (now - t0) / 1000;
      target = { target: o.targetAccuracy, accuracy: r.acc, step, seconds, trainSeconds: seconds - evalSeconds };
    }
    return r;
  };
  /** the step of the last checkpoint whose own loss has not been read yet (-1: none) */
  let unverified = -1;
  /** Where the blow-up that ends at history's last record began (see FitResult.divergedFrom). */
  const runUpStart = (): number => {
    const bound = monitor.bound;
    let i = history.length - 1;
    while (i > 0 && !(history[i - 1]!.loss <= bound)) i--;
    return history[Math.max(0, i)]?.step ?? optimizer.stepCount;
  };
  const drain = async (): Promise<string | null> => {
    if (ring.count === 0) return null;
    const records: StepRecord[] = (await ring.drain()).map(({ meta, values }) => ({
      ...meta,
      loss: values[0]!,
      acc: values[1]!,
      ...(scaler ? { lossScale: values[2]!, skipped: new Uint32Array(values.buffer, values.byteOffset + 12, 1)[0] !== 0 } : {}),
    }));
    const ips = (records.length * train.batchSize) / ((performance.now() - blockStart) / 1000);
    blockStart = performance.now();
    cb.onSteps?.(records, ips);
    for (const r of records) {
      history.push(r);
      if (r.step === unverified && r.loss <= monitor.bound) {
        cb.onCheckpointVerified?.(r.step);
        unverified = -1;
      }
      const why = monitor.push(r.loss, `step ${r.step}`);
      if (why) {
        divergedFrom = runUpStart();
        return why;
      }
    }
    return null;
  };

  model.train();
  try {
    while (optimizer.stepCount < o.totalSteps) {
      const step = optimizer.stepCount;
      const batch = train.next();
      const lr = optimizer.lrAt();
      const momentum = optimizer.momentumAt();
      let slot: { buffer: GPUBuffer; offset: number } | undefined;
      trainStep(device, model, optimizer, batch, {
        labelSmoothing: smoothing,
        record: (loss, logits) => {
          const acc = noGrad(() => accuracy(logits, batch.y));
          slot = ring.slot({ step, lr, momentum });
          device.copy(loss.buffer, 0, slot.buffer, slot.offset, 4);
          device.copy(acc.buffer, 0, slot.buffer, slot.offset + 4, 4);
        },
        ...(scaler ? { scaler, recordScaler: (state: GPUBuffer) => device.copy(state, 0, slot!.buffer, slot!.offset + 8, 8) } : {}),
      });

      const done = optimizer.stepCount;
      if (ring.full || done === o.totalSteps) {
        const diverged = await drain();
        if (diverged) {
          end = 'diverged';
          message = `training diverged: ${diverged}`;
          break;
        }
        lastGoodStep = done;
      }
      const evalDue = o.eval && o.evalEvery && done % o.evalEvery === 0 && done !== o.totalSteps;
      const ckptDue = o.checkpointEvery && done % o.checkpointEvery === 0 && done !== o.totalSteps;
      if (evalDue || ckptDue || cb.shouldStop?.()) {
        const diverged = await drain(); // state must be known good before it is saved
        if (diverged) {
          end = 'diverged';
          message = `training diverged: ${diverged}`;
          break;
        }
        lastGoodStep = done;
        let reached: EvalRecord | null = null;
        if (evalDue) {
          const r = await evaluateNow(done);
          if (target) reached = r;
        }
        if (ckptDue) {
          const refused = await cb.onCheckpoint?.(done);
          if (typeof refused === 'string') {
            end = 'diverged';
            message = `training diverged: ${refused}`;
            divergedFrom = done;
            break;
          }
          unverified = done;
        }
        if (reached) {
          // time to accuracy: the evaluation that crossed the target is the run's last
          finalEval = reached;
          break;
        }
        if (cb.shouldStop?.()) {
          end = 'interrupted';
          message = `interrupted at step ${done}`;
          break;
        }
      }
    }
    if (end === 'completed') message = `completed ${optimizer.stepCount} steps`;
    // an interrupted run is not evaluated: its metrics must read as the uninterrupted run's once resumed
    if (end === 'completed' && o.eval && !finalEval) finalEval = await evaluateNow(optimizer.stepCount);
    if (target) message = `reached ${(100 * target.accuracy).toFixed(2)}% (target ${(100 * target.target).toFixed(2)}%) at step ${target.step} of ${o.totalSteps}, ${target.seconds.toFixed(1)} s after the first step (${target.trainSeconds.toFixed(1)} s without evaluations)`;
    return {
      end, steps: optimizer.stepCount, lastGoodStep, message, finalEval, history, evals, seconds: (performance.now() - t0) / 1000,
      ...(divergedFrom !== undefined ? { divergedFrom } : {}),
      ...(target ? { target } : {}),
    };
  } finally {
    ring.dispose();
  }
}
